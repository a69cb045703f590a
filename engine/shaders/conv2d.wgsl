// 2-D convolution, stride 1, zero padding, square k x k kernel, optional bias (PyTorch's
// Conv2d semantics: cross-correlation). Layouts: x [N, C_in, H, W], weight [C_out, C_in, k, k],
// bias [C_out], y [N, C_out, H_out, W_out] with H_out = H + 2 pad - k + 1.
//
// Two versions of every pass (the wrapper, src/ops/conv2d.rs, picks one):
// - v1 (`forward`, `backward_input`, `backward_weight`, `backward_bias`, just below): one output
//   element per invocation, its reduction as plain loops. The readable reference kernels.
// - v2 (`*_v2`, further down): a block of outputs per invocation in registers, shaped for what
//   lavapipe's compiler does well; 8-12x faster there.
// Every reduction runs in a fixed order, so results are bit-identical run to run (no atomics).
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
// v2: register-blocked entry points (same bindings; same results up to summation order).
//
// On lavapipe (CPU Vulkan: each invocation is one lane of an 8-wide SIMD loop) one output per
// invocation is bound by loads: every multiply-add gathers two operands. Here each invocation
// keeps BLOCK_C channels x 8 consecutive columns of sums in registers and reuses every loaded
// value across that block; no workgroup memory (barriers are costly on lavapipe).
//
// How the code is shaped matters more than the block size on lavapipe (measured, see the commit
// log): Mesa unrolls a loop only when its trip count is a constant <= 32 and its unrolled body
// stays small, and a function-scope array stays in registers only if every index into it is a
// constant after unrolling. So:
// - the 8 input columns of a block are eight named values slid one column per kernel tap (not
//   an array indexed by tap and column, which stayed in memory and ran 3-5x slower);
// - the sums are vec4 (4 columns) in an array indexed only by the channel loop, whose trip
//   count BLOCK_C is an override constant, so it unrolls and the array becomes registers;
// - weights (forward, backward_input) and dy (backward_weight) are indexed by the workgroup id
//   and loop counters only: uniform across the workgroup, loaded once and broadcast, while the
//   other operand is gathered per invocation.
// K (the kernel size) is an override too, so the tap loops have constant trip counts.
// ---------------------------------------------------------------------------------------------

// Kernel size (k) of the pipeline.
override K: u32 = 3u;
// Channels per invocation: output channels (forward, backward_weight), input channels
// (backward_input). At most MAX_C.
override BLOCK_C: u32 = 16u;
const MAX_C: u32 = 32u;
// Consecutive columns per invocation in forward_v2 and backward_input_v2, and positions per
// reduction step in backward_weight_v2: two vec4, written out (see above), so not an override.
const BLOCK_X: u32 = 8u;

// Per-workgroup partial sums of backward_bias_v2, one per invocation.
var<workgroup> partial: array<f32, WG>;

// x[n, ci, iy, ix] at a row offset `row` (of a row that exists when `row_ok`); 0 outside.
fn x_at(row: u32, row_ok: bool, ix: i32) -> f32 {
    let w = i32(p.w);
    return select(0.0, x[row + u32(clamp(ix, 0, w - 1))], row_ok && ix >= 0 && ix < w);
}

// dy[n, co, oy, ox] at a row offset `row` (of a row that exists when `row_ok`); 0 outside.
fn dy_at(row: u32, row_ok: bool, ox: i32) -> f32 {
    let w_out = i32(p.w_out);
    return select(0.0, dy[row + u32(clamp(ox, 0, w_out - 1))], row_ok && ox >= 0 && ox < w_out);
}

// Writes the 8 columns `lo`, `hi` (+ `b`) at row offset `row` from column `x0`, up to `width`.
fn store_y(row: u32, x0: u32, lo: vec4<f32>, hi: vec4<f32>, b: f32) {
    let v = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    for (var j = 0u; j < BLOCK_X; j++) {
        if (x0 + j < p.w_out) { y[row + x0 + j] = v[j] + b; }
    }
}

