//! The model configuration: the spec's network is the default; widths, image size, input
//! channels, the attention variant, dropout and class names may change.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The spec's classes, in order (the paper's Table 1).
pub const CLASSES: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise",
];

/// Largest input side: 32 times the spec's 128.
pub const MAX_IMAGE_SIZE: usize = 4096;
/// Largest conv width (and hidden width): 16 times the spec's widest stage.
pub const MAX_WIDTH: usize = 4096;
/// Most stages (each halves the image: 4096 >> 12 = 1).
pub const MAX_STAGES: usize = 12;
/// Most classes.
pub const MAX_CLASSES: usize = 1000;
/// Most parameters: 2^28 f32 (1 GiB), about 600 times the spec's network; the packed
/// parameters are one device buffer, and devices cap a buffer at a few GiB at most.
pub const MAX_PARAMETERS: usize = 1 << 28;

/// Which CBAM gates each stage has ("none" is the paper's Table 5 ablation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    Full,
    None,
    Channel,
    Spatial,
}

impl Attention {
    pub fn has_channel(self) -> bool {
        matches!(self, Attention::Full | Attention::Channel)
    }
    pub fn has_spatial(self) -> bool {
        matches!(self, Attention::Full | Attention::Spatial)
    }
}

impl std::str::FromStr for Attention {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "full" => Ok(Attention::Full),
            "none" => Ok(Attention::None),
            "channel" => Ok(Attention::Channel),
            "spatial" => Ok(Attention::Spatial),
            _ => Err(format!(
                "unknown attention variant {s:?} (full, none, channel, spatial)"
            )),
        }
    }
}

/// Normalisation between each stage's conv and its ELU (the spec's "Options beyond the paper's
/// text"): none in the paper's network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// conv -> ELU, as the paper's text reads.
    #[default]
    None,
    /// conv -> BatchNorm2d -> ELU (PyTorch semantics: eps 1e-5, momentum 0.1).
    Batch,
}

/// How conv and linear weights are drawn (every conv and linear layer, the gates' MLP and 7x7
/// conv included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// PyTorch's default: weights and biases uniform(-b, b), b = 1 / sqrt(fan_in).
    #[default]
    Pytorch,
    /// Weights normal with std sqrt(2 / fan_in), biases 0 (`kaiming_normal_`, relu gain).
    He,
    /// Weights uniform(-b, b), b = sqrt(6 / (fan_in + fan_out)), biases 0 (Keras's default).
    Glorot,
}

/// How a CBAM gate applies its map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    /// F' = M * F (equations 1-2 of the paper).
    #[default]
    Multiply,
    /// F' = F + M * F (BAM, the Residual Attention Network): a gate near 0.5 scales by 1.5.
    Residual,
}

/// `FromStr` and the name for the option enums, one table each so the two agree.
macro_rules! named {
    ($t:ty, $what:literal, $($v:ident = $s:literal),+) => {
        impl $t {
            /// The name the flag and the checkpoint's JSON use.
            pub fn name(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($s => Ok(<$t>::$v),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?} ({})"),
                        s,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named!(Norm, "normalisation", None = "none", Batch = "batch");
named!(
    Init,
    "initialisation",
    Pytorch = "pytorch",
    He = "he",
    Glorot = "glorot"
);
named!(
    Gate,
    "gate form",
    Multiply = "multiply",
    Residual = "residual"
);

/// Everything that fixes the network's shapes. Stored as JSON in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Square input size (128 in the spec).
    pub image_size: usize,
    /// 3 (grayscale replicated) or 1.
    pub in_channels: usize,
    /// Conv widths of the stages (32, 64, 128, 256).
    pub widths: Vec<usize>,
    /// Width of the head's hidden layer (128).
    pub hidden: usize,
    pub attention: Attention,
    /// Dropout probability in the head (0.2).
    pub dropout: f32,
    /// Class names in logit order.
    pub classes: Vec<String>,
    /// The recipe options (spec: "Options beyond the paper's text"). Absent in checkpoints
    /// written before they existed, which therefore load as the spec's network.
    #[serde(default)]
    pub norm: Norm,
    #[serde(default)]
    pub init: Init,
    #[serde(default)]
    pub gate: Gate,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            image_size: 128,
            in_channels: 3,
            widths: vec![32, 64, 128, 256],
            hidden: 128,
            attention: Attention::Full,
            dropout: 0.2,
            classes: CLASSES.iter().map(|s| s.to_string()).collect(),
            norm: Norm::None,
            init: Init::Pytorch,
            gate: Gate::Multiply,
        }
    }
}

impl ModelConfig {
    /// Input size of stage `i` (the conv's spatial size; the pool halves it, flooring).
    pub fn stage_size(&self, i: usize) -> usize {
        self.image_size >> i
    }

    /// CBAM channel-MLP hidden width of a stage of width `c`: max(1, c / 16).
    pub fn reduced(c: usize) -> usize {
        (c / 16).max(1)
    }

    /// Fails with a message naming the offending field. Every size is bounded here, before
    /// anything is allocated from it: a config comes from flags and from checkpoint headers,
    /// and a size trusted unchecked is an allocation abort or an overflowed product later.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(Error::InvalidConfig {
                op: "model config".into(),
                message,
            })
        };
        if self.widths.is_empty() || self.widths.contains(&0) {
            return bad(format!(
                "widths must be non-empty and positive, got {:?}",
                self.widths
            ));
        }
        if self.widths.len() > MAX_STAGES {
            return bad(format!(
                "{} stages; at most {MAX_STAGES} are supported",
                self.widths.len()
            ));
        }
        if let Some(w) = self.widths.iter().find(|&&w| w > MAX_WIDTH) {
            return bad(format!("width {w} is above the limit of {MAX_WIDTH}"));
        }
        if self.in_channels != 1 && self.in_channels != 3 {
            return bad(format!(
                "in_channels must be 1 (gray) or 3 (gray replicated), got {}",
                self.in_channels
            ));
        }
        if self.hidden == 0 || self.hidden > MAX_WIDTH {
            return bad(format!(
                "hidden must be in 1..={MAX_WIDTH}, got {}",
                self.hidden
            ));
        }
        if self.image_size > MAX_IMAGE_SIZE {
            return bad(format!(
                "image size {} is above the limit of {MAX_IMAGE_SIZE}",
                self.image_size
            ));
        }
        let stages = self.widths.len();
        if self.image_size >> stages == 0 {
            return bad(format!(
                "image size {} is too small for {stages} stages of 2x2 pooling (needs at least {})",
                self.image_size,
                1usize << stages
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.classes.len() < 2 || self.classes.len() > MAX_CLASSES {
            return bad(format!(
                "2 to {MAX_CLASSES} classes are needed, got {}",
                self.classes.len()
            ));
        }
        // Every field is bounded above, so the table's products cannot overflow; the total
        // still can be far more than any device holds.
        let count = crate::model::ParamTable::new(self).count();
        if count > MAX_PARAMETERS {
            return bad(format!(
                "{count} parameters; at most {MAX_PARAMETERS} ({} MiB of f32) are supported",
                (MAX_PARAMETERS * 4) >> 20
            ));
        }
        Ok(())
    }
}
