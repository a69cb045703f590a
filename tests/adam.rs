//! adam: a first step worked out by hand, several steps against the reference (Adam and AdamW),
//! lengths not multiple of 64 and length 1, all four tensors packed in one buffer at the
//! network's 434,001 parameters, determinism, uniform updates and errors.

#[allow(unused_imports)] // not every shared helper is used here
mod common;
use common::*;

use std::sync::Arc;

use fer_cbam::ops::adam::{Adam, AdamConfig};
use fer_cbam::Tensor;
use fer_cbam_reference::adam as reference;

const EPS: f64 = f32::EPSILON as f64;

fn ref_config(c: &AdamConfig) -> reference::Config {
    reference::Config {
        lr: c.lr,
        beta1: c.beta1,
        beta2: c.beta2,
        eps: c.eps,
        weight_decay: c.weight_decay,
    }
}

/// After `steps` steps with |p| < 2 and |g| <= 1. Parameters: each step rounds p twice (decay
/// product, then the subtraction), at most 2^-23 for |p| < 2, and the update lr * |m_hat /
/// (sqrt(v_hat) + eps)| (ratio at most ~3 for these gradients) carries the f32 errors of m, v,
/// sqrt and two divisions (WGSL: 2.5 ulp each), under 100 ulps relative. m: 3 roundings per step,
/// absolute to |g| <= 1 (0.9 m + 0.1 g can cancel). v: no cancellation, 4 roundings per step.
fn tols(steps: usize, lr: f64) -> [Tol; 3] {
    let s = steps as f64;
    [
        Tol {
            atol: s * (2f64.powi(-23) + lr * 3.0 * 100.0 * EPS),
            rtol: 0.0,
            why: "per step: p rounded twice (|p| < 2) plus an update of size lr*3 within 100 ulps",
        },
        Tol {
            atol: s * 4.0 * EPS,
            rtol: s * 4.0 * EPS,
            why: "m: 3 roundings per step, |g| <= 1",
        },
        Tol {
            atol: 0.0,
            rtol: s * 5.0 * EPS,
            why: "v: 4 roundings per step, all terms >= 0",
        },
    ]
}

/// Gradients for step `t`: uniform in [-1, 1) except every 7th element, which is always 0 (its
/// m and v stay 0 and the parameter must not move: 0 / (0 + eps) = 0).
fn grads(seed: u64, len: usize) -> Vec<f32> {
    let mut g = random(seed, len);
    for x in g.iter_mut().step_by(7) {
        *x = 0.0;
    }
    g
}

/// Runs `steps` steps on the GPU (tensors given, so views can be tested) and in the reference,
/// and compares params, m and v.
fn check_steps(
    c: AdamConfig,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    steps: u32,
    seed: u64,
) {
    let gpu = gpu();
    let len = p.len();
    let mut adam = block_on(Adam::new(gpu, len, c)).unwrap();
    let p0 = random(seed, len);
    gpu.write(p, &p0).unwrap();
    gpu.write(m, &vec![0.0; len]).unwrap();
    gpu.write(v, &vec![0.0; len]).unwrap();
    let d = adam.step(gpu, p, g, m, v).unwrap();
    let (mut rp, mut rm, mut rv) = (to_f64(&p0), vec![0.0; len], vec![0.0; len]);
    for t in 1..=steps {
        let gs = grads(seed + t as u64, len);
        gpu.write(g, &gs).unwrap();
        adam.set_step(gpu, t).unwrap();
        run(&[&d]);
        reference::step(&mut rp, &to_f64(&gs), &mut rm, &mut rv, &ref_config(&c), t);
    }
    let [tp, tm, tv] = tols(steps as usize, c.lr);
    let label = |what: &str| format!("adam {what} len={len} steps={steps} {c:?}");
    assert_close(&label("params"), &read(p), &rp, tp);
    assert_close(&label("m"), &read(m), &rm, tm);
    assert_close(&label("v"), &read(v), &rv, tv);
}

