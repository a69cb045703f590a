//! The recipe flags (`--norm`, `--init`, `--gate`) of every command that builds a model: the
//! spec's "Options beyond the paper's text", each defaulting to the paper's network.

use clap::Args;
use fer_cbam::model::{Gate, Init, ModelConfig, Norm};

#[derive(Args, Clone, Debug)]
pub struct RecipeArgs {
    /// Normalisation between each stage's conv and its ELU: none (the paper's network) or batch
    /// (BatchNorm2d with PyTorch's semantics: eps 1e-5, momentum 0.1; running statistics saved
    /// in the checkpoint and used by evaluation).
    #[arg(long, default_value = "none", value_name = "none|batch")]
    pub norm: Norm,
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

impl RecipeArgs {
    /// `config` with these options.
    pub fn apply(&self, config: ModelConfig) -> ModelConfig {
        ModelConfig {
            norm: self.norm,
            init: self.init,
            gate: self.gate,
            ..config
        }
    }
}
