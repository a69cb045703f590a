// BatchNorm2d (PyTorch semantics) on x [N, C, H, W], per channel c over the M = N*H*W values
// x[:, c, :, :]:
//   training    mean = sum x / M, var = sum (x - mean)^2 / M (biased), istd = 1 / sqrt(var + eps)
//               y = (x - mean) istd gamma + beta
//               running_mean = (1 - momentum) running_mean + momentum mean
//               running_var  = (1 - momentum) running_var  + momentum var M / (M - 1)
//   evaluation  the same y with running_mean and running_var in place of the batch's
//   backward    (training mode; xh = (x - mean) istd)
//               dbeta = sum dy, dgamma = sum dy xh
//               dx = gamma istd (dy - dbeta / M - xh dgamma / M)
//
// The mean is kept as two floats, hi + lo: hi = fl(sum x / M), lo = sum (x - hi) / M. For a
// channel whose mean is large against its spread (offset 8, spread 0.03), hi alone is off by up
// to half an ulp of the mean, which is 1e-5 of the spread and would be in every x - mean; the
// deviations x - hi are exact there (Sterbenz), so (x - hi) - lo is right to a rounding.
//
// Every per-channel sum is a fixed-order blocked reduction in two passes, no atomics:
//   1. `partial_*`: one invocation per RUN of up to `RUN_LEN` consecutive values inside one plane
//      (n, c); partials[c, n * runs + r], laid out so a channel's partials are contiguous. The run
//      is summed in blocks of `BLOCK` values (a block sum, then the running total), so an error
//      passes through at most BLOCK + RUN_LEN / BLOCK additions instead of RUN_LEN.
//   2. `finish_*`: one invocation per channel sums its N * runs partials the same blocked way.
// So the same input gives the same bits on every run, and the error grows with
// BLOCK + RUN_LEN / BLOCK + BLOCK + N runs / BLOCK additions (about 100 for a million values) rather
// than with M. The variance is the corrected two-pass formula (Bjorck; Chan, Golub, LeVeque):
// sum (x - mean)^2 - (sum (x - mean))^2 / M, never E[x^2] - E[x]^2, which cancels in f32.
// v2 (the `*_v2` entry points) runs the same passes over vec4 views, used when H*W is a multiple of 4
// (every plane and run then starts on a vec4): lavapipe moves memory several times faster in vec4.
// Their blocks accumulate four lanes (x, y, z, w) side by side and add them pairwise at the end
// of each block: another fixed order, as accurate.
//
// Saved by the training forward for the backward: stats [4, C] = (mean hi, biased var, istd,
// mean lo).
// Scratch: part_a, part_b [C, N * runs] (partial sums); coef [2, C] = (dbeta / M, dgamma / M).
// flat() (common.wgsl) gives the flat invocation index: grids fold into 2-D past 65,535.

// Values per run (a multiple of BLOCK, and of 4 for the v2 entry points).
override RUN_LEN: u32 = 1024u;
// Values per block of the blocked summation (a multiple of 4).
override BLOCK: u32 = 32u;

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> part_a_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_b_out: array<f32>;
@group(0) @binding(5) var<storage, read> part_a: array<f32>;
@group(0) @binding(6) var<storage, read> part_b: array<f32>;
@group(0) @binding(7) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(8) var<storage, read> stats: array<f32>;
@group(0) @binding(9) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(10) var<storage, read_write> running_var: array<f32>;
@group(0) @binding(11) var<storage, read> gamma: array<f32>;
@group(0) @binding(12) var<storage, read> beta: array<f32>;
@group(0) @binding(13) var<storage, read_write> y: array<f32>;
@group(0) @binding(14) var<storage, read_write> y4: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read> dy: array<f32>;
@group(0) @binding(16) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(17) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(18) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(19) var<storage, read_write> coef_out: array<f32>;
@group(0) @binding(20) var<storage, read> coef: array<f32>;
@group(0) @binding(21) var<storage, read_write> dx: array<f32>;
@group(0) @binding(22) var<storage, read_write> dx4: array<vec4<f32>>;

// Invocation i of a partial pass: i = (c * N + n) * runs + r, the r-th run of plane (n, c).
// Returns (channel, first element, length) of the run, or length 0 past the end.
fn run_of(i: u32) -> vec3<u32> {
    let partials = p.c * p.n * p.runs;
    if (i >= partials) { return vec3(0u, 0u, 0u); }
    let r = i % p.runs;
    let cn = i / p.runs;
    let n = cn % p.n;
    let c = cn / p.n;
    let start = r * RUN_LEN;
    let len = min(RUN_LEN, p.hw - start);
    return vec3(c, (n * p.c + c) * p.hw + start, len);
}

// ---------------------------------------------------------------- training forward

