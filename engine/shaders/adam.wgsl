// Adam / AdamW with PyTorch semantics over one flat parameter vector: params, grads, m, v are
// [len] each (views that may sit at offsets inside larger buffers). One element per invocation,
// no reductions, so the result is bit-identical run to run.
//
// Per element, following torch.optim.AdamW's single-tensor path operation for operation:
//   p  = p * (1 - lr wd)                       decoupled decay; the factor is exactly 1 if wd = 0
//   m  = b1 m + (1 - b1) g
//   v  = b2 v + (1 - b2) g^2
//   p -= step_size * (m / (sqrt(v) / sqrt(bc2) + eps)),   step_size = lr / bc1,
// with bc1 = 1 - b1^t, bc2 = 1 - b2^t: the same as p -= lr m_hat / (sqrt(v_hat) + eps) with
// m_hat = m / bc1, v_hat = v / bc2. Every per-step scalar (1 - b1, 1 - b2, 1 - lr wd, lr / bc1,
// sqrt(bc2)) is computed on the CPU in f64 and rounded to f32 once (see src/ops/adam.rs).

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
// Only read; declared read_write so the gradients may share one buffer with the parameters or
// the moments (wgpu refuses one buffer bound both read-only and read-write in a dispatch).
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let g = grads[i];
    let mi = p.beta1 * m[i] + p.one_minus_beta1 * g;
    let vi = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    let denom = sqrt(vi) / p.bc2_sqrt + p.eps;
    params[i] = params[i] * p.decay - p.step_size * (mi / denom);
}
