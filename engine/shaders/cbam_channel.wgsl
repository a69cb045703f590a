// CBAM channel gate (Woo et al., ECCV 2018) on F [N, C, H, W]:
//   a = mean_hw F, m = max_hw F (both [N, C]), mlp(v) = fc2(relu(fc1(v))) with hidden width
//   HID = max(1, C / 16), M = sigmoid(mlp(a) + mlp(m)) [N, C], F' = M * F broadcast over H, W.
// Layouts: fc1_weight [HID, C], fc1_bias [HID], fc2_weight [C, HID], fc2_bias [C] (PyTorch's).
// Saved by the forward for the backward: pooled [2, N, C] (branch 0 = avg, 1 = max),
// argmax [N, C] (u32: the first row-major index of each plane's maximum), hidden [2, N, HID]
// (relu(fc1(v)) per branch), gate [N, C] (M).
// With `residual` set (the `--gate residual` form, BAM-style) the output is F' = F + M * F: the
// factor in `scale` and `backward_input` is 1 + M; the gate's own gradient is unchanged.
// Backward scratch: dz [N, C] (dL/d(mlp(a) + mlp(m)), which both branch outputs receive),
// dhidden [2, N, HID] (dL/d fc1 pre-activation per branch), dpooled [2, N, C] (dL/da, dL/dm).
//
// Every entry point computes its outputs in one invocation with loops in a fixed order, so
// results are bit-identical run to run (no atomics). Weight gradients sum over the batch outer
// and the branch (avg, then max) inner. The two sums over a whole plane (pool's mean,
// backward_gate's sum of dy x: 4,096 terms at the first stage) are blocked: BLOCK consecutive
// elements into one partial sum, the partial sums into the total (v2 keeps the four
// lanes apart to the end and adds them as (x + y) + (z + w)), so no f32 accumulator takes more than
// BLOCK + H W / BLOCK additions (see docs/numerics.md; one accumulator over the plane erred up
// to 20 times more).
// flat() (common.wgsl) gives the flat invocation index: grids fold into 2-D past 65,535.
// v2 (the `*_v2` entry points) does the same computations over vec4 views of the [N, C, H, W] tensors,
// used when H*W is a multiple of 4 (every plane then starts on a vec4): lavapipe moves memory
// several times faster in vec4 than in scalar f32. Their maxima scan in the scalar order (x, y,
// z, w of each vec4 in turn, the first maximum wins); their sums keep the four lanes apart.

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> fc1_weight: array<f32>;
@group(0) @binding(3) var<storage, read> fc1_bias: array<f32>;
@group(0) @binding(4) var<storage, read> fc2_weight: array<f32>;
@group(0) @binding(5) var<storage, read> fc2_bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
@group(0) @binding(7) var<storage, read_write> pooled_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> argmax_out: array<u32>;
@group(0) @binding(9) var<storage, read> pooled: array<f32>;
@group(0) @binding(10) var<storage, read> argmax: array<u32>;
@group(0) @binding(11) var<storage, read_write> hidden_out: array<f32>;
@group(0) @binding(12) var<storage, read> hidden: array<f32>;
@group(0) @binding(13) var<storage, read_write> gate_out: array<f32>;
@group(0) @binding(14) var<storage, read> gate: array<f32>;
@group(0) @binding(15) var<storage, read> dy: array<f32>;
@group(0) @binding(16) var<storage, read_write> dz_out: array<f32>;
@group(0) @binding(17) var<storage, read> dz: array<f32>;
@group(0) @binding(18) var<storage, read_write> dhidden_out: array<f32>;
@group(0) @binding(19) var<storage, read> dhidden: array<f32>;
@group(0) @binding(20) var<storage, read_write> dpooled_out: array<f32>;
@group(0) @binding(21) var<storage, read> dpooled: array<f32>;
@group(0) @binding(22) var<storage, read_write> dx: array<f32>;
@group(0) @binding(23) var<storage, read_write> dfc1_weight: array<f32>;
@group(0) @binding(24) var<storage, read_write> dfc1_bias: array<f32>;
@group(0) @binding(25) var<storage, read_write> dfc2_weight: array<f32>;
@group(0) @binding(26) var<storage, read_write> dfc2_bias: array<f32>;
@group(0) @binding(27) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(28) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(29) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(30) var<storage, read_write> dx4: array<vec4<f32>>;

// Elements per partial sum of the plane sums (v1; 64 vec4 in v2).
const BLOCK: u32 = 256u;

// ---------------------------------------------------------------- forward

