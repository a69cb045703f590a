//! linear: GPU against the reference (forward and all three gradients), the reference against
//! finite differences, parameters as views into one packed buffer, determinism, shape errors.

mod common;
use common::*;

use std::sync::Arc;

use fer_cbam::ops::linear::{Linear, LinearShape};
use fer_cbam::Tensor;
use fer_cbam_reference::linear as reference;

fn shape(n: usize, in_features: usize, out_features: usize) -> LinearShape {
    LinearShape {
        n,
        in_features,
        out_features,
    }
}

fn ref_shape(s: &LinearShape) -> reference::Shape {
    reference::Shape {
        n: s.n,
        in_features: s.in_features,
        out_features: s.out_features,
    }
}

/// Runs forward and the three backwards on GPU tensors `w`, `b` (given, so views can be tested)
/// and compares every output with the reference.
fn check_parity_with(s: LinearShape, with_bias: bool, seed: u64, w: &Tensor, b: &Tensor) {
    let gpu = gpu();
    let lin = block_on(Linear::new(gpu, s, with_bias)).unwrap();
    let xs = random(seed, s.n * s.in_features);
    let ws = random(seed + 1, s.out_features * s.in_features);
    let bs = random(seed + 2, s.out_features);
    let dys = random(seed + 3, s.n * s.out_features);
    gpu.write(w, &ws).unwrap();
    gpu.write(b, &bs).unwrap();

    let x = upload("x", &s.input_shape(), &xs);
    let y = zeros("y", &s.output_shape());
    let dy = upload("dy", &s.output_shape(), &dys);
    let dx = zeros("dx", &s.input_shape());
    let dw = zeros("dweight", &s.weight_shape());
    let db = zeros("dbias", &[s.out_features]);

    let bias = with_bias.then_some(b);
    let mut ds = vec![
        lin.forward(gpu, &x, w, bias, &y).unwrap(),
        lin.backward_input(gpu, &dy, w, &dx).unwrap(),
        lin.backward_weight(gpu, &dy, &x, &dw).unwrap(),
    ];
    if with_bias {
        ds.push(lin.backward_bias(gpu, &dy, &db).unwrap());
    }
    run(&ds.iter().collect::<Vec<_>>());

    let rs = ref_shape(&s);
    let (xr, wr, br, dyr) = (to_f64(&xs), to_f64(&ws), to_f64(&bs), to_f64(&dys));
    let label = |what: &str| format!("linear {what} {s:?} bias={with_bias}");
    // Each pass against the error model of its summation order (`Linear::sums`), every output
    // bounded by its own sum of |terms| (the reference on the inputs' magnitudes).
    let (xa, wa, ba, dya) = (abs(&xr), abs(&wr), abs(&br), abs(&dyr));
    let sums = lin.sums();
    check_sum(
        &label("forward"),
        &read(&y),
        &reference::forward(&xr, &wr, with_bias.then_some(&br[..]), &rs),
        &reference::forward(&xa, &wa, with_bias.then_some(&ba[..]), &rs),
        &sums.forward,
    );
    check_sum(
        &label("backward_input"),
        &read(&dx),
        &reference::backward_input(&dyr, &wr, &rs),
        &reference::backward_input(&dya, &wa, &rs),
        &sums.backward_input,
    );
    check_sum(
        &label("backward_weight"),
        &read(&dw),
        &reference::backward_weight(&dyr, &xr, &rs),
        &reference::backward_weight(&dya, &xa, &rs),
        &sums.backward_weight,
    );
    if with_bias {
        check_sum(
            &label("backward_bias"),
            &read(&db),
            &reference::backward_bias(&dyr, &rs),
            &reference::backward_bias(&dya, &rs),
            &sums.backward_bias,
        );
    }
}

fn check_parity(s: LinearShape, with_bias: bool, seed: u64) {
    let w = zeros("weight", &s.weight_shape());
    let b = zeros("bias", &[s.out_features]);
    check_parity_with(s, with_bias, seed, &w, &b);
}

/// Batch 1, 1 -> 1, sizes that are not multiples of the workgroup (67 -> 5, 5 -> 67, 130 -> 70),
/// and the head's two layers at batch 64.
#[test]
fn gpu_matches_reference_at_edge_shapes() {
    for (i, &(n, fi, fo)) in [
        (1, 1, 1),
        (1, 67, 5),
        (3, 67, 5),
        (2, 5, 67),
        (5, 130, 70),
        (64, 256, 128),
        (64, 128, 7),
    ]
    .iter()
    .enumerate()
    {
        check_parity(shape(n, fi, fo), true, 100 + 10 * i as u64);
    }
}

#[test]
fn gpu_matches_reference_without_bias() {
    check_parity(shape(3, 67, 5), false, 7);
    check_parity(shape(1, 16, 1), false, 8);
}

