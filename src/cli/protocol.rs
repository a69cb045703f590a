//! `kfold`, `holdout` and `cross`: the paper's evaluation protocols (Tables 3, 5 and 6), each
//! training a set of models and writing one report folder (`report.json`, `report.md`,
//! `curves/<model>.csv`). The plans, records and aggregation are in `fer_cbam::protocol`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use fer_cbam::data::crop::{CropMode, CropReport};
use fer_cbam::data::dataset::{self, Dataset, Format};
use fer_cbam::data::occlusion::{Occlusion, Template};
use fer_cbam::data::split;
use fer_cbam::data::synthetic::Landmarks;
use fer_cbam::files::write_atomic;
use fer_cbam::model::checkpoint::FaceCrop;
use fer_cbam::model::{Attention, ModelConfig, Network, ParamTable, TrainOptions, CLASSES};
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::protocol::{
    self, DataInfo, EpochPoint, EvalRecord, FoldSet, ModelRecord, PlannedModel, Report, SampleInfo,
};
use fer_cbam::sources::{DatasetSource, SyntheticSource};
use fer_cbam::train::{self, ImageSource, TrainLoop};
use fer_cbam::{Error, Gpu, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::occlude;
use super::recipe::{self, RecipeArgs};
use super::run::{Data, DataArgs};

/// Model, training, evaluation and report flags shared by the three protocols.
#[derive(Args, Clone, Debug)]
pub struct ProtocolArgs {
    /// Report folder (created if missing): report.json, report.md and curves/<model>.csv. The
    /// report is rewritten after every model, marked incomplete until the last one.
    #[arg(long)]
    pub out: PathBuf,
    /// Attention variants to train, comma-separated: full, none, channel, spatial.
    #[arg(long, value_delimiter = ',', default_value = "full,none")]
    pub attention: Vec<Attention>,
    /// Test sets, comma-separated: clean, patch8, patch16, patch24, eyes, mouth (each image
    /// occluded the same way as by `eval --occlusion`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "clean,patch8,patch16,patch24,eyes,mouth"
    )]
    pub occlusions: Vec<String>,
    /// Epochs per model.
    #[arg(long, value_parser = crate::cli::epochs, default_value_t = 10)]
    pub epochs: usize,
    /// Batch size of training and evaluation.
    #[arg(long, value_parser = crate::cli::batch_size, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, value_parser = crate::cli::positive, default_value_t = 1e-3)]
    pub lr: f64,
    /// Decoupled (AdamW) weight decay.
    #[arg(long, value_parser = crate::cli::non_negative, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seed of every model's initialisation, shuffling, dropout and occlusion draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dropout probability of the head.
    #[arg(long, value_parser = crate::cli::dropout, default_value_t = 0.2)]
    pub dropout: f32,
    /// Fraction of training images that get one of the paper's five occlusions, redrawn every
    /// epoch.
    #[arg(long, value_parser = crate::cli::fraction, default_value_t = 0.0)]
    pub occlusion_mix: f64,
    /// Weight the loss by inverse class frequency of each model's training side (normalised
    /// to mean 1), for imbalanced data (the paper's Table 1).
    #[arg(long)]
    pub class_weights: bool,
    /// Also evaluate each model on its clean test side after every epoch (test accuracy in the
    /// training curves; costs one evaluation per epoch).
    #[arg(long)]
    pub test_curve: bool,
    /// Square input size in pixels.
    #[arg(long, value_parser = crate::cli::image_size, default_value_t = 128)]
    pub image_size: usize,
    /// Input channels: 3 (grayscale replicated) or 1.
    #[arg(long, value_parser = crate::cli::in_channels, default_value_t = 3)]
    pub in_channels: usize,
    /// Conv widths of the stages, comma-separated.
    #[arg(long, value_parser = crate::cli::width, value_delimiter = ',', default_value = "32,64,128,256")]
    pub widths: Vec<usize>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[command(flatten)]
    pub network: super::recipe::NetworkArgs,
    /// No progress bar, only the final table.
    #[arg(long)]
    pub quiet: bool,
}

