//! CBAM channel gate (Woo et al., ECCV 2018), as a plain composition of simple pieces:
//! `a = avgpool_hw(F)`, `m = maxpool_hw(F)`, `mlp(v) = fc2(relu(fc1(v)))`,
//! `M = sigmoid(mlp(a) + mlp(m))`, `F' = M * F` broadcast over H, W.
//!
//! Every piece has its own forward and backward, and the gate's backward is the chain rule over
//! them, so each piece can be read (and checked against finite differences) on its own.

/// The sizes of one channel gate; the MLP's hidden width is `max(1, c / 16)` (reduction 16).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    /// Hidden width of the shared MLP.
    pub fn hidden(&self) -> usize {
        (self.c / 16).max(1)
    }
    fn plane(&self) -> usize {
        self.h * self.w
    }
}

/// The four MLP parameters (or their gradients).
/// fc1_weight: [hidden, c], fc1_bias: [hidden], fc2_weight: [c, hidden], fc2_bias: [c]
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub fc1_weight: Vec<f64>,
    pub fc1_bias: Vec<f64>,
    pub fc2_weight: Vec<f64>,
    pub fc2_bias: Vec<f64>,
}

/// x: [n, c, h, w] -> [n, c], the mean of each plane.
pub fn avgpool_hw(x: &[f64], s: &Shape) -> Vec<f64> {
    let p = s.plane();
    (0..s.n * s.c)
        .map(|i| x[i * p..(i + 1) * p].iter().sum::<f64>() / p as f64)
        .collect()
}

/// x: [n, c, h, w] -> (max [n, c], argmax [n, c]): the maximum of each plane and the FIRST
/// row-major index holding it (PyTorch routes the gradient of a tie to the first maximum).
pub fn maxpool_hw(x: &[f64], s: &Shape) -> (Vec<f64>, Vec<usize>) {
    let p = s.plane();
    (0..s.n * s.c)
        .map(|i| {
            let plane = &x[i * p..(i + 1) * p];
            let mut best = 0;
            for (k, &v) in plane.iter().enumerate() {
                // Strictly greater: a later equal value never replaces the first maximum.
                if v > plane[best] {
                    best = k;
                }
            }
            (plane[best], best)
        })
        .unzip()
}

/// v: [rows, d_in], weight: [d_out, d_in], bias: [d_out] -> [rows, d_out]
pub fn linear(v: &[f64], weight: &[f64], bias: &[f64], d_in: usize, d_out: usize) -> Vec<f64> {
    let rows = v.len() / d_in;
    let mut y = vec![0.0; rows * d_out];
    for r in 0..rows {
        for o in 0..d_out {
            let mut acc = bias[o];
            for i in 0..d_in {
                acc += weight[o * d_in + i] * v[r * d_in + i];
            }
            y[r * d_out + o] = acc;
        }
    }
    y
}

/// dy: [rows, d_out], v: [rows, d_in], weight: [d_out, d_in]
/// -> (dv [rows, d_in], dweight [d_out, d_in], dbias [d_out]), weight gradients summed over rows.
pub fn linear_backward(
    dy: &[f64],
    v: &[f64],
    weight: &[f64],
    d_in: usize,
    d_out: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = v.len() / d_in;
    let mut dv = vec![0.0; rows * d_in];
    let mut dw = vec![0.0; d_out * d_in];
    let mut db = vec![0.0; d_out];
    for r in 0..rows {
        for o in 0..d_out {
            let g = dy[r * d_out + o];
            db[o] += g;
            for i in 0..d_in {
                dv[r * d_in + i] += g * weight[o * d_in + i];
                dw[o * d_in + i] += g * v[r * d_in + i];
            }
        }
    }
    (dv, dw, db)
}

pub fn relu(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| x.max(0.0)).collect()
}

/// dy, y = relu(x) (same shape) -> dx; the gradient at 0 is 0, as PyTorch's.
pub fn relu_backward(dy: &[f64], y: &[f64]) -> Vec<f64> {
    dy.iter()
        .zip(y)
        .map(|(&g, &v)| if v > 0.0 { g } else { 0.0 })
        .collect()
}

pub fn sigmoid(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect()
}

/// dy, y = sigmoid(x) -> dx = dy y (1 - y)
pub fn sigmoid_backward(dy: &[f64], y: &[f64]) -> Vec<f64> {
    dy.iter().zip(y).map(|(&g, &v)| g * v * (1.0 - v)).collect()
}

/// x: [n, c, h, w], gate: [n, c] -> [n, c, h, w], each plane times its gate value.
pub fn scale(x: &[f64], gate: &[f64], s: &Shape) -> Vec<f64> {
    let p = s.plane();
    x.iter()
        .enumerate()
        .map(|(k, &v)| v * gate[k / p])
        .collect()
}

