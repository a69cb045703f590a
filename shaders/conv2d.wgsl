// 2-D convolution, stride 1, zero padding, square k x k kernel, optional bias (PyTorch's
// Conv2d semantics: cross-correlation). Layouts: x [N, C_in, H, W], weight [C_out, C_in, k, k],
// bias [C_out], y [N, C_out, H_out, W_out] with H_out = H + 2 pad - k + 1.
//
// Every entry point computes one output element per invocation and loops over its reduction in
// a fixed order, so results are bit-identical run to run (no atomics).
// The flat invocation index is gid.x + gid.y * nwg.x * WG (grids fold into 2-D past 65,535).

struct Params {
    n: u32, c_in: u32, c_out: u32, h: u32,
    w: u32, k: u32, pad: u32, h_out: u32,
    w_out: u32, has_bias: u32, _p0: u32, _p1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbias: array<f32>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// y[n, co, oy, ox] = bias[co] + sum_{ci, ky, kx} x[n, ci, oy + ky - pad, ox + kx - pad] * weight[co, ci, ky, kx]
@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c_out * p.h_out * p.w_out) { return; }
    let ox = i32(i % p.w_out);
    let oy = i32((i / p.w_out) % p.h_out);
    let co = (i / (p.w_out * p.h_out)) % p.c_out;
    let n = i / (p.w_out * p.h_out * p.c_out);
    let k = i32(p.k);
    let pad = i32(p.pad);
    let h = i32(p.h);
    let w = i32(p.w);
    var acc = 0.0;
    for (var ci = 0u; ci < p.c_in; ci++) {
        let x_base = (n * p.c_in + ci) * p.h * p.w;
        let w_base = (co * p.c_in + ci) * p.k * p.k;
        for (var ky = 0; ky < k; ky++) {
            let iy = oy + ky - pad;
            if (iy < 0 || iy >= h) { continue; }
            for (var kx = 0; kx < k; kx++) {
                let ix = ox + kx - pad;
                if (ix < 0 || ix >= w) { continue; }
                acc += x[x_base + u32(iy * w + ix)] * weight[w_base + u32(ky * k + kx)];
            }
        }
    }
    if (p.has_bias != 0u) { acc += bias[co]; }
    y[i] = acc;
}

// dx[n, ci, iy, ix] = sum_{co, ky, kx} dy[n, co, iy + pad - ky, ix + pad - kx] * weight[co, ci, ky, kx]
@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c_in * p.h * p.w) { return; }
    let ix = i32(i % p.w);
    let iy = i32((i / p.w) % p.h);
    let ci = (i / (p.w * p.h)) % p.c_in;
    let n = i / (p.w * p.h * p.c_in);
    let k = i32(p.k);
    let pad = i32(p.pad);
    let h_out = i32(p.h_out);
    let w_out = i32(p.w_out);
    var acc = 0.0;
    for (var co = 0u; co < p.c_out; co++) {
        let dy_base = (n * p.c_out + co) * p.h_out * p.w_out;
        let w_base = (co * p.c_in + ci) * p.k * p.k;
        for (var ky = 0; ky < k; ky++) {
            let oy = iy + pad - ky;
            if (oy < 0 || oy >= h_out) { continue; }
            for (var kx = 0; kx < k; kx++) {
                let ox = ix + pad - kx;
                if (ox < 0 || ox >= w_out) { continue; }
                acc += dy[dy_base + u32(oy * w_out + ox)] * weight[w_base + u32(ky * k + kx)];
            }
        }
    }
    dx[i] = acc;
}

// dweight[co, ci, ky, kx] = sum_{n, oy, ox} dy[n, co, oy, ox] * x[n, ci, oy + ky - pad, ox + kx - pad]
@compute @workgroup_size(WG)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.c_out * p.c_in * p.k * p.k) { return; }
    let kx = i32(i % p.k);
    let ky = i32((i / p.k) % p.k);
    let ci = (i / (p.k * p.k)) % p.c_in;
    let co = i / (p.k * p.k * p.c_in);
    let pad = i32(p.pad);
    // Output rows/columns whose tap (ky, kx) lands inside the input; the rest read padding (0).
    let oy_lo = max(0, pad - ky);
    let oy_hi = min(i32(p.h_out), i32(p.h) + pad - ky);
    let ox_lo = max(0, pad - kx);
    let ox_hi = min(i32(p.w_out), i32(p.w) + pad - kx);
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let dy_base = (n * p.c_out + co) * p.h_out * p.w_out;
        let x_base = (n * p.c_in + ci) * p.h * p.w;
        for (var oy = oy_lo; oy < oy_hi; oy++) {
            let dy_row = dy_base + u32(oy) * p.w_out;
            let x_row = x_base + u32(oy + ky - pad) * p.w;
            for (var ox = ox_lo; ox < ox_hi; ox++) {
                acc += dy[dy_row + u32(ox)] * x[x_row + u32(ox + kx - pad)];
            }
        }
    }
    dweight[i] = acc;
}

