// Element-wise activations and their gradients, one element per invocation.
//   ELU(alpha):  y = x               if x > 0,  alpha * (exp(x) - 1) otherwise
//                dx = dy             if x > 0,  dy * alpha * exp(x)   otherwise
//   ReLU:        y = max(x, 0);      dx = dy if x > 0 else 0 (PyTorch: the gradient at 0 is 0)
//   sigmoid:     y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y), from the saved output
// The flat invocation index is gid.x + gid.y * nwg.x * WG (grids fold into 2-D past 65,535).

struct Params {
    len: u32,
    alpha: f32,
    _p0: u32,
    _p1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read> y_saved: array<f32>;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// exp(v) - 1 without the cancellation of the direct formula near 0 (WGSL has no expm1):
// below |v| = 1e-3 the cubic Taylor polynomial is exact to ~4e-14.
fn expm1(v: f32) -> f32 {
    if (abs(v) < 1e-3) {
        return v * (1.0 + v * (0.5 + v * (1.0 / 6.0)));
    }
    return exp(v) - 1.0;
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
    y[i] = 1.0 / (1.0 + exp(-x[i]));
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
fn elu_forward_x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
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
fn elu_backward_x4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i0 = 4u * flat(gid, nwg);
    for (var j = 0u; j < 4u; j++) {
        let i = i0 + j;
        if (i < p.len) {
            let v = x[i];
            dx[i] = select(dy[i] * p.alpha * exp(v), dy[i], v > 0.0);
        }
    }
}
