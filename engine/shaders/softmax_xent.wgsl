// Softmax + cross-entropy over K classes with PyTorch's CrossEntropyLoss(weight=...) semantics:
// loss = sum_n w[y_n] * (-log softmax(z_n)[y_n]) / sum_n w[y_n] (w = 1 without weights).
// Layouts: logits [N, K], labels [N] (u32), weights [K], probs [N, K], loss [1], correct [1]
// (the number of rows whose argmax, ties to the lowest class index, equals the label, stored as
// f32: exact up to 2^24 rows), dlogits [N, K].
//
// Deterministic: every sum runs in a fixed ascending order and there are no atomics.
// A row whose label is >= K makes the loss (forward) and that row's dlogits (backward) NaN, so a
// bad label cannot train silently; the NaN comes from the uniform (`nan_bits`) because WGSL
// constant expressions may not produce NaN.

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> weights: array<f32>;
@group(0) @binding(4) var<storage, read_write> probs: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> correct: array<f32>;
@group(0) @binding(7) var<storage, read> probs_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> dlogits: array<f32>;

fn class_weight(y: u32) -> f32 {
    if (p.has_weights != 0u) { return weights[y]; }
    return 1.0;
}

// One invocation does the whole batch, rows in order, so the batch sums need no second pass and
// no atomics. The work is O(N K) exps (448 at the network's 64 x 7): a few microseconds, and still
// negligible for N up to a few hundred; a much larger N wants a per-row pass plus a reduction.
@compute @workgroup_size(1)
fn forward() {
    var num = 0.0;
    var den = 0.0;
    var hits = 0u;
    var bad = false;
    for (var n = 0u; n < p.n; n++) {
        let base = n * p.k;
        // Row maximum, first index on ties (strict >): the shift for log-sum-exp and the argmax.
        var m = logits[base];
        var arg = 0u;
        for (var c = 1u; c < p.k; c++) {
            let z = logits[base + c];
            if (z > m) { m = z; arg = c; }
        }
        var s = 0.0;
        for (var c = 0u; c < p.k; c++) {
            let e = exp(logits[base + c] - m);
            probs[base + c] = e;
            s += e;
        }
        for (var c = 0u; c < p.k; c++) {
            probs[base + c] = probs[base + c] / s;
        }
        let y = labels[n];
        if (y >= p.k) { bad = true; continue; }
        // -log p_y = (m - z_y) + log(s): m - z_y >= 0 is formed first, so a confidently right row
        // keeps its small loss log(s) instead of losing it in (m + log s) - z_y at |z| ~ 1e4.
        let w = class_weight(y);
        num += w * ((m - logits[base + y]) + log(s));
        den += w;
        hits += u32(arg == y);
    }
    loss[0] = select(num / den, bitcast<f32>(p.nan_bits), bad);
    correct[0] = f32(hits);
}

// dlogits[n, c] = w[y_n] * (p[n, c] - [c == y_n]) / sum_m w[y_m], one element per invocation.
// With weights the denominator is re-summed per invocation in the forward's order (O(N) reads,
// 64 at the network's batch) rather than kept in hidden state between the two passes.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.k) { return; }
    let c = i % p.k;
    let n = i / p.k;
    let y = labels[n];
    if (y >= p.k) {
        dlogits[i] = bitcast<f32>(p.nan_bits);
        return;
    }
    var den = f32(p.n);
    if (p.has_weights != 0u) {
        den = 0.0;
        for (var m = 0u; m < p.n; m++) {
            let ym = labels[m];
            // Rows with a bad label were left out of the forward's sum too.
            if (ym < p.k) { den += weights[ym]; }
        }
    }
    let onehot = select(0.0, 1.0, c == y);
    dlogits[i] = class_weight(y) * (probs_in[i] - onehot) / den;
}
