// 2-D convolution, stride 1, zero padding, square k x k kernel, optional bias (PyTorch's
// Conv2d semantics: cross-correlation). Layouts: x [N, C_in, H, W], weight [C_out, C_in, k, k],
// bias [C_out], y [N, C_out, H_out, W_out] with H_out = H + 2 pad - k + 1.
//
// Three versions of every pass (the wrapper, src/ops/conv2d.rs, picks one):
// - v1 (`forward`, `backward_input`, `backward_weight`, `backward_bias`, just below): one output
//   element per invocation, its reduction as plain loops. The readable reference kernels.
// - v2 (`*_v2`, further down): a block of outputs per invocation in registers, shaped for what
//   lavapipe's compiler does well; 8-12x faster there. The kernels for CPU adapters.
// - v4 (`*_v4`, at the end): tiles of the implicit matrix product through workgroup memory,
//   the kernels for GPUs (v3 is left for a Winograd convolution).
// The weight and bias gradients of v2 and v4 are split-K: each invocation (v2) or workgroup
// (v4) sums one chunk of the output rows into a partials buffer the wrapper allocates once, and
// `backward_weight_reduce` / `backward_bias_reduce` then add the chunks in a fixed order. That
// keeps every f32 sum short (about 256 terms, then the chunks in groups of 32) instead of
// running the whole batch through one accumulator, and it is what fills a large GPU.
// Every reduction runs in a fixed order, so results are bit-identical run to run (no atomics).
// flat() (common.wgsl) gives the flat invocation index: grids fold into 2-D past 65,535.

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbias: array<f32>;
// The chunks' partial gradients [chunks, ...], read by the reduce passes. The split passes write
// them through `dweight` / `dbias` (the wrapper binds the partials buffer there when there is
// more than one chunk, the gradient itself when there is one).
@group(0) @binding(9) var<storage, read> partials: array<f32>;

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

