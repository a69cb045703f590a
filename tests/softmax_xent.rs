//! softmax_xent: GPU against the reference (probabilities, loss, correct count, dlogits),
//! unweighted and weighted, |logits| = 1e4, ties, hand-computed values, the reference backward
//! against finite differences, bad labels, determinism and shape errors.

#[allow(unused_imports)] // not every shared helper is used here
mod common;
use common::*;

use fer_cbam::ops::softmax_xent::{SoftmaxXent, SoftmaxXentShape};
use fer_cbam::Tensor;
use fer_cbam_reference::softmax_xent as reference;

const EPS: f64 = f32::EPSILON as f64;

/// Labels spread over 0..k, reproducible from `seed`.
fn labels(seed: u64, n: usize, k: usize) -> Vec<u32> {
    random(seed, n)
        .iter()
        .map(|&v| (((v + 1.0) / 2.0 * k as f32) as u32).min(k as u32 - 1))
        .collect()
}

/// Class weights in [0.1, 3.1).
fn class_weights(seed: u64, k: usize) -> Vec<f32> {
    random(seed, k).iter().map(|&v| 1.6 + 1.5 * v).collect()
}

/// The largest spread max(z) - min(z) over rows, capped at 104: beyond it exp(-x) is below
/// f32's smallest subnormal, so larger arguments contribute exactly 0 whatever their error bound.
fn spread(logits: &[f32], k: usize) -> f64 {
    logits
        .chunks(k)
        .map(|r| {
            let hi = r.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lo = r.iter().cloned().fold(f32::MAX, f32::min) as f64;
            hi - lo
        })
        .fold(0.0, f64::max)
        .min(104.0)
}

/// Relative error of p = e / s: WGSL allows exp 3 + 2|x| ulp, s adds K roundings, the division one.
fn probs_rtol(spread: f64, k: usize) -> f64 {
    (2.0 * (3.0 + 2.0 * spread) + k as f64 + 1.0) * EPS
}

fn probs_tol(spread: f64, k: usize) -> Tol {
    Tol {
        atol: f32::MIN_POSITIVE as f64,
        rtol: probs_rtol(spread, k),
        why: "exp within WGSL's 3+2|x| ulp, K-term sum, one division; subnormals may flush to 0",
    }
}

/// Each row's (m - z_y) + log(s): log within 2^-21 absolute on [0.5, 2] (3 ulp elsewhere) plus
/// the relative error of s carried through log; the f32 batch sums of N non-negative terms (and
/// of the weights) add up to (2N + 4) roundings relative to the loss.
fn loss_tol(spread: f64, n: usize, k: usize) -> Tol {
    Tol {
        atol: 2f64.powi(-21) + (3.0 + 2.0 * spread + k as f64 + 3.0) * EPS,
        rtol: (2 * n + 4) as f64 * EPS,
        why: "log within 2^-21, s's relative error, (2N+4) roundings in the weighted batch sum",
    }
}

/// |d| <= w/den; its error is p's relative error plus den's N roundings, times w/den.
fn dlogits_tol(spread: f64, n: usize, k: usize, wmax_over_den: f64) -> Tol {
    Tol {
        atol: (probs_rtol(spread, k) + (n + 4) as f64 * EPS) * wmax_over_den,
        rtol: 0.0,
        why: "p's relative error and the f32 weight sum, scaled by w/den (the size of dlogits)",
    }
}

struct Outputs {
    probs: Vec<f32>,
    loss: f32,
    correct: f32,
    dlogits: Vec<f32>,
}

fn run_gpu(n: usize, k: usize, logits: &[f32], ys: &[u32], weights: Option<&[f32]>) -> Outputs {
    let gpu = gpu();
    let s = SoftmaxXentShape { n, k };
    let op = block_on(SoftmaxXent::new(gpu, s, weights.is_some())).unwrap();
    let z = upload("logits", &[n, k], logits);
    let y = zeros("labels", &[n]);
    op.write_labels(gpu, &y, ys).unwrap();
    let w = weights.map(|w| upload("class_weights", &[k], w));
    let probs = zeros("probs", &[n, k]);
    let loss = zeros("loss", &[1]);
    let correct = zeros("correct", &[1]);
    let dz = zeros("dlogits", &[n, k]);
    run(&[
        &op.forward(gpu, &z, &y, w.as_ref(), &probs, &loss, &correct)
            .unwrap(),
        &op.backward(gpu, &probs, &y, w.as_ref(), &dz).unwrap(),
    ]);
    Outputs {
        probs: read(&probs),
        loss: read(&loss)[0],
        correct: read(&correct)[0],
        dlogits: read(&dz),
    }
}

