//! The paper's evaluation protocols as data (section 4): which models to train on which
//! examples (k-fold cross-validation, hold-out, cross-dataset), what each model's evaluation
//! recorded, and how the records aggregate into the shape of the paper's Tables 3, 5 and 6.
//!
//! Training itself lives with the CLI (`fer-cbam kfold|holdout|cross`); this module holds what
//! is worth testing without a GPU: fold plans, class weights, aggregation and the reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::crop::CropReport;
use crate::data::split;
use crate::metrics::mean_std;
use crate::model::Attention;
use crate::train::Evaluation;
use crate::{Error, Result};

/// Inverse-frequency class weights normalised to mean 1 over the classes that occur: class `c`
/// with `n_c` examples gets `(1 / n_c) / mean_c'(1 / n_c')`, so a batch of balanced classes is
/// weighted as without weights and a rare class counts as much in total as a frequent one.
/// Classes with no example get 1 (they never meet the loss).
pub fn class_weights(labels: &[usize], classes: usize) -> Vec<f32> {
    let mut n = vec![0usize; classes];
    for &l in labels {
        n[l] += 1;
    }
    let inv: Vec<f64> = n
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| 1.0 / c as f64)
        .collect();
    let mean = inv.iter().sum::<f64>() / inv.len().max(1) as f64;
    n.iter()
        .map(|&c| {
            if c > 0 {
                (1.0 / c as f64 / mean) as f32
            } else {
                1.0
            }
        })
        .collect()
}

/// One model to train: on `train`, evaluated on `test` (indices into the protocol's sources).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedModel {
    /// `k5-full-fold2`, `full`, ...: also the name of its curve file.
    pub id: String,
    pub k: Option<usize>,
    pub fold: Option<usize>,
    pub attention: Attention,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// The test folds of one k: `test[f]` is fold f's item indices (sorted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldSet {
    pub k: usize,
    pub test: Vec<Vec<usize>>,
}

/// Attention variant name as on the command line.
pub fn attention_name(a: Attention) -> &'static str {
    match a {
        Attention::Full => "full",
        Attention::None => "none",
        Attention::Channel => "channel",
        Attention::Spatial => "spatial",
    }
}

/// Stratified (and, with `groups`, subject-grouped) k-fold plans for every k in `folds`: per k,
/// per attention variant, per fold, one model trained on the other folds. Every k is checked
/// before anything is trained.
pub fn kfold_plan(
    labels: &[usize],
    groups: Option<&[Option<String>]>,
    folds: &[usize],
    attentions: &[Attention],
    seed: u64,
) -> Result<(Vec<FoldSet>, Vec<PlannedModel>)> {
    if folds.is_empty() || attentions.is_empty() {
        return Err(Error::InvalidConfig {
            op: "kfold".into(),
            message: "need at least one fold count and one attention variant".into(),
        });
    }
    let mut sets = Vec::new();
    let mut models = Vec::new();
    for &k in folds {
        let parts = split::stratified_kfold(labels, groups, k, seed)?;
        for &a in attentions {
            for (f, p) in parts.iter().enumerate() {
                models.push(PlannedModel {
                    id: format!("k{k}-{}-fold{f}", attention_name(a)),
                    k: Some(k),
                    fold: Some(f),
                    attention: a,
                    train: p.train.clone(),
                    test: p.test.clone(),
                });
            }
        }
        sets.push(FoldSet {
            k,
            test: parts.into_iter().map(|p| p.test).collect(),
        });
    }
    Ok((sets, models))
}

/// One model per attention variant, trained on all of `train_len` and tested on all of
/// `test_len` (hold-out and cross-dataset).
pub fn single_plan(
    train_len: usize,
    test_len: usize,
    attentions: &[Attention],
) -> Vec<PlannedModel> {
    attentions
        .iter()
        .map(|&a| PlannedModel {
            id: attention_name(a).to_string(),
            k: None,
            fold: None,
            attention: a,
            train: (0..train_len).collect(),
            test: (0..test_len).collect(),
        })
        .collect()
}

/// Mean loss and accuracy of one training epoch (and the clean test and validation accuracy
/// after it, when asked for).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub test_accuracy: Option<f64>,
    /// Accuracy on the model's validation part after the epoch (with `--val-fraction`).
    #[serde(default)]
    pub val_accuracy: Option<f64>,
    /// Learning rate of the epoch's last step.
    #[serde(default)]
    pub lr: Option<f64>,
}

