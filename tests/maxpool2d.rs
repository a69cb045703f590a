//! Max pool 2x2: GPU against the reference, tie routing to the first maximum, floor for odd
//! sizes, the reference against finite differences, determinism and shape errors.

mod common;
use common::*;

use fer_cbam::ops::maxpool2d::{MaxPool2d, MaxPool2dShape, MaxPool2dVersion};
use fer_cbam_reference::maxpool2d as reference;

const VERSIONS: [MaxPool2dVersion; 2] = [MaxPool2dVersion::V1, MaxPool2dVersion::V2];

/// Forward and backward with every version of the backward; all must agree exactly.
fn run_gpu(s: MaxPool2dShape, xs: &[f32], dys: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let runs: Vec<_> = VERSIONS
        .iter()
        .map(|&v| run_version(s, xs, dys, v))
        .collect();
    for r in &runs[1..] {
        assert_eq!(r, &runs[0], "{s:?}: versions disagree");
    }
    runs.into_iter().next().unwrap()
}

fn run_version(
    s: MaxPool2dShape,
    xs: &[f32],
    dys: &[f32],
    version: MaxPool2dVersion,
) -> (Vec<f32>, Vec<f32>) {
    let gpu = gpu();
    let pool = block_on(MaxPool2d::with_version(gpu, s, version)).unwrap();
    assert_eq!(pool.version(), version);
    let x = upload("x", &s.input_shape(), xs);
    let y = zeros("y", &s.output_shape());
    let dy = upload("dy", &s.output_shape(), dys);
    // Garbage, not zeros: every dx element (the dropped row/column's too) must be written.
    let dx = upload(
        "dx",
        &s.input_shape(),
        &random(99, s.input_shape().iter().product()),
    );
    let f = pool.forward(gpu, &x, &y).unwrap();
    let b = pool.backward(gpu, &x, &dy, &dx).unwrap();
    run(&[&f, &b]);
    (read(&y), read(&dx))
}

fn check(s: MaxPool2dShape, xs: &[f32], seed: u64) {
    let dys = random(seed, s.output_shape().iter().product());
    for version in VERSIONS {
        check_version(s, xs, &dys, version);
    }
}

fn check_version(s: MaxPool2dShape, xs: &[f32], dys: &[f32], version: MaxPool2dVersion) {
    let dys = dys.to_vec();
    let (y, dx) = run_version(s, xs, &dys, version);
    let xr = to_f64(xs);
    // Max and routing are exact selections: the GPU must return the very same numbers.
    let exact = Tol {
        atol: 0.0,
        rtol: 0.0,
        why: "max and gradient routing copy values exactly",
    };
    assert_close(
        &format!("forward {s:?}"),
        &y,
        &reference::forward(&xr, s.n, s.c, s.h, s.w),
        exact,
    );
    assert_close(
        &format!("backward {version:?} {s:?}"),
        &dx,
        &reference::backward(&xr, &to_f64(&dys), s.n, s.c, s.h, s.w),
        exact,
    );
}

#[test]
fn gpu_matches_reference_at_edge_shapes() {
    for (i, (n, c, h, w)) in [
        (1, 1, 2, 2),
        (2, 3, 7, 9),
        (1, 67, 5, 4),
        (3, 2, 2, 3),
        (2, 32, 16, 16),
    ]
    .into_iter()
    .enumerate()
    {
        let s = MaxPool2dShape { n, c, h, w };
        check(s, &random(50 + i as u64, n * c * h * w), 60 + i as u64);
    }
}

#[test]
fn ties_route_to_the_first_maximum_in_row_major_order() {
    // Window values (a, b / c, d); the gradient 1.0 must land where PyTorch puts it.
    let cases: [([f32; 4], usize); 5] = [
        ([1.0, 1.0, 1.0, 1.0], 0),
        ([0.0, 2.0, 2.0, 2.0], 1),
        ([0.0, 1.0, 3.0, 3.0], 2),
        ([-1.0, -1.0, -1.0, 0.0], 3),
        ([5.0, 5.0, 0.0, 0.0], 0),
    ];
    let s = MaxPool2dShape {
        n: 1,
        c: 1,
        h: 2,
        w: 2,
    };
    for (x, first) in cases {
        let (_, dx) = run_gpu(s, &x, &[1.0]);
        let mut want = [0.0f32; 4];
        want[first] = 1.0;
        assert_eq!(dx, want, "window {x:?}");
    }
    // A constant odd-sized plane: every window ties; the dropped last row/column gets 0.
    let s = MaxPool2dShape {
        n: 1,
        c: 1,
        h: 3,
        w: 5,
    };
    check(s, &[0.25; 15], 7);
    let (_, dx) = run_gpu(s, &[0.25; 15], &[1.0, 2.0]);
    assert_eq!(
        dx,
        [1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
}

#[test]
fn reference_gradient_matches_finite_differences() {
    // Random inputs have no ties, so the max is differentiable at them.
    let (n, c, h, w) = (2, 2, 5, 4);
    let x = to_f64(&random(8, n * c * h * w));
    let r = to_f64(&random(9, n * c * (h / 2) * (w / 2)));
    let fd = finite_difference(|v| dot(&r, &reference::forward(v, n, c, h, w)), &x, 1e-6);
    assert_close_f64(
        "maxpool2d dx",
        &reference::backward(&x, &r, n, c, h, w),
        &fd,
        FD_TOL,
    );
}

#[test]
fn results_are_bit_identical_run_to_run() {
    let s = MaxPool2dShape {
        n: 2,
        c: 5,
        h: 9,
        w: 8,
    };
    let xs = random(10, 2 * 5 * 9 * 8);
    let dys = random(11, 2 * 5 * 4 * 4);
    assert_eq!(run_gpu(s, &xs, &dys), run_gpu(s, &xs, &dys));
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let gpu = gpu();
    let s = MaxPool2dShape {
        n: 1,
        c: 2,
        h: 5,
        w: 5,
    };
    let pool = block_on(MaxPool2d::new(gpu, s)).unwrap();
    let err = pool
        .forward(
            gpu,
            &zeros("x", &[1, 2, 5, 5]),
            &zeros("pooled", &[1, 2, 3, 3]),
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("pooled") && err.contains("[1, 2, 3, 3]") && err.contains("[1, 2, 2, 2]"),
        "{err}"
    );
    assert!(block_on(MaxPool2d::new(
        gpu,
        MaxPool2dShape {
            n: 1,
            c: 1,
            h: 1,
            w: 4
        }
    ))
    .is_err());
}
