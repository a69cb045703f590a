//! Comparison with explained tolerances, and central finite differences.

/// `|got - want| <= atol + rtol * |want|`, with the reason the numbers were chosen.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
    pub why: &'static str,
}

/// Compares element-wise; on failure the message gives the largest absolute and relative errors,
/// the first mismatching index and a few sample pairs.
pub fn compare(what: &str, got: &[f64], want: &[f64], tol: Tol) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: length {} but reference has {}",
            got.len(),
            want.len()
        ));
    }
    let mut max_abs = (0.0f64, 0usize);
    let mut max_rel = (0.0f64, 0usize);
    let mut first_bad = None;
    let mut bad = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let abs = (g - w).abs();
        let rel = abs / w.abs().max(f64::MIN_POSITIVE);
        // NaN never passes: `!(abs <= ..)` is true for NaN.
        let ok = abs <= tol.atol + tol.rtol * w.abs();
        if abs > max_abs.0 || abs.is_nan() {
            max_abs = (abs, i);
        }
        if rel > max_rel.0 && w != 0.0 {
            max_rel = (rel, i);
        }
        if !ok {
            bad += 1;
            first_bad.get_or_insert(i);
        }
    }
    match first_bad {
        None => Ok(()),
        Some(first) => {
            let mut samples = String::new();
            for i in [first, max_abs.1, 0, got.len() / 2, got.len() - 1] {
                samples += &format!("\n    [{i}] got {:.9e} want {:.9e}", got[i], want[i]);
            }
            Err(format!(
                "{what}: {bad} of {} elements outside |got-want| <= {:e} + {:e}*|want| ({})\n  \
                 max abs error {:.3e} at [{}], max rel error {:.3e} at [{}], first mismatch at [{first}]{samples}",
                got.len(),
                tol.atol,
                tol.rtol,
                tol.why,
                max_abs.0,
                max_abs.1,
                max_rel.0,
                max_rel.1,
            ))
        }
    }
}

/// [`compare`] for f32 results (a GPU readback) against an f64 reference; panics on failure.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: Tol) {
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    if let Err(msg) = compare(what, &got, want, tol) {
        panic!("{msg}");
    }
}

/// [`compare`] for two f64 vectors; panics on failure.
#[track_caller]
pub fn assert_close_f64(what: &str, got: &[f64], want: &[f64], tol: Tol) {
    if let Err(msg) = compare(what, got, want, tol) {
        panic!("{msg}");
    }
}

/// Central finite differences of a scalar function: `(f(x + eps e_i) - f(x - eps e_i)) / 2 eps`.
pub fn finite_difference(f: impl Fn(&[f64]) -> f64, x: &[f64], eps: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + eps;
            let up = f(&xp);
            xp[i] = orig - eps;
            let down = f(&xp);
            xp[i] = orig;
            (up - down) / (2.0 * eps)
        })
        .collect()
}

/// `sum_i a_i b_i`: the scalar loss `<r, y>` whose gradient with respect to `y` is `r`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Tolerance for finite differences of smooth f64 functions with eps = 1e-6: truncation error
/// O(eps^2) ~ 1e-12 times the third derivative, round-off ~ 1e-16 / eps ~ 1e-10 times |f|.
pub const FD_TOL: Tol = Tol {
    atol: 1e-7,
    rtol: 1e-6,
    why: "central differences in f64 with eps=1e-6: round-off ~1e-10*|f|, truncation ~1e-12",
};