/// Precision, recall, F1 and support of one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// One model on one test set (clean or one occlusion type).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// `clean`, `patch8`, `patch16`, `patch24`, `eyes`, `mouth`.
    pub occlusion: String,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: Vec<ClassScore>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// The examples evaluated (indices into the report's `samples`), in the order of `labels`
    /// and of the rows of `probs`.
    pub indices: Vec<usize>,
    pub labels: Vec<u32>,
    /// `[indices.len(), classes]` row-major softmax outputs (for ROC curves and calibration).
    pub probs: Vec<f32>,
    /// Examples that could not be read (non-strict runs) and are not in `indices`.
    pub unreadable: Vec<String>,
}

impl EvalRecord {
    /// `indices` are the examples that were evaluated, after leaving out unreadable ones.
    pub fn new(occlusion: &str, e: &Evaluation, indices: Vec<usize>, classes: &[String]) -> Self {
        EvalRecord {
            occlusion: occlusion.to_string(),
            accuracy: e.accuracy(),
            macro_f1: e.macro_f1(),
            per_class: e
                .per_class()
                .into_iter()
                .enumerate()
                .map(|(c, (precision, recall, f1, support))| ClassScore {
                    class: classes[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                })
                .collect(),
            confusion: e.confusion(),
            indices,
            labels: e.labels.clone(),
            probs: e.probs.clone(),
            unreadable: e.failures.clone(),
        }
    }
}

/// One trained model and its evaluations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub id: String,
    pub k: Option<usize>,
    pub fold: Option<usize>,
    pub attention: Attention,
    /// Images trained on (the training side less its validation part).
    pub train_size: usize,
    pub test_size: usize,
    /// The validation part of the training side (`--val-fraction`): indices into the training
    /// source (k-fold: the pool), never in the test side.
    #[serde(default)]
    pub val_indices: Vec<usize>,
    /// With the best validation epoch kept: the epoch whose weights were tested.
    #[serde(default)]
    pub kept_epoch: Option<usize>,
    /// The loss's class weights, when `--class-weights` was given (from this model's training
    /// side).
    pub class_weights: Option<Vec<f32>>,
    pub train_seconds: f64,
    pub curve: Vec<EpochPoint>,
    pub evaluations: Vec<EvalRecord>,
}

/// Mean and spread over the models of one (k, attention, occlusion): a cell of Table 3 (or, with
/// one model, of Tables 5 and 6).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub k: Option<usize>,
    pub attention: Attention,
    pub occlusion: String,
    pub models: usize,
    pub accuracy_mean: f64,
    pub accuracy_std: f64,
    pub macro_f1_mean: f64,
    pub macro_f1_std: f64,
    /// Per fold, in fold order.
    pub accuracies: Vec<f64>,
    pub macro_f1s: Vec<f64>,
    /// Summed over the folds: every example counted once.
    pub confusion: Vec<Vec<usize>>,
    /// Accuracy of the summed confusion (pooled over folds).
    pub pooled_accuracy: f64,
}

/// Groups the evaluations by (k, attention, occlusion), in the order they first appear.
pub fn summarize(models: &[ModelRecord]) -> Vec<SummaryRow> {
    let mut order: Vec<(Option<usize>, Attention, String)> = Vec::new();
    let mut groups: BTreeMap<usize, Vec<&EvalRecord>> = BTreeMap::new();
    for m in models {
        for e in &m.evaluations {
            let key = (m.k, m.attention, e.occlusion.clone());
            let at = match order.iter().position(|o| *o == key) {
                Some(p) => p,
                None => {
                    order.push(key);
                    order.len() - 1
                }
            };
            groups.entry(at).or_default().push(e);
        }
    }
    order
        .into_iter()
        .enumerate()
        .map(|(at, (k, attention, occlusion))| {
            let evals = &groups[&at];
            let acc: Vec<f64> = evals.iter().map(|e| e.accuracy).collect();
            let f1: Vec<f64> = evals.iter().map(|e| e.macro_f1).collect();
            let n = evals[0].confusion.len();
            let mut confusion = vec![vec![0usize; n]; n];
            for e in evals {
                for (r, row) in e.confusion.iter().enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        confusion[r][c] += v;
                    }
                }
            }
            let total: usize = confusion.iter().flatten().sum();
            let hits: usize = (0..n).map(|c| confusion[c][c]).sum();
            let (am, asd) = mean_std(&acc);
            let (fm, fsd) = mean_std(&f1);
            SummaryRow {
                k,
                attention,
                occlusion,
                models: evals.len(),
                accuracy_mean: am,
                accuracy_std: asd,
                macro_f1_mean: fm,
                macro_f1_std: fsd,
                accuracies: acc,
                macro_f1s: f1,
                confusion,
                pooled_accuracy: hits as f64 / total.max(1) as f64,
            }
        })
        .collect()
}

