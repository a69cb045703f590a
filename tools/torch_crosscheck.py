#!/usr/bin/env python3
"""Holds `fer-cbam debug-step` against PyTorch: the same network, built here in PyTorch from the
spec (with the recipe options --norm, --init, --gate), loads a checkpoint written by
`fer-cbam init` (safetensors, PyTorch's state_dict names, `num_batches_tracked` included), runs
one training step on the same batch (dropout off, batch norm in training mode, mean
cross-entropy, torch.optim.Adam), and is compared tensor by tensor with the engine's output:
logits, loss, every gradient, every parameter after the step, and the running statistics.

Each tensor's error is max|engine - torch| / max|torch| (parameters after the step: the largest
difference in units of lr, where f32 resolves the gradient), against PyTorch in float64 (the
exact answer, up to the engine's f32) and in float32 (what another f32 framework gives).

    python3 tools/torch_crosscheck.py --norm batch --gate residual --init he

Needs torch and safetensors (`pip install torch safetensors`) and a built fer-cbam binary
(target/release or target/debug, or --bin). Prints a table and the worst error; exits 1 if a
tensor's error against float64 exceeds --tolerance (or a parameter moved more than 1% of lr
away).
"""

import argparse
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file


class ChannelGate(nn.Module):
    """M = sigmoid(mlp(avg_hw F) + mlp(max_hw F)); F' = M F, or F + M F (residual)."""

    def __init__(self, c, residual):
        super().__init__()
        h = max(1, c // 16)
        self.fc1 = nn.Linear(c, h)
        self.fc2 = nn.Linear(h, c)
        self.residual = residual

    def forward(self, f):
        a = f.mean(dim=(2, 3))
        # max with a dim routes the gradient to one index (the first maximum), as the spec says;
        # amax would share it between ties.
        m = f.flatten(2).max(dim=2).values

        def mlp(v):
            return self.fc2(F.relu(self.fc1(v)))

        g = torch.sigmoid(mlp(a) + mlp(m))[:, :, None, None]
        return f + g * f if self.residual else g * f


class SpatialGate(nn.Module):
    """M = sigmoid(conv7x7([max_c F', mean_c F'])); F'' = M F', or F' + M F' (residual)."""

    def __init__(self, residual):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)
        self.residual = residual

    def forward(self, f):
        s = torch.cat([f.max(dim=1, keepdim=True).values, f.mean(dim=1, keepdim=True)], dim=1)
        m = torch.sigmoid(self.conv(s))
        return f + m * f if self.residual else m * f


class Cbam(nn.Module):
    def __init__(self, c, attention, residual):
        super().__init__()
        self.channel = ChannelGate(c, residual) if attention in ("full", "channel") else None
        self.spatial = SpatialGate(residual) if attention in ("full", "spatial") else None

    def forward(self, f):
        if self.channel is not None:
            f = self.channel(f)
        if self.spatial is not None:
            f = self.spatial(f)
        return f


class Stage(nn.Module):
    """conv 3x3 -> [BatchNorm2d] -> ELU -> max pool 2x2 -> CBAM."""

    def __init__(self, c_in, c_out, config):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.bn = nn.BatchNorm2d(c_out) if config["norm"] == "batch" else None
        self.cbam = Cbam(c_out, config["attention"], config["gate"] == "residual")

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.cbam(F.max_pool2d(F.elu(x), 2))


class Head(nn.Module):
    def __init__(self, c, hidden, classes, p):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        self.drop1 = nn.Dropout(p)
        self.drop2 = nn.Dropout(p)

    def forward(self, x):
        x = self.drop1(x.mean(dim=(2, 3)))
        return self.fc2(self.drop2(F.elu(self.fc1(x))))


class Net(nn.Module):
    """The spec's network, from the checkpoint's model config."""

    def __init__(self, config):
        super().__init__()
        stages, c = [], config["in_channels"]
        for w in config["widths"]:
            stages.append(Stage(c, w, config))
            c = w
        self.stages = nn.ModuleList(stages)
        self.head = Head(c, config["hidden"], len(config["classes"]), config["dropout"])

    def forward(self, x):
        for s in self.stages:
            x = s(x)
        return self.head(x)