fn store_dx(row: u32, x0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    let v = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    for (var j = 0u; j < BLOCK_X; j++) {
        if (x0 + j < p.w) { dx[row + x0 + j] = v[j]; }
    }
}

// forward: BLOCK_C output channels x 8 consecutive output columns per invocation.
// Grid: x/y fold the N * H_out * ceil(W_out / 8) column blocks; z = output channel block.
// Each sum runs over (ci, ky, kx) in that order, 4 columns per vec4 lane-wise, like v1.
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
    let ix0 = i32(ox0) - pad;
    let kk = K * K;

    // [2c]: columns 0-3 of channel co0 + c, [2c + 1]: columns 4-7.
    var acc: array<vec4<f32>, 2u * MAX_C>;
    for (var ci = 0u; ci < p.c_in; ci++) {
        let x_plane = (n * p.c_in + ci) * p.h * p.w;
        for (var ky = 0u; ky < K; ky++) {
            let iy = i32(oy + ky) - pad;
            let row_ok = iy >= 0 && iy < h;
            let x_row = x_plane + u32(clamp(iy, 0, h - 1)) * p.w;
            // Input columns ix0 + kx + 0..7 for tap kx.
            var v0 = x_at(x_row, row_ok, ix0);
            var v1 = x_at(x_row, row_ok, ix0 + 1);
            var v2 = x_at(x_row, row_ok, ix0 + 2);
            var v3 = x_at(x_row, row_ok, ix0 + 3);
            var v4 = x_at(x_row, row_ok, ix0 + 4);
            var v5 = x_at(x_row, row_ok, ix0 + 5);
            var v6 = x_at(x_row, row_ok, ix0 + 6);
            var v7 = x_at(x_row, row_ok, ix0 + 7);
            for (var kx = 0u; kx < K; kx++) {
                if (kx > 0u) {
                    v0 = v1; v1 = v2; v2 = v3; v3 = v4; v4 = v5; v5 = v6; v6 = v7;
                    v7 = x_at(x_row, row_ok, ix0 + i32(kx) + 7);
                }
                let lo = vec4<f32>(v0, v1, v2, v3);
                let hi = vec4<f32>(v4, v5, v6, v7);
                let tap = ci * kk + ky * K + kx;
                for (var c = 0u; c < BLOCK_C; c++) {
                    // Channels past c_out (last block) read the last channel; not stored.
                    let wv = vec4<f32>(weight[min(co0 + c, p.c_out - 1u) * p.c_in * kk + tap]);
                    acc[2u * c] = fma(lo, wv, acc[2u * c]);
                    acc[2u * c + 1u] = fma(hi, wv, acc[2u * c + 1u]);
                }
            }
        }
    }

    for (var c = 0u; c < BLOCK_C; c++) {
        let co = co0 + c;
        if (co < p.c_out) {
            var b = 0.0;
            if (p.has_bias != 0u) { b = bias[co]; }
            store_y(((n * p.c_out + co) * p.h_out + oy) * p.w_out, ox0, acc[2u * c], acc[2u * c + 1u], b);
        }
    }
}

