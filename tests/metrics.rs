//! Metrics against hand-computed values, and against `Evaluation`'s own numbers.

use fer_cbam::metrics::{mean_std, Metrics};
use fer_cbam::train::Evaluation;
use rand::{Rng, SeedableRng};

/// Exact rationals computed by hand, compared after f64 arithmetic on counts: a few ulps.
const EXACT: f64 = 1e-12;

fn names(k: usize) -> Vec<String> {
    ["A", "B", "C", "D", "E", "F", "G"][..k]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= EXACT,
        "{what}: got {got}, expected {want}"
    );
}

/// Eight examples of three classes. (label, prediction, probabilities):
///   0: A A [.7 .2 .1]     4: B B [.1 .8 .1]
///   1: A A [.6 .3 .1]     5: B A [.5 .4 .1]
///   2: A A [.5 .1 .4]     6: C C [.1 .2 .7]
///   3: A B [.3 .6 .1]     7: C B [.2 .4 .4]  <- B and C tie: the lower index (B) wins
///
/// confusion[true][pred]:   A  B  C
///                      A [ 3, 1, 0 ]   support 4
///                      B [ 1, 1, 0 ]   support 2
///                      C [ 0, 1, 1 ]   support 2
///            predicted:     4  3  1
/// accuracy = (3 + 1 + 1) / 8 = 5/8
/// A: P = 3/4, R = 3/4, F1 = 3/4
/// B: P = 1/3, R = 1/2, F1 = 2 (1/6) / (5/6) = 2/5
/// C: P = 1/1, R = 1/2, F1 = 2 (1/2) / (3/2) = 2/3
/// macro F1    = (3/4 + 2/5 + 2/3) / 3 = (45 + 24 + 40) / 180 = 109/180
/// weighted F1 = (4 (3/4) + 2 (2/5) + 2 (2/3)) / 8 = (3 + 4/5 + 4/3) / 8 = 77/120
fn three_class() -> (Vec<f32>, Vec<u32>) {
    let probs = vec![
        0.7, 0.2, 0.1, //
        0.6, 0.3, 0.1, //
        0.5, 0.1, 0.4, //
        0.3, 0.6, 0.1, //
        0.1, 0.8, 0.1, //
        0.5, 0.4, 0.1, //
        0.1, 0.2, 0.7, //
        0.2, 0.4, 0.4, //
    ];
    (probs, vec![0, 0, 0, 0, 1, 1, 2, 2])
}

#[test]
fn three_class_by_hand() {
    let (probs, labels) = three_class();
    let m = Metrics::new(&probs, &labels, &names(3));
    assert_eq!(m.n, 8);
    assert_eq!(
        m.confusion,
        vec![vec![3, 1, 0], vec![1, 1, 0], vec![0, 1, 1]]
    );
    close(m.accuracy, 5.0 / 8.0, "accuracy");
    let want = [
        ("A", 3.0 / 4.0, 3.0 / 4.0, 3.0 / 4.0, 4),
        ("B", 1.0 / 3.0, 1.0 / 2.0, 2.0 / 5.0, 2),
        ("C", 1.0, 1.0 / 2.0, 2.0 / 3.0, 2),
    ];
    for (c, (name, p, r, f1, support)) in m.per_class.iter().zip(want) {
        assert_eq!(c.class, name);
        close(c.precision, p, &format!("precision {name}"));
        close(c.recall, r, &format!("recall {name}"));
        close(c.f1, f1, &format!("F1 {name}"));
        assert_eq!(c.support, support, "support {name}");
    }
    close(m.macro_f1, 109.0 / 180.0, "macro F1");
    close(m.weighted_f1, 77.0 / 120.0, "weighted F1");
    // One-vs-rest AUCs, Mann-Whitney by hand (pairs won, ties 1/2):
    // A: positives .7 .6 .5 .3 vs .1 .5 .1 .2 -> 4 + 4 + 3.5 + 3 = 14.5 of 16
    // B: positives .8 .4 vs .2 .3 .1 .6 .2 .4 -> 6 + 4.5 = 10.5 of 12
    // C: positives .7 .4 vs .1 .1 .4 .1 .1 .1 -> 6 + 5.5 = 11.5 of 12
    let aucs = [14.5 / 16.0, 10.5 / 12.0, 11.5 / 12.0];
    for (c, want) in aucs.iter().enumerate() {
        close(m.per_class[c].auc.unwrap(), *want, &format!("AUC {c}"));
    }
    close(
        m.macro_auc.unwrap(),
        aucs.iter().sum::<f64>() / 3.0,
        "macro AUC",
    );
}

