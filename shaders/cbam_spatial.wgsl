// CBAM spatial gate on F' = x [N, C, H, W] (the 7x7 convolution in between is conv2d.wgsl's):
//   pool            s [N, 2, H, W] = (max over c, mean over c), argmax [N, H, W] (u32)
//   (conv2d)        z [N, 1, H, W] = conv7x7(s) + bias
//   gate            M_s = sigmoid(z) [N, 1, H, W], y = M_s * x (broadcast over c)
// backward, given dy = dF'':
//   backward_gate   dz = (sum_c dy * x) * M_s (1 - M_s)
//   (conv2d)        ds [N, 2, H, W], dweight, dbias from dz
//   backward_input  dx = dy * M_s + (c == argmax) ds_max + ds_mean / C
//
// The max's gradient goes to the first maximal channel (strict `>` while scanning c upwards),
// as PyTorch routes it. Every invocation writes one output (pool and backward_gate one position
// (n, y, x), looping over c in order; gate and backward_input one element), so results are
// bit-identical run to run. Position-per-invocation kernels read x[n, c, :] with consecutive
// invocations at consecutive addresses, so each pass over c is a coalesced sweep.
// The flat invocation index is gid.x + gid.y * nwg.x * WG (grids fold into 2-D past 65,535).

struct Params {
    n: u32, c: u32, hw: u32, _p0: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> pooled: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(4) var<storage, read> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read> dy: array<f32>;
@group(0) @binding(8) var<storage, read> m: array<f32>;
@group(0) @binding(9) var<storage, read_write> dz: array<f32>;
@group(0) @binding(10) var<storage, read> ds: array<f32>;
@group(0) @binding(11) var<storage, read> argmax: array<u32>;
@group(0) @binding(12) var<storage, read_write> dx: array<f32>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// One position (n, q) per invocation, q the flat index in the H x W plane:
// pooled[n, 0, q] = max_c x[n, c, q], pooled[n, 1, q] = (sum_c x[n, c, q]) / C,
// argmax_out[n, q] = the first c holding the max.
@compute @workgroup_size(WG)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.hw) { return; }
    let q = i % p.hw;
    let n = i / p.hw;
    let base = n * p.c * p.hw + q;
    var best = x[base];
    var best_c = 0u;
    var sum = 0.0;
    for (var c = 0u; c < p.c; c++) {
        let v = x[base + c * p.hw];
        if (v > best) {
            best = v;
            best_c = c;
        }
        sum += v;
    }
    pooled[2u * n * p.hw + q] = best;
    pooled[(2u * n + 1u) * p.hw + q] = sum / f32(p.c);
    argmax_out[i] = best_c;
}

// One element of y per invocation: M_s is recomputed by each of the C invocations of a position
// (an exp and a division, cheaper than a second pass) and saved by the one at c = 0.
@compute @workgroup_size(WG)
fn gate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.hw) { return; }
    let q = i % p.hw;
    let nc = i / p.hw;
    let j = (nc / p.c) * p.hw + q;
    // 1 / (1 + exp(-z)) saturates cleanly: exp overflows to +inf for z << 0 and gives 0.
    let mv = 1.0 / (1.0 + exp(-z[j]));
    y[i] = mv * x[i];
    if (nc % p.c == 0u) {
        m_out[j] = mv;
    }
}

// One position (n, q) per invocation: dz[n, q] = (sum_c dy[n, c, q] x[n, c, q]) M_s (1 - M_s).
@compute @workgroup_size(WG)
fn backward_gate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.hw) { return; }
    let q = i % p.hw;
    let n = i / p.hw;
    let base = n * p.c * p.hw + q;
    var dm = 0.0;
    for (var c = 0u; c < p.c; c++) {
        let k = base + c * p.hw;
        dm += dy[k] * x[k];
    }
    let mv = m[i];
    dz[i] = dm * mv * (1.0 - mv);
}

// One element of dx per invocation:
// dx[n, c, q] = dy[n, c, q] M_s[n, q] + (c == argmax[n, q]) ds[n, 0, q] + ds[n, 1, q] / C.
@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.hw) { return; }
    let q = i % p.hw;
    let nc = i / p.hw;
    let c = nc % p.c;
    let n = nc / p.c;
    let j = n * p.hw + q;
    var g = dy[i] * m[j];
    if (argmax[j] == c) {
        g += ds[2u * n * p.hw + q];
    }
    g += ds[(2u * n + 1u) * p.hw + q] / f32(p.c);
    dx[i] = g;
}
