#!/usr/bin/env python3
"""The recipe probe: the spec's network in PyTorch, with the recipe options, on CK+ (10-fold,
subject-grouped, apex frames, dlib landmarks for the eyes and mouth boxes) or FER2013 (official
split, the FER2013 landmark template). It is how the options were screened before the engine ran
them (docs/experiments.md, "Which options make the difference"): a hint, not a result. Its folds,
draws and rounding are its own, so its numbers are not the engine's.

  python3 tools/recipe_probe.py --data ckplus --landmarks-csv ckplus-landmarks.csv \
      --attention full --norm batch --init he --flip 1 --shift 3 --schedule cosine

Needs torch, numpy and pillow; prints one JSON line (mean accuracy per test set, per fold).

The network is tools/torch_model.py's (conv3x3 -> [BN] -> ELU -> maxpool2 -> [channel gate] -> [spatial gate]) x4,
GAP, dropout, fc 128, ELU, dropout, fc 7. Options: norm, init, gate, augmentation, schedule.
"""
import argparse, glob, json, math, os, re, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_model import FerCbam  # noqa: E402  (the network, shared with the interop tests)

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def load_folder(root):
    xs, ys, names = [], [], []
    for ci, c in enumerate(CLASSES):
        for p in sorted(glob.glob(os.path.join(root, c, "*"))):
            im = Image.open(p).convert("L")
            if im.size != (48, 48):
                im = im.resize((48, 48), Image.BILINEAR)
            xs.append(np.asarray(im, dtype=np.uint8))
            ys.append(ci)
            names.append(os.path.relpath(p, root))
    return np.stack(xs), np.array(ys), names


def dataset(name):
    os.makedirs(ARGS.cache, exist_ok=True)
    f = os.path.join(ARGS.cache, name + ".npz")
    if os.path.exists(f):
        d = np.load(f, allow_pickle=True)
        return {k: d[k] for k in d.files}
    if name == "fer2013":
        xtr, ytr, _ = load_folder(os.path.join(ARGS.datasets, "fer2013/train"))
        xte, yte, _ = load_folder(os.path.join(ARGS.datasets, "fer2013/test"))
        d = dict(xtr=xtr, ytr=ytr, xte=xte, yte=yte)
    else:
        x, y, names = load_folder(os.path.join(ARGS.datasets, "ckplus"))
        d = dict(x=x, y=y, names=np.array(names))
    np.savez(f, **d)
    return d


# Occlusion boxes at 48x48 (x0, y0, x1, y1), from the engine's templates.
BOX = {
    "fer2013": {"eyes": (2, 6, 45, 23), "mouth": (11, 32, 36, 45)},
    "ckplus48": {"eyes": (4, 11, 44, 24), "mouth": (12, 25, 36, 36)},
}


def lm_boxes(csv, names, size=48):
    """Per-image eyes/mouth boxes from a dlib sidecar, engine's formula (10% of jaw width)."""
    import csv as csvm
    rows = {}
    with open(csv) as fh:
        r = csvm.reader(fh)
        head = next(r)
        for row in r:
            pts = np.array([float(v) for v in row[1:137]]).reshape(68, 2)
            rows[row[0]] = pts
    eyes, mouth = [], []
    for n in names:
        l = rows[n] * (size / 48.0)
        m = 0.1 * np.hypot(*(l[16] - l[0]))

        def box(idx):
            p = l[idx]
            x0, y0 = p.min(0)
            x1, y1 = p.max(0)
            lo = lambda v: int(min(max(math.floor(v - m), 0), size))
            hi = lambda v: int(min(max(math.floor(v + m) + 1, 0), size))
            a, b = lo(x0), lo(y0)
            return (a, b, max(hi(x1), a), max(hi(y1), b))

        eyes.append(box(list(range(17, 27)) + list(range(36, 48))))
        mouth.append(box(list(range(48, 68))))
    return np.array(eyes), np.array(mouth)


def occlude(x, kind, eyes, mouth, rng):
    """x: uint8 [N,48,48] numpy (copied). kind per image: 0 none,1-3 patch 8/16/24,4 eyes,5 mouth."""
    n = x.shape[0]
    for i in range(n):
        k = kind[i]
        if k == 0:
            continue
        if k <= 3:
            S = x.shape[1]
            side = max(1, round([8, 16, 24][k - 1] * S / 128))
            x0, y0 = rng.integers(0, S - side + 1, 2)
            x[i, y0:y0 + side, x0:x0 + side] = 0
        else:
            b = (eyes if k == 4 else mouth)[i]
            x[i, b[1]:b[3], b[0]:b[2]] = 0
    return x


def augment(x, flip, shift, rng):
    n = x.shape[0]
    if flip:
        f = rng.random(n) < 0.5
        x[f] = x[f, :, ::-1]
    if shift:
        S = x.shape[1]
        out = np.zeros_like(x)
        d = rng.integers(-shift, shift + 1, (n, 2))
        for i in range(n):
            dx, dy = d[i]
            src = x[i, max(0, -dy):S - max(0, dy), max(0, -dx):S - max(0, dx)]
            out[i, max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
        x = out
    return x


def to_t(x):
    t = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)[:, None]
    return t.expand(-1, 3, -1, -1).contiguous()


def evaluate(model, x, y, eyes, mouth, seed=7):
    model.eval()
    res = {}
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, k in [("clean", 0), ("patch24", 3), ("eyes", 4), ("mouth", 5)]:
            xo = occlude(x.copy(), np.full(len(x), k), eyes, mouth, rng)
            pred = []
            for i in range(0, len(x), 256):
                pred.append(model(to_t(xo[i:i + 256])).argmax(1))
            res[name] = float((torch.cat(pred).numpy() == y).mean())
    return res


