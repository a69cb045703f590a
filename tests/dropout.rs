//! dropout: the GPU mask equals the reference mask bit for bit, values and gradients match,
//! p = 0 and evaluation mode are the identity, set_step/set_seed redraw the mask, the reference
//! backward is the mask scaling, the keep rate is right, determinism and shape errors.

mod common;
use common::*;

use fer_cbam::ops::dropout::{keep_max, Dropout};
use fer_cbam::Tensor;
use fer_cbam_reference::dropout as reference;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The GPU mask: forward of all-ones gives exactly `scale` where kept and 0 where dropped.
fn gpu_mask(d: &Dropout, shape: &[usize]) -> Vec<bool> {
    let gpu = gpu();
    let n: usize = shape.iter().product();
    let x = upload("ones", shape, &vec![1.0; n]);
    let y = zeros("y", shape);
    run(&[&d.forward(gpu, &x, &y).unwrap()]);
    let scale = (1.0 / (1.0 - d.p() as f64)) as f32;
    read(&y)
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            assert!(
                v == 0.0 || v == scale,
                "element {i} is {v}, neither 0 nor the scale {scale}"
            );
            v != 0.0
        })
        .collect()
}

#[test]
fn gpu_mask_equals_reference_mask_exactly() {
    let gpu = gpu();
    for (shape, p, seed) in [
        (vec![64, 256], 0.2f32, 1u32),
        (vec![64, 128], 0.2, 2),
        (vec![1], 0.5, 0),
        (vec![1, 67], 0.9, 0xdead_beef),
        (vec![3, 5, 7], 0.01, u32::MAX),
    ] {
        let n: usize = shape.iter().product();
        let d = block_on(Dropout::new(gpu, &shape, p, seed)).unwrap();
        for step in [0u32, 1, 2, 1000, u32::MAX] {
            d.set_step(gpu, step);
            let want = reference::mask(n, p, seed, step);
            let got = gpu_mask(&d, &shape);
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "{shape:?} p={p} seed={seed} step={step}: mask differs at {first:?}"
            );
        }
    }
}

#[test]
fn gpu_matches_reference_forward_and_backward() {
    let gpu = gpu();
    for (i, (shape, p)) in [
        (vec![1], 0.2f32),
        (vec![1, 67], 0.5),
        (vec![3, 5, 7], 0.9),
        (vec![64, 256], 0.2),
    ]
    .into_iter()
    .enumerate()
    {
        let n: usize = shape.iter().product();
        let (seed, step) = (7 + i as u32, 3u32);
        let d = block_on(Dropout::new(gpu, &shape, p, seed)).unwrap();
        d.set_step(gpu, step);
        let xs = random(10 + i as u64, n);
        let dys = random(20 + i as u64, n);
        let (x, y) = (upload("x", &shape, &xs), zeros("y", &shape));
        let (dy, dx) = (upload("dy", &shape, &dys), zeros("dx", &shape));
        run(&[
            &d.forward(gpu, &x, &y).unwrap(),
            &d.backward(gpu, &dy, &dx).unwrap(),
        ]);
        // x * f32(1/(1-p)) against x / (1-p) in f64: two roundings, within ELEMENTWISE_TOL.
        let label = format!("dropout {shape:?} p={p}");
        assert_close(
            &format!("{label} forward"),
            &read(&y),
            &reference::forward(&to_f64(&xs), p, seed, step, true),
            ELEMENTWISE_TOL,
        );
        assert_close(
            &format!("{label} backward"),
            &read(&dx),
            &reference::backward(&to_f64(&dys), p, seed, step, true),
            ELEMENTWISE_TOL,
        );
    }
}

/// The threshold worked out by hand: T = ceil((1 - p) 2^32), keep iff hash <= T - 1.
#[test]
fn keep_threshold_is_exactly_one_minus_p_times_two_to_the_32() {
    assert_eq!(keep_max(0.0), u32::MAX, "p = 0 keeps every hash");
    assert_eq!(keep_max(0.5), (1 << 31) - 1);
    assert_eq!(keep_max(0.75), (1 << 30) - 1);
    // 0.2f32 = 13421773 * 2^-26, so (1 - p) 2^32 = 2^32 - 13421773 * 2^6 = 3435973824 exactly.
    assert_eq!(keep_max(0.2), 3_435_973_823);
    // 0.1f32 = 13421773 * 2^-27: (1 - p) 2^32 = 2^32 - 13421773 * 2^5 = 3865470560.
    assert_eq!(keep_max(0.1), 3_865_470_559);
    // The largest f32 below 1: (1 - p) 2^32 = 2^-24 * 2^32 = 256.
    assert_eq!(keep_max(1.0 - f32::EPSILON / 2.0), 255);
    for p in [0.0f32, 0.2, 0.3, 1.0 / 3.0, 0.5, 0.9, 0.999] {
        assert_eq!(
            keep_max(p),
            reference::keep_max(p),
            "wrapper and reference thresholds, p={p}"
        );
    }
}

