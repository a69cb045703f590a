//! The paper's evaluation protocols (section 4): which models to train on which examples
//! (k-fold cross-validation, hold-out, cross-dataset), the loop that trains and tests each of
//! them ([`run`]), what each model's evaluation recorded, and how the records aggregate into
//! the shape of the paper's Tables 3, 5 and 6. The command line (`fer-cbam kfold|holdout|cross`)
//! reads the flags and the data and hands them here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::augment::{self, Augmentation};
use crate::data::crop::CropReport;
use crate::data::occlusion::Occlusion;
use crate::data::split;
use crate::files::write_atomic;
use crate::gpu::Gpu;
use crate::metrics::{mean_std, Metrics};
use crate::model::{Attention, InferenceNetwork, ModelConfig, Network, TrainOptions, CLASSES};
use crate::ops::adam::AdamConfig;
pub use crate::sources::SampleInfo;
use crate::sources::Source;
use crate::train::{self, Evaluation, LrSchedule, TrainLoop};
use crate::{figures, Error, Result};

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

/// The test sets named on the command line (`--occlusions`): `clean` (or `none`) and the
/// occlusion types, each once.
pub fn test_sets(names: &[String]) -> Result<Vec<(String, Option<Occlusion>)>> {
    let invalid = |message: String| Error::InvalidConfig {
        op: "--occlusions".into(),
        message,
    };
    let mut sets: Vec<(String, Option<Occlusion>)> = Vec::new();
    for n in names {
        let set = match n.trim() {
            "clean" | "none" => ("clean".to_string(), None),
            o => {
                let occ: Occlusion = o.parse().map_err(invalid)?;
                (occ.to_string(), Some(occ))
            }
        };
        if sets.iter().any(|s| s.0 == set.0) {
            return Err(invalid(format!("{} is named twice", set.0)));
        }
        sets.push(set);
    }
    if sets.is_empty() {
        return Err(invalid("no test set named".into()));
    }
    Ok(sets)
}

/// What every model of a protocol shares: the command line's model, training and evaluation
/// flags, as data.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The network of every model; each sets its own attention variant.
    pub config: ModelConfig,
    pub epochs: usize,
    /// Batch size of training and evaluation.
    pub batch: usize,
    /// Adam's settings; `lr` is the schedule's base rate.
    pub adam: AdamConfig,
    /// Seed of every model's initialisation, shuffling, dropout and occlusion draws.
    pub seed: u64,
    pub schedule: LrSchedule,
    /// Fraction of training images occluded, redrawn every epoch.
    pub occlusion_mix: f64,
    pub augmentation: Augmentation,
    /// Weight the loss by inverse class frequency of each model's training side.
    pub class_weights: bool,
    /// Also evaluate the clean test side after every epoch (for the curves).
    pub test_curve: bool,
    /// Fraction of each model's training side held out for validation
    /// ([`split::validation`]), and whether the best validation epoch's weights are tested.
    pub val_fraction: f64,
    pub keep_best: bool,
    /// Seed of each model's validation split, and whether it keeps subjects together.
    pub split_seed: u64,
    pub grouped: bool,
    /// Stop at the first unreadable image instead of leaving it out.
    pub strict: bool,
}

/// One run of a protocol: what to train on, what to test, and where the report goes.
pub struct Protocol<'a> {
    /// `kfold`, `holdout` or `cross`.
    pub name: &'a str,
    pub recipe: &'a Recipe,
    /// The test sets every model is evaluated on ([`test_sets`]).
    pub test_sets: Vec<(String, Option<Occlusion>)>,
    /// The sources the models' training and test indices refer to (one pool for k-fold).
    pub train: &'a Source,
    pub test: &'a Source,
    pub folds: Vec<FoldSet>,
    pub plan: Vec<PlannedModel>,
    pub data: DataInfo,
    /// The run's settings, for the report.
    pub settings: serde_json::Value,
    /// The report folder: `report.json`, `report.md`, `curves/<model>.csv`, `figures/`,
    /// `metrics.md`.
    pub out: &'a Path,
}

/// What [`run`] reports as it goes.
pub enum Event<'a> {
    /// Before the first model: the training steps of all models together.
    Start { steps: u64 },
    /// After each readback of a model's training loss.
    Trained {
        /// The model's position in the plan (0-based), of `models`.
        model: usize,
        models: usize,
        id: &'a str,
        /// Training steps of the run done so far, over all models.
        steps: u64,
        epoch: usize,
        loss: f64,
        accuracy: f64,
    },
    /// A training image could not be read; its row of the batch was filled with a copy of
    /// another image of the batch.
    Unreadable(&'a str),
}

