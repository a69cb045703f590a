//! Learning-rate schedules as functions of the training step alone, so that a run resumed from
//! its optimizer state (which stores the step) continues on exactly the curve the uninterrupted
//! run follows. The loop sets each step's rate through Adam's uniform (a queued buffer write
//! before the step's submission): nothing is read back and nothing is built per step.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shape of the rate after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Decay {
    /// The base rate throughout.
    Constant,
    /// Half a cosine from the base rate down to 0 at the end of `total_epochs`.
    Cosine,
    /// The base rate times `gamma` once every `every_epochs` epochs (PyTorch's StepLR).
    Step { every_epochs: usize, gamma: f64 },
}

/// A learning-rate schedule in epochs: warm-up, then decay, ending at `total_epochs`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The rate after warm-up (Adam's `--lr`).
    pub base: f64,
    pub decay: Decay,
    /// Epochs of linear warm-up: step t (1-based) of the first `warmup_epochs * steps_per_epoch`
    /// runs at `base * t / warmup_steps`.
    pub warmup_epochs: usize,
    /// Where the schedule ends (the cosine reaches 0 there); a run may not go past it.
    pub total_epochs: usize,
}

impl LrSchedule {
    /// The base rate at every step: what training did before schedules existed.
    pub fn constant(base: f64) -> LrSchedule {
        LrSchedule {
            base,
            decay: Decay::Constant,
            warmup_epochs: 0,
            total_epochs: usize::MAX,
        }
    }

    /// Whether the rate ever differs from `base`.
    pub fn is_constant(&self) -> bool {
        self.warmup_epochs == 0 && self.decay == Decay::Constant
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(Error::InvalidConfig {
                op: "learning-rate schedule".into(),
                message,
            })
        };
        if !(self.base.is_finite() && self.base >= 0.0) {
            return bad(format!(
                "the base rate {} is not a finite rate >= 0",
                self.base
            ));
        }
        if let Decay::Step {
            every_epochs,
            gamma,
        } = self.decay
        {
            if every_epochs == 0 {
                return bad("--lr-step-epochs must be at least 1".into());
            }
            if !(gamma.is_finite() && gamma > 0.0) {
                return bad(format!("--lr-gamma {gamma} is not a positive factor"));
            }
        }
        if self.decay == Decay::Cosine && self.warmup_epochs >= self.total_epochs {
            return bad(format!(
                "{} warm-up epochs leave nothing of a cosine schedule of {} epochs",
                self.warmup_epochs, self.total_epochs
            ));
        }
        Ok(())
    }

    /// The rate of training step `t` (1-based, as Adam counts) when an epoch has
    /// `steps_per_epoch` steps.
    pub fn lr(&self, t: u32, steps_per_epoch: usize) -> f64 {
        let t = t.max(1) as f64;
        let spe = steps_per_epoch.max(1) as f64;
        let warm = self.warmup_epochs as f64 * spe;
        if t <= warm {
            return self.base * t / warm;
        }
        match self.decay {
            Decay::Constant => self.base,
            Decay::Cosine => {
                let total = self.total_epochs as f64 * spe;
                // Step warm+1 runs at the base rate; the last step of the schedule just above 0.
                let p = ((t - 1.0 - warm) / (total - warm)).clamp(0.0, 1.0);
                self.base * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
            Decay::Step {
                every_epochs,
                gamma,
            } => {
                let drops = ((t - 1.0) / (every_epochs as f64 * spe)).floor();
                self.base * gamma.powf(drops)
            }
        }
    }

    /// One line for reports: `cosine over 30 epochs after 2 warm-up epochs, base 0.001`.
    pub fn describe(&self) -> String {
        let shape = match self.decay {
            Decay::Constant => "constant".to_string(),
            Decay::Cosine => format!("cosine over {} epochs", self.total_epochs),
            Decay::Step {
                every_epochs,
                gamma,
            } => match every_epochs {
                1 => format!("x{gamma} every epoch"),
                n => format!("x{gamma} every {n} epochs"),
            },
        };
        let warm = match self.warmup_epochs {
            0 => String::new(),
            1 => " after 1 warm-up epoch".to_string(),
            n => format!(" after {n} warm-up epochs"),
        };
        format!("{shape}{warm}, base {}", self.base)
    }
}
