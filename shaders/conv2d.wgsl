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