// Adds the 8 columns `lo`, `hi` into y at row offset `row` from column `x0`, up to `width`.
fn add_y(row: u32, x0: u32, lo: vec4<f32>, hi: vec4<f32>) {
    let v = array<f32, 8>(lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w);
    for (var j = 0u; j < BLOCK_X; j++) {
        if (x0 + j < p.w_out) { y[row + x0 + j] += v[j]; }
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
// Each sum runs over (ci, ky, kx) in that order, 4 columns per vec4 lane-wise, in blocks of
// CI_BLOCK input channels: a block's sums start from 0 in registers and are then added into y
// (the first block stores bias + its sums). So an accumulator takes CI_BLOCK * K * K additions
// and each output one more per block, instead of c_in * K * K in one accumulator: the forward's
// rounding decides which element of a max-pool window wins when two are within it, and one
// accumulator over the 1,152 terms of the last stage erred 1.5 times as much as this. The
// block's read-modify-write of y costs one load and store of 8 x BLOCK_C outputs per
// CI_BLOCK * K * K * 8 * BLOCK_C multiply-adds (blocks of 16 channels measured 5-10% slower).
override CI_BLOCK: u32 = 32u;

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

    for (var ci0 = 0u; ci0 < p.c_in; ci0 += CI_BLOCK) {
        // [2c]: columns 0-3 of channel co0 + c, [2c + 1]: columns 4-7.
        var acc: array<vec4<f32>, 2u * MAX_C>;
        for (var ci = ci0; ci < min(ci0 + CI_BLOCK, p.c_in); ci++) {
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
                let row = ((n * p.c_out + co) * p.h_out + oy) * p.w_out;
                if (ci0 == 0u) {
                    var b = 0.0;
                    if (p.has_bias != 0u) { b = bias[co]; }
                    store_y(row, ox0, acc[2u * c], acc[2u * c + 1u], b);
                } else {
                    add_y(row, ox0, acc[2u * c], acc[2u * c + 1u]);
                }
            }
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
// (two vec4) x BLOCK_C input channels of one tap over one chunk of output rows: 8 + BLOCK_C loads
// per 8 * BLOCK_C multiply-adds (on lavapipe every load, uniform or not, costs about a gather,
// so the outer-product block is what pays). It walks the chunk's rows where the tap lands inside
// the input (no masks), rows in order, columns in order, and writes its sums to
// dweight[chunk, co, ci, ky, kx] (see `partials` above); backward_weight_reduce adds the chunks.
// Grid: x/y fold ceil(c_in / BLOCK_C) * ceil(c_out / 8) * chunks invocations, the block index
// fastest; z = tap ky * K + kx.
@compute @workgroup_size(WG)
fn backward_weight_v2(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let ci_blocks = (p.c_in + BLOCK_C - 1u) / BLOCK_C;
    let blocks = ci_blocks * ((p.c_out + 7u) / 8u);
    let i = flat(gid, nwg);
    if (i >= blocks * p.chunks) { return; }
    let block = i % blocks;
    let chunk = i / blocks;
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
    let r0 = chunk * p.chunk_rows;
    let r1 = min(r0 + p.chunk_rows, p.n * p.h_out);
    for (var r = r0; r < r1; r++) {
        let n = r / p.h_out;
        let oy = r % p.h_out;
        if (oy < oy_lo || oy >= oy_hi) { continue; }
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

    let base = chunk * p.c_out * p.c_in * K * K;
    for (var j = 0u; j < BLOCK_C; j++) {
        let ci = ci0 + j;
        if (ci < p.c_in) {
            let v = array<f32, 8>(lo[j].x, lo[j].y, lo[j].z, lo[j].w, hi[j].x, hi[j].y, hi[j].z, hi[j].w);
            for (var c = 0u; c < 8u; c++) {
                if (co0 + c < p.c_out) {
                    dweight[base + (((co0 + c) * p.c_in + ci) * K + ky) * K + kx] = v[c];
                }
            }
        }
    }
}

// backward_weight for convolutions with fewer than 4 output channels (the spatial gate's 7x7
// 2 -> 1, where 7/8 of backward_weight_v2's 8-channel block would be padding): v1's one weight
// per invocation, over one chunk of output rows, into dweight[chunk, co, ci, ky, kx].
// Grid: x/y fold c_out * c_in * k * k * chunks invocations, the weight index fastest.
@compute @workgroup_size(WG)
fn backward_weight_rows_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let weights = p.c_out * p.c_in * p.k * p.k;
    let idx = flat(gid, nwg);
    if (idx >= weights * p.chunks) { return; }
    let i = idx % weights;
    let chunk = idx / weights;
    let kx = i32(i % p.k);
    let ky = i32((i / p.k) % p.k);
    let ci = (i / (p.k * p.k)) % p.c_in;
    let co = i / (p.k * p.k * p.c_in);
    let pad = i32(p.pad);
    let oy_lo = max(0, pad - ky);
    let oy_hi = min(i32(p.h_out), i32(p.h) + pad - ky);
    let ox_lo = max(0, pad - kx);
    let ox_hi = min(i32(p.w_out), i32(p.w) + pad - kx);
    let r0 = chunk * p.chunk_rows;
    let r1 = min(r0 + p.chunk_rows, p.n * p.h_out);
    var acc = 0.0;
    for (var r = r0; r < r1; r++) {
        let n = r / p.h_out;
        let oy = i32(r % p.h_out);
        if (oy < oy_lo || oy >= oy_hi) { continue; }
        let dy_row = (n * p.c_out + co) * p.h_out * p.w_out + u32(oy) * p.w_out;
        let x_row = (n * p.c_in + ci) * p.h * p.w + u32(oy + ky - pad) * p.w;
        for (var ox = ox_lo; ox < ox_hi; ox++) {
            acc += dy[dy_row + u32(ox)] * x[x_row + u32(ox + kx - pad)];
        }
    }
    dweight[chunk * weights + i] = acc;
}

// The second pass of the split gradients: out[i] = sum over chunks c of partials[c * len + i],
// the chunks in groups of REDUCE_GROUP consecutive ones, each group summed in order and the
// group sums added in order (so at most REDUCE_GROUP + chunks / REDUCE_GROUP additions lie on
// any term's path). One output per invocation; consecutive invocations read consecutive
// addresses of each chunk.
const REDUCE_GROUP: u32 = 32u;

fn reduce_chunks(i: u32, len: u32) -> f32 {
    var total = 0.0;
    for (var g0 = 0u; g0 < p.chunks; g0 += REDUCE_GROUP) {
        let g1 = min(g0 + REDUCE_GROUP, p.chunks);
        var s = 0.0;
        for (var c = g0; c < g1; c++) {
            s += partials[c * len + i];
        }
        total += s;
    }
    return total;
}

// Grid: x/y fold c_out * c_in * k * k invocations.
@compute @workgroup_size(WG)
fn backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let len = p.c_out * p.c_in * p.k * p.k;
    let i = flat(gid, nwg);
    if (i >= len) { return; }
    dweight[i] = reduce_chunks(i, len);
}

// Grid: x/y fold c_out invocations.
@compute @workgroup_size(WG)
fn backward_bias_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.c_out) { return; }
    dbias[i] = reduce_chunks(i, p.c_out);
}