fn check_parity(n: usize, k: usize, logits: &[f32], ys: &[u32], weights: Option<&[f32]>) {
    let got = run_gpu(n, k, logits, ys, weights);
    let s = reference::Shape { n, k };
    let wr = weights.map(to_f64);
    let want = reference::forward(&to_f64(logits), ys, wr.as_deref(), &s);
    let label = |what: &str| {
        format!(
            "softmax_xent {what} n={n} k={k} weighted={}",
            weights.is_some()
        )
    };
    let r = spread(logits, k);
    assert!(got.loss.is_finite(), "{}: {}", label("loss"), got.loss);
    assert_close(&label("probs"), &got.probs, &want.probs, probs_tol(r, k));
    assert_close(&label("loss"), &[got.loss], &[want.loss], loss_tol(r, n, k));
    assert_eq!(got.correct, want.correct as f32, "{}", label("correct"));
    let den: f64 = ys
        .iter()
        .map(|&y| weights.map_or(1.0, |w| w[y as usize] as f64))
        .sum();
    let wmax = weights.map_or(1.0, |w| w.iter().cloned().fold(0.0, f32::max) as f64);
    let want_d = reference::backward(&want.probs, ys, wr.as_deref(), &s);
    assert_close(
        &label("dlogits"),
        &got.dlogits,
        &want_d,
        dlogits_tol(r, n, k, wmax / den),
    );
}

/// Batch 1, the network's 64 x 7, one class, many classes (not a multiple of 64), and a batch of
/// a few hundred rows (the single-invocation forward's intended range).
const SHAPES: &[(usize, usize)] = &[(1, 7), (64, 7), (3, 1), (5, 67), (2, 2), (300, 7)];

#[test]
fn gpu_matches_reference_unweighted() {
    for (i, &(n, k)) in SHAPES.iter().enumerate() {
        let logits: Vec<f32> = random(10 + i as u64, n * k)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        check_parity(n, k, &logits, &labels(20 + i as u64, n, k), None);
    }
}

#[test]
fn gpu_matches_reference_weighted() {
    for (i, &(n, k)) in SHAPES.iter().enumerate() {
        let logits: Vec<f32> = random(30 + i as u64, n * k)
            .iter()
            .map(|v| 3.0 * v)
            .collect();
        let w = class_weights(50 + i as u64, k);
        check_parity(n, k, &logits, &labels(40 + i as u64, n, k), Some(&w));
    }
}

