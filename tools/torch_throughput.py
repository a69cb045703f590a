"""Training throughput of the same network in PyTorch on the CPU: the yardstick for the engine's
images/s (`fer-cbam profile`), measured on the same cores.

    fer-cbam init --out c.safetensors --image-size 128
    python tools/torch_throughput.py --checkpoint c.safetensors [--batch 64] [--steps 3]
        [--threads 2] [--channels-last]

Runs one warm-up step, then --steps timed training steps (forward, cross-entropy, backward,
Adam) on a seeded random batch, and prints the mean step time and images/s. The network is
tools/torch_model.py's, built from the checkpoint's config, in f32 and training mode (dropout on,
as the engine's step).
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import load_checkpoint  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a fer-cbam checkpoint (its config and weights)")
    ap.add_argument("--batch", type=int, default=64, help="images per step")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    ap.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    a = ap.parse_args()
    if a.batch < 1 or a.steps < 1 or a.threads < 1:
        sys.exit("torch_throughput.py: --batch, --steps and --threads must be positive")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, config = load_checkpoint(a.checkpoint)
    model.train()
    size = config["image_size"]
    x = torch.rand(a.batch, config.get("in_channels", 1), size, size)
    y = torch.randint(0, config.get("num_classes", 7), (a.batch,))
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = (time.perf_counter() - t0) / a.steps
    print(
        f"torch {torch.__version__}, {a.threads} threads, channels_last={a.channels_last}: "
        f"batch {a.batch} x {size}x{size}: {dt * 1000:.1f} ms a step = {a.batch / dt:.2f} images/s"
    )


if __name__ == "__main__":
    main()