// The WG partial sums in `partial` added as a fixed binary tree (pairs at distance WG/2, then
// WG/4, ...; WG is a power of two): log2(WG) additions on any term's path instead of WG.
// Every invocation of the workgroup must call it (it holds barriers); the sum ends in partial[0].
fn tree_sum(t: u32) {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (t < stride) {
            partial[t] += partial[t + stride];
        }
        workgroupBarrier();
    }
}

// backward_bias: one workgroup per output channel; invocation t sums positions t, t + WG, ...
// of each image's plane, the images' sums in order; then invocations 0..7 each add 8 of the WG
// partial sums and invocation 0 adds those 8 (two barriers: the full tree's log2(WG) cost
// lavapipe a third of the pass).
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
            var image = 0.0;
            for (var j = t; j < plane; j += WG) {
                image += dy[base + j];
            }
            s += image;
        }
    }
    partial[t] = s;
    workgroupBarrier();
    let group = WG / 8u;
    if (t < 8u) {
        var g = 0.0;
        for (var l = t * group; l < (t + 1u) * group; l++) {
            g += partial[l];
        }
        partial[t * group] = g;
    }
    workgroupBarrier();
    if (in_range && t == 0u) {
        var total = 0.0;
        for (var l = 0u; l < 8u; l++) {
            total += partial[l * group];
        }
        dbias[co] = total;
    }
}

// ---------------------------------------------------------------------------------------------
// v4: tiles through workgroup memory, for GPUs.
//
// Every pass is a matrix product C[m, q] = sum_r A[m, r] B[r, q] over an implicit (never
// stored) im2col matrix:
// - forward:         m = co, q = (n, oy, ox), r = (ci, ky, kx); A = weight, B = x at the tap;
// - backward_input:  m = ci, q = (n, iy, ix), r = (co, ky, kx); A = weight[co, ci, ky, kx],
//                    B = dy at (iy + pad - ky, ix + pad - kx);
// - backward_weight: m = co, q = (ci, ky, kx), r = the positions (n, oy, ox) of one chunk of
//                    output rows (split-K); A = dy, B = x at the tap.
// A workgroup of TM / 4 x 16 invocations (WG is set to that) computes a TM x 64 tile of C, each
// invocation 4 x 4 outputs: rows ty + (TM / 4) i and columns tx + 16 j, so that neighbouring
// invocations write neighbouring addresses. It walks the reduction TK = 16 at a time: the
// workgroup stages A's TM x 16 and B's 16 x 64 slices in workgroup memory, each element loaded
// once from global memory (by consecutive invocations at consecutive addresses where the layout
// allows), then every invocation does its 4 x 4 x 16 multiply-adds from there. A GPU keeps the
// tiles in on-chip memory; lavapipe runs these correctly but slower than v2 (its barriers cost).
// Each 16-term slice is summed on its own and then added to the running sums, so a sum of R
// terms passes 16 + R / 16 additions on any term's path instead of R.
// ---------------------------------------------------------------------------------------------

// Rows of the output tile: 64, or 32 where the row dimension has at most 32 channels.
override TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
// Row stride of the staged tiles: 65, not 64, so that invocations storing down a column of a
// tile (consecutive reduction indices, 65 floats apart) hit different memory banks.
const TS: u32 = 65u;
// A[m, r0 + kk] at kk * TS + m; B[r0 + kk, q] at kk * TS + q.
var<workgroup> tile_a: array<f32, 1040>;
var<workgroup> tile_b: array<f32, 1040>;

// acc[4 i + j] += sum over the staged slice of A[ty + TM/4 i, kk] B[kk, tx + 16 j], the slice
// summed on its own first.
fn tile_product(tx: u32, ty: u32, acc: ptr<function, array<f32, 16>>) {
    let tr = TM / 4u;
    var part: array<f32, 16>;
    for (var kk = 0u; kk < TK; kk++) {
        var a: array<f32, 4>;
        var b: array<f32, 4>;
        for (var i = 0u; i < 4u; i++) {
            a[i] = tile_a[kk * TS + ty + tr * i];
            b[i] = tile_b[kk * TS + tx + 16u * i];
        }
        for (var i = 0u; i < 4u; i++) {
            for (var j = 0u; j < 4u; j++) {
                part[4u * i + j] = fma(a[i], b[j], part[4u * i + j]);
            }
        }
    }
    for (var e = 0u; e < 16u; e++) {
        (*acc)[e] += part[e];
    }
}