// dbias[co] = sum_{n, oy, ox} dy[n, co, oy, ox]
@compute @workgroup_size(WG)
fn backward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let co = flat(gid, nwg);
    if (co >= p.c_out) { return; }
    let plane = p.h_out * p.w_out;
    var acc = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let base = (n * p.c_out + co) * plane;
        for (var j = 0u; j < plane; j++) {
            acc += dy[base + j];
        }
    }
    dbias[co] = acc;
}

// ---------------------------------------------------------------------------------------------
// v2: register-blocked entry points (same bindings, same results up to summation order).
//
// On lavapipe (CPU Vulkan) one output per invocation is bound by loads: every multiply-add
// fetches two operands. Here each invocation keeps a block of sums in registers and reuses each
// loaded value across the block, and no workgroup memory is used in the inner loops (barriers
// are costly there). Weights are indexed by the workgroup id only, so the compiler sees them as
// uniform across the invocations of a workgroup and loads each once, not once per lane.
//
// The kernel size K and the block sizes are override constants: the wrapper specialises one
// pipeline per kernel size, so every tap and block loop has a constant trip count, unrolls, and
// the block arrays below become registers. Block arrays have a fixed capacity (WGSL needs a
// constant size for function-scope arrays); the wrapper keeps the blocks within it.
// ---------------------------------------------------------------------------------------------

// Kernel size (k) of the pipeline.
override K: u32 = 3u;
// Channels per block: output channels (forward, backward_weight), input channels
// (backward_input).
override BLOCK_C: u32 = 4u;
// Consecutive columns per block: output columns (forward), input columns (backward_input),
// output columns of one reduction step (backward_weight).
override BLOCK_X: u32 = 8u;
// Kernel rows per workgroup in backward_weight: K (all taps of a channel pair) or 1.
override BLOCK_KY: u32 = 3u;

// Capacity of the sums of one block (BLOCK_C * BLOCK_X, or BLOCK_C * BLOCK_KY * K).
const MAX_ACC: u32 = 64u;
// Capacity of one loaded input row segment (BLOCK_X + K - 1).
const MAX_ROW: u32 = 24u;

// Per-workgroup partial sums of backward_weight_v2 / backward_bias_v2: one block per invocation.
var<workgroup> partial: array<f32, WG * BLOCK_C * BLOCK_KY * K>;

// forward, BLOCK_C output channels x BLOCK_X consecutive output columns per invocation.
// Grid: x/y fold the N * H_out * ceil(W_out / BLOCK_X) column blocks; z = output channel block.
@compute @workgroup_size(WG)
fn forward_v2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let runs = (p.w_out + BLOCK_X - 1u) / BLOCK_X;
    let i = flat(gid, nwg);
    if (i >= p.n * p.h_out * runs) { return; }
    let ox0 = (i % runs) * BLOCK_X;
    let oy = (i / runs) % p.h_out;
    let n = i / (runs * p.h_out);
    let co0 = wid.z * BLOCK_C;
    let pad = i32(p.pad);
    let h = i32(p.h);
    let w = i32(p.w);
    let kk = K * K;

    // The input columns this block reads (clamped into the row; `col_ok` says which are real,
    // the others are zero padding), hoisted out of the channel loop.
    var col: array<u32, MAX_ROW>;
    var col_ok: array<bool, MAX_ROW>;
    for (var j = 0u; j < BLOCK_X + K - 1u; j++) {
        let ix = i32(ox0 + j) - pad;
        col_ok[j] = ix >= 0 && ix < w;
        col[j] = u32(clamp(ix, 0, w - 1));
    }
    // Weight rows; channels past c_out (last block) read the last channel and are not stored.
    var w_row: array<u32, MAX_ACC>;
    for (var c = 0u; c < BLOCK_C; c++) {
        w_row[c] = min(co0 + c, p.c_out - 1u) * p.c_in * kk;
    }

    var acc: array<f32, MAX_ACC>;
    for (var ci = 0u; ci < p.c_in; ci++) {
        let x_plane = (n * p.c_in + ci) * p.h * p.w;
        for (var ky = 0u; ky < K; ky++) {
            let iy = i32(oy + ky) - pad;
            let row_ok = iy >= 0 && iy < h;
            let x_row = x_plane + u32(clamp(iy, 0, h - 1)) * p.w;
            var xv: array<f32, MAX_ROW>;
            for (var j = 0u; j < BLOCK_X + K - 1u; j++) {
                xv[j] = select(0.0, x[x_row + col[j]], row_ok && col_ok[j]);
            }
            let tap = ci * kk + ky * K;
            for (var kx = 0u; kx < K; kx++) {
                for (var c = 0u; c < BLOCK_C; c++) {
                    let wv = weight[w_row[c] + tap + kx];
                    for (var xi = 0u; xi < BLOCK_X; xi++) {
                        acc[c * BLOCK_X + xi] = fma(xv[xi + kx], wv, acc[c * BLOCK_X + xi]);
                    }
                }
            }
        }
    }

    for (var c = 0u; c < BLOCK_C; c++) {
        let co = co0 + c;
        if (co >= p.c_out) { break; }
        var b = 0.0;
        if (p.has_bias != 0u) { b = bias[co]; }
        let y_row = ((n * p.c_out + co) * p.h_out + oy) * p.w_out;
        for (var xi = 0u; xi < BLOCK_X; xi++) {
            if (ox0 + xi < p.w_out) { y[y_row + ox0 + xi] = acc[c * BLOCK_X + xi] + b; }
        }
    }
}

