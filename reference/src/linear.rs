//! Fully connected layer with PyTorch's layout: weight `[out, in]`, bias `[out]`, y = x W^T + b.

/// The sizes of one linear layer applied to a batch.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub in_features: usize,
    pub out_features: usize,
}

/// x: [n, in], weight: [out, in], bias: [out] -> y: [n, out]
pub fn forward(x: &[f64], weight: &[f64], bias: Option<&[f64]>, s: &Shape) -> Vec<f64> {
    let (ni, no) = (s.in_features, s.out_features);
    let mut y = vec![0.0; s.n * no];
    for n in 0..s.n {
        for o in 0..no {
            let mut acc = bias.map_or(0.0, |b| b[o]);
            for i in 0..ni {
                acc += x[n * ni + i] * weight[o * ni + i];
            }
            y[n * no + o] = acc;
        }
    }
    y
}

/// dy: [n, out], weight: [out, in] -> dx: [n, in]  (dx = dy W)
pub fn backward_input(dy: &[f64], weight: &[f64], s: &Shape) -> Vec<f64> {
    let (ni, no) = (s.in_features, s.out_features);
    let mut dx = vec![0.0; s.n * ni];
    for n in 0..s.n {
        for o in 0..no {
            let g = dy[n * no + o];
            for i in 0..ni {
                dx[n * ni + i] += g * weight[o * ni + i];
            }
        }
    }
    dx
}

/// dy: [n, out], x: [n, in] -> dweight: [out, in]  (dW = dy^T x, summed over the batch)
pub fn backward_weight(dy: &[f64], x: &[f64], s: &Shape) -> Vec<f64> {
    let (ni, no) = (s.in_features, s.out_features);
    let mut dw = vec![0.0; no * ni];
    for n in 0..s.n {
        for o in 0..no {
            let g = dy[n * no + o];
            for i in 0..ni {
                dw[o * ni + i] += g * x[n * ni + i];
            }
        }
    }
    dw
}

/// dy: [n, out] -> dbias: [out]  (sum over the batch)
pub fn backward_bias(dy: &[f64], s: &Shape) -> Vec<f64> {
    let no = s.out_features;
    let mut db = vec![0.0; no];
    for n in 0..s.n {
        for (o, d) in db.iter_mut().enumerate() {
            *d += dy[n * no + o];
        }
    }
    db
}
