//! `fer-cbam eval`: a checkpoint's accuracy, macro F1, per-class precision/recall/F1 and
//! confusion matrix on one side of the data, clean or under one of the paper's occlusions.

use std::path::{Path, PathBuf};

use fer_cbam::data::occlusion::Occlusion;
use fer_cbam::model::{checkpoint, InferenceNetwork, ModelConfig};
use fer_cbam::train::{self, Evaluation, ImageSource};
use fer_cbam::{Error, Gpu, Result};

use super::data::DataArgs;
use super::report;

/// `fer-cbam eval`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint to evaluate.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Which side of the data: test (default) or train.
    #[arg(long, value_parser = ["test", "train"], default_value = "test")]
    pub split: String,
    /// Evaluation batch size.
    #[arg(long, value_parser = super::batch_size, default_value_t = 64)]
    pub batch_size: usize,
    /// Occlude every test image: none, patch8, patch16, patch24, eyes or mouth.
    #[arg(long, default_value = "none")]
    pub occlusion: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let occ: Option<Occlusion> = match args.occlusion.as_str() {
        "none" => None,
        o => Some(o.parse().map_err(|e: String| Error::InvalidConfig {
            op: "--occlusion".into(),
            message: e,
        })?),
    };
    let config = checkpoint::load(&args.checkpoint)?.config;
    // The checkpoint's face crop unless --crop says otherwise.
    let trained = checkpoint::load_training_meta(&args.checkpoint)?;
    let crop = args.data.crop_for(trained.and_then(|t| t.crop))?;
    let gpu = super::new_gpu()?;
    let d = args.data.load_with(crop, args.json)?;
    let test = args.split == "test";
    let lm = d.landmarks_of(test);
    let f = occ
        .map(|o| fer_cbam::data::augment::occluded(o, config.in_channels, config.image_size, lm));
    let augment = f.as_ref().map(|f| f as train::Augment);
    let source = if test { d.test() } else { d.train() };
    let e = evaluate(
        &gpu,
        &args.checkpoint,
        source,
        args.batch_size,
        args.data.strict,
        augment,
    )?;
    let classes = config.classes;
    let landmarks = d.landmark_source(test);
    if args.json {
        let mut v = report::json(&e, &classes);
        v["occlusion"] = serde_json::json!(args.occlusion);
        v["landmarks"] = serde_json::json!(landmarks);
        v["crop"] = serde_json::json!(d.crop());
        super::print_line(v);
    } else {
        super::print_line(format!(
            "{}; occlusion {} (landmarks: {landmarks})\n{}",
            d.describe(),
            args.occlusion,
            report::text(&e, &classes)
        ));
    }
    Ok(())
}

/// Evaluates the checkpoint at `path` on every image of `source`.
pub fn evaluate(
    gpu: &Gpu,
    path: &Path,
    source: &dyn ImageSource,
    batch: usize,
    strict: bool,
    augment: Option<train::Augment<'_>>,
) -> Result<Evaluation> {
    let ck = checkpoint::load(path)?;
    check_classes(path, &ck.config)?;
    let net = pollster::block_on(InferenceNetwork::from_checkpoint(gpu, &ck, batch))?;
    let idx: Vec<usize> = (0..source.len()).collect();
    train::evaluate(gpu, &net, source, &idx, strict, augment)
}
/// Every data source labels images with the spec's seven classes, in the spec's order; a
/// checkpoint with other classes cannot be scored against them.
pub fn check_classes(path: &Path, config: &ModelConfig) -> Result<()> {
    let data: Vec<String> = fer_cbam::model::CLASSES
        .iter()
        .map(|c| c.to_string())
        .collect();
    if config.classes != data {
        return Err(Error::Checkpoint {
            path: path.display().to_string(),
            message: format!(
                "its classes {:?} differ from the data's {:?}",
                config.classes, data
            ),
        });
    }
    Ok(())
}
