"""One training step of a fer-cbam checkpoint in PyTorch, in f64 and in f32, held against
`fer-cbam debug-step` tensor by tensor.

    fer-cbam init --out c.safetensors --seed 1
    python tools/torch_step.py --checkpoint c.safetensors --make-batch b.safetensors --n 2
    fer-cbam debug-step --checkpoint c.safetensors --batch b.safetensors --out ours.safetensors
    python tools/torch_step.py --checkpoint c.safetensors --batch b.safetensors \
        --ours ours.safetensors [--json report.json]

The step is the one `debug-step` runs: dropout off, batch norm (if the config has it) in
training mode, mean cross-entropy over the batch, backward, one Adam step with PyTorch's
semantics from the same flags (torch.optim.AdamW: decoupled weight decay, 0 by default). For
every tensor `debug-step` writes (`logits`, `loss`, `grad.<name>`, `param.<name>` after the
step, and with batch norm the running statistics) it prints max|x - f64| / max|f64| for
PyTorch f32 and, with --ours, for the engine. Parameters after the step are also counted for
elements more than `--moved` away from f64, and summarised over the elements whose step f32
can place: Adam's first step moves p by lr g / (|g| + eps), whose slope lr eps / (|g| + eps)^2
reaches lr / eps = 1e5 near g = 0, so where the gradient is too small for f32 to resolve, no
f32 run fixes where the parameter lands (the same rule as tests/network.rs).

--make-batch writes a seeded batch file (`images` uniform in [0, 1), `labels` cycling through
the classes) of --n images shaped for the checkpoint's config.
"""

import argparse
import json
import os
import re
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import load_checkpoint, read_config  # noqa: E402


def read_batch(path):
    from safetensors.torch import load_file

    t = load_file(path)
    if "images" not in t or "labels" not in t:
        raise SystemExit(f"error: {path}: needs tensors `images` (f32) and `labels` (i64)")
    return t["images"], t["labels"]


