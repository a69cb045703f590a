//! The training recipe's flags, shared by `train`, `kfold`, `holdout`, `cross` and `demo`:
//! augmentation, the learning-rate schedule and the validation split (docs/training.md).

use clap::{Args, ValueEnum};
use fer_cbam::data::augment::Augmentation;
use fer_cbam::data::split;
use fer_cbam::model::{Gate, Init, ModelConfig, Norm};
use fer_cbam::train::{Decay, LrSchedule};
use fer_cbam::{Error, Result};

/// `--lr-schedule`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleKind {
    /// The base rate (`--lr`) at every step.
    Constant,
    /// Half a cosine from the base rate to 0 at the end of the schedule (--schedule-epochs).
    Cosine,
    /// The rate times --lr-gamma every --lr-step-epochs epochs.
    Step,
}

/// `--select`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Select {
    /// The state after the last epoch.
    Last,
    /// The state after the epoch with the best validation accuracy (ties: lower validation
    /// loss, then the earlier epoch).
    BestVal,
}

/// Augmentation, learning-rate schedule and validation flags.
#[derive(Args, Clone, Debug)]
pub struct RecipeArgs {
    /// Train the spec's network with the spec's recipe exactly (../shared/spec/network.md):
    /// no batch norm and a constant learning rate, instead of this program's defaults
    /// (--norm batch, --lr-schedule cosine; docs/experiments.md says why they are the
    /// defaults). The other flags keep their meaning.
    #[arg(long, conflicts_with_all = ["norm", "lr_schedule"])]
    pub spec: bool,
    /// Mirror each training image left-right with probability 1/2, drawn per (seed, epoch,
    /// image) after any occlusion.
    #[arg(long)]
    pub flip: bool,
    /// Shift each training image by up to PX pixels (at the network's input size) along x and
    /// y, each uniform in -PX..=PX, filling the uncovered border with black (the same as
    /// zero-padding by PX and cropping at random); drawn per (seed, epoch, image) after any
    /// occlusion.
    #[arg(long, value_name = "PX", default_value_t = 0)]
    pub shift: usize,
    /// Learning rate per step: constant, cosine (to 0 at the end of the schedule) or step
    /// (times --lr-gamma every --lr-step-epochs epochs); a function of the step, so --resume
    /// continues on the same curve [default: cosine; constant with --spec].
    #[arg(long, value_enum)]
    pub lr_schedule: Option<ScheduleKind>,
    /// With --lr-schedule step: epochs between two drops of the rate.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub lr_step_epochs: usize,
    /// With --lr-schedule step: the factor of each drop.
    #[arg(long, value_name = "G", default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// Epochs of linear warm-up from 0 to the base rate at the start of the schedule (per
    /// step: step t of W warm-up steps runs at lr * t / W).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub warmup_epochs: usize,
    /// The epoch where the cosine schedule ends [default: where this run ends, counting the
    /// epochs of a resumed checkpoint]. Give the planned total to stop early and --resume
    /// later on the same curve.
    #[arg(long, value_name = "N")]
    pub schedule_epochs: Option<usize>,
    /// Hold out this fraction of the training side (stratified by class, by subject with
    /// --group-by subject; seeded by --split-seed) and evaluate it, clean, after every epoch;
    /// never taken from the test side.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub val_fraction: f64,
    /// Which epoch's weights to keep: last, or best-val (the best validation accuracy)
    /// [default: best-val with --val-fraction, last without].
    #[arg(long, value_enum)]
    pub select: Option<Select>,
}

impl RecipeArgs {
    /// The normalisation a model gets when --norm is not given: batch norm, or none with --spec.
    pub fn default_norm(&self) -> Norm {
        if self.spec {
            Norm::None
        } else {
            Norm::Batch
        }
    }

    /// --lr-schedule, or its default: cosine, or constant with --spec.
    pub fn schedule_kind(&self) -> ScheduleKind {
        self.lr_schedule.unwrap_or(if self.spec {
            ScheduleKind::Constant
        } else {
            ScheduleKind::Cosine
        })
    }

    pub fn augmentation(&self) -> Augmentation {
        Augmentation {
            flip: self.flip,
            shift: self.shift,
        }
    }

    /// Whether the best validation epoch is kept (checked by [`RecipeArgs::check`]).
    pub fn keep_best(&self) -> bool {
        self.select.unwrap_or(if self.val_fraction > 0.0 {
            Select::BestVal
        } else {
            Select::Last
        }) == Select::BestVal
    }

