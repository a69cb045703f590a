//! global_avgpool: GPU against the reference (forward and gradient), the reference against
//! finite differences, determinism, and shape errors.

mod common;
use common::*;

use fer_cbam::ops::global_avgpool::{GlobalAvgPool, GlobalAvgPoolShape};
use fer_cbam_reference::global_avgpool as reference;

fn shape(n: usize, c: usize, h: usize, w: usize) -> GlobalAvgPoolShape {
    GlobalAvgPoolShape { n, c, h, w }
}

fn ref_shape(s: &GlobalAvgPoolShape) -> reference::Shape {
    reference::Shape {
        n: s.n,
        c: s.c,
        h: s.h,
        w: s.w,
    }
}

/// Edge shapes: everything 1, 1x1 planes (the mean is a copy), odd non-square planes, channel
/// counts that are not multiples of the workgroup (64), more outputs than one workgroup, a plane
/// larger than a workgroup, and the network's head input at batch 2.
const SHAPES: &[(usize, usize, usize, usize)] = &[
    (1, 1, 1, 1),
    (2, 3, 5, 7),
    (3, 67, 1, 1),
    (1, 5, 3, 3),
    (2, 300, 3, 2),
    (1, 2, 33, 31),
    (2, 256, 8, 8),
];

/// dy / P with exact f32 inputs is a single division: 2.5 ulp (WGSL's f32 division accuracy).
const DIVISION_TOL: Tol = Tol {
    atol: 0.0,
    rtol: 2.5 * f32::EPSILON as f64,
    why: "one f32 division of exact inputs: WGSL allows 2.5 ulp",
};

fn check_parity(s: GlobalAvgPoolShape, seed: u64) {
    let gpu = gpu();
    let pool = block_on(GlobalAvgPool::new(gpu, s)).unwrap();
    let xs = random(seed, s.input_shape().iter().product());
    let dys = random(seed + 1, s.output_shape().iter().product());
    let x = upload("x", &s.input_shape(), &xs);
    let y = zeros("y", &s.output_shape());
    let dy = upload("dy", &s.output_shape(), &dys);
    // Filled with garbage first: the backward must overwrite, not accumulate.
    let dx = upload(
        "dx",
        &s.input_shape(),
        &random(seed + 2, s.input_shape().iter().product()),
    );
    let ds = [
        pool.forward(gpu, &x, &y).unwrap(),
        pool.backward(gpu, &dy, &dx).unwrap(),
    ];
    run(&ds.iter().collect::<Vec<_>>());

    let rs = ref_shape(&s);
    // The plane sum in its blocked order (the error model of `sum_bounds`, each mean bounded by
    // the mean of its |x|), then one division: WGSL allows 2.5 ulp (5 u).
    let want = reference::forward(&to_f64(&xs), &rs);
    let mut bound = sum_bounds(
        &pool.sums(),
        &reference::forward(&abs(&to_f64(&xs)), &rs),
        &want,
    );
    for (b, w) in bound.iter_mut().zip(&want) {
        *b += 5.0 * U * w.abs();
    }
    assert_within(
        &format!("global_avgpool forward {s:?}"),
        &read(&y),
        &want,
        &bound,
        "blocked f32 plane sum (sum_bounds) and one division (2.5 ulp)",
    );
    assert_close(
        &format!("global_avgpool backward {s:?}"),
        &read(&dx),
        &reference::backward(&to_f64(&dys), &rs),
        DIVISION_TOL,
    );
}

#[test]
fn gpu_matches_reference_at_edge_shapes() {
    for (i, &(n, c, h, w)) in SHAPES.iter().enumerate() {
        check_parity(shape(n, c, h, w), 200 + 10 * i as u64);
    }
}

#[test]
fn reference_gradient_matches_finite_differences() {
    for s in [
        reference::Shape {
            n: 2,
            c: 3,
            h: 5,
            w: 4,
        },
        reference::Shape {
            n: 1,
            c: 2,
            h: 1,
            w: 1,
        },
        reference::Shape {
            n: 3,
            c: 1,
            h: 3,
            w: 7,
        },
    ] {
        let x = to_f64(&random(1, s.n * s.c * s.h * s.w));
        let r = to_f64(&random(2, s.n * s.c));
        // loss = <r, pool(x)>, so dloss/dy = r.
        let fd = finite_difference(|v| dot(&r, &reference::forward(v, &s)), &x, 1e-6);
        assert_close_f64(
            &format!("dx {s:?}"),
            &reference::backward(&r, &s),
            &fd,
            FD_TOL,
        );
    }
}

#[test]
fn results_are_bit_identical_run_to_run() {
    let gpu = gpu();
    let s = shape(5, 70, 9, 7);
    let pool = block_on(GlobalAvgPool::new(gpu, s)).unwrap();
    let x = upload(
        "x",
        &s.input_shape(),
        &random(1, s.input_shape().iter().product()),
    );
    let y = zeros("y", &s.output_shape());
    let dy = upload(
        "dy",
        &s.output_shape(),
        &random(2, s.output_shape().iter().product()),
    );
    let dx = zeros("dx", &s.input_shape());
    let ds = [
        pool.forward(gpu, &x, &y).unwrap(),
        pool.backward(gpu, &dy, &dx).unwrap(),
    ];
    let bits = |t: &fer_cbam::Tensor| read(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    run(&ds.iter().collect::<Vec<_>>());
    let first = (bits(&y), bits(&dx));
    run(&ds.iter().collect::<Vec<_>>());
    assert!(first == (bits(&y), bits(&dx)), "second run differs");
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let gpu = gpu();
    let s = shape(2, 3, 4, 5);
    let pool = block_on(GlobalAvgPool::new(gpu, s)).unwrap();
    let err = pool
        .forward(gpu, &zeros("features", &[2, 3, 5, 4]), &zeros("y", &[2, 3]))
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("features") && err.contains("[2, 3, 5, 4]") && err.contains("[2, 3, 4, 5]"),
        "{err}"
    );
    let err = pool
        .backward(
            gpu,
            &zeros("dlogits", &[2, 3, 1, 1]),
            &zeros("dx", &[2, 3, 4, 5]),
        )
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("dlogits") && err.contains("[2, 3, 1, 1]") && err.contains("[2, 3]"),
        "{err}"
    );
    let bad = block_on(GlobalAvgPool::new(gpu, shape(2, 0, 4, 4)))
        .err()
        .unwrap()
        .to_string();
    assert!(
        bad.contains("global_avgpool") && bad.contains("c: 0"),
        "{bad}"
    );
}
