//! Winograd's minimal filtering for 3x3 convolutions, F(m x m, 3 x 3) with m = 2 or 4, in f64:
//! the algorithm the v3 conv2d kernels run, written as plain loops over tiles.
//!
//! One m x m tile of outputs Y is computed from the (m + 2) x (m + 2) input patch d under it and
//! the 3 x 3 filter g as
//!
//! ```text
//! Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A
//! ```
//!
//! (⊙: element-wise product). Summed over input channels, the element-wise products become
//! (m + 2)^2 independent matrix products: that is the GEMM of the GPU version. The derivation
//! of the matrices and of the two backward passes is in docs/kernels/conv2d_winograd.md.
//!
//! The `*_abs` functions run the same algorithm with every matrix entry and every input replaced
//! by its magnitude: per output, the sum of the magnitudes of all the products Winograd's
//! transforms and matrix product add up, cancellations ignored. That plays the part `sum |x w|`
//! plays for the direct convolution in the rounding-error model (reference/src/check.rs), and it
//! is larger (the transforms add and subtract), which is why Winograd's f32 error is.

use crate::conv2d::Shape;

/// The three matrices of F(m x m, 3 x 3), row-major: `bt` (a x a), `g` (a x 3), `at` (m x a),
/// with a = m + 2.
#[derive(Clone, Debug)]
pub struct Transforms {
    pub m: usize,
    pub a: usize,
    pub bt: Vec<f64>,
    pub g: Vec<f64>,
    pub at: Vec<f64>,
}

/// The transforms of Lavin and Gray (2016): F(2x2, 3x3) from the interpolation points 0, 1, -1
/// and infinity; F(4x4, 3x3) from 0, 1, -1, 2, -2 and infinity.
pub fn transforms(m: usize) -> Transforms {
    match m {
        2 => Transforms {
            m,
            a: 4,
            #[rustfmt::skip]
            bt: vec![
                1.0,  0.0, -1.0,  0.0,
                0.0,  1.0,  1.0,  0.0,
                0.0, -1.0,  1.0,  0.0,
                0.0,  1.0,  0.0, -1.0,
            ],
            #[rustfmt::skip]
            g: vec![
                1.0,  0.0, 0.0,
                0.5,  0.5, 0.5,
                0.5, -0.5, 0.5,
                0.0,  0.0, 1.0,
            ],
            #[rustfmt::skip]
            at: vec![
                1.0, 1.0,  1.0,  0.0,
                0.0, 1.0, -1.0, -1.0,
            ],
        },
        4 => Transforms {
            m,
            a: 6,
            #[rustfmt::skip]
            bt: vec![
                4.0,  0.0, -5.0,  0.0, 1.0, 0.0,
                0.0, -4.0, -4.0,  1.0, 1.0, 0.0,
                0.0,  4.0, -4.0, -1.0, 1.0, 0.0,
                0.0, -2.0, -1.0,  2.0, 1.0, 0.0,
                0.0,  2.0, -1.0, -2.0, 1.0, 0.0,
                0.0,  4.0,  0.0, -5.0, 0.0, 1.0,
            ],
            #[rustfmt::skip]
            g: vec![
                 1.0 / 4.0,   0.0,         0.0,
                -1.0 / 6.0,  -1.0 / 6.0,  -1.0 / 6.0,
                -1.0 / 6.0,   1.0 / 6.0,  -1.0 / 6.0,
                 1.0 / 24.0,  1.0 / 12.0,  1.0 / 6.0,
                 1.0 / 24.0, -1.0 / 12.0,  1.0 / 6.0,
                 0.0,         0.0,         1.0,
            ],
            #[rustfmt::skip]
            at: vec![
                1.0, 1.0,  1.0, 1.0,  1.0, 0.0,
                0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
                0.0, 1.0,  1.0, 4.0,  4.0, 0.0,
                0.0, 1.0, -1.0, 8.0, -8.0, 1.0,
            ],
        },
        _ => panic!("F({m}x{m}, 3x3) is not implemented (m = 2 or 4)"),
    }
}

/// `l r` for row-major `l` (p x q) and `r` (q x s).
fn matmul(l: &[f64], r: &[f64], p: usize, q: usize, s: usize) -> Vec<f64> {
    let mut out = vec![0.0; p * s];
    for i in 0..p {
        for j in 0..s {
            out[i * s + j] = (0..q).map(|k| l[i * q + k] * r[k * s + j]).sum();
        }
    }
    out
}