/// `fer-cbam kfold`.
#[derive(Args, Clone, Debug)]
pub struct KfoldArgs {
    /// Fold counts, comma-separated: each k gives k models per attention variant. The folds
    /// are drawn with --split-seed; without --data the pool is --synthetic faces.
    #[arg(long, value_parser = crate::cli::folds, value_delimiter = ',', default_value = "3,5,10")]
    pub folds: Vec<usize>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub common: ProtocolArgs,
}

/// `fer-cbam holdout`.
#[derive(Args, Clone, Debug)]
pub struct HoldoutArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub common: ProtocolArgs,
}

/// `fer-cbam cross`.
#[derive(Args, Clone, Debug)]
pub struct CrossArgs {
    /// Training datasets, comma-separated: all their images (both sides of any split).
    #[arg(long, value_delimiter = ',', required = true)]
    pub train: Vec<PathBuf>,
    /// Test dataset: all its images.
    #[arg(long)]
    pub test: PathBuf,
    /// Form of every --train dataset; detected from its files when not given.
    #[arg(long)]
    pub train_format: Option<Format>,
    /// Form of --test; detected from its files when not given.
    #[arg(long)]
    pub test_format: Option<Format>,
    /// Landmark template for training images without landmarks: fer2013 or ckplus48.
    #[arg(long, default_value = "fer2013")]
    pub train_landmarks: Template,
    /// Landmark template for test images without landmarks: fer2013 or ckplus48 (for CK+48).
    #[arg(long, default_value = "fer2013")]
    pub test_landmarks: Template,
    /// Landmark sidecar CSV (`file,x0,y0,...,x67,y67`, e.g. from tools/landmarks.py) for the
    /// --train datasets; rows match images by path or path ending.
    #[arg(long, value_name = "PATH")]
    pub train_landmarks_csv: Option<PathBuf>,
    /// Landmark sidecar CSV for --test.
    #[arg(long, value_name = "PATH")]
    pub test_landmarks_csv: Option<PathBuf>,
    /// CK+: keep only the last (apex) frame of each sequence, on either side.
    #[arg(long)]
    pub ckplus_apex: bool,
    /// Stop at the first unreadable image instead of reporting, counting and going on.
    #[arg(long)]
    pub strict: bool,
    /// Keep every subject's images on one side of the validation split (--val-fraction).
    #[arg(long, value_parser = ["subject", "none"], default_value = "none")]
    pub group_by: String,
    /// Seed of the validation split.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Crop every image of both sides to a square around its face before resizing (its own
    /// landmarks' box, else the built-in detector's, grown by --face-margin); `none` uses
    /// images whole.
    #[arg(long, value_name = "none|face", default_value = "none")]
    pub crop: CropMode,
    /// With --crop face: the margin on every side of the face box, as a fraction of its side
    /// [default: 0.25].
    #[arg(long, value_name = "M")]
    pub face_margin: Option<f32>,
    #[command(flatten)]
    pub common: ProtocolArgs,
}

/// The images of one side of a protocol.
pub enum Source {
    Synthetic(SyntheticSource),
    Dataset(DatasetSource),
}

impl ImageSource for Source {
    fn len(&self) -> usize {
        match self {
            Source::Synthetic(s) => s.len(),
            Source::Dataset(s) => s.len(),
        }
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        match self {
            Source::Synthetic(s) => s.load(i, channels, size),
            Source::Dataset(s) => s.load(i, channels, size),
        }
    }
    fn describe(&self, i: usize) -> String {
        match self {
            Source::Synthetic(s) => s.describe(i),
            Source::Dataset(s) => s.describe(i),
        }
    }
}