def train(a, xtr, ytr, etr, mtr, xte, yte, ete, mte, seed, log=None):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = FerCbam({
        "in_channels": 3, "widths": a.widths, "hidden": 128, "classes": CLASSES, "dropout": 0.2,
        "attention": a.attention, "norm": a.norm, "init": a.init, "gate": a.gate,
    })
    # PyTorch's own initialisation is what the modules drew when they were built; the others
    # redraw.
    if a.init != "pytorch":
        model.init_params()
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, weight_decay=0)
    n = len(xtr)
    steps = n // a.batch
    total = steps * a.epochs
    t = 0
    hist = []
    for ep in range(a.epochs):
        model.train()
        order = rng.permutation(n)
        tl, tc = 0.0, 0
        for s in range(steps):
            idx = order[s * a.batch:(s + 1) * a.batch]
            x = xtr[idx].copy()
            kind = np.where(rng.random(len(idx)) < a.mix, rng.integers(1, 6, len(idx)), 0)
            x = occlude(x, kind, etr[idx], mtr[idx], rng)
            x = augment(x, a.flip, a.shift, rng)
            if a.schedule == "cosine":
                warm = a.warmup * steps
                lr = a.lr * (t + 1) / warm if t < warm else 0.5 * a.lr * (1 + math.cos(math.pi * (t - warm) / max(1, total - warm)))
                for g in opt.param_groups:
                    g["lr"] = lr
            out = model(to_t(x))
            loss = F.cross_entropy(out, torch.from_numpy(ytr[idx]).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            tl += loss.item()
            tc += (out.argmax(1).numpy() == ytr[idx]).sum()
            t += 1
        if log and (ep + 1) % a.eval_every == 0:
            r = evaluate(model, xte, yte, ete, mte)
            hist.append((ep + 1, tl / steps, tc / (steps * a.batch), r))
            print(f"  ep {ep+1} loss {tl/steps:.3f} train {tc/(steps*a.batch):.3f} test {r}", file=log, flush=True)
    return model, evaluate(model, xte, yte, ete, mte), hist


def ck_folds(names, y, k, seed=1):
    subj = np.array([n.split("/")[-1].split("_")[0] for n in names])
    us = sorted(set(subj))
    r = np.random.default_rng(seed)
    r.shuffle(us)
    # greedy stratified-ish: assign subjects round robin in shuffled order
    fold_of = {s: i % k for i, s in enumerate(us)}
    return np.array([fold_of[s] for s in subj])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="ckplus", choices=["ckplus", "fer2013"])
    p.add_argument("--datasets", default="../shared/datasets", help="folder holding ckplus/ and fer2013/")
    p.add_argument("--cache", default="target/recipe-probe", help="where the decoded images are cached")
    p.add_argument("--landmarks-csv", default="ckplus-landmarks.csv", help="CK+ landmarks (tools/landmarks.py)")
    p.add_argument("--attention", default="full")
    p.add_argument("--norm", default="none")
    p.add_argument("--gate", default="multiply")
    p.add_argument("--init", default="pytorch")
    p.add_argument("--widths", default="32,64,128,256")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mix", type=float, default=0.5)
    p.add_argument("--flip", type=int, default=0)
    p.add_argument("--shift", type=int, default=0)
    p.add_argument("--schedule", default="constant")
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--folds", type=int, default=10)
    p.add_argument("--only-folds", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--subset", type=int, default=0)
    p.add_argument("--tag", default="")
    a = p.parse_args()
    global ARGS
    ARGS = a
    a.widths = [int(v) for v in a.widths.split(",")]
    torch.set_num_threads(a.threads)
    t0 = time.time()
    log = sys.stderr
    if a.data == "fer2013":
        d = dataset("fer2013")
        xtr, ytr, xte, yte = d["xtr"], d["ytr"], d["xte"], d["yte"]
        if a.subset:
            r = np.random.default_rng(0)
            i = r.permutation(len(xtr))[:a.subset]
            xtr, ytr = xtr[i], ytr[i]
        B = BOX["fer2013"]
        rep = lambda b, n: np.tile(np.array(b), (n, 1))
        model, res, hist = train(a, xtr, ytr, rep(B["eyes"], len(xtr)), rep(B["mouth"], len(xtr)), xte, yte,
                                 rep(B["eyes"], len(xte)), rep(B["mouth"], len(xte)), a.seed, log)
        out = dict(res=res, hist=hist)
    else:
        d = dataset("ckplus")
        x, y, names = d["x"], d["y"], list(d["names"])
        # apex: highest frame per sequence, contempt excluded (not in CLASSES anyway)
        seq = {}
        for i, n in enumerate(names):
            b = n.split("/")[-1]
            s = "_".join(b.split("_")[:2])
            fr = int(b.split("_")[2].split(".")[0])
            if s not in seq or fr > seq[s][0]:
                seq[s] = (fr, i)
        keep = sorted(i for _, i in seq.values())
        x, y, names = x[keep], y[keep], [names[i] for i in keep]
        eyes, mouth = lm_boxes(a.landmarks_csv, names)
        fold = ck_folds(names, y, a.folds)
        accs = []
        nf = a.only_folds or a.folds
        for f in range(nf):
            tr, te = fold != f, fold == f
            _, res, _ = train(a, x[tr], y[tr], eyes[tr], mouth[tr], x[te], y[te], eyes[te], mouth[te], a.seed + f, None)
            accs.append(res)
            print(f"  fold {f} {res}", file=log, flush=True)
        res = {k: float(np.mean([r[k] for r in accs])) for k in accs[0]}
        out = dict(res=res, folds=accs)
    out["args"] = vars(a)
    out["seconds"] = time.time() - t0
    print(json.dumps(out))


if __name__ == "__main__":
    main()