/// lowbias32^-1: xorshift by 16 is its own inverse, by 15 is undone by y ^ y>>15 ^ y>>30, and
/// odd multipliers have inverses mod 2^32 (Newton's iteration doubles the correct bits each time).
fn inverse_lowbias32(mut x: u32) -> u32 {
    let inv = |c: u32| {
        (0..5).fold(c, |i, _| {
            i.wrapping_mul(2u32.wrapping_sub(c.wrapping_mul(i)))
        })
    };
    x ^= x >> 16;
    x = x.wrapping_mul(inv(0x846c_a68b));
    x ^= (x >> 15) ^ (x >> 30);
    x = x.wrapping_mul(inv(0x7feb_352d));
    x ^ (x >> 16)
}

/// The step at which element 0 of a layer seeded `seed` hashes to exactly `target`.
fn step_hashing_element_0_to(seed: u32, target: u32) -> u32 {
    let k1 = reference::lowbias32(seed ^ 0x9e37_79b9);
    let k2 = inverse_lowbias32(target); // k2 ^ 0 must be lowbias32^-1(target)
    let step = inverse_lowbias32(k2) ^ k1;
    assert_eq!(reference::hash(seed, step, 0), target);
    step
}

/// Steps chosen (by inverting the hash) so that element 0 hashes to exactly T - 1 and to T: the
/// GPU must keep the first and drop the second, i.e. compare strictly against (1 - p) 2^32.
#[test]
fn gpu_keep_boundary_is_strictly_below_one_minus_p_times_two_to_the_32() {
    let gpu = gpu();
    let seed = 1234;
    for (p, t) in [(0.5f32, 1u32 << 31), (0.2, 3_435_973_824)] {
        let d = block_on(Dropout::new(gpu, &[1], p, seed)).unwrap();
        d.set_step(gpu, step_hashing_element_0_to(seed, t - 1));
        assert_eq!(
            gpu_mask(&d, &[1]),
            [true],
            "p={p}: hash T-1 = {} must be kept",
            t - 1
        );
        d.set_step(gpu, step_hashing_element_0_to(seed, t));
        assert_eq!(
            gpu_mask(&d, &[1]),
            [false],
            "p={p}: hash T = {t} must be dropped"
        );
    }
}

#[test]
fn p_zero_is_the_identity_bit_for_bit() {
    let gpu = gpu();
    let shape = [5, 67];
    let xs = random(3, 5 * 67);
    let d = block_on(Dropout::new(gpu, &shape, 0.0, 9)).unwrap();
    let (x, y) = (upload("x", &shape, &xs), zeros("y", &shape));
    let dx = zeros("dx", &shape);
    run(&[
        &d.forward(gpu, &x, &y).unwrap(),
        &d.backward(gpu, &x, &dx).unwrap(),
    ]);
    assert_eq!(bits(&read(&y)), bits(&xs));
    assert_eq!(bits(&read(&dx)), bits(&xs));
}

#[test]
fn evaluation_mode_is_the_identity_and_training_mode_comes_back() {
    let gpu = gpu();
    let shape = [64, 256];
    let xs = random(4, 64 * 256);
    let d = block_on(Dropout::new(gpu, &shape, 0.2, 11)).unwrap();
    let (x, y) = (upload("x", &shape, &xs), zeros("y", &shape));
    let dx = zeros("dx", &shape);
    let ds = [
        d.forward(gpu, &x, &y).unwrap(),
        d.backward(gpu, &x, &dx).unwrap(),
    ];
    d.set_training(gpu, false);
    run(&[&ds[0], &ds[1]]);
    assert_eq!(bits(&read(&y)), bits(&xs), "evaluation forward");
    assert_eq!(bits(&read(&dx)), bits(&xs), "evaluation backward");
    d.set_training(gpu, true);
    run(&[&ds[0]]);
    let train = read(&y);
    let dropped = train.iter().filter(|&&v| v == 0.0).count();
    assert!(
        dropped > 0,
        "training mode after evaluation dropped nothing"
    );
    assert_close(
        "training again",
        &train,
        &reference::forward(&to_f64(&xs), 0.2, 11, 0, true),
        ELEMENTWISE_TOL,
    );
}

/// The uniform update redraws the mask without new buffers or dispatches, and going back to an
/// earlier (seed, step) reproduces that mask exactly.
#[test]
fn set_step_and_set_seed_redraw_the_mask_reproducibly() {
    let gpu = gpu();
    let shape = [64, 128];
    let d = block_on(Dropout::new(gpu, &shape, 0.2, 5)).unwrap();
    let m0 = gpu_mask(&d, &shape);
    d.set_step(gpu, 1);
    let m1 = gpu_mask(&d, &shape);
    d.set_seed(gpu, 6);
    let m1_other_seed = gpu_mask(&d, &shape);
    assert_ne!(m0, m1);
    assert_ne!(m1, m1_other_seed);
    assert_eq!(m1_other_seed, reference::mask(64 * 128, 0.2, 6, 1));
    d.set_seed(gpu, 5);
    d.set_step(gpu, 0);
    assert_eq!(gpu_mask(&d, &shape), m0, "(seed 5, step 0) again");
}