/// One example the evaluations' `indices` refer to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleInfo {
    pub name: String,
    pub label: usize,
    pub group: Option<String>,
}

/// What a protocol ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// The training side in words (paths, skipped folders, notes).
    pub train: String,
    /// The test side in words.
    pub test: String,
    /// Where the landmarks of the occlusion boxes came from, with counts.
    pub train_landmarks: String,
    pub test_landmarks: String,
    /// Images per class on each side (k-fold: the same pool on both).
    pub train_counts: Vec<usize>,
    pub test_counts: Vec<usize>,
    /// The test side's examples, which `indices` refer to (k-fold: the whole pool).
    pub samples: Vec<SampleInfo>,
    /// With `--crop face`: what the face crop found on each side (k-fold: the pool on both).
    #[serde(default)]
    pub train_crop: Option<CropReport>,
    #[serde(default)]
    pub test_crop: Option<CropReport>,
}

/// Everything a protocol run measured: `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `kfold`, `holdout` or `cross`.
    pub protocol: String,
    /// False while the run is still going (the report is rewritten after every model).
    pub complete: bool,
    /// The settings the run was started with (model, training, data flags).
    pub settings: serde_json::Value,
    pub classes: Vec<String>,
    pub occlusions: Vec<String>,
    pub data: DataInfo,
    /// k-fold only: the test folds of every k.
    pub folds: Vec<FoldSet>,
    pub models: Vec<ModelRecord>,
    pub summary: Vec<SummaryRow>,
    /// Wall time of the models so far.
    pub seconds: f64,
}

fn cell(mean: f64, std: f64, n: usize) -> String {
    if n > 1 {
        format!("{mean:.3} ± {std:.3}")
    } else {
        format!("{mean:.3}")
    }
}

