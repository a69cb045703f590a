//! `fer-cbam export`: a checkpoint as a file other runtimes read. No GPU is needed.

use std::path::PathBuf;

use fer_cbam::model::{checkpoint, onnx, ParamTable};
use fer_cbam::Result;

/// `fer-cbam export`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint to export (any fer-cbam checkpoint: every attention variant, norm and gate).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Write an ONNX model (opset 17) here: input `input` f32 [N, C, S, S] = gray pixel / 255,
    /// outputs `logits` and `probabilities` [N, classes]. Written atomically; its folder must
    /// exist.
    #[arg(long, value_name = "OUT.onnx")]
    pub onnx: PathBuf,
}

pub fn run(a: &Args) -> Result<()> {
    fer_cbam::files::check_file(&a.onnx, &[&a.checkpoint])?;
    let ck = checkpoint::load(&a.checkpoint)?;
    let name = a
        .checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.checkpoint.display().to_string());
    let bytes = onnx::export(
        &ck.config,
        &ck.packed,
        &ck.buffers,
        &format!("the fer-cbam checkpoint {name}"),
    )?;
    fer_cbam::files::write_atomic(&a.onnx, &bytes)?;
    let c = &ck.config;
    super::print_line(format!(
        "wrote {} ({} bytes, ONNX opset {}, {} parameters): input `{}` f32 [N, {}, {s}, {s}] = \
         gray pixel / 255; outputs `{}` and `{}` [N, {}] ({})",
        a.onnx.display(),
        bytes.len(),
        onnx::OPSET,
        ParamTable::new(c).count(),
        onnx::INPUT,
        c.in_channels,
        onnx::LOGITS,
        onnx::PROBABILITIES,
        c.classes.len(),
        c.classes.join(", "),
        s = c.image_size,
    ));
    Ok(())
}