/// A fourth class that is predicted once but never a label: precision 0 (predicted, never
/// right), recall 0, support 0, and left out of the macro F1 but not of the confusion.
#[test]
fn class_without_support_is_left_out_of_macro_f1() {
    let (probs3, mut labels) = three_class();
    let mut probs: Vec<f32> = probs3
        .chunks(3)
        .flat_map(|r| [r[0], r[1], r[2], 0.0])
        .collect();
    // Example 8: label A, predicted D.
    probs.extend([0.1, 0.1, 0.1, 0.7]);
    labels.push(0);
    let m = Metrics::new(&probs, &labels, &names(4));
    assert_eq!(m.confusion[0], vec![3, 1, 0, 1]);
    assert_eq!(m.confusion[3], vec![0, 0, 0, 0]);
    let d = &m.per_class[3];
    assert_eq!((d.precision, d.recall, d.f1, d.support), (0.0, 0.0, 0.0, 0));
    // A: P = 3/4, R = 3/5, F1 = 2 (9/20) / (27/20) = 2/3; B and C as before.
    close(m.per_class[0].f1, 2.0 / 3.0, "F1 A");
    close(
        m.macro_f1,
        (2.0 / 3.0 + 2.0 / 5.0 + 2.0 / 3.0) / 3.0,
        "macro F1 over the three present classes",
    );
    // Weighted F1 weights by support, so D adds nothing either way: (5 (2/3) + 2 (2/5) + 2 (2/3)) / 9.
    close(
        m.weighted_f1,
        (5.0 * 2.0 / 3.0 + 2.0 * 2.0 / 5.0 + 2.0 * 2.0 / 3.0) / 9.0,
        "weighted F1",
    );
    assert!(d.auc.is_none(), "no positives: no AUC");
}

/// Class 0's scores, positives (label 0): .9 .6 .6 .3; negatives (label 1): .6 .4 .2.
/// Mann-Whitney: pairs with the positive higher count 1, ties 1/2:
///   .9 -> 3, .6 -> 2.5, .6 -> 2.5, .3 -> 1; U = 9 of 12 pairs, AUC = 3/4.
/// ROC, thresholds from the top, the three .6 passing together (diagonal step):
///   (0,0) (0,1/4) (1/3,3/4) (2/3,3/4) (2/3,1) (1,1); trapezoids 1/6 + 1/4 + 0 + 1/3 = 3/4.
#[test]
fn roc_with_ties_by_hand() {
    let s0 = [0.9f32, 0.6, 0.6, 0.3, 0.6, 0.4, 0.2];
    let labels = [0, 0, 0, 0, 1, 1, 1];
    let probs: Vec<f32> = s0.iter().flat_map(|&s| [s, 1.0 - s]).collect();
    let m = Metrics::new(&probs, &labels, &names(2));
    let roc = &m.roc[0];
    let want = [
        (0.0, 0.0),
        (0.0, 0.25),
        (1.0 / 3.0, 0.75),
        (2.0 / 3.0, 0.75),
        (2.0 / 3.0, 1.0),
        (1.0, 1.0),
    ];
    assert_eq!(roc.points.len(), want.len(), "{:?}", roc.points);
    for (i, (g, w)) in roc.points.iter().zip(want).enumerate() {
        close(g.0, w.0, &format!("FPR of point {i}"));
        close(g.1, w.1, &format!("TPR of point {i}"));
    }
    close(roc.auc.unwrap(), 0.75, "AUC of class 0");
    // Class 1 scores 1 - s with the roles swapped: the same pairs, the same ties, AUC 3/4.
    close(m.roc[1].auc.unwrap(), 0.75, "AUC of class 1");
    close(m.per_class[0].auc.unwrap(), 0.75, "per_class AUC");
    close(m.macro_auc.unwrap(), 0.75, "macro AUC");
}

