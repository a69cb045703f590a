// Inverted dropout: y = x * keep / (1 - p) in training, y = x in evaluation; dx likewise from dy.
//
// The keep decision is recomputed (never stored) from a counter-based hash of (seed, step, flat
// element index), bit-identical to reference/src/dropout.rs: three chained rounds of Chris
// Wellons' "lowbias32" integer hash (multipliers 0x7feb352d, 0x846ca68b; shifts 16, 15, 16),
//   k1 = lowbias32(seed ^ 0x9e3779b9); k2 = lowbias32(k1 ^ step); h = lowbias32(k2 ^ i),
// all in wrapping u32 arithmetic (WGSL has no u64). Keep iff h <= keep_max, where
// keep_max = ceil((1 - p) * 2^32) - 1 is computed on the CPU in f64 (so p = 0 keeps everything:
// keep_max = 0xffffffff), i.e. keep iff h < (1 - p) * 2^32.
//
// One element per invocation (flat index: flat() of common.wgsl).

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

fn lowbias32(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

// The forward and backward use the very same function of the element, so the backward sees the
// forward's mask as long as seed and step are unchanged between the two.
fn apply(i: u32, v: f32) -> f32 {
    if (p.training == 0u) { return v; }
    let k1 = lowbias32(p.seed ^ 0x9e3779b9u);
    let k2 = lowbias32(k1 ^ p.step);
    let h = lowbias32(k2 ^ i);
    // A multiply rather than a select, so a NaN or inf in a dropped element still shows (as in
    // PyTorch's x * mask * scale) instead of being hidden behind a zero.
    return v * select(0.0, p.scale, h <= p.keep_max);
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = apply(i, x[i]);
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    dx[i] = apply(i, dy[i]);
}
