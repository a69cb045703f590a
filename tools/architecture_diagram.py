#!/usr/bin/env python3
"""Writes docs/architecture.svg: one stage's forward dataflow and a training step's dispatches.

Standard library only. Run from the repository root: python3 tools/architecture_diagram.py
The dispatch counts are those of Network::new (src/model/network.rs) for the spec's default
config (4 stages, full attention); change them here if the recorded step changes.
"""

import os
from xml.sax.saxutils import escape

W, H = 1220, 1060
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"

# Colours: tensors grey, forward ops blue, backward orange, update green, host purple.
TENSOR = ("#f2f2f2", "#888888")
FWD = ("#dbe9f7", "#3a6ea5")
BWD = ("#fbe3cf", "#b8641b")
UPD = ("#dcf0d9", "#3f8a35")
HOST = ("#ece3f5", "#6d4a94")
GROUP = ("#ffffff", "#9aa7b5")

out = []


def rect(x, y, w, h, colours, rx=6, dash=None, stroke_width=1.4):
    fill, stroke = colours
    d = f' stroke-dasharray="{dash}"' if dash else ""
    out.append(
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{rx}" fill="{fill}" '
        f'stroke="{stroke}" stroke-width="{stroke_width}"{d}/>'
    )


def text(x, y, s, size=13, anchor="start", weight="normal", family=FONT, colour="#1a1a1a"):
    out.append(
        f'<text x="{x}" y="{y}" font-family="{family}" font-size="{size}" '
        f'text-anchor="{anchor}" font-weight="{weight}" fill="{colour}">{escape(s)}</text>'
    )


def box(x, y, w, h, colours, lines, mono_from=None, size=13):
    """A box with centred lines; lines from index mono_from on are set in the mono font."""
    rect(x, y, w, h, colours)
    n = len(lines)
    line_h = size + 4
    top = y + h / 2 - (n * line_h) / 2 + size - 1
    for i, s in enumerate(lines):
        mono = mono_from is not None and i >= mono_from
        text(
            x + w / 2,
            top + i * line_h,
            s,
            size=size - 1 if mono else size,
            anchor="middle",
            family=MONO if mono else FONT,
            colour="#333333" if mono else "#1a1a1a",
        )


def arrow(x1, y1, x2, y2, colour="#444444"):
    out.append(
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}" '
        f'stroke-width="1.5" marker-end="url(#head)"/>'
    )


def path_arrow(d, colour="#444444", dash=None):
    dd = f' stroke-dasharray="{dash}"' if dash else ""
    out.append(
        f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.5"{dd} '
        f'marker-end="url(#head)"/>'
    )


def stage_panel():
    x0, cx = 30, 290  # panel left edge, centre of the main column
    text(x0, 62, "A. One stage, forward (stage i, width W, input size S)", 16, weight="bold")
    bw = 390
    bx = cx - bw / 2
    y = 82

    def tensor(label, shape):
        nonlocal y
        box(bx + 30, y, bw - 60, 36, TENSOR, [label, shape], mono_from=0, size=13)
        y += 36

    def op(lines, h=44, colours=FWD):
        nonlocal y
        arrow(cx, y, cx, y + 16)
        y += 16
        box(bx, y, bw, h, colours, lines, mono_from=len(lines) - 1)
        y += h
        arrow(cx, y, cx, y + 16)
        y += 16

    tensor("stage input (image or previous stage)", "[N, C_prev, S, S]")
    op(["conv 3x3, pad 1, bias", "conv2d.wgsl:forward_v2"])
    tensor("stages.i.conv_out", "[N, W, S, S]")
    op(["ELU, alpha = 1", "activation.wgsl:elu_forward"])
    tensor("stages.i.elu_out", "[N, W, S, S]")
    op(["max pool 2x2, stride 2", "maxpool2d.wgsl:forward"])
    tensor("stages.i.pool_out = F", "[N, W, S/2, S/2]")

    # Channel gate.
    arrow(cx, y, cx, y + 22)
    y += 22
    gy = y
    gh = 228
    rect(x0, gy, 520, gh, GROUP, dash="5,4")
    text(x0 + 34, gy + 18, "CBAM channel gate (cbam_channel.wgsl)", 13, weight="bold")
    iy = gy + 30
    box(bx, iy, bw, 36, FWD, ["pool: mean a, max m of each S/2 x S/2 plane"])
    arrow(cx, iy + 36, cx, iy + 50)
    box(bx, iy + 50, bw, 36, FWD, ["hidden_layer: relu(fc1 v) for v = a and v = m"])
    arrow(cx, iy + 86, cx, iy + 100)
    box(bx, iy + 100, bw, 36, FWD, ["gate_layer: M_c = sigmoid(mlp(a) + mlp(m))  [N, W]"])
    arrow(cx, iy + 136, cx, iy + 150)
    box(bx, iy + 150, bw, 36, FWD, ["scale: F' = M_c * F"])
    # F skips to the scale (the product's direct factor).
    path_arrow(f"M {bx + 40} {gy - 11} L {x0 + 22} {gy - 11} L {x0 + 22} {iy + 168} L {bx} {iy + 168}")
    text(x0 + 28, iy + 125, "F", 12, family=MONO, colour="#555555")
    y = gy + gh
    arrow(cx, y, cx, y + 16)
    y += 16
    tensor("stages.i.channel_out = F'", "[N, W, S/2, S/2]")

    # Spatial gate.
    arrow(cx, y, cx, y + 22)
    y += 22
    gy = y
    gh = 178
    rect(x0, gy, 520, gh, GROUP, dash="5,4")
    text(x0 + 34, gy + 18, "CBAM spatial gate (cbam_spatial.wgsl + conv2d.wgsl)", 13, weight="bold")
    iy = gy + 30
    box(bx, iy, bw, 36, FWD, ["pool: max, mean over the W channels -> s"])
    arrow(cx, iy + 36, cx, iy + 50)
    box(bx, iy + 50, bw, 36, FWD, ["conv 7x7, 2 -> 1 channels, pad 3, bias -> z"])
    arrow(cx, iy + 86, cx, iy + 100)
    box(bx, iy + 100, bw, 36, FWD, ["gate: M_s = sigmoid(z)  [N, 1, S/2, S/2]; F'' = M_s * F'"])
    path_arrow(f"M {bx + 40} {gy - 11} L {x0 + 22} {gy - 11} L {x0 + 22} {iy + 118} L {bx} {iy + 118}")
    text(x0 + 28, iy + 80, "F'", 12, family=MONO, colour="#555555")
    y = gy + gh
    arrow(cx, y, cx, y + 16)
    y += 16
    tensor("stages.i.spatial_out = F''", "[N, W, S/2, S/2]")
    arrow(cx, y, cx, y + 16)
    text(cx, y + 32, "next stage, or the head (after stage 3)", 13, anchor="middle")



