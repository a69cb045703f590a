//! ELU, ReLU, sigmoid: GPU against the reference, the reference against finite differences,
//! the 2-D grid fold past 65,535 workgroups, determinism and shape errors.

mod common;
use common::*;

use fer_cbam::ops::activation::{Activation, ActivationKind, ActivationVersion};
use fer_cbam_reference::activation as reference;

const KINDS: [ActivationKind; 4] = [
    ActivationKind::Elu { alpha: 1.0 },
    ActivationKind::Elu { alpha: 0.5 },
    ActivationKind::Relu,
    ActivationKind::Sigmoid,
];

fn ref_forward(kind: ActivationKind, x: &[f64]) -> Vec<f64> {
    match kind {
        ActivationKind::Elu { alpha } => reference::elu_forward(x, alpha as f64),
        ActivationKind::Relu => reference::relu_forward(x),
        ActivationKind::Sigmoid => reference::sigmoid_forward(x),
    }
}

fn ref_backward(kind: ActivationKind, x: &[f64], dy: &[f64]) -> Vec<f64> {
    match kind {
        ActivationKind::Elu { alpha } => reference::elu_backward(x, dy, alpha as f64),
        ActivationKind::Relu => reference::relu_backward(x, dy),
        ActivationKind::Sigmoid => reference::sigmoid_backward(&reference::sigmoid_forward(x), dy),
    }
}

/// Runs forward and backward on the GPU with every version; they must agree bit for bit (the
/// same formula per element); returns (y, dx).
fn run_gpu(kind: ActivationKind, shape: &[usize], xs: &[f32], dys: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let v1 = run_version(kind, shape, xs, dys, ActivationVersion::V1);
    let v2 = run_version(kind, shape, xs, dys, ActivationVersion::V2);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(
        bits(&v1.0) == bits(&v2.0) && bits(&v1.1) == bits(&v2.1),
        "{kind:?} {shape:?}: v1 and v2 differ"
    );
    v1
}

fn run_version(
    kind: ActivationKind,
    shape: &[usize],
    xs: &[f32],
    dys: &[f32],
    version: ActivationVersion,
) -> (Vec<f32>, Vec<f32>) {
    let gpu = gpu();
    let act = block_on(Activation::with_version(gpu, kind, shape, version)).unwrap();
    let expected = match kind {
        ActivationKind::Elu { .. } => version,
        _ => ActivationVersion::V1,
    };
    assert_eq!(act.version(), expected);
    let x = upload("x", shape, xs);
    let y = zeros("y", shape);
    let dy = upload("dy", shape, dys);
    let dx = zeros("dx", shape);
    let saved = if kind == ActivationKind::Sigmoid {
        &y
    } else {
        &x
    };
    let f = act.forward(gpu, &x, &y).unwrap();
    let b = act.backward(gpu, saved, &dy, &dx).unwrap();
    run(&[&f, &b]);
    (read(&y), read(&dx))
}

#[test]
fn gpu_matches_reference_at_edge_shapes() {
    // Values in [-4, 4] cover ELU's exponential branch and sigmoid's tails.
    for (i, shape) in [
        vec![1],
        vec![1, 1, 1, 1],
        vec![3, 5, 7, 9],
        vec![2, 67, 3, 3],
        vec![64, 128],
    ]
    .iter()
    .enumerate()
    {
        let n: usize = shape.iter().product();
        let xs: Vec<f32> = random(10 + i as u64, n).iter().map(|v| 4.0 * v).collect();
        let dys = random(20 + i as u64, n);
        for kind in KINDS {
            let (y, dx) = run_gpu(kind, shape, &xs, &dys);
            let (xr, dyr) = (to_f64(&xs), to_f64(&dys));
            // The GPU's sigmoid backward differentiates its own f32 output; its error is the
            // forward's (a few ulps) times |dy| <= 1, so the same element-wise tolerance holds.
            assert_close(
                &format!("{kind:?} forward {shape:?}"),
                &y,
                &ref_forward(kind, &xr),
                ELEMENTWISE_TOL,
            );
            assert_close(
                &format!("{kind:?} backward {shape:?}"),
                &dx,
                &ref_backward(kind, &xr, &dyr),
                ELEMENTWISE_TOL,
            );
        }
    }
}

#[test]
fn extreme_inputs_stay_finite_and_exact_at_zero() {
    let xs = [-1e4f32, -100.0, -1e-6, 0.0, 1e-6, 100.0, 1e4];
    let dys = [1.0f32; 7];
    for kind in KINDS {
        let (y, dx) = run_gpu(kind, &[7], &xs, &dys);
        assert!(
            y.iter().chain(&dx).all(|v| v.is_finite()),
            "{kind:?}: {y:?} {dx:?}"
        );
        let (xr, dyr) = (to_f64(&xs), to_f64(&dys));
        assert_close(
            &format!("{kind:?} forward extremes"),
            &y,
            &ref_forward(kind, &xr),
            ELEMENTWISE_TOL,
        );
        assert_close(
            &format!("{kind:?} backward extremes"),
            &dx,
            &ref_backward(kind, &xr, &dyr),
            ELEMENTWISE_TOL,
        );
    }
    // ReLU's and ELU's gradient at exactly 0 takes the x <= 0 branch, as PyTorch.
    let (_, dx) = run_gpu(ActivationKind::Relu, &[1], &[0.0], &[1.0]);
    assert_eq!(dx, [0.0]);
}

