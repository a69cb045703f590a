// Element-wise activations and their gradients, one element per invocation.
//   ELU(alpha):  y = x               if x > 0,  alpha * (exp(x) - 1) otherwise
//                dx = dy             if x > 0,  dy * alpha * exp(x)   otherwise
//   ReLU:        y = max(x, 0);      dx = dy if x > 0 else 0 (PyTorch: the gradient at 0 is 0)
//   sigmoid:     y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y), from the saved output
// flat() (common.wgsl) gives the flat invocation index: grids fold into 2-D past 65,535.

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> y_saved: array<f32>;

// exp and exp(v) - 1 to about one ulp of their own value, in plain f32 arithmetic, for ELU's
// forward. The built-in exp is only required to be good to 3 + 2|v| ulp (lavapipe measured up to
// 8 u on [-5, -1] and 18 u at -20, u = 2^-24), and exp(v) - 1 then loses everything near 0: a
// 1e-7 error of exp(v) ~ 1 is 2e-5 of ELU's output at v = -0.005, up to 1e-4 nearer 0. Deep in the network, where
// activations are ~0.03, that was 5e-6 of each activation tensor and moved which element of a
// max-pool window wins. The backward multiplies dy by the built-in exp(v): a few ulps of one
// gradient element, which decides nothing (the accurate one cost lavapipe 20% of the pass).

// ln 2 split so that k * LN2_HI is exact for |k| <= 2^15 (LN2_HI has 9 significant bits).
const LN2_HI: f32 = 0.693359375;
const LN2_LO: f32 = -2.12194440e-4;
const LOG2E: f32 = 1.44269504;

// exp(v) = 2^k exp(r), k = round(v / ln 2), |r| <= ln 2 / 2 (Cody and Waite's reduction);
// exp(r) by its Taylor polynomial to r^7 (the next term is below 6e-9 relative), 2^k exact.
fn exp_accurate(v: f32) -> f32 {
    // Past the ends the built-in's overflow to +inf and this one's underflow to 0 are exact.
    if (v > 88.0) { return exp(v); }
    if (v < -104.0) { return 0.0; }
    let k = round(v * LOG2E);
    let r = (v - k * LN2_HI) - k * LN2_LO;
    let e = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0
        + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    return ldexp(e, i32(k));
}

// exp(v) - 1: for |v| < 1/2 its Taylor polynomial to v^10 (the next term is below 2e-9
// relative), which has no cancellation; beyond, exp_accurate(v) - 1 cancels at most 1.6 bits.
fn expm1(v: f32) -> f32 {
    if (abs(v) < 0.5) {
        return v * (1.0 + v * (0.5 + v * (1.0 / 6.0 + v * (1.0 / 24.0 + v * (1.0 / 120.0
            + v * (1.0 / 720.0 + v * (1.0 / 5040.0 + v * (1.0 / 40320.0 + v * (1.0 / 362880.0
            + v * (1.0 / 3628800.0))))))))));
    }
    return exp_accurate(v) - 1.0;
}

@compute @workgroup_size(WG)
fn elu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let v = x[i];
    y[i] = select(p.alpha * expm1(v), v, v > 0.0);
}

@compute @workgroup_size(WG)
fn elu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let v = x[i];
    dx[i] = select(dy[i] * p.alpha * exp(v), dy[i], v > 0.0);
}

@compute @workgroup_size(WG)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    y[i] = max(x[i], 0.0);
}

@compute @workgroup_size(WG)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    dx[i] = select(0.0, dy[i], x[i] > 0.0);
}

@compute @workgroup_size(WG)
fn sigmoid_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    // exp(-x) overflows to +inf for x < -88, giving exactly 0: the correct limit.
    y[i] = 1.0 / (1.0 + exp_accurate(-x[i]));
}

@compute @workgroup_size(WG)
fn sigmoid_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let s = y_saved[i];
    dx[i] = dy[i] * s * (1.0 - s);
}

// v2 ELU: four consecutive elements per invocation, the same formula (so the same bits as v1).
// On lavapipe a one-element kernel pays its per-invocation cost for every element.
@compute @workgroup_size(WG)
fn elu_forward_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = 4u * flat(gid, nwg);
    for (var j = 0u; j < 4u; j++) {
        let i = i0 + j;
        if (i < p.len) {
            let v = x[i];
            y[i] = select(p.alpha * expm1(v), v, v > 0.0);
        }
    }
}

@compute @workgroup_size(WG)
fn elu_backward_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = 4u * flat(gid, nwg);
    for (var j = 0u; j < 4u; j++) {
        let i = i0 + j;
        if (i < p.len) {
            let v = x[i];
            dx[i] = select(dy[i] * p.alpha * exp(v), dy[i], v > 0.0);
        }
    }
}
