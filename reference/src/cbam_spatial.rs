//! CBAM spatial gate (Woo et al. 2018) on F' `[n, c, h, w]`:
//! `s = concat([max over c, mean over c])` `[n, 2, h, w]` (max first), `z = conv7x7(s) + bias`
//! `[n, 1, h, w]` (2 -> 1 channels, zero padding 3), `M_s = sigmoid(z)`, `F'' = M_s * F'`.
//!
//! The channel max's gradient goes to the FIRST maximal channel (PyTorch's rule), so the forward
//! also returns that channel's index for each position.

use crate::conv2d;

/// Side of the gate's square convolution kernel.
pub const K: usize = 7;
/// Zero padding of the gate's convolution (keeps h x w).
pub const PAD: usize = 3;

/// The sizes of one gate.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    /// The convolution `s [n, 2, h, w] -> z [n, 1, h, w]`, weight `[1, 2, 7, 7]`, bias `[1]`.
    pub fn conv(&self) -> conv2d::Shape {
        conv2d::Shape {
            n: self.n,
            c_in: 2,
            c_out: 1,
            h: self.h,
            w: self.w,
            k: K,
            pad: PAD,
        }
    }
}

/// x: [n, c, h, w] -> (s: [n, 2, h, w] with s[:, 0] the max over c and s[:, 1] the mean,
/// argmax: [n, h, w] the first channel holding the max).
pub fn channel_pool(x: &[f64], s: &Shape) -> (Vec<f64>, Vec<usize>) {
    let plane = s.h * s.w;
    let mut pooled = vec![0.0; s.n * 2 * plane];
    let mut argmax = vec![0; s.n * plane];
    for n in 0..s.n {
        for p in 0..plane {
            let at = |c: usize| x[(n * s.c + c) * plane + p];
            let (mut best, mut best_c, mut sum) = (at(0), 0, 0.0);
            for c in 0..s.c {
                // Strictly greater: a later channel equal to the max does not take it over.
                if at(c) > best {
                    best = at(c);
                    best_c = c;
                }
                sum += at(c);
            }
            pooled[(n * 2) * plane + p] = best;
            pooled[(n * 2 + 1) * plane + p] = sum / s.c as f64;
            argmax[n * plane + p] = best_c;
        }
    }
    (pooled, argmax)
}

/// Element-wise logistic function.
pub fn sigmoid(z: &[f64]) -> Vec<f64> {
    z.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
}

/// x: [n, c, h, w], m: [n, 1, h, w] -> y: [n, c, h, w], y = m * x broadcast over c.
pub fn gate(x: &[f64], m: &[f64], s: &Shape) -> Vec<f64> {
    let plane = s.h * s.w;
    let mut y = vec![0.0; x.len()];
    for n in 0..s.n {
        for c in 0..s.c {
            for p in 0..plane {
                let i = (n * s.c + c) * plane + p;
                y[i] = m[n * plane + p] * x[i];
            }
        }
    }
    y
}

/// Everything the forward computes; `pooled`, `argmax` and `m` are what the backward needs.
#[derive(Clone, Debug)]
pub struct Forward {
    /// [n, 2, h, w]: max over c, then mean over c.
    pub pooled: Vec<f64>,
    /// [n, h, w]: first channel holding the max.
    pub argmax: Vec<usize>,
    /// [n, 1, h, w]: the convolution's output, before the sigmoid.
    pub z: Vec<f64>,
    /// [n, 1, h, w]: M_s = sigmoid(z).
    pub m: Vec<f64>,
    /// [n, c, h, w]: F'' = M_s * F'.
    pub y: Vec<f64>,
}

/// x: [n, c, h, w], weight: [1, 2, 7, 7], bias: [1] -> [`Forward`].
pub fn forward(x: &[f64], weight: &[f64], bias: &[f64], s: &Shape) -> Forward {
    let (pooled, argmax) = channel_pool(x, s);
    let z = conv2d::forward(&pooled, weight, Some(bias), &s.conv());
    let m = sigmoid(&z);
    let y = gate(x, &m, s);
    Forward {
        pooled,
        argmax,
        z,
        m,
        y,
    }
}

/// dy: [n, c, h, w], x: [n, c, h, w], m: [n, 1, h, w] -> dz: [n, 1, h, w], with
/// dM_s = sum over c of dy * x and dz = dM_s * M_s (1 - M_s).
pub fn backward_gate(dy: &[f64], x: &[f64], m: &[f64], s: &Shape) -> Vec<f64> {
    let plane = s.h * s.w;
    let mut dz = vec![0.0; s.n * plane];
    for n in 0..s.n {
        for p in 0..plane {
            let mut dm = 0.0;
            for c in 0..s.c {
                let i = (n * s.c + c) * plane + p;
                dm += dy[i] * x[i];
            }
            let mp = m[n * plane + p];
            dz[n * plane + p] = dm * mp * (1.0 - mp);
        }
    }
    dz
}

/// dy: [n, c, h, w], m: [n, 1, h, w], ds: [n, 2, h, w], argmax: [n, h, w] -> dx: [n, c, h, w].
/// The direct path through the scaling plus the two pooling paths: the max's gradient to the
/// first maximal channel only, the mean's spread evenly over the c channels.
pub fn backward_input(dy: &[f64], m: &[f64], ds: &[f64], argmax: &[usize], s: &Shape) -> Vec<f64> {
    let plane = s.h * s.w;
    let mut dx = vec![0.0; dy.len()];
    for n in 0..s.n {
        for c in 0..s.c {
            for p in 0..plane {
                let i = (n * s.c + c) * plane + p;
                let mut g = dy[i] * m[n * plane + p];
                if argmax[n * plane + p] == c {
                    g += ds[(n * 2) * plane + p];
                }
                g += ds[(n * 2 + 1) * plane + p] / s.c as f64;
                dx[i] = g;
            }
        }
    }
    dx
}

/// Every gradient of the gate, and the intermediate ones the GPU also exposes.
#[derive(Clone, Debug)]
pub struct Gradients {
    /// [n, 1, h, w]: gradient at the convolution's output.
    pub dz: Vec<f64>,
    /// [n, 2, h, w]: gradient at the pooled map.
    pub ds: Vec<f64>,
    /// [n, c, h, w]
    pub dx: Vec<f64>,
    /// [1, 2, 7, 7]
    pub dweight: Vec<f64>,
    /// [1]
    pub dbias: Vec<f64>,
}

/// dy: [n, c, h, w], x: [n, c, h, w], weight: [1, 2, 7, 7], the forward's results -> [`Gradients`].
pub fn backward(dy: &[f64], x: &[f64], weight: &[f64], fwd: &Forward, s: &Shape) -> Gradients {
    let cs = s.conv();
    let dz = backward_gate(dy, x, &fwd.m, s);
    let ds = conv2d::backward_input(&dz, weight, &cs);
    let dweight = conv2d::backward_weight(&dz, &fwd.pooled, &cs);
    let dbias = conv2d::backward_bias(&dz, &cs);
    let dx = backward_input(dy, &fwd.m, &ds, &fwd.argmax, s);
    Gradients {
        dz,
        ds,
        dx,
        dweight,
        dbias,
    }
}