fn transpose(m: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; m.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = m[i * cols + j];
        }
    }
    t
}

impl Transforms {
    /// The same transforms with every entry replaced by its magnitude.
    pub fn abs(&self) -> Transforms {
        let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect();
        Transforms {
            m: self.m,
            a: self.a,
            bt: abs(&self.bt),
            g: abs(&self.g),
            at: abs(&self.at),
        }
    }

    /// U = G g G^T (a x a) of a 3 x 3 filter.
    pub fn filter(&self, g: &[f64]) -> Vec<f64> {
        let gg = matmul(&self.g, g, self.a, 3, 3);
        matmul(&gg, &transpose(&self.g, self.a, 3), self.a, 3, self.a)
    }
    /// V = B^T d B (a x a) of an a x a input patch.
    pub fn input(&self, d: &[f64]) -> Vec<f64> {
        let a = self.a;
        let bd = matmul(&self.bt, d, a, a, a);
        matmul(&bd, &transpose(&self.bt, a, a), a, a, a)
    }
    /// Y = A^T M A (m x m) of an a x a product.
    pub fn output(&self, prod: &[f64]) -> Vec<f64> {
        let (a, m) = (self.a, self.m);
        let am = matmul(&self.at, prod, m, a, a);
        matmul(&am, &transpose(&self.at, m, a), m, a, m)
    }
    /// Z = A dY A^T (a x a) of an m x m tile of output gradients.
    pub fn output_grad(&self, dy: &[f64]) -> Vec<f64> {
        let (a, m) = (self.a, self.m);
        let ad = matmul(&transpose(&self.at, m, a), dy, a, m, m);
        matmul(&ad, &self.at, a, m, a)
    }
    /// dg = G^T S G (3 x 3) of an a x a sum of products.
    pub fn filter_grad(&self, s: &[f64]) -> Vec<f64> {
        let a = self.a;
        let gs = matmul(&transpose(&self.g, a, 3), s, 3, a, a);
        matmul(&gs, &self.g, 3, a, 3)
    }
}

/// The shapes F(m x m, 3 x 3) runs: 3 x 3 kernels with padding 0, 1 or 2 (the input gradient is
/// then a convolution with padding 2 - pad).
pub fn supports(s: &Shape) -> bool {
    s.k == 3 && s.pad <= 2
}

/// The a x a patch of plane `plane` (h x w) whose top-left pixel is (y0, x0), zero outside.
fn patch(plane: &[f64], h: usize, w: usize, y0: isize, x0: isize, a: usize) -> Vec<f64> {
    let mut d = vec![0.0; a * a];
    for i in 0..a {
        for j in 0..a {
            let (y, x) = (y0 + i as isize, x0 + j as isize);
            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                d[i * a + j] = plane[y as usize * w + x as usize];
            }
        }
    }
    d
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// x: [n, c_in, h, w], weight: [c_out, c_in, 3, 3], bias: [c_out] -> y: [n, c_out, h_out, w_out],
/// the convolution by F(m x m, 3 x 3).
pub fn forward(x: &[f64], weight: &[f64], bias: Option<&[f64]>, s: &Shape, m: usize) -> Vec<f64> {
    forward_with(x, weight, bias, s, &transforms(m))
}

/// [`forward`]'s magnitudes: the same sums with |x|, |weight|, |bias| and |matrices|.
pub fn forward_abs(
    x: &[f64],
    weight: &[f64],
    bias: Option<&[f64]>,
    s: &Shape,
    m: usize,
) -> Vec<f64> {
    let b = bias.map(abs);
    forward_with(&abs(x), &abs(weight), b.as_deref(), s, &transforms(m).abs())
}