// part_a_out[i] = sum of x over run i.
@compute @workgroup_size(WG)
fn partial_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let run = run_of(i);
    if (run.z == 0u) { return; }
    let base = run.y;
    var total = 0.0;
    for (var b = 0u; b < run.z; b += BLOCK) {
        let end = min(b + BLOCK, run.z);
        var s = 0.0;
        for (var k = b; k < end; k++) {
            s += x[base + k];
        }
        total += s;
    }
    part_a_out[i] = total;
}

@compute @workgroup_size(WG)
fn partial_sum_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let run = run_of(i);
    if (run.z == 0u) { return; }
    let base = run.y / 4u;
    let len = run.z / 4u;
    let block = BLOCK / 4u;
    var total = 0.0;
    for (var b = 0u; b < len; b += block) {
        let end = min(b + block, len);
        var s = vec4(0.0);
        for (var k = b; k < end; k++) {
            s += x4[base + k];
        }
        total += (s.x + s.y) + (s.z + s.w);
    }
    part_a_out[i] = total;
}

// The blocked sum of channel c's N * runs partials in `part_a` (or `part_b`).
fn channel_sum_a(c: u32) -> f32 {
    let count = p.n * p.runs;
    let base = c * count;
    var total = 0.0;
    for (var b = 0u; b < count; b += BLOCK) {
        let end = min(b + BLOCK, count);
        var s = 0.0;
        for (var k = b; k < end; k++) {
            s += part_a[base + k];
        }
        total += s;
    }
    return total;
}

fn channel_sum_b(c: u32) -> f32 {
    let count = p.n * p.runs;
    let base = c * count;
    var total = 0.0;
    for (var b = 0u; b < count; b += BLOCK) {
        let end = min(b + BLOCK, count);
        var s = 0.0;
        for (var k = b; k < end; k++) {
            s += part_b[base + k];
        }
        total += s;
    }
    return total;
}

// stats_out[c] = hi, the mean's f32 part (one division of the f32 sum, one rounding).
@compute @workgroup_size(WG)
fn finish_mean(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat(gid, nwg);
    if (c >= p.c) { return; }
    stats_out[c] = channel_sum_a(c) / p.count;
}

// part_a_out[i] = sum of (x - hi)^2 over run i, part_b_out[i] = sum of (x - hi).
@compute @workgroup_size(WG)
fn partial_dev(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let run = run_of(i);
    if (run.z == 0u) { return; }
    let base = run.y;
    let mean = stats[run.x];
    var sq = 0.0;
    var dev = 0.0;
    for (var b = 0u; b < run.z; b += BLOCK) {
        let end = min(b + BLOCK, run.z);
        var s2 = 0.0;
        var s1 = 0.0;
        for (var k = b; k < end; k++) {
            let d = x[base + k] - mean;
            s2 += d * d;
            s1 += d;
        }
        sq += s2;
        dev += s1;
    }
    part_a_out[i] = sq;
    part_b_out[i] = dev;
}

@compute @workgroup_size(WG)
fn partial_dev_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let run = run_of(i);
    if (run.z == 0u) { return; }
    let base = run.y / 4u;
    let len = run.z / 4u;
    let block = BLOCK / 4u;
    let mean = vec4(stats[run.x]);
    var sq = 0.0;
    var dev = 0.0;
    for (var b = 0u; b < len; b += block) {
        let end = min(b + block, len);
        var s2 = vec4(0.0);
        var s1 = vec4(0.0);
        for (var k = b; k < end; k++) {
            let d = x4[base + k] - mean;
            s2 += d * d;
            s1 += d;
        }
        sq += (s2.x + s2.y) + (s2.z + s2.w);
        dev += (s1.x + s1.y) + (s1.z + s1.w);
    }
    part_a_out[i] = sq;
    part_b_out[i] = dev;
}

// stats_out[C + c] = biased var, [2C + c] = istd, [3C + c] = lo = S1 / M; the running
// statistics move (with the mean hi + lo). var = (S2 - S1^2 / M) / M: S1 is the sum of the
// deviations from hi, so the correction removes the first-order effect of hi's error.
@compute @workgroup_size(WG)
fn finish_var(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat(gid, nwg);
    if (c >= p.c) { return; }
    let s2 = channel_sum_a(c);
    let s1 = channel_sum_b(c);
    let var_b = max((s2 - s1 * (s1 / p.count)) / p.count, 0.0);
    let lo = s1 / p.count;
    let mean = stats_out[c] + lo;
    stats_out[p.c + c] = var_b;
    stats_out[2u * p.c + c] = 1.0 / sqrt(var_b + p.eps);
    stats_out[3u * p.c + c] = lo;
    let keep = 1.0 - p.momentum;
    running_mean[c] = keep * running_mean[c] + p.momentum * mean;
    running_var[c] = keep * running_var[c] + p.momentum * (var_b * p.unbias);
}

