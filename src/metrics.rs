//! Classification metrics of an evaluation: per-class precision, recall, F1 and one-vs-rest ROC
//! curves with their AUC, the confusion matrix, and their summaries.
//!
//! Every metric of the program is computed here, so the numbers a training log prints
//! ([`crate::train::Evaluation`] delegates to these functions) and the numbers a report prints
//! agree. Definitions:
//! - the prediction of a row is its argmax, the lowest index winning ties;
//! - precision of class c = TP / (examples predicted c), 0 for a class never predicted;
//! - recall of class c = TP / support (examples labelled c), 0 for a class with no support;
//! - F1 = 2 P R / (P + R), 0 when P + R = 0;
//! - macro F1 = unweighted mean of F1 over the classes with support > 0 (a class absent from the
//!   labels says nothing about the model, and counting it as 0 would punish a small test split);
//! - weighted F1 = sum over classes of support x F1, divided by n;
//! - ROC of class c: one-vs-rest, scored by the class's probability column; thresholds sweep
//!   from the highest score down and all examples with an equal score pass together, so the
//!   curve goes diagonally through ties; AUC by the trapezoid rule over that curve, which equals
//!   the Mann-Whitney probability P(score of a positive > score of a negative) + 1/2 P(equal).
//!   A class with no positives or no negatives has no curve (`points` empty) and `auc` `None`;
//! - macro AUC = mean AUC over the classes that have one (`None` if none does).

use serde::Serialize;

/// Precision, recall and F1 of one class, see the [module](self) for the definitions.
#[derive(Clone, Debug, Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Examples whose label is this class.
    pub support: usize,
    /// Area under the one-vs-rest ROC curve; `None` without positives or without negatives.
    pub auc: Option<f64>,
}

/// One-vs-rest ROC curve of one class.
#[derive(Clone, Debug, Serialize)]
pub struct RocCurve {
    pub class: String,
    /// (false positive rate, true positive rate), from (0,0) to (1,1), one point per distinct
    /// score; empty when the class has no positives or no negatives.
    pub points: Vec<(f64, f64)>,
    pub auc: Option<f64>,
}