// backward_input: BLOCK_C input channels x 8 consecutive input columns per invocation,
// dx[n, ci, iy, ix] = sum_{co, ky, kx} dy[n, co, iy + pad - ky, ix + pad - kx] * weight[co, ci, ky, kx]
// (the forward with taps flipped; the window slides the other way).
// Grid: x/y fold the N * H * ceil(W / 8) column blocks; z = input channel block.
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
    let ox0 = i32(ix0) + pad;
    let kk = K * K;

    var acc: array<vec4<f32>, 2u * MAX_C>;
    for (var co = 0u; co < p.c_out; co++) {
        let dy_plane = (n * p.c_out + co) * p.h_out * p.w_out;
        for (var ky = 0u; ky < K; ky++) {
            let oy = i32(iy) + pad - i32(ky);
            let row_ok = oy >= 0 && oy < h_out;
            let dy_row = dy_plane + u32(clamp(oy, 0, h_out - 1)) * p.w_out;
            // dy columns ox0 - kx + 0..7 for tap kx.
            var v0 = dy_at(dy_row, row_ok, ox0);
            var v1 = dy_at(dy_row, row_ok, ox0 + 1);
            var v2 = dy_at(dy_row, row_ok, ox0 + 2);
            var v3 = dy_at(dy_row, row_ok, ox0 + 3);
            var v4 = dy_at(dy_row, row_ok, ox0 + 4);
            var v5 = dy_at(dy_row, row_ok, ox0 + 5);
            var v6 = dy_at(dy_row, row_ok, ox0 + 6);
            var v7 = dy_at(dy_row, row_ok, ox0 + 7);
            for (var kx = 0u; kx < K; kx++) {
                if (kx > 0u) {
                    v7 = v6; v6 = v5; v5 = v4; v4 = v3; v3 = v2; v2 = v1; v1 = v0;
                    v0 = dy_at(dy_row, row_ok, ox0 - i32(kx));
                }
                let lo = vec4<f32>(v0, v1, v2, v3);
                let hi = vec4<f32>(v4, v5, v6, v7);
                let tap = co * p.c_in * kk + ky * K + kx;
                for (var c = 0u; c < BLOCK_C; c++) {
                    // Channels past c_in (last block) read the last channel; not stored.
                    let wv = vec4<f32>(weight[tap + min(ci0 + c, p.c_in - 1u) * kk]);
                    acc[2u * c] = fma(lo, wv, acc[2u * c]);
                    acc[2u * c + 1u] = fma(hi, wv, acc[2u * c + 1u]);
                }
            }
        }
    }

    for (var c = 0u; c < BLOCK_C; c++) {
        let ci = ci0 + c;
        if (ci < p.c_in) {
            store_dx(((n * p.c_in + ci) * p.h + iy) * p.w, ix0, acc[2u * c], acc[2u * c + 1u]);
        }
    }
}