#[test]
fn grids_past_65535_workgroups_cover_every_element() {
    // 64 * 65,536 + 37 elements need 65,537 workgroups of 64: folded into a 2-D grid.
    let n = 64 * 65_536 + 37;
    let xs: Vec<f32> = (0..n)
        .map(|i| ((i % 1000) as f32 - 500.0) / 100.0)
        .collect();
    let dys = vec![1.0f32; n];
    let (y, dx) = run_gpu(ActivationKind::Elu { alpha: 1.0 }, &[n], &xs, &dys);
    let xr = to_f64(&xs);
    assert_close(
        "elu forward, folded grid",
        &y,
        &reference::elu_forward(&xr, 1.0),
        ELEMENTWISE_TOL,
    );
    assert_close(
        "elu backward, folded grid",
        &dx,
        &reference::elu_backward(&xr, &to_f64(&dys), 1.0),
        ELEMENTWISE_TOL,
    );
    assert_eq!(
        gpu().grid(n, 64)[1],
        2,
        "this size must exercise the 2-D fold"
    );
}

#[test]
fn reference_gradients_match_finite_differences() {
    // Keep away from x = 0, where ReLU has a kink (ELU with alpha = 1 is C^1 there).
    let x: Vec<f64> = to_f64(&random(3, 40))
        .iter()
        .map(|v| if v.abs() < 0.01 { 0.5 } else { 3.0 * v })
        .collect();
    let r = to_f64(&random(4, 40));
    for kind in KINDS {
        let fd = finite_difference(|v| dot(&r, &ref_forward(kind, v)), &x, 1e-6);
        assert_close_f64(
            &format!("{kind:?}"),
            &ref_backward(kind, &x, &r),
            &fd,
            FD_TOL,
        );
    }
}

#[test]
fn results_are_bit_identical_run_to_run() {
    let xs = random(5, 1000);
    let dys = random(6, 1000);
    for kind in KINDS {
        let a = run_gpu(kind, &[1000], &xs, &dys);
        let b = run_gpu(kind, &[1000], &xs, &dys);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            (bits(&a.0), bits(&a.1)),
            (bits(&b.0), bits(&b.1)),
            "{kind:?}"
        );
    }
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let gpu = gpu();
    let act = block_on(Activation::new(gpu, ActivationKind::Relu, &[2, 3])).unwrap();
    let err = act
        .forward(gpu, &zeros("x", &[2, 3]), &zeros("out", &[3, 2]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("out") && err.contains("[3, 2]") && err.contains("[2, 3]"),
        "{err}"
    );
    assert!(block_on(Activation::new(gpu, ActivationKind::Relu, &[0, 3])).is_err());
}

/// ELU's exponential branch to a few ulps of its own value; its gradient to WGSL's bound on the
/// built-in exp. exp(v) - 1 with the built-in exp erred by up to 1e-4 of its value (1,700 u,
/// u = 2^-24) near v = -0.005 (the 3-ulp error of exp(v) ~ 1 is 2e-7 there): small against 1,
/// but deep in the network activations are ~0.03, and that error moved which element of a
/// max-pool window won. The sweep covers [-20, 0) densely, every decade of |v| from 1e-6 to 20.
#[test]
fn elu_is_accurate_to_a_few_ulps_of_its_value() {
    let n = 1 << 15;
    let mut xs: Vec<f32> = Vec::with_capacity(n);
    for i in 0..n {
        // log-uniform in [1e-6, 20]
        let t = (i as f64 + 0.5) / n as f64;
        xs.push(-(1e-6f64 * (2e7f64).powf(t)) as f32);
    }
    let dys = vec![1.0f32; n];
    let (y, dx) = run_gpu(ActivationKind::Elu { alpha: 1.0 }, &[n], &xs, &dys);
    let xr = to_f64(&xs);
    // 4 u relative: the polynomial's own rounding (Horner, ~2 u) and the final one; far below
    // the 1,700 u of exp(v) - 1. The absolute floor 1e-30 only keeps 0 * rtol from failing at
    // underflow (v never reaches it here).
    let tol = Tol {
        atol: 1e-30,
        rtol: 4.0 * U,
        why: "expm1 in f32 to ~2 ulps of its own value",
    };
    assert_close(
        "elu forward, v in [-20, -1e-6]",
        &y,
        &reference::elu_forward(&xr, 1.0),
        tol,
    );
    // dy exp(v): WGSL allows the built-in exp 3 + 2|v| ulp (an ulp is 2 u), and the product
    // rounds once more.
    let want = reference::elu_backward(&xr, &to_f64(&dys), 1.0);
    let bound: Vec<f64> = xr
        .iter()
        .zip(&want)
        .map(|(v, w)| ((3.0 + 2.0 * v.abs()) * 2.0 + 1.0) * U * w.abs())
        .collect();
    assert_within(
        "elu backward, v in [-20, -1e-6]",
        &dx,
        &want,
        &bound,
        "the built-in exp: 3 + 2|v| ulp, and one rounding",
    );
}
