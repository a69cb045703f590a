//! conv2d: GPU against the reference (forward and all three gradients), the reference against
//! finite differences, determinism, and shape errors.

mod common;
use common::*;

use fer_cbam::ops::conv2d::{Conv2d, Conv2dShape};
use fer_cbam_reference::conv2d as reference;

fn ref_shape(s: &Conv2dShape) -> reference::Shape {
    reference::Shape {
        n: s.n,
        c_in: s.c_in,
        c_out: s.c_out,
        h: s.h,
        w: s.w,
        k: s.k,
        pad: s.pad,
    }
}

fn shape(
    n: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: usize,
    pad: usize,
) -> Conv2dShape {
    Conv2dShape {
        n,
        c_in,
        c_out,
        h,
        w,
        k,
        pad,
    }
}

/// Edge shapes: 1x1 spatial, batch 1, odd and non-square sizes, channel and weight counts that
/// are not multiples of the workgroup (64), the spatial gate's 7x7 2->1, a kernel with no padding.
const SHAPES: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 1, 3, 1),
    (2, 3, 5, 7, 9, 3, 1),
    (1, 2, 1, 11, 6, 7, 3),
    (3, 5, 67, 5, 4, 3, 1),
    (2, 4, 3, 6, 5, 3, 0),
    (1, 3, 2, 2, 3, 7, 3),
];

fn check_parity(s: Conv2dShape, with_bias: bool, seed: u64) {
    let gpu = gpu();
    let conv = block_on(Conv2d::new(gpu, s, with_bias)).unwrap();
    let xs = random(seed, s.input_shape().iter().product());
    let ws = random(seed + 1, s.weight_shape().iter().product());
    let bs = random(seed + 2, s.c_out);
    let dys = random(seed + 3, s.output_shape().iter().product());

    let x = upload("x", &s.input_shape(), &xs);
    let w = upload("weight", &s.weight_shape(), &ws);
    let b = upload("bias", &[s.c_out], &bs);
    let y = zeros("y", &s.output_shape());
    let dy = upload("dy", &s.output_shape(), &dys);
    let dx = zeros("dx", &s.input_shape());
    let dw = zeros("dweight", &s.weight_shape());
    let db = zeros("dbias", &[s.c_out]);

    let bias = with_bias.then_some(&b);
    let mut ds = vec![
        conv.forward(gpu, &x, &w, bias, &y).unwrap(),
        conv.backward_input(gpu, &dy, &w, &dx).unwrap(),
        conv.backward_weight(gpu, &dy, &x, &dw).unwrap(),
    ];
    if with_bias {
        ds.push(conv.backward_bias(gpu, &dy, &db).unwrap());
    }
    run(&ds.iter().collect::<Vec<_>>());

    let rs = ref_shape(&s);
    let (xr, wr, br, dyr) = (to_f64(&xs), to_f64(&ws), to_f64(&bs), to_f64(&dys));
    let label = |what: &str| format!("conv2d {what} {s:?} bias={with_bias}");
    // Forward sums c_in*k*k products (+ bias); backward-input c_out*k*k; weight/bias n*h_out*w_out.
    assert_close(
        &label("forward"),
        &read(&y),
        &reference::forward(&xr, &wr, with_bias.then_some(&br[..]), &rs),
        sum_tol(s.c_in * s.k * s.k + 1),
    );
    assert_close(
        &label("backward_input"),
        &read(&dx),
        &reference::backward_input(&dyr, &wr, &rs),
        sum_tol(s.c_out * s.k * s.k),
    );
    let positions = s.n * s.h_out() * s.w_out();
    assert_close(
        &label("backward_weight"),
        &read(&dw),
        &reference::backward_weight(&dyr, &xr, &rs),
        sum_tol(positions),
    );
    if with_bias {
        assert_close(
            &label("backward_bias"),
            &read(&db),
            &reference::backward_bias(&dyr, &rs),
            sum_tol(positions),
        );
    }
}

#[test]
fn gpu_matches_reference_at_edge_shapes() {
    for (i, &(n, ci, co, h, w, k, pad)) in SHAPES.iter().enumerate() {
        check_parity(shape(n, ci, co, h, w, k, pad), true, 100 + 10 * i as u64);
    }
}

#[test]
fn gpu_matches_reference_without_bias() {
    check_parity(shape(2, 3, 4, 5, 5, 3, 1), false, 7);
    check_parity(shape(1, 2, 1, 9, 9, 7, 3), false, 8);
}