// backward_weight: for one tap (ky, kx), dweight[:, :, ky, kx] is a matrix product over the
// positions, dy[co, position] x x[ci, shifted position]. Each invocation owns 8 output channels
// (two vec4) x BLOCK_C input channels of one tap: 8 + BLOCK_C loads per 8 * BLOCK_C
// multiply-adds (on lavapipe every load, uniform or not, costs about a gather, so the
// outer-product block is what pays). Positions run over the rows and columns where the tap
// lands inside the input (no masks), rows (n, oy) in order, columns in order.
// When there are few blocks (few channels: 4 per tap at the first stage) SPLIT invocations share
// a block, invocation s taking rows s, s + SPLIT, ...; their partial sums are then added in the
// order s = 0, 1, ..., SPLIT - 1 through workgroup memory. Both orders are fixed, so results are
// bit-identical run to run, and the gradient is one dispatch with no atomics.
// Grid: x/y fold ceil(c_in / BLOCK_C) * ceil(c_out / 8) * SPLIT invocations (SPLIT divides WG,
// so a block's invocations share a workgroup); z = tap ky * K + kx.
override SPLIT: u32 = 1u;
var<workgroup> part_lo: array<vec4<f32>, WG>;
var<workgroup> part_hi: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn backward_weight_v2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let ci_blocks = (p.c_in + BLOCK_C - 1u) / BLOCK_C;
    let i = flat(gid, nwg);
    let split = i % SPLIT;
    let block = i / SPLIT;
    // No early return: with SPLIT > 1 every invocation must reach the barriers.
    let in_range = block < ci_blocks * ((p.c_out + 7u) / 8u);
    let ci0 = (block % ci_blocks) * BLOCK_C;
    let co0 = (block / ci_blocks) * 8u;
    let ky = wid.z / K;
    let kx = wid.z % K;
    let pad = i32(p.pad);
    // Output rows and columns whose tap lands inside the input (the rest read padding: 0);
    // empty when the tap never lands inside (a kernel wider than the image plus one padding).
    let oy_lo = u32(max(0, pad - i32(ky)));
    let oy_hi = u32(max(0, min(i32(p.h_out), i32(p.h) + pad - i32(ky))));
    let ox_lo = u32(max(0, pad - i32(kx)));
    let ox_hi = u32(max(0, min(i32(p.w_out), i32(p.w) + pad - i32(kx))));
    let rows = max(oy_hi, oy_lo) - oy_lo;
    let plane_in = p.h * p.w;
    let plane_out = p.h_out * p.w_out;

    // Channel offsets; channels past the end (last blocks) read the last channel, not stored.
    var dy_ch: array<u32, 8>;
    for (var c = 0u; c < 8u; c++) {
        dy_ch[c] = min(co0 + c, p.c_out - 1u) * plane_out;
    }
    var x_ch: array<u32, MAX_C>;
    for (var j = 0u; j < BLOCK_C; j++) {
        x_ch[j] = min(ci0 + j, p.c_in - 1u) * plane_in;
    }

    // lo[j]: output channels co0 + 0..3 for input channel ci0 + j; hi[j]: co0 + 4..7.
    var lo: array<vec4<f32>, MAX_C>;
    var hi: array<vec4<f32>, MAX_C>;
    var total_rows = p.n * rows;
    if (!in_range) { total_rows = 0u; }
    for (var r = split; r < total_rows; r += SPLIT) {
        let n = r / rows;
        let oy = oy_lo + r % rows;
        let dy_row = n * p.c_out * plane_out + oy * p.w_out;
        // x column ox + kx - pad of row oy + ky - pad, as an offset from ox (>= 0 in range).
        let x_row = n * p.c_in * plane_in + (oy + ky - u32(pad)) * p.w + kx - u32(pad);
        for (var ox = ox_lo; ox < ox_hi; ox++) {
            let q = dy_row + ox;
            let d_lo = vec4<f32>(dy[q + dy_ch[0]], dy[q + dy_ch[1]], dy[q + dy_ch[2]], dy[q + dy_ch[3]]);
            let d_hi = vec4<f32>(dy[q + dy_ch[4]], dy[q + dy_ch[5]], dy[q + dy_ch[6]], dy[q + dy_ch[7]]);
            let xr = x_row + ox;
            for (var j = 0u; j < BLOCK_C; j++) {
                let xv = vec4<f32>(x[xr + x_ch[j]]);
                lo[j] = fma(d_lo, xv, lo[j]);
                hi[j] = fma(d_hi, xv, hi[j]);
            }
        }
    }

    for (var j = 0u; j < BLOCK_C; j++) {
        var s_lo = lo[j];
        var s_hi = hi[j];
        if (SPLIT > 1u) {
            part_lo[t] = s_lo;
            part_hi[t] = s_hi;
            workgroupBarrier();
            let first = t - split;
            s_lo = part_lo[first];
            s_hi = part_hi[first];
            for (var k = 1u; k < SPLIT; k++) {
                s_lo += part_lo[first + k];
                s_hi += part_hi[first + k];
            }
            workgroupBarrier();
        }
        let ci = ci0 + j;
        if (in_range && split == 0u && ci < p.c_in) {
            let v = array<f32, 8>(s_lo.x, s_lo.y, s_lo.z, s_lo.w, s_hi.x, s_hi.y, s_hi.z, s_hi.w);
            for (var c = 0u; c < 8u; c++) {
                if (co0 + c < p.c_out) {
                    dweight[(((co0 + c) * p.c_in + ci) * K + ky) * K + kx] = v[c];
                }
            }
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