def torch_step(config, state, images, labels, dtype, lr):
    """One step in PyTorch at `dtype`: logits, loss, grads and params after Adam, buffers."""
    net = Net(config).to(dtype)
    net.load_state_dict({k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()})
    net.train()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # dropout off; batch norm stays in training mode
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    logits = net(images.to(dtype))
    loss = F.cross_entropy(logits, labels)
    opt.zero_grad()
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for name, p in net.named_parameters():
        out["grad." + name] = p.grad.detach().clone()
    opt.step()
    for name, p in net.named_parameters():
        out["param." + name] = p.detach().clone()
    for name, b in net.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out["param." + name] = b.detach().clone()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="the fer-cbam binary (default: target/release, then target/debug)")
    ap.add_argument("--norm", default="batch", choices=["none", "batch"])
    ap.add_argument("--init", default="he", choices=["pytorch", "he", "glorot"])
    ap.add_argument("--gate", default="residual", choices=["multiply", "residual"])
    ap.add_argument("--attention", default="full", choices=["full", "none", "channel", "spatial"])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--widths", default="32,64,128,256")
    ap.add_argument("--batch", type=int, default=4, help="images in the batch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tolerance", type=float, default=1e-4,
                    help="largest max|diff|/max|ref| against float64 that passes")
    a = ap.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = a.bin or next(
        (p for p in (os.path.join(root, "target", d, "fer-cbam") for d in ("release", "debug"))
         if os.path.exists(p)), None)
    if binary is None:
        sys.exit("error: no fer-cbam binary: run `cargo build --release` or pass --bin")

    with tempfile.TemporaryDirectory() as tmp:
        ck, batch, out = (os.path.join(tmp, f) for f in ("c.safetensors", "b.safetensors", "o.safetensors"))
        run = lambda *args: subprocess.run([binary, *args], check=True, capture_output=True, text=True)
        run("init", "--out", ck, "--seed", str(a.seed), "--image-size", str(a.image_size),
            "--widths", a.widths, "--attention", a.attention,
            "--norm", a.norm, "--init", a.init, "--gate", a.gate)
        g = torch.Generator().manual_seed(a.seed)
        images = torch.rand(a.batch, 3, a.image_size, a.image_size, generator=g)
        labels = torch.randint(0, 7, (a.batch,), generator=g)
        save_file({"images": images, "labels": labels}, batch)
        run("debug-step", "--checkpoint", ck, "--batch", batch, "--out", out, "--lr", str(a.lr))

        from safetensors import safe_open
        import json
        with safe_open(ck, "pt") as f:
            config = json.loads(f.metadata()["fer_cbam.config"])
        state = load_file(ck)
        engine = load_file(out)

    ref64 = torch_step(config, state, images, labels, torch.float64, a.lr)
    ref32 = torch_step(config, state, images, labels, torch.float32, a.lr)
    missing = sorted(set(ref64) ^ set(engine))
    if missing:
        sys.exit(f"error: tensors on one side only: {missing}")

    def rel(x, ref):
        x, ref = x.double(), ref.double()
        scale = ref.abs().max().item()
        return (x - ref).abs().max().item() / scale if scale > 0 else (x - ref).abs().max().item()

    def adam_rel(x, ref, grad):
        """Parameters after Adam: |diff| in units of lr, over the elements whose gradient f32
        can resolve (above 1e-4 of the tensor's largest, as tests/network.rs): Adam moves every
        parameter by about lr whatever its gradient's size, so a relative measure says nothing
        for a bias that starts at 0, and where |g| is near Adam's eps = 1e-8 any f32 rounding
        of g changes the step. Returns (max |diff| / lr, elements left out)."""
        x, ref, grad = x.double().flatten(), ref.double().flatten(), grad.double().flatten()
        keep = (grad.abs() > 1e-4 * grad.abs().max()) | (grad == 0)
        d = (x - ref).abs()[keep]
        return (d.max().item() / a.lr if d.numel() else 0.0), int((~keep).sum())

    print(f"config: {json.dumps(config)}")
    print(f"batch {a.batch} x 3 x {a.image_size} x {a.image_size}, seed {a.seed}, Adam lr {a.lr}")
    print("logits, loss, gradients, running statistics: max|diff| / max|ref|; parameters after")
    print("the Adam step: max|diff| / lr over the elements with a gradient f32 resolves")
    print(f"{'tensor':<48} {'engine vs f64':>14} {'torch f32 vs f64':>17} {'engine vs f32':>14}")
    worst = {"relative": (0.0, ""), "adam": (0.0, "")}
    for name in sorted(ref64):
        e, t64, t32 = engine[name], ref64[name], ref32[name]
        if tuple(e.shape) != tuple(t64.shape):
            sys.exit(f"error: {name}: engine {tuple(e.shape)} vs torch {tuple(t64.shape)}")
        # A conv bias in front of a batch norm has a zero gradient in exact arithmetic; its
        # float values are round-off on every side (and Adam turns them into steps of lr of
        # arbitrary sign), so they are shown but not scored.
        zero = a.norm == "batch" and name.endswith(".conv.bias") and "cbam" not in name
        adam = name.startswith("param.") and "running_" not in name
        if adam and not zero:
            g = ref64["grad." + name[len("param."):]]
            (r0, skipped), (r1, _), (r2, _) = (adam_rel(e, t64, g), adam_rel(t32, t64, g),
                                               adam_rel(e, t32, g))
            mark = f"  (lr units; {skipped} unresolved gradients left out)" if skipped else "  (lr units)"
        else:
            r0, r1, r2 = rel(e, t64), rel(t32, t64), rel(e, t32)
            mark = "  (zero in exact arithmetic: not scored)" if zero else ""
        print(f"{name:<48} {r0:>14.2e} {r1:>17.2e} {r2:>14.2e}{mark}")
        kind = "adam" if adam else "relative"
        if not zero and r0 > worst[kind][0]:
            worst[kind] = (r0, name)
    print(f"worst engine vs float64: {worst['relative'][0]:.2e} relative ({worst['relative'][1]}); "
          f"{worst['adam'][0]:.2e} lr after Adam ({worst['adam'][1]})")
    if worst["relative"][0] > a.tolerance:
        sys.exit(f"error: {worst['relative'][1]} differs by {worst['relative'][0]:.2e} > {a.tolerance:g}")
    if worst["adam"][0] > 0.01:
        sys.exit(f"error: {worst['adam'][1]} moved {worst['adam'][0]:.2e} lr away from float64")


if __name__ == "__main__":
    main()