impl Report {
    /// `report.md`: the summary table (rows k and attention, columns the test sets), per-model
    /// lines, and the summed confusion matrices.
    pub fn markdown(&self) -> String {
        let mut s = format!("# {} protocol\n\n", self.protocol);
        if !self.complete {
            s += "**Incomplete: the run is still going or was stopped.**\n\n";
        }
        s += &format!("- train: {}\n- test: {}\n", self.data.train, self.data.test);
        s += &format!(
            "- landmarks: train {}; test {}\n",
            self.data.train_landmarks, self.data.test_landmarks
        );
        let counts = |c: &[usize]| {
            self.classes
                .iter()
                .zip(c)
                .map(|(n, v)| format!("{n} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        s += &format!(
            "- images per class: train {}; test {}\n",
            counts(&self.data.train_counts),
            counts(&self.data.test_counts)
        );
        for (side, c) in [
            ("train", &self.data.train_crop),
            ("test", &self.data.test_crop),
        ] {
            if let Some(c) = c {
                s += &format!("- {side}: {}\n", c.summary(10));
            }
        }
        s += &format!(
            "- settings: `{}`\n- time: {:.1} s for {} models\n\n",
            self.settings,
            self.seconds,
            self.models.len()
        );
        let kfold = self.summary.iter().any(|r| r.k.is_some());
        s += if kfold {
            "## Accuracy (macro-F1): mean ± sample standard deviation over folds\n\n"
        } else {
            "## Accuracy (macro-F1)\n\n"
        };
        let mut rows: Vec<(Option<usize>, Attention)> = Vec::new();
        for r in &self.summary {
            if !rows.contains(&(r.k, r.attention)) {
                rows.push((r.k, r.attention));
            }
        }
        s += if kfold {
            "| k | attention |"
        } else {
            "| attention |"
        };
        for o in &self.occlusions {
            s += &format!(" {o} |");
        }
        s += "\n|";
        for _ in 0..self.occlusions.len() + 1 + kfold as usize {
            s += "---|";
        }
        s += "\n";
        for (k, a) in &rows {
            if let Some(k) = k {
                s += &format!("| {k} ");
            }
            s += &format!("| {} |", attention_name(*a));
            for o in &self.occlusions {
                match self
                    .summary
                    .iter()
                    .find(|r| r.k == *k && r.attention == *a && &r.occlusion == o)
                {
                    Some(r) => {
                        s += &format!(
                            " {} ({}) |",
                            cell(r.accuracy_mean, r.accuracy_std, r.models),
                            cell(r.macro_f1_mean, r.macro_f1_std, r.models)
                        )
                    }
                    None => s += " |",
                }
            }
            s += "\n";
        }
        let validated = self.models.iter().any(|m| !m.val_indices.is_empty());
        s += "\n## Models\n\n| model | train | test | seconds | last epoch loss | last epoch train accuracy | clean accuracy |";
        s += if validated {
            " validation | kept epoch (its validation accuracy) |\n|---|---|---|---|---|---|---|---|---|\n"
        } else {
            "\n|---|---|---|---|---|---|---|\n"
        };
        for m in &self.models {
            let last = m.curve.last();
            let clean = m
                .evaluations
                .first()
                .map_or(String::new(), |e| format!("{:.3}", e.accuracy));
            s += &format!(
                "| {} | {} | {} | {:.1} | {} | {} | {} |",
                m.id,
                m.train_size,
                m.test_size,
                m.train_seconds,
                last.map_or(String::new(), |p| format!("{:.4}", p.loss)),
                last.map_or(String::new(), |p| format!("{:.3}", p.accuracy)),
                clean
            );
            if validated {
                let kept = m.kept_epoch.map_or("last".to_string(), |k| {
                    let acc = m
                        .curve
                        .iter()
                        .find(|p| p.epoch == k)
                        .and_then(|p| p.val_accuracy)
                        .map_or(String::new(), |a| format!(" ({a:.3})"));
                    format!("{k}{acc}")
                });
                s += &format!(" {} | {kept} |", m.val_indices.len());
            }
            s += "\n";
        }
        s += "\n## Confusion matrices (rows true, columns predicted";
        s += if kfold {
            ", summed over folds)\n"
        } else {
            ")\n"
        };
        for r in &self.summary {
            s += &format!(
                "\n{}{} / {} (pooled accuracy {:.3})\n\n|",
                r.k.map_or(String::new(), |k| format!("k={k} / ")),
                attention_name(r.attention),
                r.occlusion,
                r.pooled_accuracy
            );
            s += " |";
            for c in &self.classes {
                s += &format!(" {c} |");
            }
            s += "\n|";
            for _ in 0..=self.classes.len() {
                s += "---|";
            }
            s += "\n";
            for (c, row) in r.confusion.iter().enumerate() {
                s += &format!("| {} |", self.classes[c]);
                for v in row {
                    s += &format!(" {v} |");
                }
                s += "\n";
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_weights_are_inverse_frequency_with_mean_one() {
        // Counts 1, 3, 0: inverse 1, 1/3 -> mean 2/3 -> weights 1.5, 0.5; absent class 1.
        let w = class_weights(&[0, 1, 1, 1], 3);
        assert_eq!(w, vec![1.5, 0.5, 1.0]);
        // Balanced classes: all ones.
        assert_eq!(class_weights(&[0, 1, 0, 1], 2), vec![1.0, 1.0]);
    }

    #[test]
    fn kfold_plans_cover_every_item_once_per_k_and_attention() {
        let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
        let (sets, models) = kfold_plan(
            &labels,
            None,
            &[3, 5],
            &[Attention::Full, Attention::None],
            1,
        )
        .unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(models.len(), 2 * (3 + 5));
        for k in [3, 5] {
            for a in [Attention::Full, Attention::None] {
                let mut seen = vec![0; 30];
                for m in models.iter().filter(|m| m.k == Some(k) && m.attention == a) {
                    for &i in &m.test {
                        seen[i] += 1;
                        assert!(!m.train.contains(&i));
                    }
                    assert_eq!(m.train.len() + m.test.len(), 30);
                }
                assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
            }
        }
        assert!(kfold_plan(&labels, None, &[1], &[Attention::Full], 1).is_err());
    }
}
