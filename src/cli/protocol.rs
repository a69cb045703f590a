//! What `kfold`, `holdout` and `cross` (the paper's evaluation protocols, Tables 3, 5 and 6)
//! share: the model, training and report flags, opening a dataset, the run over all models
//! with its progress bar, and the report folder (`report.json`, `report.md`,
//! `curves/<model>.csv`). Each protocol is its own module; the plans, records and aggregation
//! are in `fer_cbam::protocol`.

use std::path::{Path, PathBuf};

use clap::Args;
use fer_cbam::data::crop::CropReport;
use fer_cbam::data::dataset::{self, Dataset, Format};
use fer_cbam::model::checkpoint::FaceCrop;
use fer_cbam::model::{Attention, ModelConfig};
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::protocol::{self, Event, Protocol, Recipe, Report};
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

/// Opens a dataset (detected form unless `format`), keeps the apex frames when asked, attaches
/// a landmark sidecar when given, and describes it in words (skipped folders, loader notes,
/// where the landmarks came from).
pub fn open(
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

pub fn invalid(op: &str, message: impl Into<String>) -> Error {
    Error::InvalidConfig {
        op: op.into(),
        message: message.into(),
    }
}

impl ProtocolArgs {
    pub fn config(&self, attention: Attention) -> Result<ModelConfig> {
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
    pub fn check(&self) -> Result<()> {
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
    pub fn to_recipe(&self, strict: bool, split_seed: u64, grouped: bool) -> Result<Recipe> {
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
    pub fn settings(&self) -> serde_json::Value {
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

pub fn data_settings(d: &DataArgs) -> serde_json::Value {
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

pub fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// Runs `p` ([`protocol::run`]) with one progress bar on stderr over all its models' training
/// steps, unless `quiet`.
pub fn train_all(gpu: &Gpu, p: &Protocol<'_>, quiet: bool) -> Result<Report> {
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

/// Creates a protocol's report folder before the data is read or a model trained; `inputs`
/// (the data files the flags name) must not be in its way.
pub fn prepare_folder(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    fer_cbam::files::check_folder(out, &inputs)
}

/// Prints a finished protocol's summary table and where its report is.
pub fn print_done(report: &Report, out: &Path) {
    let md = report.markdown();
    let table = md.split("\n## Models").next().unwrap_or(&md);
    super::print_line(table);
    super::print_line(format!("report written to {}", out.display()));
}
