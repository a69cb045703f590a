//! Shared test helpers: one device per test binary, seeded data, upload/run/read.
#![allow(dead_code)]

use std::sync::OnceLock;

use fer_cbam::{Dispatch, Gpu, Tensor};
#[allow(unused_imports)]
pub use fer_cbam_reference::check::{
    assert_close, assert_close_f64, dot, finite_difference, Tol, FD_TOL,
};
use rand::{Rng, SeedableRng};

/// One device shared by the tests of a binary (error scopes are per thread, so tests running in
/// parallel threads do not see each other's errors).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}")))
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// `n` values uniform in [-1, 1), reproducible from `seed`.
pub fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn upload(name: &str, shape: &[usize], data: &[f32]) -> Tensor {
    gpu().tensor(name, shape, data).unwrap()
}

pub fn zeros(name: &str, shape: &[usize]) -> Tensor {
    gpu().zeros(name, shape).unwrap()
}

/// Submits the dispatches as one submission and waits.
pub fn run(dispatches: &[&Dispatch]) {
    gpu().submit(dispatches).unwrap();
    gpu().wait().unwrap();
}

pub fn read(t: &Tensor) -> Vec<f32> {
    gpu().read_blocking(t).unwrap()
}

/// Tolerance for an f32 sum of `terms` products of factors bounded by 1 in magnitude, against an
/// f64 reference: recursive summation's error is at most gamma_K * sum|a b| with
/// gamma_K ~ K * 2^-24 (Higham, Accuracy and Stability, 3.1), and sum|a b| <= K, so K^2 * 2^-24;
/// plus the final rounding to f32 (rtol 2^-24). A wrong index or a missed tap errs by O(0.1..1).
pub fn sum_tol(terms: usize) -> Tol {
    let k = terms.max(1) as f64;
    Tol {
        atol: k * k * f32::EPSILON as f64 / 2.0,
        rtol: f32::EPSILON as f64,
        why: "f32 sum of K products of |v|<=1: |err| <= K^2 2^-24 (Higham's gamma_K bound)",
    }
}

/// Tolerance for an element-wise op evaluated in f32 against f64: a few ulps of the result,
/// plus an absolute floor for results near zero (exp and division round once or twice each).
pub const ELEMENTWISE_TOL: Tol = Tol {
    atol: 1e-6,
    rtol: 4.0 * f32::EPSILON as f64,
    why: "one f32 exp/division per element: a few ulps, absolute 1e-6 near zero",
};

/// A fresh, empty folder for one test: `<temp>/fer-cbam-<name>-<pid>`.
pub fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fer-cbam-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
