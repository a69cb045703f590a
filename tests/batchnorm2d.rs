//! batchnorm2d: GPU against the reference (training forward, the saved batch statistics, the
//! running-statistics update, evaluation forward, dx, dgamma, dbeta) at edge shapes and at the
//! first stage's shapes of the spec network (128x128 and 48x48, batch 2 and 64: a million values
//! per channel), each with a first-order error bound, the 2e-5 target, and a check that the bounds
//! are tight enough to catch a naive reduction; the reference against finite differences and
//! against the definition; determinism; shape errors.

mod common;
use common::*;

use fer_cbam::ops::batchnorm2d::{
    BatchNorm2d, BatchNorm2dShape, BatchNorm2dVersion, BnAffine, BnRunning,
};
use fer_cbam_reference::batchnorm2d as reference;

/// Unit roundoff of f32 (2^-24).
const U: f64 = f32::EPSILON as f64 / 2.0;

fn shape(n: usize, c: usize, h: usize, w: usize) -> BatchNorm2dShape {
    BatchNorm2dShape { n, c, h, w }
}

fn ref_shape(s: &BatchNorm2dShape) -> reference::Shape {
    reference::Shape {
        n: s.n,
        c: s.c,
        h: s.h,
        w: s.w,
    }
}

/// Uniform in [-1, 1) from (seed, i): a hash, not a stream, so that a million values per channel
/// cost little in an unoptimised test build.
fn noise(seed: u64, i: usize) -> f32 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((i as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// One test case: the input, the affine parameters, the running statistics before the step,
/// and the gradient arriving at y.
struct Case {
    s: BatchNorm2dShape,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    dy: Vec<f32>,
}

/// Channel c of x is `offset + spread * noise`, with (offset, spread) cycling through
/// conv-output-like values and two hard ones: an offset 160 times the spread (where
/// E[x^2] - E[x]^2 in f32 keeps almost no digits) and a spread of 1e-3 (a variance near eps).
fn case(s: BatchNorm2dShape, seed: u64) -> Case {
    const CHANNELS: [(f32, f32); 6] = [
        (0.1, 1.0),
        (0.5, 0.25),
        (-1.0, 2.0),
        (8.0, 0.05),
        (2.0, 0.5),
        (0.0, 1e-3),
    ];
    let plane = s.h * s.w;
    let len = s.n * s.c * plane;
    let x = (0..len)
        .map(|i| {
            let (offset, spread) = CHANNELS[(i / plane) % s.c % CHANNELS.len()];
            offset + spread * noise(seed, i)
        })
        .collect();
    let per_channel = |k: u64, f: fn(f32) -> f32| -> Vec<f32> {
        (0..s.c).map(|c| f(noise(seed + k, c))).collect()
    };
    Case {
        s,
        x,
        gamma: per_channel(1, |v| 1.0 + 0.5 * v),
        beta: per_channel(2, |v| 0.3 * v),
        running_mean: per_channel(3, |v| 0.2 * v),
        running_var: per_channel(4, |v| 1.0 + 0.5 * v),
        dy: (0..len).map(|i| noise(seed + 5, i)).collect(),
    }
}

/// What the GPU computed, read back.
struct GpuResult {
    y: Vec<f32>,
    y_eval: Vec<f32>,
    /// [4, C]: mean hi, biased variance, 1 / sqrt(var + eps), mean lo
    stats: Vec<f32>,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
}

/// One submission: the evaluation forward (with the running statistics as given), the training
/// forward (which moves them), the backward. Outputs start as garbage, so a kernel that adds
/// instead of overwriting (or skips an element) shows.
fn run_gpu(k: &Case) -> GpuResult {
    let gpu = gpu();
    let s = k.s;
    let op = block_on(BatchNorm2d::new(gpu, s)).unwrap();
    // v2 (vec4 views) exactly where every plane starts on a vec4.
    let expected = if (s.h * s.w).is_multiple_of(4) {
        BatchNorm2dVersion::V2
    } else {
        BatchNorm2dVersion::V1
    };
    assert_eq!(op.version(), expected, "{s:?}");
    let (full, ch) = (s.input_shape(), s.channel_shape());
    let garbage = |name: &str, shape: &[usize]| {
        let len = shape.iter().product();
        upload(name, shape, &vec![1.0e3; len])
    };
    let x = upload("x", &full, &k.x);
    let gamma = upload("gamma", &ch, &k.gamma);
    let beta = upload("beta", &ch, &k.beta);
    let rm = upload("running_mean", &ch, &k.running_mean);
    let rv = upload("running_var", &ch, &k.running_var);
    let dy = upload("dy", &full, &k.dy);
    let (y, y_eval, dx) = (
        garbage("y", &full),
        garbage("y_eval", &full),
        garbage("dx", &full),
    );
    let (dgamma, dbeta) = (garbage("dgamma", &ch), garbage("dbeta", &ch));
    let affine = BnAffine {
        weight: &gamma,
        bias: &beta,
    };
    let running = BnRunning {
        mean: &rm,
        var: &rv,
    };
    let grads = BnAffine {
        weight: &dgamma,
        bias: &dbeta,
    };
    let mut ds = op
        .forward_eval(gpu, &x, &affine, &running, &y_eval)
        .unwrap();
    ds.extend(op.forward_train(gpu, &x, &affine, &running, &y).unwrap());
    ds.extend(op.backward(gpu, &x, &gamma, &dy, &dx, &grads).unwrap());
    run(&ds.iter().collect::<Vec<_>>());
    GpuResult {
        y: read(&y),
        y_eval: read(&y_eval),
        stats: read(op.stats().expect("built for training")),
        running_mean: read(&rm),
        running_var: read(&rv),
        dx: read(&dx),
        dgamma: read(&dgamma),
        dbeta: read(&dbeta),
    }
}

/// Channel c's values of an [N, C, H, W] tensor, in (n, y, x) order, as f64.
fn channel(v: &[f32], s: &reference::Shape, c: usize) -> Vec<f64> {
    s.channel(c).map(|i| v[i] as f64).collect()
}

/// First-order f32 error bounds of one channel's outputs, computed on the case's own data
/// (Higham, Accuracy and Stability, ch. 3). A sum of terms t through the blocked reduction errs
/// by at most D u sum|t|, where D = [`BatchNorm2dShape::sum_depth`] is the number of additions an
/// error passes through on its way to the total (about 100 for a million values, not the million
/// a sequential loop would have: the bound grows with the reduction's depth, as its real error
/// does). WGSL's f32 division is within 2.5 ulp (5u relative), sqrt within 4 ulp; every other
/// operation rounds once (u). Errors in inputs propagate through |coefficients|. The mean is
/// hi + lo (see the shader): hi errs by e_hi, lo = sum (x - hi) / M repairs that up to the error
/// of a sum of deviations. The variance is the corrected two-pass one: its rounding error is
/// (D + 3) u sum (x - hi)^2 / M, and hi's error enters only squared.
struct Bounds {
    /// The mean's f32 part hi alone: what a single-float mean through the blocked sum meets.
    mean_hi: f64,
    mean: f64,
    var: f64,
    inv_std: f64,
    y: f64,
    y_eval: f64,
    running_mean: f64,
    running_var: f64,
    dx: f64,
    dgamma: f64,
    dbeta: f64,
}

#[allow(clippy::too_many_arguments)]
fn bounds(
    s: &BatchNorm2dShape,
    x: &[f64],
    dy: &[f64],
    gamma: f64,
    beta: f64,
    rm: f64,
    rv: f64,
    f: &reference::Forward,
) -> Bounds {
    let d = s.sum_depth() as f64;
    let m = x.len() as f64;
    let (mean, var, istd) = (f.mean[0], f.var[0], f.inv_std[0]);
    let sum_abs = |v: &mut dyn Iterator<Item = f64>| v.map(f64::abs).sum::<f64>();
    let e_hi = d * U * sum_abs(&mut x.iter().copied()) / m + 5.0 * U * mean.abs();
    let e_s1 = (d + 1.0) * U * (sum_abs(&mut x.iter().map(|v| v - mean)) + m * e_hi);
    let e_mean = e_s1 / m + 6.0 * U * e_hi;
    let e_var =
        (d + 3.0 + 7.0) * U * (var + e_hi * e_hi) + (2.0 * m * e_hi * e_s1 + e_s1 * e_s1) / (m * m);
    let e_istd =
        istd * (0.5 * (e_var + U * (var + reference::EPS)) / (var + reference::EPS) + 13.0 * U);
    let xh: Vec<f64> = x.iter().map(|v| (v - mean) * istd).collect();
    // ((x - hi) - lo) istd: two subtractions, a product, on top of the errors of lo and istd.
    let e_xh: Vec<f64> = x
        .iter()
        .zip(&xh)
        .map(|(v, h)| {
            (v - mean).abs() * e_istd
                + istd * (e_mean + U * ((v - mean).abs() + e_hi) + U * (v - mean).abs())
                + U * h.abs()
        })
        .collect();
    let y = xh
        .iter()
        .zip(&e_xh)
        .map(|(h, e)| gamma.abs() * e + U * (gamma * h).abs() + U * (gamma * h + beta).abs())
        .fold(0.0, f64::max);
    let istd_r = 1.0 / (rv + reference::EPS).sqrt();
    let e_istd_r = istd_r * 14.0 * U;
    let y_eval = x
        .iter()
        .map(|v| {
            let h = (v - rm) * istd_r;
            gamma.abs() * (v - rm).abs() * e_istd_r
                + 4.0 * U * (gamma * h).abs()
                + U * (gamma * h + beta).abs()
        })
        .fold(0.0, f64::max);
    let unbias = m / (m - 1.0);
    let new_rm = 0.9 * rm + 0.1 * mean;
    let new_rv = 0.9 * rv + 0.1 * var * unbias;
    let running_mean =
        0.1 * e_mean + 4.0 * U * (0.9 * rm.abs() + 0.1 * mean.abs()) + U * new_rm.abs();
    let running_var =
        0.1 * unbias * e_var + 5.0 * U * (0.9 * rv.abs() + 0.1 * var * unbias) + U * new_rv.abs();

    let dbeta: f64 = dy.iter().sum();
    let dgamma: f64 = dy.iter().zip(&xh).map(|(g, h)| g * h).sum();
    let e_dbeta = d * U * sum_abs(&mut dy.iter().copied());
    let e_dgamma = (d + 1.0) * U * sum_abs(&mut dy.iter().zip(&xh).map(|(g, h)| g * h))
        + dy.iter().zip(&e_xh).map(|(g, e)| g.abs() * e).sum::<f64>();
    let (c0, c1) = (dbeta / m, dgamma / m);
    let (e_c0, e_c1) = (
        e_dbeta / m + 5.0 * U * c0.abs(),
        e_dgamma / m + 5.0 * U * c1.abs(),
    );
    let dx = (0..x.len())
        .map(|i| {
            let inner = dy[i] - c0 - xh[i] * c1;
            gamma.abs() * e_istd * inner.abs()
                + gamma.abs()
                    * istd
                    * (e_c0
                        + xh[i].abs() * e_c1
                        + c1.abs() * e_xh[i]
                        + 3.0 * U * (dy[i].abs() + c0.abs() + (xh[i] * c1).abs()))
                + 2.0 * U * (gamma * istd * inner).abs()
        })
        .fold(0.0, f64::max);
    Bounds {
        mean_hi: e_hi,
        mean: e_mean,
        var: e_var,
        inv_std: e_istd,
        y,
        y_eval,
        running_mean,
        running_var,
        dx,
        dgamma: e_dgamma,
        dbeta: e_dbeta,
    }
}

fn tol(bound: f64) -> Tol {
    Tol {
        atol: 2.0 * bound,
        rtol: 0.0,
        why: "first-order f32 error bound of the blocked reductions on this data, doubled (see `bounds`)",
    }
}

/// The largest |got - want| over a tensor divided by its largest |want|: the measure of the
/// engine's 2e-5 target for a whole training step.
struct Relative {
    diff: f64,
    scale: f64,
}

impl Relative {
    fn new() -> Relative {
        Relative {
            diff: 0.0,
            scale: 0.0,
        }
    }
    fn add(&mut self, got: &[f32], want: &[f64]) {
        self.add_f64(&to_f64(got), want)
    }
    fn add_f64(&mut self, got: &[f64], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            self.diff = self.diff.max((g - w).abs());
            self.scale = self.scale.max(w.abs());
        }
    }
    fn value(&self) -> f64 {
        self.diff / self.scale
    }
}

/// Runs the GPU and the reference on one case, channel by channel (each channel's batch norm is
/// independent, so the reference runs on one channel at a time and a million-value channel costs
/// 8 MB, not the whole tensor in f64), comparing every output of the `channels` checked (all of
/// them unless the case is large). Returns the worst relative difference per tensor, by name.
fn check_parity(k: &Case, what: &str, channels: &[usize]) -> Vec<(&'static str, f64)> {
    let s = k.s;
    let rs = ref_shape(&s);
    let one = reference::Shape { c: 1, ..rs };
    let got = run_gpu(k);
    let label = |t: &str, c: usize| format!("batchnorm2d {t} {s:?} channel {c} ({what})");
    let names = [
        "y",
        "y_eval",
        "mean",
        "var",
        "inv_std",
        "running_mean",
        "running_var",
        "dx",
        "dgamma",
        "dbeta",
    ];
    let mut rel: Vec<Relative> = names.iter().map(|_| Relative::new()).collect();
    for &c in channels {
        let x = channel(&k.x, &rs, c);
        let dy = channel(&k.dy, &rs, c);
        let (g, b) = (k.gamma[c] as f64, k.beta[c] as f64);
        let (rm, rv) = (k.running_mean[c] as f64, k.running_var[c] as f64);
        let f = reference::forward_train(&x, &[g], &[b], &one);
        let y_eval = reference::forward_eval(&x, &[g], &[b], &[rm], &[rv], &one);
        let (new_rm, new_rv) = reference::update_running(&[rm], &[rv], &f, &one);
        let back = reference::backward(&dy, &x, &[g], &one);
        let e = bounds(&s, &x, &dy, g, b, rm, rv, &f);
        let pairs: [(Vec<f32>, Vec<f64>, f64); 10] = [
            (rs.channel(c).map(|i| got.y[i]).collect(), f.y.clone(), e.y),
            (
                rs.channel(c).map(|i| got.y_eval[i]).collect(),
                y_eval,
                e.y_eval,
            ),
            // The mean is hi + lo, compared as the exact sum of the two floats.
            (vec![], f.mean.clone(), e.mean),
            (vec![got.stats[s.c + c]], f.var.clone(), e.var),
            (vec![got.stats[2 * s.c + c]], f.inv_std.clone(), e.inv_std),
            (vec![got.running_mean[c]], new_rm, e.running_mean),
            (vec![got.running_var[c]], new_rv, e.running_var),
            (rs.channel(c).map(|i| got.dx[i]).collect(), back.dx, e.dx),
            (vec![got.dgamma[c]], back.dgamma, e.dgamma),
            (vec![got.dbeta[c]], back.dbeta, e.dbeta),
        ];
        for (j, (g, w, bound)) in pairs.iter().enumerate() {
            if names[j] == "mean" {
                let hi = [got.stats[c]];
                assert_close(&label("mean hi", c), &hi, w, tol(e.mean_hi));
                let hi_lo = got.stats[c] as f64 + got.stats[3 * s.c + c] as f64;
                assert_close_f64(&label("mean (hi + lo)", c), &[hi_lo], w, tol(*bound));
                rel[j].add_f64(&[hi_lo], w);
                continue;
            }
            assert_close(&label(names[j], c), g, w, tol(*bound));
            rel[j].add(g, w);
        }
    }
    names
        .iter()
        .zip(rel)
        .map(|(n, r)| (*n, r.value()))
        .collect()
}

/// (n, c, h, w): two values per channel (the least training allows), one value per plane with
/// the batch as the only axis, odd planes (v1, scalar) and planes a multiple of 4 (v2, vec4),
/// one plane of almost a run (33x31 = 1023), planes of several runs with a tail (37x29 = 1073
/// v1, 48x48 = 2304 v2), channel counts past one workgroup and not multiples of 64 (67,
/// 130), and 70 partials per channel (a partial block in the second pass).
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 2),
    (4, 3, 1, 1),
    (2, 3, 5, 7),
    (1, 5, 4, 4),
    (3, 67, 3, 3),
    (2, 130, 2, 2),
    (1, 2, 33, 31),
    (2, 3, 37, 29),
    (1, 2, 48, 48),
    (70, 3, 2, 2),
];

