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

/// Unit roundoff of f32: every f32 operation rounds with a relative error of at most `U`.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

/// Margin of [`sum_bounds`] for `n` outputs: the largest error a test accepts, in units of the
/// model's rms. Errors made of many roundings are close to Gaussian, and the largest of n
/// Gaussian samples is about sqrt(2 ln n) standard deviations (5.3 for a million outputs, 3.7
/// for 864); 2 more leave room for the model's approximations. The measured ratios at the spec's
/// shapes are in docs/numerics.md.
pub fn sum_margin(n: usize) -> f64 {
    (2.0 * (n.max(2) as f64).ln()).sqrt() + 2.0
}

/// The error model of an f32 sum evaluated in a fixed blocked order (docs/numerics.md, "The
/// error model"). `levels` are the lengths of its nested serial loops, innermost first: level
/// l adds L_l values, each itself a sum of B_{l-1} = L_1 ... L_{l-1} terms; K = B_m terms in
/// all. Each addition rounds once, by a relative error d with |d| <= u.
///
/// - **Worst case** (Higham, *Accuracy and Stability*, 4.2): a term passes at most
///   D = L_1 + ... + L_m additions and one rounding of its product, so
///   |err| <= gamma_{D+1} sum |t|, gamma_n = n u / (1 - n u). Always true, but blind: it grows
///   as D, where the error of real data grows as sqrt(D).
/// - **Statistical**: with the d independent and uniform on [-u, u] (variance u^2 / 3), the
///   error is sum_j d_j p_j over the partial sums p_j. When the terms have one sign and similar
///   sizes (activations after ELU and max pooling, a gradient channel of one sign: no
///   cancellation, the largest partial sums there can be), level l's partial sums grow as
///   k B_{l-1} mean|t| for k = 1..L_l, and adding up their squares gives
///   `rms(err) = (u / 3) sum|t| sqrt(1 + sum_l L_l B_l / K)`
///   (the 1: each term's own rounding). A serial sum of K terms is `(u/3) sum|t| sqrt(K + 1)`;
///   256-term chunks whose sums are added in order, `(u/3) sum|t| sqrt(1 + 256^2/K + K/256)`.
///   Terms of mixed signs have smaller partial sums and smaller errors.
///
/// This returns the statistical factor `sqrt(1 + sum_l L_l B_l / K) / 3` (the rms error per
/// unit of u sum|t|).
pub fn sum_rms(levels: &[usize]) -> f64 {
    let k: f64 = levels.iter().map(|&l| l.max(1) as f64).product();
    let mut b = 1.0;
    let mut s = 1.0;
    for &l in levels {
        let l = l.max(1) as f64;
        b *= l;
        s += l * b / k;
    }
    s.sqrt() / 3.0
}

/// The additions on any term's path, plus its product's rounding: D + 1 of [`sum_rms`].
pub fn sum_depth(levels: &[usize]) -> usize {
    levels.iter().sum::<usize>() + 1
}

/// Per-element bounds for f32 sums evaluated as `levels` (see [`sum_rms`]):
/// `min(sum_margin(n) rms, gamma_{D+1}) * abs_sum[i] + u |want[i]|`, where `abs_sum[i]` is the
/// sum of the magnitudes of element i's terms (the reference applied to |inputs|), n the number
/// of elements, and the last term the rounding of the result to f32.
pub fn sum_bounds(levels: &[usize], abs_sum: &[f64], want: &[f64]) -> Vec<f64> {
    let factor = sum_factor(levels, want.len());
    abs_sum
        .iter()
        .zip(want)
        .map(|(a, w)| factor * a + U * w.abs())
        .collect()
}

/// The relative bound of [`sum_bounds`] for `n` outputs: `min(sum_margin(n) rms, gamma_{D+1})`,
/// a multiple of sum|t| (for tests that propagate it through further operations).
pub fn sum_factor(levels: &[usize], n: usize) -> f64 {
    let d = sum_depth(levels) as f64;
    let worst = d * U / (1.0 - d * U);
    (sum_margin(n) * sum_rms(levels) * U).min(worst)
}

/// The largest `|got - want| / bound` (how much of its bound an output used; > 1 fails).
pub fn bound_ratio(got: &[f32], want: &[f64], bound: &[f64]) -> f64 {
    got.iter()
        .zip(want)
        .zip(bound)
        .map(|((&g, &w), &b)| (g as f64 - w).abs() / b.max(f64::MIN_POSITIVE))
        .fold(0.0, |m, r| if r.is_nan() || r > m { r } else { m })
}

/// Element-wise `|got - want| <= bound` (NaN fails); on failure the message gives how many
/// failed, the worst ratio and a few pairs, and `why`.
#[track_caller]
pub fn assert_within(what: &str, got: &[f32], want: &[f64], bound: &[f64], why: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length differs from the reference"
    );
    assert_eq!(bound.len(), want.len(), "{what}: one bound per element");
    let mut bad = Vec::new();
    let mut worst = (0.0f64, 0usize);
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        let r = err / bound[i].max(f64::MIN_POSITIVE);
        if err.is_nan() || err > bound[i] {
            bad.push(i);
        }
        if r > worst.0 || r.is_nan() {
            worst = (r, i);
        }
    }
    if !bad.is_empty() {
        let mut samples = String::new();
        for &i in bad.iter().take(3).chain(std::iter::once(&worst.1)) {
            samples += &format!(
                "\n    [{i}] got {:.9e} want {:.9e} |err| {:.3e} bound {:.3e}",
                got[i],
                want[i],
                (got[i] as f64 - want[i]).abs(),
                bound[i]
            );
        }
        panic!(
            "{what}: {} of {} elements outside their bound ({why}); worst |err|/bound {:.2} at \
             [{}]{samples}",
            bad.len(),
            got.len(),
            worst.0,
            worst.1
        );
    }
}
