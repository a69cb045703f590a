// CBAM spatial gate on F' = x [N, C, H, W] (the 7x7 convolution in between is conv2d.wgsl's):
//   pool            s [N, 2, H, W] = (max over c, mean over c), argmax [N, H, W] (u32)
//   (conv2d)        z [N, 1, H, W] = conv7x7(s) + bias
//   gate            M_s = sigmoid(z) [N, 1, H, W], y = M_s * x (broadcast over c)
// backward, given dy = dF'':
//   backward_gate   dz = (sum_c dy * x) * M_s (1 - M_s)
//   (conv2d)        ds [N, 2, H, W], dweight, dbias from dz
//   backward_input  dx = dy * M_s + (c == argmax) ds_max + ds_mean / C
// With `residual` set (the `--gate residual` form) F'' = F' + M_s * F': the factor in `gate` and
// `backward_input` is 1 + M_s; backward_gate (the gate's own gradient) is unchanged.
//
// The max's gradient goes to the first maximal channel (strict `>` while scanning c upwards),
// as PyTorch routes it. No two invocations write the same element and reductions loop over c
// in a fixed order (pool and backward_gate: one position (n, y, x) per invocation; gate and
// backward_input: one position and a block of CH channels), so results are bit-identical run to
// run. Consecutive invocations take consecutive positions, so every loop over c reads and writes
// x[n, c, :] at consecutive addresses across invocations (coalesced).
// The sums over c (pool's mean, backward_gate's sum of dy x) are blocked: CB consecutive
// channels into one partial sum, the partial sums into the total, so an accumulator takes at
// most CB + C / CB additions (16 + 16 at 256 channels, where one accumulator took 256).
// flat() (common.wgsl) gives the flat invocation index: grids fold into 2-D past 65,535.

// Channels per invocation in gate and backward_input: more amortizes the index arithmetic (u32
// division is slow on CPU Vulkan), fewer gives a large GPU more invocations at small H x W.
override CH: u32 = 16u;

// Binding 0 is the uniform `p: Params` (common.wgsl).
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

// Channels per partial sum of the sums over c.
const CB: u32 = 16u;

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
    for (var c0 = 0u; c0 < p.c; c0 += CB) {
        var part = 0.0;
        for (var c = c0; c < min(c0 + CB, p.c); c++) {
            let v = x[base + c * p.hw];
            if (v > best) {
                best = v;
                best_c = c;
            }
            part += v;
        }
        sum += part;
    }
    pooled[2u * n * p.hw + q] = best;
    pooled[(2u * n + 1u) * p.hw + q] = sum / f32(p.c);
    argmax_out[i] = best_c;
}

// One position (n, q) and a block of CH consecutive channels per invocation: M_s is computed
// once per block (the block at c = 0 saves it) and the block's y[n, c, q] = M_s x[n, c, q] are
// written in a loop, so the index arithmetic and the exp are paid once per CH elements.
@compute @workgroup_size(WG)
fn gate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.c + CH - 1u) / CH;
    let i = flat(gid, nwg);
    if (i >= p.n * blocks * p.hw) { return; }
    let q = i % p.hw;
    let nb = i / p.hw;
    let block = nb % blocks;
    let n = nb / blocks;
    let j = n * p.hw + q;
    // 1 / (1 + exp(-z)) saturates cleanly: exp overflows to +inf for z << 0 and gives 0.
    let mv = 1.0 / (1.0 + exp(-z[j]));
    if (block == 0u) {
        m_out[j] = mv;
    }
    let f = mv + f32(p.residual);
    let c0 = block * CH;
    let c1 = min(p.c, c0 + CH);
    var e = (n * p.c + c0) * p.hw + q;
    for (var c = c0; c < c1; c++) {
        y[e] = f * x[e];
        e += p.hw;
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
    for (var c0 = 0u; c0 < p.c; c0 += CB) {
        var part = 0.0;
        for (var c = c0; c < min(c0 + CB, p.c); c++) {
            let k = base + c * p.hw;
            part += dy[k] * x[k];
        }
        dm += part;
    }
    let mv = m[i];
    dz[i] = dm * mv * (1.0 - mv);
}

// One position (n, q) and a block of CH consecutive channels per invocation:
// dx[n, c, q] = dy[n, c, q] (M_s[n, q] + residual) + (c == argmax[n, q]) ds[n, 0, q] + ds[n, 1, q] / C.
@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.c + CH - 1u) / CH;
    let i = flat(gid, nwg);
    if (i >= p.n * blocks * p.hw) { return; }
    let q = i % p.hw;
    let nb = i / p.hw;
    let block = nb % blocks;
    let n = nb / blocks;
    let j = n * p.hw + q;
    let f = m[j] + f32(p.residual);
    let top = argmax[j];
    let ds_max = ds[2u * n * p.hw + q];
    let ds_mean = ds[(2u * n + 1u) * p.hw + q] / f32(p.c);
    let c0 = block * CH;
    let c1 = min(p.c, c0 + CH);
    var e = (n * p.c + c0) * p.hw + q;
    for (var c = c0; c < c1; c++) {
        var g = dy[e] * f;
        if (c == top) {
            g += ds_max;
        }
        dx[e] = g + ds_mean;
        e += p.hw;
    }
}