#[test]
fn gpu_matches_reference_at_edge_shapes() {
    for (i, &(n, c, h, w)) in SHAPES.iter().enumerate() {
        let all: Vec<usize> = (0..c).collect();
        check_parity(&case(shape(n, c, h, w), 100 + i as u64), "edge", &all);
    }
}

/// Stage 0 of the spec network (32 channels after a conv of the 3-channel image) at 128x128 and
/// at 48x48, batch 2 and batch 64: up to 64 x 128 x 128 = 1,048,576 values per channel. Every
/// output within its bound and within the engine's 2e-5 target (largest difference over largest
/// value, per tensor). At the largest shape, also proof that the bounds would catch the two
/// classic mistakes: a sequential f32 sum of the million values (its mean errs beyond the bound
/// that the blocked sum's single-float mean hi meets) and E[x^2] - E[x]^2 in f32 (its variance
/// errs beyond the bound, by orders of magnitude on the channel whose offset is 160 times its
/// spread).
#[test]
fn gpu_matches_reference_at_the_first_stage_shapes() {
    for (n, side) in [(2, 128), (64, 128), (2, 48), (64, 48)] {
        let s = shape(n, 32, side, side);
        let k = case(s, 7 + n as u64 + side as u64);
        // At batch 64 one channel of each kind of data (the six of `case`) and the last one:
        // every channel runs the same code, and checking all 32 in an unoptimised test build
        // would cost a minute. At batch 2, all of them.
        let channels: Vec<usize> = if n == 64 {
            vec![0, 1, 2, 3, 4, 5, s.c - 1]
        } else {
            (0..s.c).collect()
        };
        let rel = check_parity(&k, "stage 0", &channels);
        for (name, r) in &rel {
            assert!(
                *r <= 2e-5,
                "{s:?} {name}: max|diff|/max|ref| = {r:.2e} > 2e-5"
            );
        }
        if n == 64 && side == 128 {
            let rs = ref_shape(&s);
            let (mut naive_caught, mut one_pass_caught) = (false, false);
            for &c in &channels {
                let x = channel(&k.x, &rs, c);
                let one = reference::Shape { c: 1, ..rs };
                let f = reference::forward_train(&x, &[1.0], &[0.0], &one);
                let e = bounds(&s, &x, &x, 1.0, 0.0, 0.0, 1.0, &f);
                let m = x.len() as f32;
                let (mut sum, mut sq) = (0.0f32, 0.0f32);
                for &v in &x {
                    sum += v as f32;
                    sq += (v * v) as f32;
                }
                let mean = sum / m;
                let var = sq / m - mean * mean;
                naive_caught |= (mean as f64 - f.mean[0]).abs() > 2.0 * e.mean_hi;
                one_pass_caught |= (var as f64 - f.var[0]).abs() > 2.0 * e.var;
            }
            assert!(
                naive_caught,
                "no channel's sequential f32 mean broke the mean bound: the bound is too loose"
            );
            assert!(
                one_pass_caught,
                "no channel's E[x^2]-E[x]^2 broke the variance bound: the bound is too loose"
            );
        }
        eprintln!(
            "batchnorm2d {s:?}: {}",
            rel.iter()
                .map(|(n, r)| format!("{n} {r:.1e}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

#[test]
fn outputs_and_gradients_are_bit_identical_run_to_run() {
    let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    // v1 (37x29, two runs per plane) and v2 (48x48, three) kernels.
    for s in [shape(3, 5, 37, 29), shape(3, 5, 48, 48)] {
        let k = case(s, 11);
        let (a, b) = (run_gpu(&k), run_gpu(&k));
        for (name, u, v) in [
            ("y", &a.y, &b.y),
            ("y_eval", &a.y_eval, &b.y_eval),
            ("stats", &a.stats, &b.stats),
            ("running_mean", &a.running_mean, &b.running_mean),
            ("running_var", &a.running_var, &b.running_var),
            ("dx", &a.dx, &b.dx),
            ("dgamma", &a.dgamma, &b.dgamma),
            ("dbeta", &a.dbeta, &b.dbeta),
        ] {
            assert!(bits(u) == bits(v), "{name} differs between runs {s:?}");
        }
    }
}

#[test]
fn reference_gradients_match_finite_differences() {
    for (n, c, h, w) in [(2, 3, 3, 4), (4, 2, 1, 1), (1, 2, 2, 3)] {
        let s = shape(n, c, h, w);
        let rs = ref_shape(&s);
        let k = case(s, 21);
        let (x, g, b, r) = (
            to_f64(&k.x),
            to_f64(&k.gamma),
            to_f64(&k.beta),
            to_f64(&k.dy),
        );
        let back = reference::backward(&r, &x, &g, &rs);
        // loss = <r, y>, so dloss/dy = r; the batch statistics depend on x, and dx includes that.
        let loss =
            |x: &[f64], g: &[f64], b: &[f64]| dot(&r, &reference::forward_train(x, g, b, &rs).y);
        let eps = 1e-6;
        let fd_x = finite_difference(|v| loss(v, &g, &b), &x, eps);
        assert_close_f64(&format!("dx {rs:?}"), &back.dx, &fd_x, FD_TOL);
        let fd_g = finite_difference(|v| loss(&x, v, &b), &g, eps);
        assert_close_f64(&format!("dgamma {rs:?}"), &back.dgamma, &fd_g, FD_TOL);
        let fd_b = finite_difference(|v| loss(&x, &g, v), &b, eps);
        assert_close_f64(&format!("dbeta {rs:?}"), &back.dbeta, &fd_b, FD_TOL);
    }
}

/// The reference's forward from the definition rather than its own formulas: in training mode
/// every channel of y has mean beta and (biased) variance gamma^2 var / (var + eps); evaluation
/// with running statistics equal to the batch's (the biased variance) gives the same y; the
/// running variance moves with the unbiased variance.
#[test]
fn reference_forward_follows_the_definition() {
    let s = shape(3, 4, 5, 3);
    let rs = ref_shape(&s);
    let k = case(s, 31);
    let (x, g, b) = (to_f64(&k.x), to_f64(&k.gamma), to_f64(&k.beta));
    let f = reference::forward_train(&x, &g, &b, &rs);
    let m = s.count() as f64;
    let tight = Tol {
        atol: 1e-12,
        rtol: 1e-12,
        why: "f64 identities on O(1) data",
    };
    for c in 0..s.c {
        let y: Vec<f64> = rs.channel(c).map(|i| f.y[i]).collect();
        let mean = y.iter().sum::<f64>() / m;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
        let xs: Vec<f64> = rs.channel(c).map(|i| x[i]).collect();
        let xm = xs.iter().sum::<f64>() / m;
        let xv = xs.iter().map(|v| (v - xm).powi(2)).sum::<f64>() / m;
        assert_close_f64("mean of y", &[mean], &[b[c]], tight);
        assert_close_f64(
            "variance of y",
            &[var],
            &[g[c] * g[c] * xv / (xv + reference::EPS)],
            tight,
        );
        let (rm, rv) = reference::update_running(
            &[0.0],
            &[1.0],
            &reference::Forward {
                y: vec![],
                mean: vec![xm],
                var: vec![xv],
                inv_std: vec![],
            },
            &reference::Shape { c: 1, ..rs },
        );
        let unbiased = xs.iter().map(|v| (v - xm).powi(2)).sum::<f64>() / (m - 1.0);
        assert_close_f64("running mean", &rm, &[0.1 * xm], tight);
        assert_close_f64("running var", &rv, &[0.9 + 0.1 * unbiased], tight);
    }
    let y_eval = reference::forward_eval(&x, &g, &b, &f.mean, &f.var, &rs);
    assert_close_f64("eval with the batch's statistics", &y_eval, &f.y, tight);
}

#[test]
fn bad_shapes_are_errors_naming_the_tensor_and_both_shapes() {
    let gpu = gpu();
    let s = shape(2, 3, 4, 4);
    let op = block_on(BatchNorm2d::new(gpu, s)).unwrap();
    let x = zeros("x", &s.input_shape());
    let y = zeros("y", &s.input_shape());
    let gamma = zeros("gamma", &[3]);
    let wrong = zeros("stages.0.bn.weight", &[4]);
    let rm = zeros("rm", &[3]);
    let rv = zeros("rv", &[3]);
    let running = BnRunning {
        mean: &rm,
        var: &rv,
    };
    let err = op
        .forward_train(
            gpu,
            &x,
            &BnAffine {
                weight: &wrong,
                bias: &gamma,
            },
            &running,
            &y,
        )
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("stages.0.bn.weight") && err.contains("[4]") && err.contains("[3]"),
        "{err}"
    );
    let image = zeros("image", &[2, 3, 4, 5]);
    let affine = BnAffine {
        weight: &gamma,
        bias: &gamma,
    };
    let err = op
        .forward_eval(gpu, &image, &affine, &running, &y)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("image") && err.contains("[2, 3, 4, 5]") && err.contains("[2, 3, 4, 4]"),
        "{err}"
    );
    let err = op
        .backward(gpu, &x, &gamma, &y, &image, &affine)
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("image"), "{err}");
    for bad in [shape(1, 3, 1, 1), shape(2, 0, 4, 4)] {
        let err = block_on(BatchNorm2d::new(gpu, bad))
            .err()
            .expect("must fail")
            .to_string();
        assert!(err.contains("batchnorm2d"), "{err}");
    }
}
