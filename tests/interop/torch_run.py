"""Runs fer-cbam checkpoints through tools/torch_model.py (`load`, then the module in f64) on a
batch of gray images (p / 255, the gray plane replicated to the config's input channels) and
prints JSON: per checkpoint, the logits of the batch.

    python torch_run.py job.json    (job: {"n": images, "models": {name: {"file":
                                          x.safetensors, "batch": raw u8 [n, size, size],
                                          "size"}}})
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import torch_model  # noqa: E402


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    n = job["n"]
    out = {"torch": torch.__version__}
    torch.set_num_threads(1)
    for name, m in job["models"].items():
        path, size = m["file"], m["size"]
        gray = np.fromfile(m["batch"], dtype=np.uint8).reshape(n, size, size)
        model = torch_model.load(path)
        assert not model.training, "load must return the model in eval mode"
        model = model.double()
        c = model.config["in_channels"]
        x = torch.from_numpy(gray.astype(np.float64) / 255.0)[:, None].repeat(1, c, 1, 1)
        with torch.no_grad():
            out[name] = model(x).tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