fn check_steps_fresh(c: AdamConfig, len: usize, steps: u32, seed: u64) {
    let t = |name| zeros(name, &[len]);
    check_steps(c, &t("params"), &t("grads"), &t("m"), &t("v"), steps, seed);
}

/// The first step worked out by hand (lr 1e-3, betas 0.9 / 0.999, eps 1e-8, t = 1):
/// m = 0.1 g, v = 0.001 g^2, m_hat = m / 0.1 = g, v_hat = v / 0.001 = g^2, so the step is
/// lr * g / (|g| + eps): about lr * sign(g), half of it when |g| = eps, nothing when g = 0.
#[test]
fn first_step_matches_hand_computed_values() {
    let gpu = gpu();
    let p0 = [1.0f32, 0.5, 0.0, -1.0, 2.0, 3.0];
    let g0 = [1.0f32, -2.0, 1e-8, 0.0, 3.0, -1e-3];
    // 1 - 0.001/(1 + 1e-8); 0.5 + 0.001 * 2/(2 + 1e-8); f32(1e-8) = f32(eps) so exactly -lr/2;
    // g = 0 leaves p; 2 - 0.001 * 3/(3 + 1e-8); 3 + 0.001 * 1e-3/(1e-3 + 1e-8) = 3.00099999.
    // The 1e-8 corrections are all below f32 resolution at these magnitudes (ulp >= 6e-8).
    let want_p = [0.999, 0.501, -0.0005, -1.0, 1.999, 3.001];
    let want_m = [0.1, -0.2, 1e-9, 0.0, 0.3, -1e-4];
    let want_v = [1e-3, 4e-3, 1e-19, 0.0, 9e-3, 1e-9];
    let (p, g) = (upload("p", &[6], &p0), upload("g", &[6], &g0));
    let (m, v) = (zeros("m", &[6]), zeros("v", &[6]));
    let adam = block_on(Adam::new(gpu, 6, AdamConfig::default())).unwrap();
    run(&[&adam.step(gpu, &p, &g, &m, &v).unwrap()]);
    let got = read(&p);
    // Half an ulp at [2, 4) for the final rounding, plus the update's few-ulp error (~1e-9).
    let tol = Tol {
        atol: 1.25e-7,
        rtol: 0.0,
        why: "one f32 rounding at |p| < 4 plus ~1e-9",
    };
    assert_close("first step params", &got, &want_p, tol);
    assert_eq!(
        got[3], -1.0,
        "a zero gradient must leave the parameter exactly"
    );
    let few_ulps = Tol {
        atol: 0.0,
        rtol: 4.0 * EPS,
        why: "two roundings of 0.1 g and 0.001 g^2",
    };
    assert_close("first step m", &read(&m), &want_m, few_ulps);
    assert_close("first step v", &read(&v), &want_v, few_ulps);
}

/// AdamW by hand at t = 1: p = p (1 - lr wd) - lr g / (|g| + eps), the decay applied to the
/// parameter BEFORE the Adam update (torch.optim.AdamW). With lr 0.1 and wd 0.5 the order shows:
/// p = 1, g = 1 gives 1 * 0.95 - 0.1 = 0.85, whereas decaying after the update gives 0.855.
#[test]
fn adamw_first_step_matches_hand_computed_values() {
    let gpu = gpu();
    for (lr, wd, want) in [
        // 1 * 0.9999 - 0.001; 2 * 0.9999 (decay only); -0.5 * 0.9999 + 0.001.
        (1e-3, 0.1, [0.9989, 1.9998, -0.49895]),
        // 1 * 0.95 - 0.1; 2 * 0.95; -0.5 * 0.95 + 0.1.
        (0.1, 0.5, [0.85, 1.9, -0.375]),
    ] {
        let c = AdamConfig {
            lr,
            weight_decay: wd,
            ..AdamConfig::default()
        };
        let (p, g) = (
            upload("p", &[3], &[1.0, 2.0, -0.5]),
            upload("g", &[3], &[1.0, 0.0, -1.0]),
        );
        let (m, v) = (zeros("m", &[3]), zeros("v", &[3]));
        let adam = block_on(Adam::new(gpu, 3, c)).unwrap();
        run(&[&adam.step(gpu, &p, &g, &m, &v).unwrap()]);
        // Two roundings at |p| < 2 (2.4e-7) plus the update's error, lr * ~30 ulps.
        let tol = Tol {
            atol: 2.4e-7 + lr * 30.0 * EPS,
            rtol: 0.0,
            why: "two f32 roundings + lr*30 ulps",
        };
        assert_close(
            &format!("adamw first step lr={lr} wd={wd}"),
            &read(&p),
            &want,
            tol,
        );
    }
}