def make_batch(config, n, seed, path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    s, c = config["image_size"], config["in_channels"]
    images = torch.rand(n, c, s, s, generator=g, dtype=torch.float32)
    labels = torch.arange(n, dtype=torch.int64) % len(config["classes"])
    save_file({"images": images, "labels": labels}, path)


def step(checkpoint, images, labels, dtype, adam):
    """The debug-step tensors of one step at `dtype`, as f64 CPU tensors by name."""
    model, _ = load_checkpoint(checkpoint)
    model = model.to(dtype)
    # Training mode for batch norm's batch statistics; dropout is turned off explicitly.
    model.train()
    logits = model(images.to(dtype), dropout=False)
    loss = F.cross_entropy(logits, labels)
    model.zero_grad()
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    params = dict(model.named_parameters())
    for name, p in params.items():
        out[f"grad.{name}"] = p.grad.detach().clone()
    opt = torch.optim.AdamW(
        params.values(),
        lr=adam["lr"],
        betas=(adam["beta1"], adam["beta2"]),
        eps=adam["eps"],
        weight_decay=adam["weight_decay"],
        foreach=False,
    )
    opt.step()
    for name, p in params.items():
        out[f"param.{name}"] = p.detach().clone()
    for name, b in model.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            out[f"param.{name}"] = b.detach().clone()
    return {k: v.to(torch.float64) for k, v in out.items()}


def rel(x, ref):
    """max|x - ref| / max|ref| (the absolute max where ref is all zeros)."""
    d = (x - ref).abs().max().item()
    m = ref.abs().max().item()
    return d / m if m > 0 else d


def group(name):
    """Tensor group for the summary: the name without its stage index."""
    return re.sub(r"stages\.\d+\.", "stages.*.", name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="fer-cbam checkpoint (.safetensors)")
    ap.add_argument("--batch", help="debug-step batch file (images f32 [N,C,H,W], labels i64 [N])")
    ap.add_argument("--ours", action="append", default=[], metavar="OUT",
                    help="the output of `fer-cbam debug-step` on the same checkpoint and batch "
                         "(repeat for several, e.g. one per kernel set)")
    ap.add_argument("--make-batch", metavar="OUT", help="write a seeded batch file for the checkpoint and exit")
    ap.add_argument("--n", type=int, default=2, help="images in --make-batch (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed of --make-batch (default 0)")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (debug-step's default)")
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.0, help="decoupled (AdamW) weight decay")
    ap.add_argument("--moved", type=float, default=1e-6,
                    help="count parameters after the step farther than this from f64 (default 1e-6)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", metavar="OUT", help="also write every number as JSON")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        config = read_config(a.checkpoint)
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    if a.make_batch:
        make_batch(config, a.n, a.seed, a.make_batch)
        print(f"wrote {a.make_batch}: {a.n} images {config['in_channels']}x{config['image_size']}x{config['image_size']}")
        return
    if not a.batch:
        raise SystemExit("error: --batch (or --make-batch) is required")
    images, labels = read_batch(a.batch)
    adam = {"lr": a.lr, "beta1": a.beta1, "beta2": a.beta2, "eps": a.eps, "weight_decay": a.weight_decay}
    ref = step(a.checkpoint, images, labels, torch.float64, adam)
    f32 = step(a.checkpoint, images, labels, torch.float32, adam)
    ours = []
    for path in a.ours:
        from safetensors.torch import load_file

        try:
            o = {k: v.to(torch.float64) for k, v in load_file(path).items()}
        except Exception as e:  # a missing or unreadable file: one line naming it
            raise SystemExit(f"error: {path}: {e}")
        missing = [k for k in ref if k not in o]
        if missing:
            raise SystemExit(f"error: {path}: tensors missing: {', '.join(missing[:5])}")
        ours.append(o)
    cols = ["ours"] if len(ours) == 1 else [f"ours{i + 1}" for i in range(len(ours))]

    def placed(name, r):
        """Elements of param `name` whose Adam step f32 can place: the gradient's allowed error
        (2e-5 of its tensor's largest) moves them by less than 2e-5 of the parameter tensor's
        largest (Adam's first step has slope lr eps / (|g| + eps)^2 in g); exact zeros too."""
        g = ref.get("grad." + name[len("param."):])
        if g is None:
            return torch.ones_like(r, dtype=torch.bool)
        slope = adam["lr"] * adam["eps"] / (g.abs() + adam["eps"]) ** 2
        return (g == 0) | (slope * g.abs().max() <= r.abs().max())

    def rel_placed(x, r, mask):
        m = r.abs().max().item()
        d = ((x - r).abs() * mask).max().item()
        return d / m if m > 0 else d

    rows = []
    for name, r in ref.items():
        row = {"tensor": name, "elements": r.numel(), "torch_f32": rel(f32[name], r)}
        if name.startswith("param."):
            mask = placed(name, r)
            row["unplaced"] = int((~mask).sum())
            row["torch_f32_placed"] = rel_placed(f32[name], r, mask)
        if name.startswith("param."):
            row["torch_f32_moved"] = int(((f32[name] - r).abs() > a.moved).sum())
        for col, o in zip(cols, ours):
            o = o[name].reshape(r.shape)
            row[col] = rel(o, r)
            if name.startswith("param."):
                row[f"{col}_moved"] = int(((o - r).abs() > a.moved).sum())
                row[f"{col}_placed"] = rel_placed(o, r, mask)
        rows.append(row)

    def fmt(v):
        return "-" if v is None else f"{v:.2e}"


    w = max(len(r["tensor"]) for r in rows)
    print(f"config: {json.dumps({k: config[k] for k in config if k != 'classes'})}")
    print(f"batch: {tuple(images.shape)}; Adam {adam}")
    for col, path in zip(cols, a.ours):
        print(f"{col}: {path}")
    print("max|x - f64| / max|f64| per tensor; `moved`: elements farther than "
          f"{a.moved:g} from f64 after the step\n")
    head = f"{'tensor':<{w}} {'elements':>9} {'torch f32':>10}" + "".join(f" {c:>10}" for c in cols)
    head += f" {'f32 moved':>10}" + "".join(f" {c + ' moved':>12}" for c in cols)
    print(head)
    for r in rows:
        line = f"{r['tensor']:<{w}} {r['elements']:>9} {fmt(r['torch_f32']):>10}"
        line += "".join(f" {fmt(r.get(c)):>10}" for c in cols)
        line += f" {r.get('torch_f32_moved', ''):>10}" + "".join(f" {r.get(c + '_moved', ''):>12}" for c in cols)
        print(line)
    groups = {}
    for r in rows:
        g = groups.setdefault(group(r["tensor"]), {"group": group(r["tensor"]), "torch_f32": 0.0})
        g["torch_f32"] = max(g["torch_f32"], r["torch_f32"])
        for c in cols:
            g[c] = max(g.get(c, 0.0), r[c])
    gw = max(len(g) for g in groups)
    print(f"\nworst per group\n{'group':<{gw}} {'torch f32':>10}" + "".join(f" {c:>10}" for c in cols))
    for g in groups.values():
        print(f"{g['group']:<{gw}} {fmt(g['torch_f32']):>10}" + "".join(f" {fmt(g.get(c)):>10}" for c in cols))

    def worst(key, params):
        v = [r[key] for r in rows if key in r and r["tensor"].startswith("param.") == params]
        return max(v) if v else None

    for params, what in [(False, "logits, loss and gradients"), (True, "parameters after the step")]:
        print(f"worst over {what}: torch f32 {fmt(worst('torch_f32', params))}"
              + "".join(f", {c} {fmt(worst(c, params))}" for c in cols))
    unplaced = sum(r.get("unplaced", 0) for r in rows)
    print(f"worst over parameters whose step f32 can place (all but {unplaced} elements): "
          f"torch f32 {fmt(worst('torch_f32_placed', True))}"
          + "".join(f", {c} {fmt(worst(c + '_placed', True))}" for c in cols))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": config, "adam": adam, "tensors": rows, "groups": list(groups.values())}, f, indent=1)


if __name__ == "__main__":
    main()