/// |logits| up to 1e4: no overflow in exp, no NaN, and the loss (rows of size up to 2e4) right.
#[test]
fn huge_logits_give_finite_correct_results() {
    for (i, &(n, k)) in [(1usize, 7usize), (64, 7), (3, 5)].iter().enumerate() {
        let logits: Vec<f32> = random(60 + i as u64, n * k)
            .iter()
            .map(|v| 1e4 * v)
            .collect();
        let ys = labels(70 + i as u64, n, k);
        check_parity(n, k, &logits, &ys, None);
        check_parity(n, k, &logits, &ys, Some(&class_weights(80 + i as u64, k)));
        let got = run_gpu(n, k, &logits, &ys, None);
        assert!(
            got.probs.iter().chain(&got.dlogits).all(|v| v.is_finite()),
            "non-finite output"
        );
    }
    // Hand-computed, batch 1: logits +-1e4. Right label: -log p = log(1 + 6 e^-2e4) = 0 exactly in
    // f32; wrong label: 2e4 exactly, and p = onehot(0) so dlogits = p - onehot(y).
    let z = [1e4f32, -1e4, -1e4, -1e4, -1e4, -1e4, -1e4];
    let right = run_gpu(1, 7, &z, &[0], None);
    assert_eq!((right.loss, right.correct), (0.0, 1.0));
    assert_eq!(right.probs, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert_eq!(right.dlogits, [0.0; 7]);
    let wrong = run_gpu(1, 7, &z, &[3], None);
    assert_eq!((wrong.loss, wrong.correct), (2e4, 0.0));
    assert_eq!(wrong.dlogits, [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0]);
    // A confidently right row at |z| = 1e4 keeps its small loss ln(1 + e^-1) = 0.3133: forming
    // (m + log s) - z_y instead would round m + log s at 1e4's ulp (~1e-3) and be off by ~2e-4.
    let close = [1e4f32, 1e4 - 1.0, -1e4, -1e4, -1e4, -1e4, -1e4];
    let got = run_gpu(1, 7, &close, &[0], None);
    let tol = loss_tol(1.0, 1, 7);
    assert_close(
        "small loss at 1e4",
        &[got.loss],
        &[(1.0 + (-1f64).exp()).ln()],
        tol,
    );
    // The same with a class weight: the weighted mean of one row is that row's loss.
    let w = [0.5f32, 1.0, 2.0, 4.0, 1.0, 1.0, 1.0];
    let weighted = run_gpu(1, 7, &z, &[3], Some(&w));
    assert_eq!(weighted.loss, 2e4);
    assert_eq!(
        weighted.dlogits,
        [1.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0],
        "w / sum w = 1 for one row"
    );
}

/// Values worked out by hand. Equal logits: p = 1/K, loss = ln K, dlogits = (1/K - onehot) / N,
/// and the argmax tie goes to class 0. Then a tie at the maximum, and a two-row weighted mean.
#[test]
fn hand_computed_values_and_ties() {
    let k = 7;
    let flat = vec![0.25f32; 2 * k];
    let got = run_gpu(2, k, &flat, &[0, 4], None);
    let tol = Tol {
        atol: 2e-7,
        rtol: 4.0 * EPS,
        why: "a few roundings of values of order 1",
    };
    assert_close("uniform probs", &got.probs, &[1.0 / 7.0; 14], tol);
    assert_close("uniform loss", &[got.loss], &[7f64.ln()], tol);
    assert_eq!(
        got.correct, 1.0,
        "a tie goes to class 0: row 0 (label 0) right, row 1 (label 4) wrong"
    );
    let mut want = vec![1.0 / 14.0; 14];
    want[0] -= 0.5;
    want[k + 4] -= 0.5;
    assert_close("uniform dlogits", &got.dlogits, &want, tol);

    // A tie between classes 2 and 5 at the maximum: argmax is 2.
    let z = [0.0f32, 1.0, 3.0, -2.0, 0.5, 3.0, 2.0];
    assert_eq!(run_gpu(1, k, &z, &[2], None).correct, 1.0);
    assert_eq!(run_gpu(1, k, &z, &[5], None).correct, 0.0);

    // Weighted mean over K = 3: row 0 has flat logits, so p = 1/3 and label 0 costs ln 3 at
    // weight 3; row 1 has logits (ln 3, 0, 0), so p = (3/5, 1/5, 1/5) and label 1 costs ln 5 at
    // weight 1: loss = (3 ln 3 + ln 5) / 4.
    let z = [0.0f32, 0.0, 0.0, 3f32.ln(), 0.0, 0.0];
    let w = [3.0f32, 1.0, 0.5];
    let got = run_gpu(2, 3, &z, &[0, 1], Some(&w));
    let want_loss = (3.0 * 3f64.ln() + 5f64.ln()) / 4.0;
    assert_close("weighted loss", &[got.loss], &[want_loss], tol);
    // dlogits = w_y (p - onehot) / 4: row 0: 3/4 (1/3 - 1, 1/3, 1/3); row 1: 1/4 (3/5, 1/5 - 1, 1/5).
    let want = [-0.5, 0.25, 0.25, 0.15, -0.2, 0.05];
    assert_close("weighted dlogits", &got.dlogits, &want, tol);
}

#[test]
fn reference_gradient_matches_finite_differences() {
    for (n, k, weighted) in [
        (1, 7, false),
        (4, 7, false),
        (4, 7, true),
        (3, 2, true),
        (5, 1, false),
    ] {
        let s = reference::Shape { n, k };
        let z = to_f64(&random(1 + n as u64, n * k));
        let ys = labels(2 + n as u64, n, k);
        let w = to_f64(&class_weights(3, k));
        let w = weighted.then_some(&w[..]);
        let fd = finite_difference(|v| reference::forward(v, &ys, w, &s).loss, &z, 1e-6);
        let probs = reference::forward(&z, &ys, w, &s).probs;
        let d = reference::backward(&probs, &ys, w, &s);
        assert_close_f64(
            &format!("dlogits n={n} k={k} weighted={weighted}"),
            &d,
            &fd,
            FD_TOL,
        );
    }
}

#[test]
fn bad_labels_are_refused_on_upload_and_poison_the_loss_on_the_gpu() {
    let gpu = gpu();
    let s = SoftmaxXentShape { n: 3, k: 7 };
    let op = block_on(SoftmaxXent::new(gpu, s, false)).unwrap();
    let y = zeros("labels", &[3]);
    let err = op
        .write_labels(gpu, &y, &[0, 7, 1])
        .expect_err("label 7 of 7 classes")
        .to_string();
    assert!(err.contains("label 7") && err.contains("row 1"), "{err}");
    let err = op
        .write_labels(gpu, &y, &[0, 1])
        .expect_err("two labels for three rows")
        .to_string();
    assert!(err.contains("[3]") && err.contains("[2]"), "{err}");
    // Bypassing the check (raw bits) must not train silently: NaN loss and NaN in that row only.
    gpu.write(&y, &[0u32, 9, 2].map(f32::from_bits)).unwrap();
    let z = upload("logits", &[3, 7], &random(1, 21));
    let (probs, loss, correct) = (zeros("p", &[3, 7]), zeros("loss", &[1]), zeros("c", &[1]));
    let dz = zeros("dz", &[3, 7]);
    run(&[
        &op.forward(gpu, &z, &y, None, &probs, &loss, &correct)
            .unwrap(),
        &op.backward(gpu, &probs, &y, None, &dz).unwrap(),
    ]);
    assert!(read(&loss)[0].is_nan());
    let d = read(&dz);
    assert!(
        d[7..14].iter().all(|v| v.is_nan()) && d[..7].iter().chain(&d[14..]).all(|v| v.is_finite())
    );
}

#[test]
fn outputs_are_bit_identical_run_to_run() {
    let gpu = gpu();
    let (n, k) = (64, 7);
    let op = block_on(SoftmaxXent::new(gpu, SoftmaxXentShape { n, k }, true)).unwrap();
    let z = upload("logits", &[n, k], &random(1, n * k));
    let y = zeros("labels", &[n]);
    op.write_labels(gpu, &y, &labels(2, n, k)).unwrap();
    let w = upload("w", &[k], &class_weights(3, k));
    let (probs, loss, correct) = (zeros("p", &[n, k]), zeros("loss", &[1]), zeros("c", &[1]));
    let dz = zeros("dz", &[n, k]);
    let ds = [
        op.forward(gpu, &z, &y, Some(&w), &probs, &loss, &correct)
            .unwrap(),
        op.backward(gpu, &probs, &y, Some(&w), &dz).unwrap(),
    ];
    let bits = |t: &Tensor| read(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let all = || [bits(&probs), bits(&loss), bits(&correct), bits(&dz)];
    run(&[&ds[0], &ds[1]]);
    let first = all();
    run(&[&ds[0], &ds[1]]);
    assert!(first == all(), "second run differs");
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let gpu = gpu();
    let s = SoftmaxXentShape { n: 64, k: 7 };
    let op = block_on(SoftmaxXent::new(gpu, s, true)).unwrap();
    let (z, y, w) = (zeros("z", &[64, 7]), zeros("y", &[64]), zeros("w", &[7]));
    let (p, l, c) = (zeros("p", &[64, 7]), zeros("l", &[1]), zeros("c", &[1]));
    let bad = zeros("head.logits", &[64, 8]);
    let err = op
        .forward(gpu, &bad, &y, Some(&w), &p, &l, &c)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("head.logits") && err.contains("[64, 8]") && err.contains("[64, 7]"),
        "{err}"
    );
    let err = op
        .forward(gpu, &z, &zeros("targets", &[63]), Some(&w), &p, &l, &c)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("targets") && err.contains("[63]") && err.contains("[64]"),
        "{err}"
    );
    let err = op
        .forward(gpu, &z, &y, Some(&zeros("cw", &[6])), &p, &l, &c)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cw") && err.contains("[6]") && err.contains("[7]"),
        "{err}"
    );
    let err = op
        .forward(gpu, &z, &y, Some(&w), &p, &zeros("loss", &[2]), &c)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("loss") && err.contains("[2]") && err.contains("[1]"),
        "{err}"
    );
    let err = op
        .backward(gpu, &p, &y, Some(&w), &zeros("dz", &[7, 64]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("dz") && err.contains("[7, 64]") && err.contains("[64, 7]"),
        "{err}"
    );
    let err = op
        .backward(gpu, &p, &y, None, &z)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("weights"), "{err}");
}