impl Source {
    fn landmarks(&self, i: usize, size: usize) -> Landmarks {
        match self {
            Source::Synthetic(s) => s.landmarks(i, size),
            Source::Dataset(s) => s.landmarks(i, size),
        }
    }
    fn labels(&self) -> Vec<usize> {
        match self {
            Source::Synthetic(s) => s.labels(),
            Source::Dataset(s) => s.labels(),
        }
    }
    fn groups(&self) -> Vec<Option<String>> {
        match self {
            Source::Synthetic(s) => vec![None; s.len],
            Source::Dataset(s) => s.groups(),
        }
    }
    fn samples(&self) -> Vec<SampleInfo> {
        let labels = self.labels();
        let groups = self.groups();
        (0..self.len())
            .map(|i| SampleInfo {
                name: self.describe(i),
                label: labels[i],
                group: groups[i].clone(),
            })
            .collect()
    }
    fn counts(&self, indices: Option<&[usize]>) -> Vec<usize> {
        let labels = self.labels();
        let mut c = vec![0; CLASSES.len()];
        match indices {
            Some(idx) => idx.iter().for_each(|&i| c[labels[i]] += 1),
            None => labels.iter().for_each(|&l| c[l] += 1),
        }
        c
    }
    /// Where the landmarks came from, per kind of source, with counts.
    fn landmark_origins(&self) -> String {
        match self {
            Source::Synthetic(_) => "exact (the generator's own geometry)".into(),
            Source::Dataset(s) => s.landmark_summary(),
        }
    }
}

/// Opens a dataset (detected form unless `format`), keeps the apex frames when asked, attaches
/// a landmark sidecar when given, and describes it in words (skipped folders, loader notes,
/// where the landmarks came from).
fn open(
    root: &Path,
    format: Option<Format>,
    apex: bool,
    landmarks_csv: Option<&Path>,
    crop: Option<FaceCrop>,
    quiet: bool,
) -> Result<(Dataset, String, Option<CropReport>)> {
    let mut ds = dataset::open(root, format)?;
    let mut note = format!("{} ({})", root.display(), ds.format.name());
    if apex {
        let dropped = ds.keep_last_frame_per_sequence();
        note += &format!(" (apex frames only: {dropped} other frames left out)");
    }
    if let Some(csv) = landmarks_csv {
        fer_cbam::data::landmarks::attach_sidecar(&mut ds, csv)?;
    }
    // After the landmarks are attached: they place the crop.
    let crop = match crop {
        Some(c) => Some(super::run::crop_dataset(&mut ds, c, quiet)?),
        None => None,
    };
    note += &format!(" ({})", ds.landmark_summary());
    if let Some(c) = &crop {
        note += &format!(" ({})", c.summary(10));
    }
    for s in &ds.skipped {
        note += &format!(" (skipped {} with {} entries)", s.path.display(), s.entries);
    }
    for n in &ds.notes {
        note += &format!(" ({n})");
    }
    if ds.samples.is_empty() {
        return Err(Error::Data {
            path: root.display().to_string(),
            message: "no images of the seven classes".into(),
        });
    }
    Ok((ds, note, crop))
}

fn invalid(op: &str, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        op: op.into(),
        message: message.into(),
    }
}

/// The test sets named by --occlusions: `clean` (or `none`) and the occlusion types.
fn test_sets(names: &[String]) -> Result<Vec<(String, Option<Occlusion>)>> {
    let mut sets: Vec<(String, Option<Occlusion>)> = Vec::new();
    for n in names {
        let set = match n.trim() {
            "clean" | "none" => ("clean".to_string(), None),
            o => {
                let occ: Occlusion = o.parse().map_err(|e: String| invalid("--occlusions", e))?;
                (occ.to_string(), Some(occ))
            }
        };
        if sets.iter().any(|s| s.0 == set.0) {
            return Err(invalid("--occlusions", format!("{} is named twice", set.0)));
        }
        sets.push(set);
    }
    if sets.is_empty() {
        return Err(invalid("--occlusions", "no test set named"));
    }
    Ok(sets)
}