/// dy, x: [n, c, h, w], gate: [n, c] -> (dx [n, c, h, w], dgate [n, c])
pub fn scale_backward(dy: &[f64], x: &[f64], gate: &[f64], s: &Shape) -> (Vec<f64>, Vec<f64>) {
    let p = s.plane();
    let dx = dy
        .iter()
        .enumerate()
        .map(|(k, &g)| g * gate[k / p])
        .collect();
    let dgate = (0..s.n * s.c)
        .map(|i| (i * p..(i + 1) * p).map(|k| dy[k] * x[k]).sum())
        .collect();
    (dx, dgate)
}

/// Everything the forward computes.
#[derive(Clone, Debug)]
pub struct Forward {
    /// F' = M * F: [n, c, h, w]
    pub y: Vec<f64>,
    /// M = sigmoid(mlp(avg) + mlp(max)): [n, c]
    pub gate: Vec<f64>,
    /// avgpool_hw(F): [n, c]
    pub avg: Vec<f64>,
    /// maxpool_hw(F): [n, c]
    pub max: Vec<f64>,
    /// The first row-major index of each plane's maximum: [n, c]
    pub argmax: Vec<usize>,
    /// relu(fc1(avg)), relu(fc1(max)): [n, hidden] each
    pub hidden_avg: Vec<f64>,
    pub hidden_max: Vec<f64>,
}

/// x: [n, c, h, w] -> [`Forward`]
pub fn forward(x: &[f64], p: &Mlp, s: &Shape) -> Forward {
    let (c, hid) = (s.c, s.hidden());
    let avg = avgpool_hw(x, s);
    let (max, argmax) = maxpool_hw(x, s);
    let hidden_avg = relu(&linear(&avg, &p.fc1_weight, &p.fc1_bias, c, hid));
    let hidden_max = relu(&linear(&max, &p.fc1_weight, &p.fc1_bias, c, hid));
    let out_avg = linear(&hidden_avg, &p.fc2_weight, &p.fc2_bias, hid, c);
    let out_max = linear(&hidden_max, &p.fc2_weight, &p.fc2_bias, hid, c);
    let z: Vec<f64> = out_avg.iter().zip(&out_max).map(|(a, b)| a + b).collect();
    let gate = sigmoid(&z);
    Forward {
        y: scale(x, &gate, s),
        gate,
        avg,
        max,
        argmax,
        hidden_avg,
        hidden_max,
    }
}

/// Gradients of the gate with respect to its input and parameters.
#[derive(Clone, Debug)]
pub struct Backward {
    /// [n, c, h, w]
    pub dx: Vec<f64>,
    pub dparams: Mlp,
}

/// x, dy: [n, c, h, w] -> [`Backward`] (the forward is recomputed from x).
pub fn backward(x: &[f64], p: &Mlp, dy: &[f64], s: &Shape) -> Backward {
    let (c, hid, plane) = (s.c, s.hidden(), s.plane());
    let f = forward(x, p, s);
    let (dx_scale, dgate) = scale_backward(dy, x, &f.gate, s);
    // z = out_avg + out_max, so both MLP outputs receive dz.
    let dz = sigmoid_backward(&dgate, &f.gate);
    let mut dparams = Mlp {
        fc1_weight: vec![0.0; hid * c],
        fc1_bias: vec![0.0; hid],
        fc2_weight: vec![0.0; c * hid],
        fc2_bias: vec![0.0; c],
    };
    let add = |acc: &mut Vec<f64>, v: &[f64]| acc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    // MLP backward through one branch: v (a pooled vector) -> dv, adding the weight gradients.
    let mut branch = |v: &[f64], hidden: &[f64]| -> Vec<f64> {
        let (dhidden, dw2, db2) = linear_backward(&dz, hidden, &p.fc2_weight, hid, c);
        let dpre = relu_backward(&dhidden, hidden);
        let (dv, dw1, db1) = linear_backward(&dpre, v, &p.fc1_weight, c, hid);
        add(&mut dparams.fc2_weight, &dw2);
        add(&mut dparams.fc2_bias, &db2);
        add(&mut dparams.fc1_weight, &dw1);
        add(&mut dparams.fc1_bias, &db1);
        dv
    };
    let davg = branch(&f.avg, &f.hidden_avg);
    let dmax = branch(&f.max, &f.hidden_max);
    // dF = dF' M + davg / (h w) everywhere + dmax at the first maximum of each plane.
    let mut dx = dx_scale;
    for i in 0..s.n * s.c {
        for d in &mut dx[i * plane..(i + 1) * plane] {
            *d += davg[i] / plane as f64;
        }
        dx[i * plane + f.argmax[i]] += dmax[i];
    }
    Backward { dx, dparams }
}