/// Trains and evaluates every planned model, rewriting the report after each (marked
/// incomplete until the last), then draws the figures; returns the complete report. Each
/// model's test sets run on an inference network loaded with its trained state.
pub fn run(gpu: &Gpu, p: &Protocol<'_>, on: &mut dyn FnMut(Event<'_>)) -> Result<Report> {
    let r = p.recipe;
    let invalid = |message: String| Error::InvalidConfig {
        op: "protocol".into(),
        message,
    };
    let batch = r.batch;
    let labels = p.train.labels();
    let groups = p.train.groups();
    // Every model's validation part, out of its training side only, drawn before anything is
    // trained so that a split that cannot be made stops the run at once.
    let parts = p
        .plan
        .iter()
        .map(|m| {
            split::validation(
                &m.train,
                &labels,
                r.grouped.then_some(&groups[..]),
                r.val_fraction,
                r.split_seed,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some((m, part)) = p
        .plan
        .iter()
        .zip(&parts)
        .find(|(_, q)| q.train.len() < batch)
    {
        return Err(invalid(format!(
            "model {} has {} training images, fewer than one batch of {batch}",
            m.id,
            part.train.len()
        )));
    }
    if let Some(m) = p.plan.iter().find(|m| m.test.is_empty()) {
        return Err(invalid(format!("model {} has no test image", m.id)));
    }
    let curves = p.out.join("curves");
    std::fs::create_dir_all(&curves).map_err(|e| Error::Data {
        path: curves.display().to_string(),
        message: format!("cannot create the report folder: {e}"),
    })?;
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let mut report = Report {
        protocol: p.name.to_string(),
        complete: false,
        settings: p.settings.clone(),
        classes: classes.clone(),
        occlusions: p.test_sets.iter().map(|s| s.0.clone()).collect(),
        data: p.data.clone(),
        folds: p.folds.clone(),
        models: Vec::new(),
        summary: Vec::new(),
        seconds: 0.0,
    };
    let steps_of = |q: &split::Partition| (q.train.len() / batch * r.epochs) as u64;
    on(Event::Start {
        steps: parts.iter().map(steps_of).sum(),
    });
    let started = Instant::now();
    let mut done_steps = 0u64;
    let (train_src, test_src) = (p.train, p.test);
    for (n, (m, part)) in p.plan.iter().zip(&parts).enumerate() {
        let config = ModelConfig {
            attention: m.attention,
            ..r.config.clone()
        };
        config.validate()?;
        let train_labels: Vec<usize> = part.train.iter().map(|&i| labels[i]).collect();
        let weights = r
            .class_weights
            .then(|| class_weights(&train_labels, classes.len()));
        let options = TrainOptions {
            adam: r.adam,
            seed: r.seed as u32,
            class_weights: weights.clone(),
        };
        let mut net = pollster::block_on(Network::new(gpu, &config, batch, options))?;
        net.write_params(gpu, &crate::model::ParamTable::new(&config).init(r.seed))?;
        let (ch, size) = (config.in_channels, config.image_size);
        let augment =
            augment::training(r.occlusion_mix, r.augmentation, r.seed, ch, size, |i, s| {
                train_src.landmarks(i, s)
            });
        let model_started = Instant::now();
        let mut curve = Vec::new();
        let opts = TrainLoop {
            epochs: r.epochs,
            seed: r.seed,
            strict: r.strict,
            schedule: Some(r.schedule),
        };
        let validation = (!part.test.is_empty()).then(|| train::Validation {
            source: train_src,
            indices: &part.test,
            keep_best: r.keep_best,
            previous_best: None,
        });
        let fitted = train::fit(
            gpu,
            &mut net,
            train_src,
            &part.train,
            &opts,
            augment::as_augment(&augment),
            validation.as_ref(),
            &mut |q, failures| {
                for f in failures {
                    on(Event::Unreadable(f));
                }
                on(Event::Trained {
                    model: n,
                    models: p.plan.len(),
                    id: &m.id,
                    steps: done_steps + q.step as u64,
                    epoch: q.epoch,
                    loss: q.loss,
                    accuracy: q.accuracy,
                });
            },
            &mut |net, e| {
                let test_accuracy = match r.test_curve {
                    true => Some(
                        train::evaluate(gpu, net, test_src, &m.test, r.strict, None)?.accuracy(),
                    ),
                    false => None,
                };
                curve.push(EpochPoint {
                    epoch: e.epoch,
                    loss: e.loss,
                    accuracy: e.accuracy,
                    test_accuracy,
                    val_accuracy: e.val.map(|v| v.accuracy),
                    lr: Some(e.lr),
                });
                Ok(())
            },
        )?;
        done_steps += steps_of(part);
        let train_seconds = model_started.elapsed().as_secs_f64();
        // The trained state, read back once, serves every test set; the training network's
        // memory is given back first.
        let trained = net.checkpoint(gpu)?;
        drop(net);
        let infer = pollster::block_on(InferenceNetwork::from_checkpoint(gpu, &trained, batch))?;
        let mut evaluations = Vec::new();
        for (set, occ) in &p.test_sets {
            let f = occ.map(|o| augment::occluded(o, ch, size, |i, s| test_src.landmarks(i, s)));
            let aug = f.as_ref().map(|f| f as train::Augment);
            let e = train::evaluate(gpu, &infer, test_src, &m.test, r.strict, aug)?;
            // Unreadable examples are left out of the evaluation: leave them out of the
            // indices too, so that indices, labels and probability rows stay aligned.
            let indices: Vec<usize> = m
                .test
                .iter()
                .copied()
                .filter(|i| !e.failed.contains(i))
                .collect();
            evaluations.push(EvalRecord::new(set, &e, indices, &classes));
        }
        report.models.push(ModelRecord {
            id: m.id.clone(),
            k: m.k,
            fold: m.fold,
            attention: m.attention,
            train_size: part.train.len(),
            test_size: m.test.len(),
            val_indices: part.test.clone(),
            kept_epoch: fitted.kept,
            class_weights: weights,
            train_seconds,
            curve,
            evaluations,
        });
        report.summary = summarize(&report.models);
        report.seconds = started.elapsed().as_secs_f64();
        report.complete = n + 1 == p.plan.len();
        write_curve(
            &curves.join(format!("{}.csv", m.id)),
            &report.models[n].curve,
        )?;
        write_report(p.out, &report)?;
    }
    write_figures(p.out, &report)?;
    Ok(report)
}

fn write_curve(path: &Path, curve: &[EpochPoint]) -> Result<()> {
    let mut s = String::from("epoch,loss,accuracy,test_accuracy,val_accuracy,lr\n");
    let opt = |v: Option<f64>| v.map_or(String::new(), |a| a.to_string());
    for p in curve {
        s += &format!(
            "{},{},{},{},{},{}\n",
            p.epoch,
            p.loss,
            p.accuracy,
            opt(p.test_accuracy),
            opt(p.val_accuracy),
            opt(p.lr)
        );
    }
    write_atomic(path, s.as_bytes())
}

fn write_report(out: &Path, report: &Report) -> Result<()> {
    let json = serde_json::to_string(report).map_err(|e| Error::Data {
        path: out.join("report.json").display().to_string(),
        message: e.to_string(),
    })?;
    write_atomic(&out.join("report.json"), json.as_bytes())?;
    write_atomic(&out.join("report.md"), report.markdown().as_bytes())
}

/// Figures of a finished report, in `dir/figures/`: per (k, attention, test set) the confusion
/// heat map and one-vs-rest ROC curves of the predictions pooled over folds (every example
/// once), each model's training curves, and a bar chart of mean accuracy per test set; plus
/// `dir/metrics.md` with the pooled metrics (weighted F1 and AUC, which report.md leaves out).
fn write_figures(dir: &Path, report: &Report) -> Result<()> {
    let fig = dir.join("figures");
    std::fs::create_dir_all(fig.join("curves")).map_err(|e| Error::Data {
        path: fig.display().to_string(),
        message: format!("cannot create the figures folder: {e}"),
    })?;
    let label = |k: Option<usize>, a: Attention| match k {
        Some(k) => format!("k{k}-{}", attention_name(a)),
        None => attention_name(a).to_string(),
    };
    let mut md = String::from("# Pooled metrics per model group and test set\n\n");
    for row in &report.summary {
        let (mut probs, mut labels) = (Vec::new(), Vec::new());
        for m in report
            .models
            .iter()
            .filter(|m| m.k == row.k && m.attention == row.attention)
        {
            for e in m
                .evaluations
                .iter()
                .filter(|e| e.occlusion == row.occlusion)
            {
                probs.extend_from_slice(&e.probs);
                labels.extend_from_slice(&e.labels);
            }
        }
        if labels.is_empty() {
            continue;
        }
        let name = format!("{}-{}", label(row.k, row.attention), row.occlusion);
        let metrics = Metrics::new(&probs, &labels, &report.classes);
        let title = format!(
            "{} {}, test {} ({} images)",
            report.protocol, name, row.occlusion, metrics.n
        );
        figures::confusion_png(&fig.join(format!("confusion-{name}.png")), &metrics, &title)?;
        figures::roc_png(&fig.join(format!("roc-{name}.png")), &metrics, &title)?;
        md += &format!("## {name}\n\n{}\n", metrics.markdown());
    }
    for m in &report.models {
        let points: Vec<figures::EpochPoint> = m
            .curve
            .iter()
            .map(|p| figures::EpochPoint {
                epoch: p.epoch,
                loss: p.loss,
                accuracy: p.accuracy,
                test_accuracy: p.test_accuracy,
            })
            .collect();
        figures::curves_png(
            &fig.join("curves").join(format!("{}.png", m.id)),
            &points,
            &format!("{} {}: training", report.protocol, m.id),
        )?;
    }
    let mut groups: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for row in &report.summary {
        let bar = (label(row.k, row.attention), row.accuracy_mean);
        match groups.iter_mut().find(|g| g.0 == row.occlusion) {
            Some(g) => g.1.push(bar),
            None => groups.push((row.occlusion.clone(), vec![bar])),
        }
    }
    figures::bars_png(
        &fig.join("accuracy.png"),
        &groups,
        &format!("{}: mean test accuracy per test set", report.protocol),
        "accuracy",
    )?;
    write_atomic(&dir.join("metrics.md"), md.as_bytes())
}