fn mann_whitney(scores: &[f32], positive: &[bool]) -> f64 {
    let (mut u, mut pairs) = (0.0, 0.0);
    for (i, &si) in scores.iter().enumerate() {
        for (j, &sj) in scores.iter().enumerate() {
            if positive[i] && !positive[j] {
                pairs += 1.0;
                u += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    u / pairs
}

/// On random data with many ties (scores on a grid of 0.1), every class's trapezoid AUC equals
/// the Mann-Whitney count, and every curve is monotone from (0,0) to (1,1).
#[test]
fn auc_equals_mann_whitney_on_random_ties() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (n, k) = (200, 4);
    let probs: Vec<f32> = (0..n * k)
        .map(|_| rng.random_range(0..=10) as f32 / 10.0)
        .collect();
    let labels: Vec<u32> = (0..n).map(|_| rng.random_range(0..k as u32)).collect();
    let m = Metrics::new(&probs, &labels, &names(k));
    for c in 0..k {
        let scores: Vec<f32> = (0..n).map(|i| probs[i * k + c]).collect();
        let positive: Vec<bool> = labels.iter().map(|&y| y as usize == c).collect();
        let want = mann_whitney(&scores, &positive);
        // Sums of up to n trapezoids of f64 fractions: rounding ~ n * 2^-53, far below 1e-12.
        close(m.roc[c].auc.unwrap(), want, &format!("AUC of class {c}"));
        let pts = &m.roc[c].points;
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert_eq!(pts.last(), Some(&(1.0, 1.0)));
        assert!(pts.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
        // One point per distinct score (11 grid values at most) plus the origin.
        assert!(pts.len() <= 12, "class {c}: {} points", pts.len());
    }
    let mean = m.roc.iter().map(|r| r.auc.unwrap()).sum::<f64>() / k as f64;
    close(m.macro_auc.unwrap(), mean, "macro AUC");
}

#[test]
fn auc_is_none_without_positives_or_negatives() {
    // Labels 0 and 1 only: class 2 has no positives.
    let probs = [0.8f32, 0.1, 0.1, 0.2, 0.7, 0.1, 0.6, 0.3, 0.1];
    let m = Metrics::new(&probs, &[0, 1, 0], &names(3));
    assert!(m.roc[2].auc.is_none() && m.roc[2].points.is_empty());
    assert!(m.per_class[2].auc.is_none());
    // Classes 0 and 1 are separated perfectly: AUC 1 each, and the macro AUC skips class 2.
    close(m.roc[0].auc.unwrap(), 1.0, "AUC 0");
    close(m.roc[1].auc.unwrap(), 1.0, "AUC 1");
    close(m.macro_auc.unwrap(), 1.0, "macro AUC");

    // Every label 0: class 0 has no negatives, the others no positives: no AUC at all.
    let m = Metrics::new(&probs, &[0, 0, 0], &names(3));
    assert!(m.roc.iter().all(|r| r.auc.is_none()));
    assert!(m.macro_auc.is_none());
}

/// `Metrics` and `Evaluation` must report the same accuracy, confusion, per-class numbers and
/// macro F1 (the training log prints the latter, reports the former).
#[test]
fn agrees_with_evaluation() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (n, k) = (300, 7);
    let mut probs: Vec<f32> = (0..n * k)
        .map(|_| rng.random_range(0..5) as f32 / 4.0)
        .collect();
    // Nothing ever predicted as class 6 and nothing labelled 5.
    for row in probs.chunks_mut(k) {
        row[6] = -1.0;
    }
    let labels: Vec<u32> = (0..n)
        .map(|_| [0, 1, 2, 3, 4, 6][rng.random_range(0..6)])
        .collect();
    let e = Evaluation {
        probs,
        labels,
        classes: k,
        failures: Vec::new(),
        failed: Vec::new(),
    };
    let m = e.metrics(&names(k));
    assert_eq!(m.confusion, e.confusion());
    assert_eq!(m.accuracy, e.accuracy());
    assert_eq!(m.macro_f1, e.macro_f1());
    for (c, (p, r, f1, support)) in m.per_class.iter().zip(e.per_class()) {
        assert_eq!(
            (c.precision, c.recall, c.f1, c.support),
            (p, r, f1, support)
        );
    }
    assert_eq!(m.per_class[6].precision, 0.0);
    assert_eq!(m.per_class[5].support, 0);
}

#[test]
fn markdown_table() {
    let (probs, labels) = three_class();
    let md = Metrics::new(&probs, &labels, &names(3)).markdown();
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "| class | precision | recall | F1 | support | AUC |"
    );
    // The numbers of `three_class_by_hand`, rounded to three places.
    assert_eq!(lines[3], "| B | 0.333 | 0.500 | 0.400 | 2 | 0.875 |");
    assert!(md.contains("| n | accuracy | macro F1 | weighted F1 | macro AUC |"));
    assert!(md.contains("| 8 | 0.625 | 0.606 | 0.642 | 0.913 |"), "{md}");

    // A class without an AUC shows a dash, not a number.
    let md = Metrics::new(&[0.9, 0.1, 0.8, 0.2], &[0, 0], &names(2)).markdown();
    assert!(md.contains("| B | 0.000 | 0.000 | 0.000 | 0 | – |"), "{md}");
}

#[test]
fn mean_and_sample_std() {
    // Deviations from 5: -3 -1 -1 -1 0 0 2 4, squares sum to 32, over n - 1 = 7.
    let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    close(m, 5.0, "mean");
    close(s, (32.0f64 / 7.0).sqrt(), "sample std");
    assert_eq!(mean_std(&[0.7]), (0.7, 0.0));
    let (m, s) = mean_std(&[]);
    assert!(m.is_nan() && s.is_nan());
}

#[test]
fn serializes_to_json() {
    let (probs, labels) = three_class();
    let m = Metrics::new(&probs, &labels, &names(3));
    let v: serde_json::Value = serde_json::to_value(&m).unwrap();
    assert_eq!(v["confusion"][0], serde_json::json!([3, 1, 0]));
    assert_eq!(v["per_class"][2]["class"], "C");
    assert_eq!(v["roc"][0]["points"][0], serde_json::json!([0.0, 0.0]));
}