// forward: C = y without the bias, added at the store (after the sum, as v1 does).
// Grid: x/y fold ceil(N H_out W_out / 64) column tiles; z = ceil(c_out / TM) row tiles.
@compute @workgroup_size(WG)
fn forward_v4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) l: u32,
) {
    let plane = p.h_out * p.w_out;
    let cols = p.n * plane;
    let red = p.c_in * K * K;
    let q0 = (wid.x + wid.y * nwg.x) * TN;
    let m0 = wid.z * TM;
    let tx = l % 16u;
    let ty = l / 16u;
    let pad = i32(p.pad);
    // This invocation's column of every B slice (WG is a multiple of TN), and its reduction
    // offset in every A slice (WG is a multiple of TK).
    let bq = l % TN;
    let q = q0 + bq;
    let n = q / plane;
    let oy = i32((q % plane) / p.w_out);
    let ox = i32((q % plane) % p.w_out);
    let ak = l % TK;
    var acc: array<f32, 16>;
    for (var r0 = 0u; r0 < red; r0 += TK) {
        for (var s = 0u; s < TK * TM / WG; s++) {
            let m = (l + WG * s) / TK;
            let r = r0 + ak;
            var v = 0.0;
            if (m0 + m < p.c_out && r < red) {
                v = weight[(m0 + m) * red + r];
            }
            tile_a[ak * TS + m] = v;
        }
        for (var s = 0u; s < TK * TN / WG; s++) {
            let kk = (l + WG * s) / TN;
            let r = r0 + kk;
            var v = 0.0;
            if (q < cols && r < red) {
                let ci = r / (K * K);
                let iy = oy + i32((r / K) % K) - pad;
                let ix = ox + i32(r % K) - pad;
                if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
                    v = x[((n * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)];
                }
            }
            tile_b[kk * TS + bq] = v;
        }
        workgroupBarrier();
        tile_product(tx, ty, &acc);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + ty + (TM / 4u) * i;
        if (co < p.c_out) {
            var b = 0.0;
            if (p.has_bias != 0u) { b = bias[co]; }
            for (var j = 0u; j < 4u; j++) {
                let qq = q0 + tx + 16u * j;
                if (qq < cols) {
                    y[((qq / plane) * p.c_out + co) * plane + qq % plane] = acc[4u * i + j] + b;
                }
            }
        }
    }
}

// backward_input: C = dx. Grid: x/y fold ceil(N H W / 64) column tiles; z = ceil(c_in / TM).
@compute @workgroup_size(WG)
fn backward_input_v4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) l: u32,
) {
    let plane = p.h * p.w;
    let cols = p.n * plane;
    let kk2 = K * K;
    let red = p.c_out * kk2;
    let q0 = (wid.x + wid.y * nwg.x) * TN;
    let m0 = wid.z * TM;
    let tx = l % 16u;
    let ty = l / 16u;
    let pad = i32(p.pad);
    let bq = l % TN;
    let q = q0 + bq;
    let n = q / plane;
    let iy = i32((q % plane) / p.w);
    let ix = i32((q % plane) % p.w);
    let ak = l % TK;
    var acc: array<f32, 16>;
    for (var r0 = 0u; r0 < red; r0 += TK) {
        for (var s = 0u; s < TK * TM / WG; s++) {
            let m = (l + WG * s) / TK;
            let r = r0 + ak;
            var v = 0.0;
            if (m0 + m < p.c_in && r < red) {
                // r = (co, ky, kx): weight[co, ci = m0 + m, ky, kx].
                v = weight[((r / kk2) * p.c_in + m0 + m) * kk2 + r % kk2];
            }
            tile_a[ak * TS + m] = v;
        }
        for (var s = 0u; s < TK * TN / WG; s++) {
            let kk = (l + WG * s) / TN;
            let r = r0 + kk;
            var v = 0.0;
            if (q < cols && r < red) {
                let co = r / kk2;
                let oy = iy + pad - i32((r / K) % K);
                let ox = ix + pad - i32(r % K);
                if (oy >= 0 && oy < i32(p.h_out) && ox >= 0 && ox < i32(p.w_out)) {
                    v = dy[((n * p.c_out + co) * p.h_out + u32(oy)) * p.w_out + u32(ox)];
                }
            }
            tile_b[kk * TS + bq] = v;
        }
        workgroupBarrier();
        tile_product(tx, ty, &acc);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let ci = m0 + ty + (TM / 4u) * i;
        if (ci < p.c_in) {
            for (var j = 0u; j < 4u; j++) {
                let qq = q0 + tx + 16u * j;
                if (qq < cols) {
                    dx[((qq / plane) * p.c_in + ci) * plane + qq % plane] = acc[4u * i + j];
                }
            }
        }
    }
}