impl ProtocolArgs {
    fn config(&self, attention: Attention) -> Result<ModelConfig> {
        let c = self.network.apply(ModelConfig {
            image_size: self.image_size,
            in_channels: self.in_channels,
            attention,
            widths: self.widths.clone(),
            dropout: self.dropout,
            ..ModelConfig::default()
        });
        c.validate()?;
        Ok(c)
    }
    fn check(&self) -> Result<()> {
        if self.attention.is_empty() {
            return Err(invalid("--attention", "no attention variant named"));
        }
        for (i, a) in self.attention.iter().enumerate() {
            if self.attention[..i].contains(a) {
                return Err(invalid(
                    "--attention",
                    format!("{} is named twice", protocol::attention_name(*a)),
                ));
            }
            self.config(*a)?;
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(invalid(
                "protocol",
                "--epochs and --batch-size must be positive",
            ));
        }
        if !(0.0..=1.0).contains(&self.occlusion_mix) {
            return Err(invalid(
                "--occlusion-mix",
                format!("{} is not a fraction between 0 and 1", self.occlusion_mix),
            ));
        }
        test_sets(&self.occlusions)?;
        self.recipe.check(self.image_size)?;
        self.recipe.schedule(self.lr, self.epochs)?;
        Ok(())
    }
    /// The run's settings for the report (everything but the output folder, so that reruns
    /// compare equal).
    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "attention": self.attention.iter().map(|a| protocol::attention_name(*a)).collect::<Vec<_>>(),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            // Through its shortest decimal form: 0.2, not f32's 0.20000000298023224.
            "dropout": self.dropout.to_string().parse::<f64>().unwrap_or(0.0),
            "occlusion_mix": self.occlusion_mix,
            "class_weights": self.class_weights,
            "test_curve": self.test_curve,
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "widths": self.widths,
            "flip": self.recipe.flip,
            "shift": self.recipe.shift,
            "lr_schedule": self.recipe.schedule(self.lr, self.epochs).ok(),
            "val_fraction": self.recipe.val_fraction,
            "select": if self.recipe.keep_best() { "best-val" } else { "last" },
            "norm": self.network.norm.name(),
            "init": self.network.init.name(),
            "gate": self.network.gate.name(),
        })
    }
}