/// The hash behaves like independent Bernoulli(1 - p) draws: the keep rate over 20 steps of the
/// head's [64, 256] tensor, and the rate of elements kept at two consecutive steps or by two
/// seeds, are within 5 standard deviations of (1 - p) and (1 - p)^2.
#[test]
fn keep_rate_and_independence_match_bernoulli() {
    let (n, p) = (64 * 256, 0.2f32);
    let q = 1.0 - p as f64;
    let check = |what: &str, count: usize, trials: usize, rate: f64| {
        let sd = (rate * (1.0 - rate) / trials as f64).sqrt();
        let got = count as f64 / trials as f64;
        assert!(
            (got - rate).abs() < 5.0 * sd,
            "{what}: rate {got}, expected {rate} +- {}",
            5.0 * sd
        );
    };
    let masks: Vec<Vec<bool>> = (0..20).map(|s| reference::mask(n, p, 1, s)).collect();
    let kept: usize = masks.iter().map(|m| m.iter().filter(|&&k| k).count()).sum();
    check("keep", kept, 20 * n, q);
    let both: usize = masks
        .windows(2)
        .map(|w| w[0].iter().zip(&w[1]).filter(|(a, b)| **a && **b).count())
        .sum();
    check("kept at consecutive steps", both, 19 * n, q * q);
    let other = reference::mask(n, p, 2, 0);
    let both = masks[0]
        .iter()
        .zip(&other)
        .filter(|(a, b)| **a && **b)
        .count();
    check("kept under two seeds", both, n, q * q);
    // Neighbouring elements are independent too (a weak hash shows here first).
    let pairs = masks[0].windows(2).filter(|w| w[0] && w[1]).count();
    check("neighbours kept", pairs, n - 1, q * q);
}

/// The backward is the forward's mask scaling: the Jacobian of y = x * mask / (1 - p) is diagonal
/// with entries mask / (1 - p); checked against finite differences and against the mask itself.
#[test]
fn reference_backward_is_the_mask_scaling() {
    let (n, p, seed, step) = (67, 0.3f32, 3, 4);
    let x = to_f64(&random(1, n));
    let r = to_f64(&random(2, n));
    let fd = finite_difference(
        |v| dot(&r, &reference::forward(v, p, seed, step, true)),
        &x,
        1e-6,
    );
    let back = reference::backward(&r, p, seed, step, true);
    assert_close_f64("dropout dx vs finite differences", &back, &fd, FD_TOL);
    let m = reference::mask(n, p, seed, step);
    for i in 0..n {
        let want = if m[i] { r[i] / (1.0 - p as f64) } else { 0.0 };
        assert!(
            (back[i] - want).abs() <= 1e-15,
            "[{i}] {} vs {want}",
            back[i]
        );
    }
    assert!(
        m.iter().any(|&k| !k) && m.iter().any(|&k| k),
        "the test needs kept and dropped elements"
    );
    assert_eq!(
        reference::backward(&r, p, seed, step, false),
        r,
        "evaluation backward is the identity"
    );
}

#[test]
fn outputs_are_bit_identical_run_to_run() {
    let gpu = gpu();
    let shape = [64, 256];
    let d = block_on(Dropout::new(gpu, &shape, 0.2, 77)).unwrap();
    d.set_step(gpu, 12);
    let x = upload("x", &shape, &random(1, 64 * 256));
    let (y, dx) = (zeros("y", &shape), zeros("dx", &shape));
    let ds = [
        d.forward(gpu, &x, &y).unwrap(),
        d.backward(gpu, &x, &dx).unwrap(),
    ];
    let both = |y: &Tensor, dx: &Tensor| (bits(&read(y)), bits(&read(dx)));
    run(&[&ds[0], &ds[1]]);
    let first = both(&y, &dx);
    run(&[&ds[0], &ds[1]]);
    assert!(first == both(&y, &dx), "second run differs");
    // The backward applied to the same values as the forward gives the same bits: one mask.
    assert_eq!(first.0, first.1);
}

#[test]
fn shape_mismatch_and_bad_probability_are_errors() {
    let gpu = gpu();
    let d = block_on(Dropout::new(gpu, &[64, 256], 0.2, 0)).unwrap();
    let x = zeros("pooled", &[64, 255]);
    let y = zeros("y", &[64, 256]);
    let err = d.forward(gpu, &x, &y).expect_err("must fail").to_string();
    assert!(
        err.contains("pooled") && err.contains("[64, 255]") && err.contains("[64, 256]"),
        "{err}"
    );
    let err = d
        .backward(gpu, &y, &zeros("grad", &[256, 64]))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("grad") && err.contains("[256, 64]") && err.contains("[64, 256]"),
        "{err}"
    );
    for p in [1.0f32, -0.1, f32::NAN] {
        let err = block_on(Dropout::new(gpu, &[4], p, 0))
            .err()
            .expect("bad p must fail")
            .to_string();
        assert!(err.contains("[0, 1)"), "{err}");
    }
    assert!(block_on(Dropout::new(gpu, &[0, 4], 0.2, 0)).is_err());
}