// backward_weight: C[co, (ci, ky, kx)] summed over the positions of one chunk of output rows,
// in order, 16 at a time, into dweight[chunk, co, ci, ky, kx] (see `partials` at the top).
// Grid: x = ceil(c_in K K / 64) column tiles, y = ceil(c_out / TM) row tiles, z = chunk.
@compute @workgroup_size(WG)
fn backward_weight_v4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) l: u32,
) {
    let plane = p.h_out * p.w_out;
    let kk2 = K * K;
    let wcols = p.c_in * kk2;
    let c0 = wid.x * TN;
    let m0 = wid.y * TM;
    let chunk = wid.z;
    let q_begin = chunk * p.chunk_rows * p.w_out;
    let q_end = min(q_begin + p.chunk_rows * p.w_out, p.n * plane);
    let tx = l % 16u;
    let ty = l / 16u;
    let pad = i32(p.pad);
    // Both slices are staged with consecutive invocations at consecutive positions (dy and x
    // are contiguous along a row): this invocation's position offset in every slice.
    let kk = l % TK;
    var acc: array<f32, 16>;
    for (var r0 = q_begin; r0 < q_end; r0 += TK) {
        let q = r0 + kk;
        let in_chunk = q < q_end;
        let n = q / plane;
        let oy = (q % plane) / p.w_out;
        let ox = (q % plane) % p.w_out;
        for (var s = 0u; s < TK * TM / WG; s++) {
            let m = (l + WG * s) / TK;
            var v = 0.0;
            if (in_chunk && m0 + m < p.c_out) {
                v = dy[((n * p.c_out + m0 + m) * p.h_out + oy) * p.w_out + ox];
            }
            tile_a[kk * TS + m] = v;
        }
        for (var s = 0u; s < TK * TN / WG; s++) {
            let col = (l + WG * s) / TK;
            let r = c0 + col;
            var v = 0.0;
            if (in_chunk && r < wcols) {
                let ci = r / kk2;
                let iy = i32(oy) + i32((r / K) % K) - pad;
                let ix = i32(ox) + i32(r % K) - pad;
                if (iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w)) {
                    v = x[((n * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)];
                }
            }
            tile_b[kk * TS + col] = v;
        }
        workgroupBarrier();
        tile_product(tx, ty, &acc);
        workgroupBarrier();
    }
    let base = chunk * p.c_out * wcols;
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + ty + (TM / 4u) * i;
        if (co < p.c_out) {
            for (var j = 0u; j < 4u; j++) {
                let r = c0 + tx + 16u * j;
                if (r < wcols) {
                    dweight[base + co * wcols + r] = acc[4u * i + j];
                }
            }
        }
    }
}

// backward_bias: one workgroup of WG per (output channel, chunk): invocation t sums the chunk's
// positions t, t + WG, ... in order, then the WG sums as a tree, into dbias[chunk, co].
// Grid: x = c_out, y = chunk.
@compute @workgroup_size(WG)
fn backward_bias_v4(
    @builtin(local_invocation_index) t: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let co = wid.x;
    let chunk = wid.y;
    let plane = p.h_out * p.w_out;
    let q_begin = chunk * p.chunk_rows * p.w_out;
    let q_end = min(q_begin + p.chunk_rows * p.w_out, p.n * plane);
    var s = 0.0;
    for (var q = q_begin + t; q < q_end; q += WG) {
        s += dy[((q / plane) * p.c_out + co) * plane + q % plane];
    }
    partial[t] = s;
    tree_sum(t);
    if (t == 0u) {
        dbias[chunk * p.c_out + co] = partial[0];
    }
}