/// Everything reported about one evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    /// Examples evaluated.
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]`
    pub confusion: Vec<Vec<usize>>,
    pub roc: Vec<RocCurve>,
    pub macro_auc: Option<f64>,
}

/// Precision, recall, F1 and support of one class, from a confusion matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// The index of the largest value of `row`, the lowest index winning ties (a NaN never wins
/// against a number before it).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = j;
        }
    }
    best
}

/// The prediction ([`argmax`]) of each row of `[n, k]` probabilities.
pub fn predictions(probs: &[f32], k: usize) -> Vec<usize> {
    probs.chunks_exact(k).map(argmax).collect()
}

/// `confusion[true][predicted]` of `[n, k]` probabilities against their labels.
pub fn confusion(probs: &[f32], labels: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0usize; k]; k];
    for (&y, p) in labels.iter().zip(predictions(probs, k)) {
        m[y as usize][p] += 1;
    }
    m
}

/// The share of a confusion matrix on its diagonal (0 for an empty one).
pub fn accuracy(confusion: &[Vec<usize>]) -> f64 {
    let hits: usize = (0..confusion.len()).map(|c| confusion[c][c]).sum();
    let n: usize = confusion.iter().flatten().sum();
    hits as f64 / n.max(1) as f64
}

/// Every class's scores from a confusion matrix, see the [module](self) for the definitions.
pub fn class_scores(confusion: &[Vec<usize>]) -> Vec<ClassScores> {
    (0..confusion.len())
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect()
}

/// The unweighted mean F1 over the classes with support.
pub fn macro_f1(scores: &[ClassScores]) -> f64 {
    let present: Vec<&ClassScores> = scores.iter().filter(|c| c.support > 0).collect();
    present.iter().map(|c| c.f1).sum::<f64>() / present.len().max(1) as f64
}

impl Metrics {
    /// probs: `[n, K]` row-major class probabilities; labels: `[n]`; classes: K names.
    ///
    /// # Panics
    /// When `probs.len() != labels.len() * classes.len()`, when there are no classes, or when a
    /// label is not below K: these are caller bugs, not data errors (evaluation builds all three
    /// from one network and one dataset).
    pub fn new(probs: &[f32], labels: &[u32], classes: &[String]) -> Metrics {
        let k = classes.len();
        assert!(k > 0, "Metrics::new: no classes");
        assert_eq!(
            probs.len(),
            labels.len() * k,
            "Metrics::new: {} probabilities for {} labels and {k} classes",
            probs.len(),
            labels.len()
        );
        if let Some(bad) = labels.iter().find(|&&y| y as usize >= k) {
            panic!("Metrics::new: label {bad} out of range for {k} classes");
        }
        let n = labels.len();
        let confusion = confusion(probs, labels, k);
        let accuracy = accuracy(&confusion);

        let roc: Vec<RocCurve> = (0..k)
            .map(|c| {
                let scores: Vec<f32> = probs.iter().skip(c).step_by(k).copied().collect();
                let positive: Vec<bool> = labels.iter().map(|&y| y as usize == c).collect();
                let (points, auc) = roc_curve(&scores, &positive);
                RocCurve {
                    class: classes[c].clone(),
                    points,
                    auc,
                }
            })
            .collect();

        let scores = class_scores(&confusion);
        let macro_f1 = macro_f1(&scores);
        let per_class: Vec<ClassMetrics> = scores
            .iter()
            .enumerate()
            .map(|(c, s)| ClassMetrics {
                class: classes[c].clone(),
                precision: s.precision,
                recall: s.recall,
                f1: s.f1,
                support: s.support,
                auc: roc[c].auc,
            })
            .collect();

        let weighted_f1 = per_class
            .iter()
            .map(|c| c.support as f64 * c.f1)
            .sum::<f64>()
            / n.max(1) as f64;
        let aucs: Vec<f64> = per_class.iter().filter_map(|c| c.auc).collect();
        let macro_auc = (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64);

        Metrics {
            n,
            accuracy,
            macro_f1,
            weighted_f1,
            per_class,
            confusion,
            roc,
            macro_auc,
        }
    }

    /// A Markdown table: per class P/R/F1/support/AUC, then accuracy, macro and weighted F1, macro AUC.
    pub fn markdown(&self) -> String {
        let auc = |a: Option<f64>| a.map_or("–".to_string(), |a| format!("{a:.3}"));
        let mut s = String::from(
            "| class | precision | recall | F1 | support | AUC |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for c in &self.per_class {
            s += &format!(
                "| {} | {:.3} | {:.3} | {:.3} | {} | {} |\n",
                escape_cell(&c.class),
                c.precision,
                c.recall,
                c.f1,
                c.support,
                auc(c.auc)
            );
        }
        s += &format!(
            "\n| n | accuracy | macro F1 | weighted F1 | macro AUC |\n\
             |---:|---:|---:|---:|---:|\n\
             | {} | {:.3} | {:.3} | {:.3} | {} |\n",
            self.n,
            self.accuracy,
            self.macro_f1,
            self.weighted_f1,
            auc(self.macro_auc)
        );
        s
    }
}

/// Mean and sample standard deviation (n-1; 0 for one value) of a list, for k-fold summaries.
/// An empty list has no mean: (NaN, NaN).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    match values.len() {
        0 => (f64::NAN, f64::NAN),
        1 => (values[0], 0.0),
        n => {
            let mean = values.iter().sum::<f64>() / n as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            (mean, var.sqrt())
        }
    }
}

fn ratio(num: f64, den: usize) -> f64 {
    if den > 0 {
        num / den as f64
    } else {
        0.0
    }
}

/// A `|` inside a class name would end the table cell.
fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn same(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// ROC points and trapezoid AUC of `scores` against `positive`, see the [module](self).
fn roc_curve(scores: &[f32], positive: &[bool]) -> (Vec<(f64, f64)>, Option<f64>) {
    let p = positive.iter().filter(|&&b| b).count();
    let n = positive.len() - p;
    if p == 0 || n == 0 {
        return (Vec::new(), None);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Descending; total_cmp so that a NaN score cannot break the sort (it ranks as highest).
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut auc = 0.0;
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        // One threshold step per distinct score: ties move the curve diagonally.
        while i < order.len() && same(scores[order[i]], s) {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let (x0, y0) = *points.last().unwrap();
        let (x, y) = (fp as f64 / n as f64, tp as f64 / p as f64);
        auc += (x - x0) * (y + y0) / 2.0;
        points.push((x, y));
    }
    (points, Some(auc))
}