/// The network packs every parameter into one buffer with an offset table: weight and bias here
/// are views at aligned, non-zero offsets of one buffer, with other data around them.
#[test]
fn parameters_may_be_views_into_a_packed_buffer() {
    let gpu = gpu();
    let s = shape(4, 67, 5);
    let align = gpu.limits.min_storage_buffer_offset_alignment as usize;
    let w_off = align;
    let b_off = (w_off + 4 * 67 * 5).div_ceil(align) * align;
    let total = b_off + 4 * 5 + 4 * 64;
    let buffer = Arc::new(gpu.storage_buffer("packed", total as u64).unwrap());
    // Fill the whole buffer with a sentinel first, so reading outside a view would show.
    let all = Tensor::new("packed", buffer.clone(), 0, &[total / 4]);
    gpu.write(&all, &vec![1e6; total / 4]).unwrap();
    let w = Tensor::new(
        "head.fc.weight",
        buffer.clone(),
        w_off as u64,
        &s.weight_shape(),
    );
    let b = Tensor::new("head.fc.bias", buffer, b_off as u64, &[5]);
    check_parity_with(s, true, 55, &w, &b);
}

#[test]
fn reference_gradients_match_finite_differences() {
    for s in [
        reference::Shape {
            n: 1,
            in_features: 1,
            out_features: 1,
        },
        reference::Shape {
            n: 3,
            in_features: 7,
            out_features: 5,
        },
        reference::Shape {
            n: 2,
            in_features: 4,
            out_features: 9,
        },
    ] {
        let x = to_f64(&random(1, s.n * s.in_features));
        let w = to_f64(&random(2, s.out_features * s.in_features));
        let b = to_f64(&random(3, s.out_features));
        let r = to_f64(&random(4, s.n * s.out_features));
        // loss = <r, linear(x, w, b)>, so dloss/dy = r.
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
fn outputs_are_bit_identical_run_to_run() {
    let gpu = gpu();
    let s = shape(9, 67, 13);
    let lin = block_on(Linear::new(gpu, s, true)).unwrap();
    let x = upload("x", &s.input_shape(), &random(1, s.n * s.in_features));
    let w = upload(
        "w",
        &s.weight_shape(),
        &random(2, s.out_features * s.in_features),
    );
    let b = upload("b", &[s.out_features], &random(3, s.out_features));
    let dy = upload("dy", &s.output_shape(), &random(4, s.n * s.out_features));
    let y = zeros("y", &s.output_shape());
    let dx = zeros("dx", &s.input_shape());
    let dw = zeros("dw", &s.weight_shape());
    let db = zeros("db", &[s.out_features]);
    let ds = [
        lin.forward(gpu, &x, &w, Some(&b), &y).unwrap(),
        lin.backward_input(gpu, &dy, &w, &dx).unwrap(),
        lin.backward_weight(gpu, &dy, &x, &dw).unwrap(),
        lin.backward_bias(gpu, &dy, &db).unwrap(),
    ];
    let bits = |t: &Tensor| read(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let all = || [bits(&y), bits(&dx), bits(&dw), bits(&db)];
    run(&ds.iter().collect::<Vec<_>>());
    let first = all();
    run(&ds.iter().collect::<Vec<_>>());
    assert!(first == all(), "second run differs");
}

#[test]
fn shape_mismatch_is_an_error_naming_both_shapes() {
    let gpu = gpu();
    let s = shape(4, 67, 5);
    let lin = block_on(Linear::new(gpu, s, true)).unwrap();
    let x = zeros("x", &s.input_shape());
    let w = zeros("w", &s.weight_shape());
    let b = zeros("b", &[5]);
    let y = zeros("y", &s.output_shape());
    // A weight in the transposed ([in, out]) layout is the mistake this catches.
    let wt = zeros("fc.weight", &[67, 5]);
    let err = lin
        .forward(gpu, &x, &wt, Some(&b), &y)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("fc.weight") && err.contains("[67, 5]") && err.contains("[5, 67]"),
        "{err}"
    );
    let dy = zeros("grad_out", &[4, 6]);
    let err = lin
        .backward_input(gpu, &dy, &w, &x)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("grad_out") && err.contains("[4, 6]") && err.contains("[4, 5]"),
        "{err}"
    );
    let err = lin
        .backward_weight(gpu, &y, &x, &zeros("dw", &[5, 66]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("dw") && err.contains("[5, 66]") && err.contains("[5, 67]"),
        "{err}"
    );
    let err = lin
        .backward_bias(gpu, &y, &zeros("db", &[4]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("db") && err.contains("[4]") && err.contains("[5]"),
        "{err}"
    );
    let err = lin
        .forward(gpu, &x, &w, None, &y)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("bias"), "{err}");
    let bad = block_on(Linear::new(gpu, shape(4, 0, 5), true))
        .err()
        .unwrap()
        .to_string();
    assert!(bad.contains("positive"), "{bad}");
}