fn forward_with(
    x: &[f64],
    weight: &[f64],
    bias: Option<&[f64]>,
    s: &Shape,
    t: &Transforms,
) -> Vec<f64> {
    assert!(
        supports(s),
        "Winograd F(m, 3) needs a 3x3 kernel, padding <= 2: {s:?}"
    );
    let (m, a) = (t.m, t.a);
    let (ho, wo) = (s.h_out(), s.w_out());
    let (th, tw) = (ho.div_ceil(m), wo.div_ceil(m));
    // u[co][ci]: each a x a.
    let u: Vec<Vec<f64>> = (0..s.c_out * s.c_in)
        .map(|i| t.filter(&weight[i * 9..(i + 1) * 9]))
        .collect();
    let mut y = vec![0.0; s.n * s.c_out * ho * wo];
    for n in 0..s.n {
        for ty in 0..th {
            for tx in 0..tw {
                let (y0, x0) = (
                    (m * ty) as isize - s.pad as isize,
                    (m * tx) as isize - s.pad as isize,
                );
                let v: Vec<Vec<f64>> = (0..s.c_in)
                    .map(|ci| {
                        let plane = &x[(n * s.c_in + ci) * s.h * s.w..][..s.h * s.w];
                        t.input(&patch(plane, s.h, s.w, y0, x0, a))
                    })
                    .collect();
                for co in 0..s.c_out {
                    let mut prod = vec![0.0; a * a];
                    for ci in 0..s.c_in {
                        let uc = &u[co * s.c_in + ci];
                        for e in 0..a * a {
                            prod[e] += uc[e] * v[ci][e];
                        }
                    }
                    let tile = t.output(&prod);
                    let b = bias.map_or(0.0, |b| b[co]);
                    for i in 0..m {
                        for j in 0..m {
                            let (oy, ox) = (m * ty + i, m * tx + j);
                            if oy < ho && ox < wo {
                                y[((n * s.c_out + co) * ho + oy) * wo + ox] = tile[i * m + j] + b;
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

/// The input gradient's convolution: dy as the input (c_out channels, h_out x w_out), padding
/// 2 - pad, giving h x w outputs.
pub fn backward_input_shape(s: &Shape) -> Shape {
    Shape {
        n: s.n,
        c_in: s.c_out,
        c_out: s.c_in,
        h: s.h_out(),
        w: s.w_out(),
        k: 3,
        pad: 2 - s.pad,
    }
}

/// weight [c_out, c_in, 3, 3] -> [c_in, c_out, 3, 3] turned by 180 degrees: the filter whose
/// convolution of dy is dx.
pub fn flipped(weight: &[f64], s: &Shape) -> Vec<f64> {
    let mut f = vec![0.0; weight.len()];
    for co in 0..s.c_out {
        for ci in 0..s.c_in {
            for k in 0..9 {
                f[(ci * s.c_out + co) * 9 + 8 - k] = weight[(co * s.c_in + ci) * 9 + k];
            }
        }
    }
    f
}

/// dy: [n, c_out, h_out, w_out] -> dx: [n, c_in, h, w]: [`forward`] of dy with the flipped
/// filter.
pub fn backward_input(dy: &[f64], weight: &[f64], s: &Shape, m: usize) -> Vec<f64> {
    forward(dy, &flipped(weight, s), None, &backward_input_shape(s), m)
}

/// [`backward_input`]'s magnitudes.
pub fn backward_input_abs(dy: &[f64], weight: &[f64], s: &Shape, m: usize) -> Vec<f64> {
    forward_abs(dy, &flipped(weight, s), None, &backward_input_shape(s), m)
}

/// dy: [n, c_out, h_out, w_out], x: [n, c_in, h, w] -> dweight [c_out, c_in, 3, 3]:
/// dg = G^T [ sum over tiles of (A dY A^T) ⊙ (B^T d B) ] G.
pub fn backward_weight(dy: &[f64], x: &[f64], s: &Shape, m: usize) -> Vec<f64> {
    backward_weight_with(dy, x, s, &transforms(m))
}

/// [`backward_weight`]'s magnitudes.
pub fn backward_weight_abs(dy: &[f64], x: &[f64], s: &Shape, m: usize) -> Vec<f64> {
    backward_weight_with(&abs(dy), &abs(x), s, &transforms(m).abs())
}

fn backward_weight_with(dy: &[f64], x: &[f64], s: &Shape, t: &Transforms) -> Vec<f64> {
    assert!(
        supports(s),
        "Winograd F(m, 3) needs a 3x3 kernel, padding <= 2: {s:?}"
    );
    let (m, a) = (t.m, t.a);
    let (ho, wo) = (s.h_out(), s.w_out());
    let (th, tw) = (ho.div_ceil(m), wo.div_ceil(m));
    let mut sum = vec![vec![0.0; a * a]; s.c_out * s.c_in];
    for n in 0..s.n {
        for ty in 0..th {
            for tx in 0..tw {
                let (y0, x0) = (
                    (m * ty) as isize - s.pad as isize,
                    (m * tx) as isize - s.pad as isize,
                );
                let v: Vec<Vec<f64>> = (0..s.c_in)
                    .map(|ci| {
                        let plane = &x[(n * s.c_in + ci) * s.h * s.w..][..s.h * s.w];
                        t.input(&patch(plane, s.h, s.w, y0, x0, a))
                    })
                    .collect();
                for co in 0..s.c_out {
                    let plane = &dy[(n * s.c_out + co) * ho * wo..][..ho * wo];
                    let dy_tile = patch(plane, ho, wo, (m * ty) as isize, (m * tx) as isize, m);
                    let z = t.output_grad(&dy_tile);
                    for ci in 0..s.c_in {
                        let acc = &mut sum[co * s.c_in + ci];
                        for e in 0..a * a {
                            acc[e] += z[e] * v[ci][e];
                        }
                    }
                }
            }
        }
    }
    sum.iter().flat_map(|s| t.filter_grad(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv2d;

    fn data(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|j| (((j + seed) * 7919) % 1000) as f64 / 1000.0 - 0.5)
            .collect()
    }

    /// The transforms compute the convolution exactly (to f64 rounding) at odd sizes that leave
    /// partial tiles, every supported padding, both tile sizes and all three passes.
    #[test]
    fn winograd_equals_the_direct_convolution() {
        for m in [2, 4] {
            for (h, w, pad) in [(5, 7, 1), (4, 4, 0), (6, 3, 2), (9, 10, 1)] {
                let s = Shape {
                    n: 2,
                    c_in: 3,
                    c_out: 2,
                    h,
                    w,
                    k: 3,
                    pad,
                };
                let x = data(s.n * s.c_in * h * w, 1);
                let wt = data(s.c_out * s.c_in * 9, 2);
                let b = data(s.c_out, 3);
                let dy = data(s.n * s.c_out * s.h_out() * s.w_out(), 4);
                let close = |what: &str, got: &[f64], want: &[f64]| {
                    assert_eq!(got.len(), want.len(), "{what}");
                    for (i, (g, w)) in got.iter().zip(want).enumerate() {
                        assert!((g - w).abs() < 1e-12, "m={m} {s:?} {what}[{i}]: {g} vs {w}");
                    }
                };
                let y = forward(&x, &wt, Some(&b), &s, m);
                close("forward", &y, &conv2d::forward(&x, &wt, Some(&b), &s));
                let dx = backward_input(&dy, &wt, &s, m);
                close("backward_input", &dx, &conv2d::backward_input(&dy, &wt, &s));
                let dw = backward_weight(&dy, &x, &s, m);
                close(
                    "backward_weight",
                    &dw,
                    &conv2d::backward_weight(&dy, &x, &s),
                );
                // The magnitudes bound the values, and are no smaller than the direct
                // convolution's sum |x w| (the transforms only add terms).
                let direct_abs = conv2d::forward(&abs(&x), &abs(&wt), Some(&abs(&b)), &s);
                let y_abs = forward_abs(&x, &wt, Some(&b), &s, m);
                for ((a, d), y) in y_abs.iter().zip(&direct_abs).zip(&y) {
                    assert!(
                        *a >= y.abs() - 1e-12 && *a >= d - 1e-12,
                        "m={m}: {a} {d} {y}"
                    );
                }
                let dw_abs = backward_weight_abs(&dy, &x, &s, m);
                assert!(dw_abs.iter().zip(&dw).all(|(a, d)| *a >= d.abs() - 1e-12));
            }
        }
    }

    /// The matrices' defining identity on one tile: the transformed product of a patch and a
    /// filter is their 1-D correlation, checked at every tile position.
    #[test]
    fn the_one_dimensional_identity_holds() {
        for m in [2, 4] {
            let t = transforms(m);
            let a = t.a;
            let d: Vec<f64> = data(a, 5);
            let g: Vec<f64> = data(3, 6);
            let gg = matmul(&t.g, &g, a, 3, 1);
            let bd = matmul(&t.bt, &d, a, a, 1);
            let prod: Vec<f64> = gg.iter().zip(&bd).map(|(x, y)| x * y).collect();
            let y = matmul(&t.at, &prod, m, a, 1);
            for (i, yi) in y.iter().enumerate() {
                let want: f64 = (0..3).map(|k| d[i + k] * g[k]).sum();
                assert!(
                    (yi - want).abs() < 1e-13,
                    "F({m}, 3) output {i}: {yi} vs {want}"
                );
            }
        }
    }
}
