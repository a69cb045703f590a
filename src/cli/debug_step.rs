//! `fer-cbam debug-step`: one training step (dropout off) on a batch file, written out whole
//! (logits, loss, every gradient, the parameters after one Adam step) to hold the engine
//! against another framework.

use std::path::PathBuf;

use fer_cbam::model::debug_step::debug_step;
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::Result;

/// `fer-cbam debug-step`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint to start from (never overwritten: --out must be another path).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// safetensors file with `images` (f32 [N, C, H, W], network input scale) and
    /// `labels` (i64 [N]).
    #[arg(long)]
    pub batch: PathBuf,
    /// Output safetensors file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Adam's learning rate (above 0).
    #[arg(long, value_parser = super::positive, default_value_t = 1e-3)]
    pub lr: f64,
    /// Adam's first-moment decay, in [0, 1).
    #[arg(long, value_parser = super::below_one, default_value_t = 0.9)]
    pub beta1: f64,
    /// Adam's second-moment decay, in [0, 1).
    #[arg(long, value_parser = super::below_one, default_value_t = 0.999)]
    pub beta2: f64,
    /// Adam's epsilon (above 0).
    #[arg(long, value_parser = super::positive, default_value_t = 1e-8)]
    pub eps: f64,
    /// Decoupled (AdamW) weight decay.
    #[arg(long, value_parser = super::non_negative, default_value_t = 0.0)]
    pub weight_decay: f64,
}

pub fn run(args: &Args) -> Result<()> {
    let adam = AdamConfig {
        lr: args.lr,
        beta1: args.beta1,
        beta2: args.beta2,
        eps: args.eps,
        weight_decay: args.weight_decay,
    };
    fer_cbam::files::check_file(&args.out, &[&args.checkpoint, &args.batch])?;
    let gpu = super::new_gpu()?;
    pollster::block_on(debug_step(
        &gpu,
        &args.checkpoint,
        &args.batch,
        adam,
        &args.out,
    ))?;
    super::print_line(format!("wrote {}", args.out.display()));
    Ok(())
}