fn data_settings(d: &DataArgs) -> serde_json::Value {
    serde_json::json!({
        "data": d.data,
        "format": d.format.map(|f| f.name()),
        "synthetic": d.data.is_none().then_some(d.synthetic),
        "synthetic_seed": d.data.is_none().then_some(d.synthetic_seed),
        "split_seed": d.split_seed,
        "group_by": d.group_by,
        "ckplus_apex": d.ckplus_apex,
        "landmarks": format!("{:?}", d.landmarks),
        "landmarks_csv": d.landmarks_csv,
        "crop": d.crop_for(None).ok().flatten(),
    })
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// `fer-cbam kfold`: stratified (optionally subject-grouped) k-fold cross-validation.
pub fn kfold(gpu_fn: impl FnOnce() -> Result<Gpu>, args: &KfoldArgs) -> Result<Report> {
    let c = &args.common;
    c.check()?;
    let (pool, note, crop) = match &args.data.data {
        None => {
            if args.data.crop_for(None)?.is_some() {
                return Err(invalid(
                    "--crop face",
                    "needs --data: the synthetic faces are drawn as face crops",
                ));
            }
            if let Some(csv) = &args.data.landmarks_csv {
                return Err(Error::Data {
                    path: csv.display().to_string(),
                    message:
                        "--landmarks-csv needs --data: the synthetic faces have exact landmarks"
                            .into(),
                });
            }
            if args.data.synthetic < 10 {
                return Err(invalid(
                    "--synthetic",
                    format!("{} faces are too few for k-fold", args.data.synthetic),
                ));
            }
            let s = SyntheticSource {
                seed: args.data.synthetic_seed,
                first: 0,
                len: args.data.synthetic,
            };
            let note = format!("synthetic faces (seed {}): {}", s.seed, args.data.synthetic);
            (Source::Synthetic(s), note, None)
        }
        Some(root) => {
            let (ds, note, crop) = open(
                root,
                args.data.format,
                args.data.ckplus_apex,
                args.data.landmarks_csv.as_deref(),
                args.data.crop_for(None)?,
                c.quiet,
            )?;
            let src = DatasetSource::new(&ds, args.data.landmarks, |_| true);
            (Source::Dataset(src), note, crop)
        }
    };
    let grouped = args.data.group_by == "subject";
    let groups = pool.groups();
    if grouped && groups.iter().all(|g| g.is_none()) {
        return Err(invalid(
            "--group-by subject",
            format!("no image of {note} names its subject"),
        ));
    }
    let (folds, plan) = protocol::kfold_plan(
        &pool.labels(),
        grouped.then_some(&groups[..]),
        &args.folds,
        &c.attention,
        args.data.split_seed,
    )?;
    let desc = format!(
        "{note}, {} images; stratified k-fold (seed {}{})",
        pool.len(),
        args.data.split_seed,
        if grouped { ", by subject" } else { "" }
    );
    let data = DataInfo {
        train: desc.clone(),
        test: desc,
        train_landmarks: pool.landmark_origins(),
        test_landmarks: pool.landmark_origins(),
        train_counts: pool.counts(None),
        test_counts: pool.counts(None),
        samples: pool.samples(),
        train_crop: crop.clone(),
        test_crop: crop,
    };
    let settings = merge(
        merge(c.settings(), data_settings(&args.data)),
        serde_json::json!({ "folds": args.folds }),
    );
    run_protocol(
        &gpu_fn()?,
        "kfold",
        c,
        settings,
        (&pool, &pool),
        folds,
        plan,
        data,
        Selection {
            strict: args.data.strict,
            split_seed: args.data.split_seed,
            grouped,
        },
    )
}

/// `fer-cbam holdout`: the dataset's own train/test split, or a stratified 80:20 split.
pub fn holdout(gpu_fn: impl FnOnce() -> Result<Gpu>, args: &HoldoutArgs) -> Result<Report> {
    let c = &args.common;
    c.check()?;
    let d = args.data.load_with(args.data.crop_for(None)?, c.quiet)?;
    let desc = d.describe();
    let crop = d.crop().cloned();
    let (train, test) = match d {
        Data::Synthetic { train, test } => (Source::Synthetic(train), Source::Synthetic(test)),
        Data::Folder { train, test, .. } => (Source::Dataset(train), Source::Dataset(test)),
    };
    let plan = protocol::single_plan(train.len(), test.len(), &c.attention);
    let data = DataInfo {
        train: desc.clone(),
        test: desc,
        train_landmarks: train.landmark_origins(),
        test_landmarks: test.landmark_origins(),
        train_counts: train.counts(None),
        test_counts: test.counts(None),
        samples: test.samples(),
        train_crop: crop.clone(),
        test_crop: crop,
    };
    let settings = merge(c.settings(), data_settings(&args.data));
    run_protocol(
        &gpu_fn()?,
        "holdout",
        c,
        settings,
        (&train, &test),
        Vec::new(),
        plan,
        data,
        Selection {
            strict: args.data.strict,
            split_seed: args.data.split_seed,
            grouped: args.data.group_by == "subject",
        },
    )
}

/// `fer-cbam cross`: train on the union of datasets, test on all of another.
pub fn cross(gpu_fn: impl FnOnce() -> Result<Gpu>, args: &CrossArgs) -> Result<Report> {
    let c = &args.common;
    c.check()?;
    let crop = super::run::resolve_crop(Some(args.crop), args.face_margin, None)?;
    let mut samples = Vec::new();
    let mut notes = Vec::new();
    let mut train_crop: Option<CropReport> = None;
    for root in &args.train {
        let (ds, note, found) = open(
            root,
            args.train_format,
            args.ckplus_apex,
            args.train_landmarks_csv.as_deref(),
            crop,
            c.quiet,
        )?;
        samples.extend(ds.samples);
        notes.push(note);
        if let Some(f) = found {
            let t = train_crop.get_or_insert(CropReport {
                margin: f.margin,
                ..CropReport::default()
            });
            t.from_landmarks += f.from_landmarks;
            t.from_detector += f.from_detector;
            t.no_face.extend(f.no_face);
            t.unreadable.extend(f.unreadable);
        }
    }
    let train = Source::Dataset(DatasetSource {
        samples,
        template: args.train_landmarks,
    });
    let (ds, test_note, test_crop) = open(
        &args.test,
        args.test_format,
        args.ckplus_apex,
        args.test_landmarks_csv.as_deref(),
        crop,
        c.quiet,
    )?;
    let test = Source::Dataset(DatasetSource::new(&ds, args.test_landmarks, |_| true));
    let plan = protocol::single_plan(train.len(), test.len(), &c.attention);
    let data = DataInfo {
        train: format!("{}: {} images", notes.join(" + "), train.len()),
        test: format!("{test_note}: {} images", test.len()),
        train_landmarks: train.landmark_origins(),
        test_landmarks: test.landmark_origins(),
        train_counts: train.counts(None),
        test_counts: test.counts(None),
        samples: test.samples(),
        train_crop,
        test_crop,
    };
    let settings = merge(
        c.settings(),
        serde_json::json!({
            "group_by": args.group_by,
            "split_seed": args.split_seed,
            "crop": crop,
            "train": args.train,
            "test": args.test,
            "train_format": args.train_format.map(|f| f.name()),
            "test_format": args.test_format.map(|f| f.name()),
            "train_landmarks": format!("{:?}", args.train_landmarks),
            "test_landmarks": format!("{:?}", args.test_landmarks),
            "train_landmarks_csv": args.train_landmarks_csv,
            "test_landmarks_csv": args.test_landmarks_csv,
            "ckplus_apex": args.ckplus_apex,
        }),
    );
    run_protocol(
        &gpu_fn()?,
        "cross",
        c,
        settings,
        (&train, &test),
        Vec::new(),
        plan,
        data,
        Selection {
            strict: args.strict,
            split_seed: args.split_seed,
            grouped: args.group_by == "subject",
        },
    )
}

/// How the models of a protocol treat unreadable images and draw their validation parts.
struct Selection {
    strict: bool,
    /// Seed of each model's validation split (held out of its training side).
    split_seed: u64,
    /// Whether the validation split keeps subjects together.
    grouped: bool,
}

/// Trains and evaluates every planned model, rewriting the report after each; returns the
/// complete report.
#[allow(clippy::too_many_arguments)]
fn run_protocol(
    gpu: &Gpu,
    name: &str,
    args: &ProtocolArgs,
    settings: serde_json::Value,
    (train_src, test_src): (&Source, &Source),
    folds: Vec<FoldSet>,
    plan: Vec<PlannedModel>,
    data: DataInfo,
    sel: Selection,
) -> Result<Report> {
    let strict = sel.strict;
    let sets = test_sets(&args.occlusions)?;
    let batch = args.batch_size;
    let labels = train_src.labels();
    let groups = train_src.groups();
    // Every model's validation part, out of its training side only, drawn before anything is
    // trained so that a split that cannot be made stops the run at once.
    let parts = plan
        .iter()
        .map(|m| {
            args.recipe.hold_out(
                &m.train,
                &labels,
                sel.grouped.then_some(&groups[..]),
                sel.split_seed,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some((m, p)) = plan.iter().zip(&parts).find(|(_, p)| p.train.len() < batch) {
        return Err(invalid(
            "protocol",
            format!(
                "model {} has {} training images, fewer than one batch of {batch}",
                m.id,
                p.train.len()
            ),
        ));
    }
    if let Some(m) = plan.iter().find(|m| m.test.is_empty()) {
        return Err(invalid(
            "protocol",
            format!("model {} has no test image", m.id),
        ));
    }
    let out = &args.out;
    let curves = out.join("curves");
    std::fs::create_dir_all(&curves).map_err(|e| Error::Data {
        path: curves.display().to_string(),
        message: format!("cannot create the report folder: {e}"),
    })?;
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let mut report = Report {
        protocol: name.to_string(),
        complete: false,
        settings,
        classes: classes.clone(),
        occlusions: sets.iter().map(|s| s.0.clone()).collect(),
        data,
        folds,
        models: Vec::new(),
        summary: Vec::new(),
        seconds: 0.0,
    };
    let steps_of = |p: &split::Partition| (p.train.len() / batch * args.epochs) as u64;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(parts.iter().map(steps_of).sum())
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap(),
    );
    let started = Instant::now();
    let mut done_steps = 0u64;
    let schedule = args.recipe.schedule(args.lr, args.epochs)?;
    for (n, (m, part)) in plan.iter().zip(&parts).enumerate() {
        let config = args.config(m.attention)?;
        let train_labels: Vec<usize> = part.train.iter().map(|&i| labels[i]).collect();
        let weights = args
            .class_weights
            .then(|| protocol::class_weights(&train_labels, classes.len()));
        let options = TrainOptions {
            adam: AdamConfig {
                lr: args.lr,
                weight_decay: args.weight_decay,
                ..Default::default()
            },
            seed: args.seed as u32,
            class_weights: weights.clone(),
        };
        let mut net = pollster::block_on(Network::new(gpu, &config, batch, options))?;
        net.write_params(gpu, &ParamTable::new(&config).init(args.seed))?;
        let (ch, size) = (config.in_channels, config.image_size);
        let augment = recipe::training_augment(
            args.occlusion_mix,
            args.recipe.augmentation(),
            args.seed,
            ch,
            size,
            |i, s| train_src.landmarks(i, s),
        );
        let model_started = Instant::now();
        let mut curve = Vec::new();
        let opts = TrainLoop {
            epochs: args.epochs,
            seed: args.seed,
            strict,
            schedule: Some(schedule),
        };
        let validation = (!part.test.is_empty()).then(|| train::Validation {
            source: train_src,
            indices: &part.test,
            keep_best: args.recipe.keep_best(),
            previous_best: None,
        });
        let fitted = train::fit(
            gpu,
            &mut net,
            train_src,
            &part.train,
            &opts,
            recipe::as_augment(&augment),
            validation.as_ref(),
            &mut |p, failures| {
                for f in failures {
                    bar.suspend(|| super::warn_line(format!("warning: skipped {f}")));
                }
                bar.set_position(done_steps + p.step as u64);
                bar.set_message(format!(
                    "model {}/{} {}  epoch {}  loss {:.4}  acc {:.3}",
                    n + 1,
                    plan.len(),
                    m.id,
                    p.epoch + 1,
                    p.loss,
                    p.accuracy
                ));
            },
            &mut |net, e| {
                let test_accuracy = if args.test_curve {
                    Some(train::evaluate(gpu, net, test_src, &m.test, strict, None)?.accuracy())
                } else {
                    None
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
        let mut evaluations = Vec::new();
        for (set, occ) in &sets {
            let f = occ.map(|o| occlude::fixed(o, ch, size, |i, s| test_src.landmarks(i, s)));
            let augment = f.as_ref().map(|f| f as train::Augment);
            let e = train::evaluate(gpu, &net, test_src, &m.test, strict, augment)?;
            // Unreadable examples are left out of the evaluation: leave them out of the
            // indices too, so that indices, labels and probability rows stay aligned.
            let indices: Vec<usize> = if e.failures.is_empty() {
                m.test.clone()
            } else {
                m.test
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let name = test_src.describe(i);
                        !e.failures.iter().any(|f| f.contains(&name))
                    })
                    .collect()
            };
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
        report.summary = protocol::summarize(&report.models);
        report.seconds = started.elapsed().as_secs_f64();
        report.complete = n + 1 == plan.len();
        write_curve(
            &curves.join(format!("{}.csv", m.id)),
            &report.models[n].curve,
        )?;
        write_report(out, &report)?;
    }
    bar.finish_and_clear();
    write_figures(out, &report)?;
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
    use fer_cbam::figures;
    use fer_cbam::metrics::Metrics;
    let fig = dir.join("figures");
    std::fs::create_dir_all(fig.join("curves")).map_err(|e| Error::Data {
        path: fig.display().to_string(),
        message: format!("cannot create the figures folder: {e}"),
    })?;
    let label = |k: Option<usize>, a: Attention| match k {
        Some(k) => format!("k{k}-{}", protocol::attention_name(a)),
        None => protocol::attention_name(a).to_string(),
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