#[test]
fn gpu_matches_reference_at_a_network_stage_shape() {
    // Stage 1 of the default network at 16x16 input: 32 -> 64 channels, 8x8 positions, batch 2.
    check_parity(shape(2, 32, 64, 8, 8, 3, 1), true, 42);
}

#[test]
fn reference_gradients_match_finite_differences() {
    for s in [
        reference::Shape {
            n: 2,
            c_in: 2,
            c_out: 3,
            h: 5,
            w: 4,
            k: 3,
            pad: 1,
        },
        reference::Shape {
            n: 1,
            c_in: 2,
            c_out: 1,
            h: 4,
            w: 5,
            k: 7,
            pad: 3,
        },
        reference::Shape {
            n: 1,
            c_in: 1,
            c_out: 2,
            h: 4,
            w: 4,
            k: 3,
            pad: 0,
        },
    ] {
        let nx = s.n * s.c_in * s.h * s.w;
        let nw = s.c_out * s.c_in * s.k * s.k;
        let ny = s.n * s.c_out * s.h_out() * s.w_out();
        let x = to_f64(&random(1, nx));
        let w = to_f64(&random(2, nw));
        let b = to_f64(&random(3, s.c_out));
        let r = to_f64(&random(4, ny));
        // loss = <r, conv(x, w, b)>, so dloss/dy = r.
        let eps = 1e-6;
        let fd_x = finite_difference(
            |v| dot(&r, &reference::forward(v, &w, Some(&b), &s)),
            &x,
            eps,
        );
        let fd_w = finite_difference(
            |v| dot(&r, &reference::forward(&x, v, Some(&b), &s)),
            &w,
            eps,
        );
        let fd_b = finite_difference(
            |v| dot(&r, &reference::forward(&x, &w, Some(v), &s)),
            &b,
            eps,
        );
        assert_close_f64("dx", &reference::backward_input(&r, &w, &s), &fd_x, FD_TOL);
        assert_close_f64(
            "dweight",
            &reference::backward_weight(&r, &x, &s),
            &fd_w,
            FD_TOL,
        );
        assert_close_f64("dbias", &reference::backward_bias(&r, &s), &fd_b, FD_TOL);
    }
}

#[test]
fn gradients_are_bit_identical_run_to_run() {
    let gpu = gpu();
    let s = shape(3, 6, 10, 9, 7, 3, 1);
    let conv = block_on(Conv2d::new(gpu, s, true)).unwrap();
    let x = upload(
        "x",
        &s.input_shape(),
        &random(1, s.input_shape().iter().product()),
    );
    let w = upload(
        "w",
        &s.weight_shape(),
        &random(2, s.weight_shape().iter().product()),
    );
    let dy = upload(
        "dy",
        &s.output_shape(),
        &random(3, s.output_shape().iter().product()),
    );
    let dx = zeros("dx", &s.input_shape());
    let dw = zeros("dw", &s.weight_shape());
    let db = zeros("db", &[s.c_out]);
    let ds = [
        conv.backward_input(gpu, &dy, &w, &dx).unwrap(),
        conv.backward_weight(gpu, &dy, &x, &dw).unwrap(),
        conv.backward_bias(gpu, &dy, &db).unwrap(),
    ];
    let bits = |t: &fer_cbam::Tensor| read(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    run(&ds.iter().collect::<Vec<_>>());
    let first = (bits(&dx), bits(&dw), bits(&db));
    run(&ds.iter().collect::<Vec<_>>());
    assert!(
        first == (bits(&dx), bits(&dw), bits(&db)),
        "second run differs"
    );
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let gpu = gpu();
    let s = shape(2, 3, 4, 5, 5, 3, 1);
    let conv = block_on(Conv2d::new(gpu, s, true)).unwrap();
    let x = zeros("images", &[2, 3, 6, 5]);
    let w = zeros("w", &s.weight_shape());
    let b = zeros("b", &[4]);
    let y = zeros("y", &s.output_shape());
    let err = conv
        .forward(gpu, &x, &w, Some(&b), &y)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("images") && err.contains("[2, 3, 6, 5]") && err.contains("[2, 3, 5, 5]"),
        "{err}"
    );
    let err = conv
        .forward(gpu, &zeros("x", &s.input_shape()), &w, None, &y)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("bias"), "{err}");
    let bad = block_on(Conv2d::new(gpu, shape(1, 1, 1, 2, 2, 7, 0), true))
        .err()
        .unwrap()
        .to_string();
    assert!(bad.contains("7x7") && bad.contains("2x2"), "{bad}");
}