// backward_input, BLOCK_C input channels x BLOCK_X consecutive input columns per invocation:
// the forward kernel applied to dy with the taps flipped,
// dx[n, ci, iy, ix] = sum_{co, ky, kx} dy[n, co, iy + pad - ky, ix + pad - kx] * weight[co, ci, ky, kx].
// Grid: x/y fold the N * H * ceil(W / BLOCK_X) column blocks; z = input channel block.
@compute @workgroup_size(WG)
fn backward_input_v2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let runs = (p.w + BLOCK_X - 1u) / BLOCK_X;
    let i = flat(gid, nwg);
    if (i >= p.n * p.h * runs) { return; }
    let ix0 = (i % runs) * BLOCK_X;
    let iy = (i / runs) % p.h;
    let n = i / (runs * p.h);
    let ci0 = wid.z * BLOCK_C;
    let pad = i32(p.pad);
    let h_out = i32(p.h_out);
    let w_out = i32(p.w_out);
    let kk = K * K;

    // dy columns ix0 + pad - (K - 1) + j: tap kx of column ix0 + xi reads j = xi + K - 1 - kx.
    var col: array<u32, MAX_ROW>;
    var col_ok: array<bool, MAX_ROW>;
    for (var j = 0u; j < BLOCK_X + K - 1u; j++) {
        let ox = i32(ix0 + j) + pad - i32(K - 1u);
        col_ok[j] = ox >= 0 && ox < w_out;
        col[j] = u32(clamp(ox, 0, w_out - 1));
    }
    var w_col: array<u32, MAX_ACC>;
    for (var c = 0u; c < BLOCK_C; c++) {
        w_col[c] = min(ci0 + c, p.c_in - 1u) * kk;
    }

    var acc: array<f32, MAX_ACC>;
    for (var co = 0u; co < p.c_out; co++) {
        let dy_plane = (n * p.c_out + co) * p.h_out * p.w_out;
        let w_base = co * p.c_in * kk;
        for (var ky = 0u; ky < K; ky++) {
            let oy = i32(iy) + pad - i32(ky);
            let row_ok = oy >= 0 && oy < h_out;
            let dy_row = dy_plane + u32(clamp(oy, 0, h_out - 1)) * p.w_out;
            var dv: array<f32, MAX_ROW>;
            for (var j = 0u; j < BLOCK_X + K - 1u; j++) {
                dv[j] = select(0.0, dy[dy_row + col[j]], row_ok && col_ok[j]);
            }
            for (var kx = 0u; kx < K; kx++) {
                for (var c = 0u; c < BLOCK_C; c++) {
                    let wv = weight[w_base + w_col[c] + ky * K + kx];
                    for (var xi = 0u; xi < BLOCK_X; xi++) {
                        acc[c * BLOCK_X + xi] = fma(dv[xi + K - 1u - kx], wv, acc[c * BLOCK_X + xi]);
                    }
                }
            }
        }
    }

    for (var c = 0u; c < BLOCK_C; c++) {
        let ci = ci0 + c;
        if (ci >= p.c_in) { break; }
        let dx_row = ((n * p.c_in + ci) * p.h + iy) * p.w;
        for (var xi = 0u; xi < BLOCK_X; xi++) {
            if (ix0 + xi < p.w) { dx[dx_row + ix0 + xi] = acc[c * BLOCK_X + xi]; }
        }
    }
}