    /// Flags that contradict each other or the image size.
    pub fn check(&self, image_size: usize) -> Result<()> {
        let bad = |op: &str, message: String| {
            Err(Error::InvalidConfig {
                op: op.into(),
                message,
            })
        };
        if self.shift >= image_size {
            return bad(
                "--shift",
                format!(
                    "{} px would move a {image_size}x{image_size} image off itself",
                    self.shift
                ),
            );
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "--val-fraction",
                format!("{} is not a fraction in [0, 1)", self.val_fraction),
            );
        }
        if self.select == Some(Select::BestVal) && self.val_fraction == 0.0 {
            return bad(
                "--select best-val",
                "needs a validation split: give --val-fraction".into(),
            );
        }
        if self.schedule_epochs == Some(0) {
            return bad("--schedule-epochs", "must be at least 1".into());
        }
        Ok(())
    }

    /// The schedule of a run that ends at epoch `end` (counted from the start of training,
    /// resumed epochs included), at base rate `lr`.
    pub fn schedule(&self, lr: f64, end: usize) -> Result<LrSchedule> {
        let s = LrSchedule {
            base: lr,
            decay: match self.schedule_kind() {
                ScheduleKind::Constant => Decay::Constant,
                ScheduleKind::Cosine => Decay::Cosine,
                ScheduleKind::Step => Decay::Step {
                    every_epochs: self.lr_step_epochs,
                    gamma: self.lr_gamma,
                },
            },
            warmup_epochs: self.warmup_epochs,
            total_epochs: self.schedule_epochs.unwrap_or(end),
        };
        s.validate()?;
        Ok(s)
    }

    /// Splits `indices` (of a source with `labels` and `groups`) into training and validation
    /// parts ([`split::validation`]).
    pub fn hold_out(
        &self,
        indices: &[usize],
        labels: &[usize],
        groups: Option<&[Option<String>]>,
        split_seed: u64,
    ) -> Result<split::Partition> {
        split::validation(indices, labels, groups, self.val_fraction, split_seed)
    }

    /// The recipe for reports and the checkpoint's metadata.
    pub fn to_json(&self, schedule: &LrSchedule, occlusion_mix: f64) -> serde_json::Value {
        serde_json::json!({
            "occlusion_mix": occlusion_mix,
            "flip": self.flip,
            "shift": self.shift,
            "lr_schedule": schedule,
            "val_fraction": self.val_fraction,
            "select": if self.keep_best() { "best-val" } else { "last" },
        })
    }
}

/// The network options (`--norm`, `--init`, `--gate`) of every command that builds a model: the
/// spec's "Options beyond the paper's text". Each defaults to the paper's network, except
/// `--norm` in the training commands (see [`RecipeArgs::default_norm`]).
#[derive(Args, Clone, Debug)]
pub struct NetworkArgs {
    /// Normalisation between each stage's conv and its ELU: none (the paper's network) or batch
    /// (BatchNorm2d with PyTorch's semantics: eps 1e-5, momentum 0.1; running statistics saved
    /// in the checkpoint and used by evaluation) [default: batch in train, kfold, holdout,
    /// cross and demo, none with their --spec; none in init and info].
    #[arg(long, value_name = "none|batch")]
    pub norm: Option<Norm>,
    /// Initialisation of every conv and linear layer (the gates' MLP and 7x7 conv included):
    /// pytorch (weights and biases uniform +-1/sqrt(fan_in), PyTorch's default), he (weights
    /// normal with std sqrt(2/fan_in), biases 0) or glorot (weights uniform
    /// +-sqrt(6/(fan_in+fan_out)), biases 0). Seeded by --seed.
    #[arg(long, default_value = "pytorch", value_name = "pytorch|he|glorot")]
    pub init: Init,
    /// How the CBAM gates apply their maps: multiply (F' = M F, the paper's equations 1-2) or
    /// residual (F' = F + M F: a gate near 0.5 scales by 1.5 instead of halving).
    #[arg(long, default_value = "multiply", value_name = "multiply|residual")]
    pub gate: Gate,
}

impl NetworkArgs {
    /// `config` with these options; `norm` where --norm is not given.
    pub fn apply(&self, config: ModelConfig, norm: Norm) -> ModelConfig {
        ModelConfig {
            norm: self.norm.unwrap_or(norm),
            init: self.init,
            gate: self.gate,
            ..config
        }
    }
}
