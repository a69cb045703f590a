//! `kfold`, `holdout` and `cross`: the paper's evaluation protocols (Tables 3, 5 and 6), each
//! training a set of models and writing one report folder (`report.json`, `report.md`,
//! `curves/<model>.csv`). The plans, records and aggregation are in `fer_cbam::protocol`.

use std::path::{Path, PathBuf};

use clap::Args;
use fer_cbam::data::crop::{CropMode, CropReport};
use fer_cbam::data::dataset::{self, Dataset, Format};
use fer_cbam::data::occlusion::Template;
use fer_cbam::model::checkpoint::FaceCrop;
use fer_cbam::model::{Attention, ModelConfig};
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::protocol::{self, DataInfo, Event, Protocol, Recipe, Report};
use fer_cbam::sources::{Data, DatasetSource, Source, SyntheticSource};
use fer_cbam::train::ImageSource;
use fer_cbam::{Error, Gpu, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::data::DataArgs;
use super::recipe::RecipeArgs;

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
        Some(c) => Some(super::data::crop_dataset(&mut ds, c, quiet)?),
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

impl ProtocolArgs {
    fn config(&self, attention: Attention) -> Result<ModelConfig> {
        let c = self.network.apply(
            ModelConfig {
                image_size: self.image_size,
                in_channels: self.in_channels,
                attention,
                widths: self.widths.clone(),
                dropout: self.dropout,
                ..ModelConfig::default()
            },
            self.recipe.default_norm(),
        );
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
        protocol::test_sets(&self.occlusions)?;
        self.recipe.check(self.image_size)?;
        self.recipe.schedule(self.lr, self.epochs)?;
        Ok(())
    }
    /// The flags as the library's recipe, with how unreadable images and the validation split
    /// are treated.
    fn to_recipe(&self, strict: bool, split_seed: u64, grouped: bool) -> Result<Recipe> {
        Ok(Recipe {
            config: self.config(Attention::Full)?,
            epochs: self.epochs,
            batch: self.batch_size,
            adam: AdamConfig {
                lr: self.lr,
                weight_decay: self.weight_decay,
                ..Default::default()
            },
            seed: self.seed,
            schedule: self.recipe.schedule(self.lr, self.epochs)?,
            occlusion_mix: self.occlusion_mix,
            augmentation: self.recipe.augmentation(),
            class_weights: self.class_weights,
            test_curve: self.test_curve,
            val_fraction: self.recipe.val_fraction,
            keep_best: self.recipe.keep_best(),
            split_seed,
            grouped,
            strict,
        })
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
            "norm": self.network.norm.unwrap_or(self.recipe.default_norm()).name(),
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
    let recipe = c.to_recipe(args.data.strict, args.data.split_seed, grouped)?;
    run(
        &gpu_fn()?,
        &Protocol {
            name: "kfold",
            recipe: &recipe,
            test_sets: protocol::test_sets(&c.occlusions)?,
            train: &pool,
            test: &pool,
            folds,
            plan,
            data,
            settings,
            out: &c.out,
        },
        c.quiet,
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
    let recipe = c.to_recipe(
        args.data.strict,
        args.data.split_seed,
        args.data.group_by == "subject",
    )?;
    run(
        &gpu_fn()?,
        &Protocol {
            name: "holdout",
            recipe: &recipe,
            test_sets: protocol::test_sets(&c.occlusions)?,
            train: &train,
            test: &test,
            folds: Vec::new(),
            plan,
            data,
            settings,
            out: &c.out,
        },
        c.quiet,
    )
}

/// `fer-cbam cross`: train on the union of datasets, test on all of another.
pub fn cross(gpu_fn: impl FnOnce() -> Result<Gpu>, args: &CrossArgs) -> Result<Report> {
    let c = &args.common;
    c.check()?;
    let crop = super::data::resolve_crop(Some(args.crop), args.face_margin, None)?;
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
    let recipe = c.to_recipe(args.strict, args.split_seed, args.group_by == "subject")?;
    run(
        &gpu_fn()?,
        &Protocol {
            name: "cross",
            recipe: &recipe,
            test_sets: protocol::test_sets(&c.occlusions)?,
            train: &train,
            test: &test,
            folds: Vec::new(),
            plan,
            data,
            settings,
            out: &c.out,
        },
        c.quiet,
    )
}

/// Runs `p` ([`protocol::run`]) with one progress bar on stderr over all its models' training
/// steps, unless `quiet`.
fn run(gpu: &Gpu, p: &Protocol<'_>, quiet: bool) -> Result<Report> {
    let bar = match quiet {
        true => ProgressBar::hidden(),
        false => ProgressBar::new(0),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap(),
    );
    let report = protocol::run(gpu, p, &mut |e| match e {
        Event::Start { steps } => bar.set_length(steps),
        Event::Unreadable(f) => bar.suspend(|| super::warn_line(format!("warning: skipped {f}"))),
        Event::Trained {
            model,
            models,
            id,
            steps,
            epoch,
            loss,
            accuracy,
        } => {
            bar.set_position(steps);
            bar.set_message(format!(
                "model {}/{models} {id}  epoch {}  loss {loss:.4}  acc {accuracy:.3}",
                model + 1,
                epoch + 1,
            ));
        }
    })?;
    bar.finish_and_clear();
    Ok(report)
}