// One invocation per plane (n, c): reads the plane once for its sum, its maximum and the first
// index of the maximum. pooled_out[0, n, c] = mean, pooled_out[1, n, c] = max.
@compute @workgroup_size(WG)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let planes = p.n * p.c;
    if (i >= planes) { return; }
    let base = i * p.hw;
    var sum = 0.0;
    var best = x[base];
    var best_k = 0u;
    for (var k0 = 0u; k0 < p.hw; k0 += BLOCK) {
        var part = 0.0;
        for (var k = k0; k < min(k0 + BLOCK, p.hw); k++) {
            let v = x[base + k];
            part += v;
            // Strictly greater keeps the first of equal maxima (PyTorch's tie rule).
            if (v > best) { best = v; best_k = k; }
        }
        sum += part;
    }
    pooled_out[i] = sum / f32(p.hw);
    pooled_out[planes + i] = best;
    argmax_out[i] = best_k;
}

@compute @workgroup_size(WG)
fn pool_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let planes = p.n * p.c;
    if (i >= planes) { return; }
    let q = p.hw / 4u;
    let base = i * q;
    var sum = vec4(0.0);
    var best = x4[base].x;
    var best_k = 0u;
    for (var k0 = 0u; k0 < q; k0 += BLOCK / 4u) {
        var part = vec4(0.0);
        for (var k = k0; k < min(k0 + BLOCK / 4u, q); k++) {
            let v = x4[base + k];
            part += v;
            if (v.x > best) { best = v.x; best_k = 4u * k; }
            if (v.y > best) { best = v.y; best_k = 4u * k + 1u; }
            if (v.z > best) { best = v.z; best_k = 4u * k + 2u; }
            if (v.w > best) { best = v.w; best_k = 4u * k + 3u; }
        }
        sum += part;
    }
    pooled_out[i] = ((sum.x + sum.y) + (sum.z + sum.w)) / f32(p.hw);
    pooled_out[planes + i] = best;
    argmax_out[i] = best_k;
}

// hidden_out[b, n, j] = relu(fc1_bias[j] + sum_c fc1_weight[j, c] * pooled[b, n, c])
@compute @workgroup_size(WG)
fn hidden_layer(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= 2u * p.n * p.hid) { return; }
    let j = i % p.hid;
    let row = i / p.hid; // b * N + n
    let v_base = row * p.c;
    let w_base = j * p.c;
    var acc = fc1_bias[j];
    for (var c = 0u; c < p.c; c++) {
        acc += fc1_weight[w_base + c] * pooled[v_base + c];
    }
    hidden_out[i] = max(acc, 0.0);
}

// gate_out[n, c] = sigmoid(mlp(a) + mlp(m)), each mlp output = fc2_bias[c] + sum_j fc2_weight[c, j] hidden[b, n, j]
@compute @workgroup_size(WG)
fn gate_layer(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c) { return; }
    let c = i % p.c;
    let n = i / p.c;
    let w_base = c * p.hid;
    let ha = n * p.hid;
    let hm = (p.n + n) * p.hid;
    var out_a = fc2_bias[c];
    var out_m = fc2_bias[c];
    for (var j = 0u; j < p.hid; j++) {
        out_a += fc2_weight[w_base + j] * hidden[ha + j];
        out_m += fc2_weight[w_base + j] * hidden[hm + j];
    }
    gate_out[i] = 1.0 / (1.0 + exp(-(out_a + out_m)));
}

// y[n, c, k] = (gate[n, c] + residual) * x[n, c, k]
@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.hw) { return; }
    y[i] = (gate[i / p.hw] + f32(p.residual)) * x[i];
}

@compute @workgroup_size(WG)
fn scale_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let q = p.hw / 4u;
    if (i >= p.n * p.c * q) { return; }
    y4[i] = (gate[i / q] + f32(p.residual)) * x4[i];
}

// ---------------------------------------------------------------- backward

// dz_out[n, c] = (sum_k dy[n, c, k] x[n, c, k]) * M (1 - M), with M = gate[n, c]
@compute @workgroup_size(WG)
fn backward_gate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c) { return; }
    let base = i * p.hw;
    var dgate = 0.0;
    for (var k0 = 0u; k0 < p.hw; k0 += BLOCK) {
        var part = 0.0;
        for (var k = k0; k < min(k0 + BLOCK, p.hw); k++) {
            part += dy[base + k] * x[base + k];
        }
        dgate += part;
    }
    let m = gate[i];
    dz_out[i] = dgate * (m * (1.0 - m));
}

@compute @workgroup_size(WG)
fn backward_gate_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c) { return; }
    let q = p.hw / 4u;
    let base = i * q;
    var sum = vec4(0.0);
    for (var k0 = 0u; k0 < q; k0 += BLOCK / 4u) {
        var part = vec4(0.0);
        for (var k = k0; k < min(k0 + BLOCK / 4u, q); k++) {
            part = fma(dy4[base + k], x4[base + k], part);
        }
        sum += part;
    }
    let dgate = (sum.x + sum.y) + (sum.z + sum.w);
    let m = gate[i];
    dz_out[i] = dgate * (m * (1.0 - m));
}

