//! 2-D convolution (cross-correlation, as PyTorch), stride 1, zero padding, square kernel.

/// The sizes of one convolution; outputs are `(h + 2 pad - k + 1) x (w + 2 pad - k + 1)`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub pad: usize,
}

impl Shape {
    pub fn h_out(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }
    pub fn w_out(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }
    /// The input pixel that output (oy, ox) reads through tap (ky, kx), if not padding.
    fn tap(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy + ky).checked_sub(self.pad)?;
        let ix = (ox + kx).checked_sub(self.pad)?;
        (iy < self.h && ix < self.w).then_some((iy, ix))
    }
}

/// x: [n, c_in, h, w], weight: [c_out, c_in, k, k], bias: [c_out] -> y: [n, c_out, h_out, w_out]
pub fn forward(x: &[f64], weight: &[f64], bias: Option<&[f64]>, s: &Shape) -> Vec<f64> {
    let (ho, wo) = (s.h_out(), s.w_out());
    let mut y = vec![0.0; s.n * s.c_out * ho * wo];
    for n in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |b| b[co]);
                    for ci in 0..s.c_in {
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                                    acc += x[((n * s.c_in + ci) * s.h + iy) * s.w + ix]
                                        * weight[((co * s.c_in + ci) * s.k + ky) * s.k + kx];
                                }
                            }
                        }
                    }
                    y[((n * s.c_out + co) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    y
}

/// dy: [n, c_out, h_out, w_out], weight: [c_out, c_in, k, k] -> dx: [n, c_in, h, w]
pub fn backward_input(dy: &[f64], weight: &[f64], s: &Shape) -> Vec<f64> {
    let (ho, wo) = (s.h_out(), s.w_out());
    let mut dx = vec![0.0; s.n * s.c_in * s.h * s.w];
    // Scatter each output gradient back through the taps it was computed from.
    for n in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let g = dy[((n * s.c_out + co) * ho + oy) * wo + ox];
                    for ci in 0..s.c_in {
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                                    dx[((n * s.c_in + ci) * s.h + iy) * s.w + ix] +=
                                        g * weight[((co * s.c_in + ci) * s.k + ky) * s.k + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    dx
}

/// dy: [n, c_out, h_out, w_out], x: [n, c_in, h, w] -> dweight: [c_out, c_in, k, k]
pub fn backward_weight(dy: &[f64], x: &[f64], s: &Shape) -> Vec<f64> {
    let (ho, wo) = (s.h_out(), s.w_out());
    let mut dw = vec![0.0; s.c_out * s.c_in * s.k * s.k];
    for n in 0..s.n {
        for co in 0..s.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let g = dy[((n * s.c_out + co) * ho + oy) * wo + ox];
                    for ci in 0..s.c_in {
                        for ky in 0..s.k {
                            for kx in 0..s.k {
                                if let Some((iy, ix)) = s.tap(oy, ox, ky, kx) {
                                    dw[((co * s.c_in + ci) * s.k + ky) * s.k + kx] +=
                                        g * x[((n * s.c_in + ci) * s.h + iy) * s.w + ix];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    dw
}

/// dy: [n, c_out, h_out, w_out] -> dbias: [c_out]
pub fn backward_bias(dy: &[f64], s: &Shape) -> Vec<f64> {
    let plane = s.h_out() * s.w_out();
    let mut db = vec![0.0; s.c_out];
    for n in 0..s.n {
        for (co, d) in db.iter_mut().enumerate() {
            let base = (n * s.c_out + co) * plane;
            *d += dy[base..base + plane].iter().sum::<f64>();
        }
    }
    db
}