// y = ((x - hi) - lo) istd gamma + beta, with hi, istd, lo at stats[c], [2C + c], [3C + c]: the
// batch's (training) or the running statistics' (evaluation, from `eval_stats`, lo = 0).
@compute @workgroup_size(WG)
fn normalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.hw) { return; }
    let c = (i / p.hw) % p.c;
    y[i] = ((x[i] - stats[c]) - stats[3u * p.c + c]) * stats[2u * p.c + c] * gamma[c] + beta[c];
}

@compute @workgroup_size(WG)
fn normalize_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let q = p.hw / 4u;
    if (i >= p.n * p.c * q) { return; }
    let c = (i / q) % p.c;
    let d = (x4[i] - vec4(stats[c])) - vec4(stats[3u * p.c + c]);
    y4[i] = d * stats[2u * p.c + c] * gamma[c] + vec4(beta[c]);
}

// ---------------------------------------------------------------- evaluation

// stats_out = (running_mean, running_var, 1 / sqrt(running_var + eps), 0), for `normalize`.
@compute @workgroup_size(WG)
fn eval_stats(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat(gid, nwg);
    if (c >= p.c) { return; }
    let v = running_var[c];
    stats_out[c] = running_mean[c];
    stats_out[p.c + c] = v;
    stats_out[2u * p.c + c] = 1.0 / sqrt(v + p.eps);
    stats_out[3u * p.c + c] = 0.0;
}

// ---------------------------------------------------------------- backward

// part_a_out[i] = sum of dy over run i, part_b_out[i] = sum of dy xh, xh = ((x - hi) - lo) istd.
@compute @workgroup_size(WG)
fn backward_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let run = run_of(i);
    if (run.z == 0u) { return; }
    let base = run.y;
    let hi = stats[run.x];
    let lo = stats[3u * p.c + run.x];
    let istd = stats[2u * p.c + run.x];
    var sum_dy = 0.0;
    var sum_dyxh = 0.0;
    for (var b = 0u; b < run.z; b += BLOCK) {
        let end = min(b + BLOCK, run.z);
        var s1 = 0.0;
        var s2 = 0.0;
        for (var k = b; k < end; k++) {
            let g = dy[base + k];
            s1 += g;
            s2 += g * (((x[base + k] - hi) - lo) * istd);
        }
        sum_dy += s1;
        sum_dyxh += s2;
    }
    part_a_out[i] = sum_dy;
    part_b_out[i] = sum_dyxh;
}

@compute @workgroup_size(WG)
fn backward_partial_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let run = run_of(i);
    if (run.z == 0u) { return; }
    let base = run.y / 4u;
    let len = run.z / 4u;
    let block = BLOCK / 4u;
    let hi = vec4(stats[run.x]);
    let lo = vec4(stats[3u * p.c + run.x]);
    let istd = stats[2u * p.c + run.x];
    var sum_dy = 0.0;
    var sum_dyxh = 0.0;
    for (var b = 0u; b < len; b += block) {
        let end = min(b + block, len);
        var s1 = vec4(0.0);
        var s2 = vec4(0.0);
        for (var k = b; k < end; k++) {
            let g = dy4[base + k];
            s1 += g;
            s2 += g * (((x4[base + k] - hi) - lo) * istd);
        }
        sum_dy += (s1.x + s1.y) + (s1.z + s1.w);
        sum_dyxh += (s2.x + s2.y) + (s2.z + s2.w);
    }
    part_a_out[i] = sum_dy;
    part_b_out[i] = sum_dyxh;
}

// dbeta[c] = sum dy, dgamma[c] = sum dy xh (overwritten); coef_out = (dbeta / M, dgamma / M).
@compute @workgroup_size(WG)
fn backward_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat(gid, nwg);
    if (c >= p.c) { return; }
    let sum_dy = channel_sum_a(c);
    let sum_dyxh = channel_sum_b(c);
    dbeta[c] = sum_dy;
    dgamma[c] = sum_dyxh;
    coef_out[c] = sum_dy / p.count;
    coef_out[p.c + c] = sum_dyxh / p.count;
}

// dx = gamma istd (dy - dbeta / M - xh dgamma / M)
@compute @workgroup_size(WG)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.hw) { return; }
    let c = (i / p.hw) % p.c;
    let istd = stats[2u * p.c + c];
    let xh = ((x[i] - stats[c]) - stats[3u * p.c + c]) * istd;
    dx[i] = gamma[c] * istd * (dy[i] - coef[c] - xh * coef[p.c + c]);
}

@compute @workgroup_size(WG)
fn backward_input_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let q = p.hw / 4u;
    if (i >= p.n * p.c * q) { return; }
    let c = (i / q) % p.c;
    let istd = stats[2u * p.c + c];
    let xh = ((x4[i] - vec4(stats[c])) - vec4(stats[3u * p.c + c])) * istd;
    dx4[i] = gamma[c] * istd * (dy4[i] - vec4(coef[c]) - xh * coef[p.c + c]);
}