// dhidden_out[b, n, j] = [hidden[b, n, j] > 0] * sum_c fc2_weight[c, j] dz[n, c]
// (relu'(pre) is read from relu(pre) > 0: the two agree, and the gradient at 0 is 0 as PyTorch's)
@compute @workgroup_size(WG)
fn backward_hidden(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= 2u * p.n * p.hid) { return; }
    let j = i % p.hid;
    let n = (i / p.hid) % p.n;
    if (hidden[i] <= 0.0) {
        dhidden_out[i] = 0.0;
        return;
    }
    let dz_base = n * p.c;
    var acc = 0.0;
    for (var c = 0u; c < p.c; c++) {
        acc += fc2_weight[c * p.hid + j] * dz[dz_base + c];
    }
    dhidden_out[i] = acc;
}

// dpooled_out[b, n, c] = sum_j fc1_weight[j, c] dhidden[b, n, j]
@compute @workgroup_size(WG)
fn backward_pooled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= 2u * p.n * p.c) { return; }
    let c = i % p.c;
    let row = i / p.c; // b * N + n
    let dh_base = row * p.hid;
    var acc = 0.0;
    for (var j = 0u; j < p.hid; j++) {
        acc += fc1_weight[j * p.c + c] * dhidden[dh_base + j];
    }
    dpooled_out[i] = acc;
}

// One invocation per fc2 parameter: C * (HID + 1) of them, column HID being the bias.
// dfc2_weight[c, j] = sum_n sum_b dz[n, c] hidden[b, n, j];  dfc2_bias[c] = sum_n sum_b dz[n, c]
@compute @workgroup_size(WG)
fn backward_fc2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let cols = p.hid + 1u;
    if (i >= p.c * cols) { return; }
    let j = i % cols;
    let c = i / cols;
    var acc = 0.0;
    if (j == p.hid) {
        for (var n = 0u; n < p.n; n++) {
            let g = dz[n * p.c + c];
            acc += g;
            acc += g;
        }
        dfc2_bias[c] = acc;
    } else {
        for (var n = 0u; n < p.n; n++) {
            let g = dz[n * p.c + c];
            acc += g * hidden[n * p.hid + j];
            acc += g * hidden[(p.n + n) * p.hid + j];
        }
        dfc2_weight[c * p.hid + j] = acc;
    }
}

// One invocation per fc1 parameter: HID * (C + 1) of them, column C being the bias.
// dfc1_weight[j, c] = sum_n sum_b dhidden[b, n, j] pooled[b, n, c];  dfc1_bias[j] = sum_n sum_b dhidden[b, n, j]
@compute @workgroup_size(WG)
fn backward_fc1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let cols = p.c + 1u;
    if (i >= p.hid * cols) { return; }
    let c = i % cols;
    let j = i / cols;
    var acc = 0.0;
    if (c == p.c) {
        for (var n = 0u; n < p.n; n++) {
            acc += dhidden[n * p.hid + j];
            acc += dhidden[(p.n + n) * p.hid + j];
        }
        dfc1_bias[j] = acc;
    } else {
        for (var n = 0u; n < p.n; n++) {
            acc += dhidden[n * p.hid + j] * pooled[n * p.c + c];
            acc += dhidden[(p.n + n) * p.hid + j] * pooled[(p.n + n) * p.c + c];
        }
        dfc1_weight[j * p.c + c] = acc;
    }
}

// dx[n, c, k] = dy[n, c, k] (M + residual) + da[n, c] / (H W) + [k == argmax[n, c]] dm[n, c]
@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let planes = p.n * p.c;
    if (i >= planes * p.hw) { return; }
    let plane = i / p.hw;
    let k = i % p.hw;
    var g = dy[i] * (gate[plane] + f32(p.residual)) + dpooled[plane] / f32(p.hw);
    if (k == argmax[plane]) { g += dpooled[planes + plane]; }
    dx[i] = g;
}

@compute @workgroup_size(WG)
fn backward_input_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let planes = p.n * p.c;
    let q = p.hw / 4u;
    if (i >= planes * q) { return; }
    let plane = i / q;
    let k0 = 4u * (i % q);
    var g = dy4[i] * (gate[plane] + f32(p.residual)) + vec4(dpooled[plane] / f32(p.hw));
    let a = argmax[plane];
    if (a >= k0 && a < k0 + 4u) {
        let dm = dpooled[planes + plane];
        // Only the argmax lane adds dm, as in the scalar path (adding 0.0 elsewhere would turn
        // a -0.0 into +0.0).
        let hit = vec4<u32>(k0, k0 + 1u, k0 + 2u, k0 + 3u) == vec4(a);
        g = select(g, g + vec4(dm), hit);
    }
    dx4[i] = g;
}