def step_panel():
    x0 = 600
    text(x0, 62, "B. One training step = one submission (Network::train_step)", 16, weight="bold")
    bw = 590
    y = 80
    rows = [
        (HOST, ["queued writes: input batch, labels, dropout step, Adam t", "queue.write_buffer (apply before the submission's commands)"], 46),
        (FWD, ["forward, stage 0 .. 3: conv, ELU, pool,", "channel gate (4), spatial gate (3)  = 10 dispatches each"], 46),
        (FWD, ["head: global avg pool, dropout, fc1, ELU, dropout, fc2,", "softmax_xent forward (loss, correct)  = 7"], 46),
        (BWD, ["backward, head (in reverse): softmax_xent, fc2 (dx, dW, db), dropout,", "ELU, fc1 (dx, dW, db), dropout, global avg pool  = 11"], 46),
        (BWD, ["backward, stage 3 .. 0: spatial gate (5), channel gate (6), pool, ELU,", "conv dW, db, dx (stage 0 has no dx)  = 16, 16, 16, 15"], 46),
        (UPD, ["Adam: one dispatch over the packed params, grads, m, v  = 1"], 34),
        (TENSOR, ["copy loss, correct -> history row (t - 1) mod 64"], 34),
    ]
    for i, (colours, lines, h) in enumerate(rows):
        box(x0, y, bw, h, colours, lines)
        if i + 1 < len(rows):
            arrow(x0 + bw / 2, y + h, x0 + bw / 2, y + h + 14)
        y += h + 14
    text(x0, y + 8, "47 forward + 74 backward + 1 Adam = 122 dispatches, recorded once in Network::new,", 13)
    text(x0, y + 26, "replayed every step in one compute pass; each dispatch sees the previous one's writes.", 13)

    # Host side: prefetch thread and readback.
    y += 62
    text(x0, y, "C. Around it, on the CPU (src/train.rs)", 16, weight="bold")
    y += 16
    box(x0, y, 280, 78, HOST, ["prefetch thread", "load, occlude, /255 the next", "batch; sync_channel(2)"])
    box(x0 + 310, y, 280, 78, HOST, ["main thread", "write_batch + train_step;", "history read back every 64 steps"])
    arrow(x0 + 280, y + 39, x0 + 310, y + 39)
    y += 98
    text(x0, y, "The GPU never waits for the CPU except at the history readback:", 13)
    text(x0, y + 18, "read_later submits the copy, wait_for blocks until that submission is done.", 13)

    # Packed parameter buffers.
    y += 56
    text(x0, y, "D. Parameters, gradients, Adam state (src/model/params.rs)", 16, weight="bold")
    y += 14
    names = ["params", "grads", "adam.m", "adam.v"]
    for i, name in enumerate(names):
        by = y + i * 30
        text(x0, by + 17, name, 12, family=MONO)
        segs = [("stages.0.conv.weight", 146), ("bias", 38), ("cbam ...", 84), ("...", 100),
                ("head.fc2.weight", 118), ("bias", 38)]
        sx = x0 + 70
        for label, w in segs:
            rect(sx, by + 2, w, 22, UPD if i == 0 else (BWD if i == 1 else TENSOR), rx=2)
            text(sx + w / 2, by + 17, label, 11, anchor="middle", family=MONO)
            sx += w
    y += 4 * 30 + 6
    text(x0, y + 10, "One buffer each, laid out by one offset table (each entry at a multiple of", 13)
    text(x0, y + 28, "64 floats); every op binds views into them. 434,001 parameters in the spec.", 13)

    # Legend.
    y += 56
    text(x0, y, "Legend", 13, weight="bold")
    y += 10
    for i, (colours, label) in enumerate(
        [(TENSOR, "tensor / copy"), (FWD, "forward dispatch"), (BWD, "backward dispatch"),
         (UPD, "optimizer"), (HOST, "CPU side")]
    ):
        lx = x0 + (i % 3) * 200
        ly = y + (i // 3) * 28
        rect(lx, ly, 26, 18, colours, rx=4)
        text(lx + 34, ly + 14, label, 13)


def main():
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}">'
    )
    out.append(
        '<defs><marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#444444"/></marker></defs>'
    )
    out.append(f'<rect width="{W}" height="{H}" fill="#ffffff"/>')
    text(30, 32, "fer-cbam: the network on the GPU", 20, weight="bold")
    stage_panel()
    step_panel()
    out.append("</svg>")
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    path = os.path.join(root, "docs", "architecture.svg")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