// backward_weight: one workgroup per block of BLOCK_C output channels x one input channel x
// BLOCK_KY kernel rows x K kernel columns. The reduction over N * H_out * W_out positions is
// split inside the workgroup: invocation t takes the column blocks t, t + WG, t + 2 WG, ... (in
// that order), then the WG partial sums of each weight are added in invocation order. Both
// orders are fixed, so results are bit-identical run to run, and the whole gradient is one
// dispatch (the wrapper returns a single Dispatch).
// Grid: x/y fold ceil(c_out / BLOCK_C) * c_in * (K / BLOCK_KY) workgroups.
@compute @workgroup_size(WG)
fn backward_weight_v2(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let g = wid.x + wid.y * nwg.x;
    let ky_blocks = K / BLOCK_KY;
    let ky0 = (g % ky_blocks) * BLOCK_KY;
    let ci = (g / ky_blocks) % p.c_in;
    let co0 = (g / (ky_blocks * p.c_in)) * BLOCK_C;
    // Workgroups past the last block (the grid is folded into 2-D) still reach the barrier.
    let in_range = co0 < p.c_out;
    let pad = i32(p.pad);
    let h = i32(p.h);
    let w = i32(p.w);
    let plane_out = p.h_out * p.w_out;

    var dy_ch: array<u32, MAX_ACC>;
    for (var c = 0u; c < BLOCK_C; c++) {
        dy_ch[c] = min(co0 + c, p.c_out - 1u) * plane_out;
    }

    let runs = (p.w_out + BLOCK_X - 1u) / BLOCK_X;
    var run = t % runs;
    var oy = (t / runs) % p.h_out;
    var n = t / (runs * p.h_out);
    if (!in_range) { n = p.n; }
    // Advancing by WG column blocks: WG = step_rows rows plus step_runs column blocks.
    let step_runs = WG % runs;
    let step_rows = WG / runs;

    let n_acc = BLOCK_C * BLOCK_KY * K;
    var acc: array<f32, MAX_ACC>;
    while (n < p.n) {
        let ox0 = run * BLOCK_X;
        var dv: array<f32, MAX_ACC>;
        let dy_row = n * p.c_out * plane_out + oy * p.w_out;
        for (var xi = 0u; xi < BLOCK_X; xi++) {
            let ok = ox0 + xi < p.w_out;
            let ox = min(ox0 + xi, p.w_out - 1u);
            for (var c = 0u; c < BLOCK_C; c++) {
                dv[c * BLOCK_X + xi] = select(0.0, dy[dy_row + dy_ch[c] + ox], ok);
            }
        }
        let x_plane = (n * p.c_in + ci) * p.h * p.w;
        for (var kyl = 0u; kyl < BLOCK_KY; kyl++) {
            let iy = i32(oy + ky0 + kyl) - pad;
            let row_ok = iy >= 0 && iy < h;
            let x_row = x_plane + u32(clamp(iy, 0, h - 1)) * p.w;
            var xv: array<f32, MAX_ROW>;
            for (var j = 0u; j < BLOCK_X + K - 1u; j++) {
                let ix = i32(ox0 + j) - pad;
                xv[j] = select(0.0, x[x_row + u32(clamp(ix, 0, w - 1))], row_ok && ix >= 0 && ix < w);
            }
            for (var c = 0u; c < BLOCK_C; c++) {
                for (var kx = 0u; kx < K; kx++) {
                    let a = (c * BLOCK_KY + kyl) * K + kx;
                    for (var xi = 0u; xi < BLOCK_X; xi++) {
                        acc[a] = fma(dv[c * BLOCK_X + xi], xv[xi + kx], acc[a]);
                    }
                }
            }
        }
        run += step_runs;
        if (run >= runs) {
            run -= runs;
            oy += 1u;
        }
        oy += step_rows;
        while (oy >= p.h_out) {
            oy -= p.h_out;
            n += 1u;
        }
    }

    for (var a = 0u; a < n_acc; a++) {
        partial[a * WG + t] = acc[a];
    }
    workgroupBarrier();
    for (var a = t; a < n_acc; a += WG) {
        var s = 0.0;
        for (var l = 0u; l < WG; l++) {
            s += partial[a * WG + l];
        }
        let c = a / (BLOCK_KY * K);
        let ky = ky0 + (a / K) % BLOCK_KY;
        let kx = a % K;
        if (in_range && co0 + c < p.c_out) {
            dweight[(((co0 + c) * p.c_in + ci) * K + ky) * K + kx] = s;
        }
    }
}

// backward_bias: one workgroup per output channel; invocation t sums positions t, t + WG, ...
// of every image in order, then the WG partial sums are added in invocation order.
// Grid: x/y fold c_out workgroups.
@compute @workgroup_size(WG)
fn backward_bias_v2(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let co = wid.x + wid.y * nwg.x;
    let in_range = co < p.c_out;
    let plane = p.h_out * p.w_out;
    var s = 0.0;
    if (in_range) {
        for (var n = 0u; n < p.n; n++) {
            let base = (n * p.c_out + co) * plane;
            for (var j = t; j < plane; j += WG) {
                s += dy[base + j];
            }
        }
    }
    partial[t] = s;
    workgroupBarrier();
    if (in_range && t == 0u) {
        var total = 0.0;
        for (var l = 0u; l < WG; l++) {
            total += partial[l];
        }
        dbias[co] = total;
    }
}
