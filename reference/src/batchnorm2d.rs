//! BatchNorm2d with PyTorch's semantics, `[n, c, h, w] -> [n, c, h, w]`, per channel over the
//! `m = n h w` values of `x[:, c, :, :]`:
//!
//! - training: `mean = sum x / m`, `var = sum (x - mean)^2 / m` (biased),
//!   `y = (x - mean) / sqrt(var + eps) * gamma + beta`; the running statistics move by
//!   `r = (1 - momentum) r + momentum s` with the batch mean and the UNBIASED variance
//!   `var * m / (m - 1)`;
//! - evaluation: the same normalisation with the running mean and variance in place of the
//!   batch's.
//!
//! Written as the formulas read, two passes over the data in f64, nothing clever.

/// PyTorch's default `eps`.
pub const EPS: f64 = 1e-5;
/// PyTorch's default `momentum` (the weight of the new batch in the running statistics).
pub const MOMENTUM: f64 = 0.1;

/// The sizes of one batch norm.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    /// Values per channel: `n h w`.
    pub fn count(&self) -> usize {
        self.n * self.h * self.w
    }
    /// The flat indices of channel `c`'s values, in (n, y, x) order.
    pub fn channel(&self, c: usize) -> impl Iterator<Item = usize> {
        let (plane, ch) = (self.h * self.w, self.c);
        (0..self.n).flat_map(move |n| (0..plane).map(move |k| (n * ch + c) * plane + k))
    }
}

/// What a training forward computes.
#[derive(Clone, Debug)]
pub struct Forward {
    /// [n, c, h, w]
    pub y: Vec<f64>,
    /// The batch mean, [c]
    pub mean: Vec<f64>,
    /// The batch's biased variance, [c]
    pub var: Vec<f64>,
    /// 1 / sqrt(var + eps), [c]
    pub inv_std: Vec<f64>,
}

/// Per channel: (mean, biased variance) of x [n, c, h, w], two passes.
pub fn batch_stats(x: &[f64], s: &Shape) -> (Vec<f64>, Vec<f64>) {
    let m = s.count() as f64;
    (0..s.c)
        .map(|c| {
            let mean = s.channel(c).map(|i| x[i]).sum::<f64>() / m;
            let var = s.channel(c).map(|i| (x[i] - mean).powi(2)).sum::<f64>() / m;
            (mean, var)
        })
        .unzip()
}

/// y = (x - mean) inv_std gamma + beta per channel.
fn normalize(
    x: &[f64],
    mean: &[f64],
    inv_std: &[f64],
    gamma: &[f64],
    beta: &[f64],
    s: &Shape,
) -> Vec<f64> {
    let plane = s.h * s.w;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane) % s.c;
            (v - mean[c]) * inv_std[c] * gamma[c] + beta[c]
        })
        .collect()
}

/// Training mode: x [n, c, h, w], gamma [c], beta [c] -> [`Forward`] (batch statistics).
pub fn forward_train(x: &[f64], gamma: &[f64], beta: &[f64], s: &Shape) -> Forward {
    let (mean, var) = batch_stats(x, s);
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
    Forward {
        y: normalize(x, &mean, &inv_std, gamma, beta, s),
        mean,
        var,
        inv_std,
    }
}

/// Evaluation mode: normalises with the running statistics instead of the batch's.
pub fn forward_eval(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
    s: &Shape,
) -> Vec<f64> {
    let inv_std: Vec<f64> = running_var.iter().map(|v| 1.0 / (v + EPS).sqrt()).collect();
    normalize(x, running_mean, &inv_std, gamma, beta, s)
}

/// The running statistics after one training forward `f`: (running_mean, running_var), each
/// `(1 - momentum) r + momentum s`, with the unbiased variance `var m / (m - 1)`.
pub fn update_running(
    running_mean: &[f64],
    running_var: &[f64],
    f: &Forward,
    s: &Shape,
) -> (Vec<f64>, Vec<f64>) {
    let m = s.count() as f64;
    let mean = running_mean
        .iter()
        .zip(&f.mean)
        .map(|(r, b)| (1.0 - MOMENTUM) * r + MOMENTUM * b)
        .collect();
    let var = running_var
        .iter()
        .zip(&f.var)
        .map(|(r, v)| (1.0 - MOMENTUM) * r + MOMENTUM * v * m / (m - 1.0))
        .collect();
    (mean, var)
}

/// Gradients of a training-mode forward.
#[derive(Clone, Debug)]
pub struct Backward {
    /// [n, c, h, w]
    pub dx: Vec<f64>,
    /// [c]
    pub dgamma: Vec<f64>,
    /// [c]
    pub dbeta: Vec<f64>,
}

/// dy, x: [n, c, h, w], gamma [c] -> [`Backward`] of the training-mode forward (the batch
/// statistics are recomputed from x, and the gradient flows through them).
///
/// With `xh = (x - mean) inv_std` and sums over a channel's m values:
/// `dbeta = sum dy`, `dgamma = sum dy xh`, and, because mean and var depend on every x,
/// `dx = gamma inv_std (dy - sum dy / m - xh sum(dy xh) / m)`
/// (derived in docs/kernels/batchnorm2d.md, checked against finite differences in the tests).
pub fn backward(dy: &[f64], x: &[f64], gamma: &[f64], s: &Shape) -> Backward {
    let m = s.count() as f64;
    let (mean, var) = batch_stats(x, s);
    let mut dx = vec![0.0; x.len()];
    let mut dgamma = vec![0.0; s.c];
    let mut dbeta = vec![0.0; s.c];
    for c in 0..s.c {
        let inv_std = 1.0 / (var[c] + EPS).sqrt();
        let xh = |i: usize| (x[i] - mean[c]) * inv_std;
        dbeta[c] = s.channel(c).map(|i| dy[i]).sum();
        dgamma[c] = s.channel(c).map(|i| dy[i] * xh(i)).sum();
        for i in s.channel(c) {
            dx[i] = gamma[c] * inv_std * (dy[i] - dbeta[c] / m - xh(i) * dgamma[c] / m);
        }
    }
    Backward { dx, dgamma, dbeta }
}
