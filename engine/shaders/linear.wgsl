// Fully connected layer, PyTorch's layout and semantics: x [N, IN], weight [OUT, IN], bias [OUT],
// y [N, OUT] with y = x W^T + b.
//
// Every entry point computes one output element per invocation and loops over its reduction in
// a fixed ascending order, so results are bit-identical run to run (no atomics). The sums over
// the batch (the weight and bias gradients) add NB rows into a partial sum at a time and the
// partial sums in order, so a batch of 256 takes 16 + 16 additions per accumulator, not 256.
// The backward entry points overwrite their outputs (they do not accumulate into them).
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

// Rows per partial sum of the sums over the batch.
const NB: u32 = 16u;

// y[n, o] = sum_i x[n, i] * weight[o, i] + bias[o]
@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= p.n * p.out_f) { return; }
    let o = idx % p.out_f;
    let n = idx / p.out_f;
    let x_base = n * p.in_f;
    let w_base = o * p.in_f;
    var acc = 0.0;
    for (var i = 0u; i < p.in_f; i++) {
        acc += x[x_base + i] * weight[w_base + i];
    }
    if (p.has_bias != 0u) { acc += bias[o]; }
    y[idx] = acc;
}

// dx[n, i] = sum_o dy[n, o] * weight[o, i]
@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= p.n * p.in_f) { return; }
    let i = idx % p.in_f;
    let n = idx / p.in_f;
    let dy_base = n * p.out_f;
    var acc = 0.0;
    for (var o = 0u; o < p.out_f; o++) {
        acc += dy[dy_base + o] * weight[o * p.in_f + i];
    }
    dx[idx] = acc;
}

// dweight[o, i] = sum_n dy[n, o] * x[n, i]
@compute @workgroup_size(WG)
fn backward_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= p.out_f * p.in_f) { return; }
    let i = idx % p.in_f;
    let o = idx / p.in_f;
    var acc = 0.0;
    for (var n0 = 0u; n0 < p.n; n0 += NB) {
        var part = 0.0;
        for (var n = n0; n < min(n0 + NB, p.n); n++) {
            part += dy[n * p.out_f + o] * x[n * p.in_f + i];
        }
        acc += part;
    }
    dweight[idx] = acc;
}

// dbias[o] = sum_n dy[n, o]
@compute @workgroup_size(WG)
fn backward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat(gid, nwg);
    if (o >= p.out_f) { return; }
    var acc = 0.0;
    for (var n0 = 0u; n0 < p.n; n0 += NB) {
        var part = 0.0;
        for (var n = n0; n < min(n0 + NB, p.n); n++) {
            part += dy[n * p.out_f + o];
        }
        acc += part;
    }
    dbias[o] = acc;
}
