//! Softmax + categorical cross-entropy over K classes, PyTorch's `CrossEntropyLoss(weight=...)`
//! semantics: `loss = sum_n w[y_n] * (-log p[n, y_n]) / sum_n w[y_n]` (the plain mean over the
//! batch when there are no weights).

/// The sizes: `n` rows of `k` logits.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub k: usize,
}

/// What the forward produces.
#[derive(Clone, Debug)]
pub struct Output {
    /// [n, k] softmax probabilities.
    pub probs: Vec<f64>,
    /// The (weighted) mean cross-entropy.
    pub loss: f64,
    /// Rows whose argmax (ties to the lowest class index) equals the label.
    pub correct: usize,
}

fn weight_of(weights: Option<&[f64]>, y: usize) -> f64 {
    weights.map_or(1.0, |w| w[y])
}

/// logits: [n, k], labels: [n] (each < k), weights: [k] -> probs [n, k], loss, correct.
/// Log-sum-exp is shifted by the row maximum, so |logits| of 1e4 neither overflow nor lose the
/// small losses of confidently right rows.
pub fn forward(logits: &[f64], labels: &[u32], weights: Option<&[f64]>, s: &Shape) -> Output {
    let mut probs = vec![0.0; s.n * s.k];
    let (mut num, mut den, mut correct) = (0.0, 0.0, 0);
    for n in 0..s.n {
        let row = &logits[n * s.k..(n + 1) * s.k];
        let y = labels[n] as usize;
        let mut arg = 0;
        for c in 1..s.k {
            if row[c] > row[arg] {
                arg = c;
            }
        }
        let m = row[arg];
        let sum: f64 = row.iter().map(|&z| (z - m).exp()).sum();
        for c in 0..s.k {
            probs[n * s.k + c] = (row[c] - m).exp() / sum;
        }
        // -log p_y = log(sum exp(z - m)) + m - z_y, with m - z_y >= 0 computed first.
        let w = weight_of(weights, y);
        num += w * ((m - row[y]) + sum.ln());
        den += w;
        correct += (arg == y) as usize;
    }
    Output {
        probs,
        loss: num / den,
        correct,
    }
}

/// probs: [n, k], labels: [n], weights: [k] -> dlogits: [n, k] of the loss above:
/// `w[y_n] * (p[n, c] - [c == y_n]) / sum_m w[y_m]`.
pub fn backward(probs: &[f64], labels: &[u32], weights: Option<&[f64]>, s: &Shape) -> Vec<f64> {
    let den: f64 = labels.iter().map(|&y| weight_of(weights, y as usize)).sum();
    let mut d = vec![0.0; s.n * s.k];
    for n in 0..s.n {
        let y = labels[n] as usize;
        let w = weight_of(weights, y);
        for c in 0..s.k {
            let onehot = if c == y { 1.0 } else { 0.0 };
            d[n * s.k + c] = w * (probs[n * s.k + c] - onehot) / den;
        }
    }
    d
}