/// Several steps against the reference at lengths 1, 63, 65, 67 and 1000 (none but the last a
/// multiple of anything; 1000 spans 16 workgroups), Adam and AdamW, other hyper-parameters.
#[test]
fn several_steps_match_reference() {
    let adamw = AdamConfig {
        weight_decay: 0.01,
        ..AdamConfig::default()
    };
    let other = AdamConfig {
        lr: 3e-2,
        beta1: 0.5,
        beta2: 0.9,
        eps: 1e-6,
        weight_decay: 0.0,
    };
    for (i, len) in [1usize, 63, 65, 67, 1000].into_iter().enumerate() {
        check_steps_fresh(AdamConfig::default(), len, 6, 100 * i as u64);
        check_steps_fresh(adamw, len, 6, 100 * i as u64 + 50);
    }
    check_steps_fresh(other, 67, 4, 7);
}

/// The network's 434,001 parameters with params, grads, m and v all views into ONE buffer at
/// aligned offsets, with sentinels between them that must survive.
#[test]
fn packed_views_at_network_size_match_reference() {
    let gpu = gpu();
    let len: usize = 434_001;
    let align = gpu.limits.min_storage_buffer_offset_alignment as usize;
    let region = (4 * len).div_ceil(align) * align + align; // at least one sentinel word each
    let buffer = Arc::new(
        gpu.storage_buffer("packed", (4 * region + align) as u64)
            .unwrap(),
    );
    let all = Tensor::new("packed", buffer.clone(), 0, &[(4 * region + align) / 4]);
    gpu.write(&all, &vec![7.0; all.len()]).unwrap();
    let view = |name: &str, k: usize| {
        Tensor::new(name, buffer.clone(), (align + k * region) as u64, &[len])
    };
    let (p, g, m, v) = (
        view("params", 0),
        view("grads", 1),
        view("m", 2),
        view("v", 3),
    );
    let c = AdamConfig {
        weight_decay: 1e-2,
        ..AdamConfig::default()
    };
    check_steps(c, &p, &g, &m, &v, 3, 9);
    let words = read(&all);
    for k in 0..4 {
        let end = (align + k * region) / 4 + len;
        let next = (align + (k + 1) * region) / 4;
        assert!(
            words[end..next.min(words.len())].iter().all(|&w| w == 7.0),
            "sentinel after view {k}"
        );
    }
    assert!(
        words[..align / 4].iter().all(|&w| w == 7.0),
        "sentinel before the first view"
    );
}

#[test]
fn steps_are_bit_identical_run_to_run() {
    let gpu = gpu();
    let len = 1000;
    let mut adam = block_on(Adam::new(gpu, len, AdamConfig::default())).unwrap();
    let (p, g, m, v) = (
        zeros("p", &[len]),
        zeros("g", &[len]),
        zeros("m", &[len]),
        zeros("v", &[len]),
    );
    let d = adam.step(gpu, &p, &g, &m, &v).unwrap();
    let bits = |t: &Tensor| read(t).iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut runs = Vec::new();
    for _ in 0..2 {
        gpu.write(&p, &random(1, len)).unwrap();
        gpu.write(&m, &vec![0.0; len]).unwrap();
        gpu.write(&v, &vec![0.0; len]).unwrap();
        for t in 1..=3 {
            gpu.write(&g, &grads(t as u64, len)).unwrap();
            adam.set_step(gpu, t).unwrap();
            run(&[&d]);
        }
        runs.push([bits(&p), bits(&m), bits(&v)]);
    }
    assert!(runs[0] == runs[1], "second run differs");
}

