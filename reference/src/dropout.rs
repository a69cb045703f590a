//! Inverted dropout with a counter-based keep decision, bit-identical to `shaders/dropout.wgsl`.
//!
//! The keep decision for element `i` (flat index within the tensor) at training step `step` of
//! a layer seeded with `seed` is a pure function of those three u32 values, so the GPU needs no
//! random state and no mask buffer: forward and backward both recompute it.
//!
//! Hash: three rounds of Chris Wellons' "lowbias32" integer hash (hash-prospector; multipliers
//! 0x7feb352d and 0x846ca68b, shifts 16/15/16), chained as a sponge:
//! `k1 = lowbias32(seed ^ 0x9e3779b9)`, `k2 = lowbias32(k1 ^ step)`, `h = lowbias32(k2 ^ i)`.
//! The golden-ratio constant keeps seed 0 away from lowbias32's fixed point 0 -> 0. Each round is
//! a bijection of u32, so for a fixed key distinct elements never share a hash input, and distinct
//! steps (or seeds) give distinct keys. All arithmetic is wrapping u32 (WGSL has no u64).
//!
//! Keep rule: keep iff `h < (1 - p) * 2^32` exactly, i.e. `h < T` with
//! `T = ceil((1 - p) * 2^32)` computed in f64 from the f32 `p` (exact: `(1 - p) * 2^32` is a
//! dyadic rational that f64 holds exactly for every f32 p >= 2^-30; below that the f64
//! subtraction rounds first). The GPU is given
//! `keep_max = T - 1` (which fits in u32 even for p = 0, where T = 2^32) and tests `h <= keep_max`.
//! For f32 p < 1, T >= 2^8, so the rule never drops everything.

/// One round of the lowbias32 integer hash (a bijection of u32).
pub fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The 32-bit random value of element `index` at `step` for a layer seeded with `seed`.
pub fn hash(seed: u32, step: u32, index: u32) -> u32 {
    let k1 = lowbias32(seed ^ 0x9e37_79b9);
    let k2 = lowbias32(k1 ^ step);
    lowbias32(k2 ^ index)
}

/// `T - 1` where `T = ceil((1 - p) * 2^32)`: element kept iff `hash <= keep_max(p)`.
/// Panics unless `0 <= p < 1`.
pub fn keep_max(p: f32) -> u32 {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout probability {p} outside [0, 1)"
    );
    let t = ((1.0 - p as f64) * 4_294_967_296.0).ceil();
    (t - 1.0) as u32
}

/// The keep mask (true = kept) of `len` elements.
pub fn mask(len: usize, p: f32, seed: u32, step: u32) -> Vec<bool> {
    let m = keep_max(p);
    (0..len).map(|i| hash(seed, step, i as u32) <= m).collect()
}

/// x: [len] -> y: [len]; `y = x * mask / (1 - p)` in training, `y = x` in evaluation.
pub fn forward(x: &[f64], p: f32, seed: u32, step: u32, training: bool) -> Vec<f64> {
    if !training {
        return x.to_vec();
    }
    let keep = 1.0 - p as f64;
    mask(x.len(), p, seed, step)
        .iter()
        .zip(x)
        .map(|(&k, &v)| if k { v / keep } else { v * 0.0 })
        .collect()
}

/// dy: [len] -> dx: [len]; `dx = dy * mask / (1 - p)` with the forward's mask (`dx = dy` in
/// evaluation): dropout is linear in x, so its Jacobian is the diagonal of the mask scaling.
pub fn backward(dy: &[f64], p: f32, seed: u32, step: u32, training: bool) -> Vec<f64> {
    if !training {
        return dy.to_vec();
    }
    let scale = 1.0 / (1.0 - p as f64);
    let m = mask(dy.len(), p, seed, step);
    dy.iter()
        .zip(m)
        .map(|(&g, k)| if k { g * scale } else { g * 0.0 })
        .collect()
}