/// set_step moves the bias correction: from m = 0.05, v = 0.00025 and g = 0.5, m becomes 0.095 and
/// v 0.00049975; at t = 1 (bc1 = 0.1, bc2 = 0.001) the step is lr * 0.95 / 0.707 = 1.34 lr, at
/// t = 1000 (bc1 ~ 1, bc2 ~ 0.632) it is lr * 0.095 / 0.0281 = 3.38 lr; set_lr scales the step.
#[test]
fn set_step_and_set_lr_update_the_uniform() {
    let gpu = gpu();
    let c = AdamConfig::default();
    let mut adam = block_on(Adam::new(gpu, 1, c)).unwrap();
    let (p, g, m, v) = (
        zeros("p", &[1]),
        upload("g", &[1], &[0.5]),
        zeros("m", &[1]),
        zeros("v", &[1]),
    );
    let d = adam.step(gpu, &p, &g, &m, &v).unwrap();
    let mut check = |t: u32, lr: f64| {
        gpu.write(&p, &[0.0]).unwrap();
        gpu.write(&m, &[0.05]).unwrap();
        gpu.write(&v, &[0.00025]).unwrap();
        adam.set_lr(gpu, lr).unwrap();
        adam.set_step(gpu, t).unwrap();
        run(&[&d]);
        let (mut rp, mut rm, mut rv) = (vec![0.0], vec![0.05f32 as f64], vec![0.00025f32 as f64]);
        reference::step(
            &mut rp,
            &[0.5],
            &mut rm,
            &mut rv,
            &reference::Config {
                lr,
                ..ref_config(&c)
            },
            t,
        );
        assert_close(&format!("t={t} lr={lr}"), &read(&p), &rp, tols(1, lr)[0]);
        rp[0]
    };
    let first = check(1, 1e-3);
    let later = check(1000, 1e-3);
    let faster = check(1000, 1e-2);
    assert!(
        (later / first - 1.0).abs() > 0.5,
        "t = 1000 must differ from t = 1: {first} vs {later}"
    );
    assert!(
        (faster / later - 10.0).abs() < 1e-6,
        "lr x10 must scale the step x10"
    );
}

#[test]
fn shape_and_configuration_errors() {
    let gpu = gpu();
    let mut adam = block_on(Adam::new(gpu, 67, AdamConfig::default())).unwrap();
    let t = zeros("t", &[67]);
    let err = adam
        .step(gpu, &t, &zeros("head.grads", &[66]), &t, &t)
        .expect_err("must fail")
        .to_string();
    assert!(
        err.contains("head.grads") && err.contains("[66]") && err.contains("[67]"),
        "{err}"
    );
    let err = adam
        .step(gpu, &t, &t, &t, &zeros("v2d", &[1, 67]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("v2d") && err.contains("[1, 67]"), "{err}");
    assert!(adam
        .set_step(gpu, 0)
        .err()
        .unwrap()
        .to_string()
        .contains("1-based"));
    assert!(adam.set_lr(gpu, -1.0).is_err());
    let d = AdamConfig::default();
    for (c, what) in [
        (AdamConfig { beta1: 1.0, ..d }, "beta1"),
        (AdamConfig { beta2: -0.1, ..d }, "beta2"),
        (AdamConfig { eps: f64::NAN, ..d }, "eps"),
        (
            AdamConfig {
                weight_decay: -1.0,
                ..d
            },
            "weight_decay",
        ),
    ] {
        let err = block_on(Adam::new(gpu, 4, c))
            .err()
            .expect(what)
            .to_string();
        assert!(err.contains(what), "{err}");
    }
    assert!(block_on(Adam::new(gpu, 0, d)).is_err());
}
