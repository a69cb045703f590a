//! `fer-cbam predict`: the top-3 classes with probabilities of image files (or every image in
//! folders), each optionally cropped to its face first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fer_cbam::data::crop::{self, CropMode, FaceSource, FoundFace};
use fer_cbam::data::dataset::{Pixels, Sample};
use fer_cbam::data::occlusion::Template;
use fer_cbam::data::{folder, landmarks};
use fer_cbam::model::checkpoint::{self, FaceCrop};
use fer_cbam::model::InferenceNetwork;
use fer_cbam::sources::DatasetSource;
use fer_cbam::train::{self, ImageSource};
use fer_cbam::{Error, Gpu, Result};

use super::data::{resolve_crop, FaceResult};

/// `fer-cbam predict`.
#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint to predict with.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files or folders. An image that cannot be read is reported and the others are
    /// still predicted; the exit status is then 1.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Crop each image to a square around its face first: the box of the `.pts` landmarks
    /// beside the image if there is one, else the largest face the embedded SeetaFace
    /// detector finds; an image without a face is used whole, and the output says so.
    /// `none` uses images whole [default: what the checkpoint was trained with].
    #[arg(long, value_name = "none|face")]
    pub crop: Option<CropMode>,
    /// The same as --crop face: for photos that are not already aligned face crops.
    #[arg(long, conflicts_with = "crop")]
    pub detect_face: bool,
    /// Margin added around the face box on every side, as a fraction of its size
    /// [default: 0.25, or the checkpoint's].
    #[arg(long, value_name = "M", value_parser = super::margin)]
    pub face_margin: Option<f32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let crop = if args.detect_face {
        Some(CropMode::Face)
    } else {
        args.crop
    };
    let trained = checkpoint::load_training_meta(&args.checkpoint)?;
    let crop = resolve_crop(crop, args.face_margin, trained.and_then(|t| t.crop))?;
    let gpu = super::new_gpu()?;
    let rows = predict(&gpu, &args.checkpoint, &args.inputs, crop)?;
    let mut failed = 0;
    for r in &rows {
        let face_json = |f: &Option<FoundFace>| match f {
            Some(f) => serde_json::json!([f.crop.x, f.crop.y, f.crop.width, f.crop.height]),
            None => serde_json::Value::Null,
        };
        if let Some(e) = &r.error {
            // The other images are still predicted; the exit status says one was not.
            failed += 1;
            if args.json {
                super::print_line(serde_json::json!({"image": r.path, "error": e}));
            } else {
                super::warn_line(format!("error: {e}"));
            }
        } else if args.json {
            let t: Vec<_> = r
                .top
                .iter()
                .map(|(c, p)| serde_json::json!({"class": c, "probability": p}))
                .collect();
            let mut v = serde_json::json!({"image": r.path, "top3": t});
            if let Some(f) = &r.face {
                v["face"] = face_json(f);
                v["face_from"] = serde_json::json!(f.map(|f| f.from));
            }
            super::print_line(v);
        } else {
            let t: Vec<String> = r.top.iter().map(|(c, p)| format!("{c} {p:.3}")).collect();
            let face = match &r.face {
                None => String::new(),
                Some(Some(f)) => {
                    let from = match f.from {
                        FaceSource::Landmarks => "landmarks",
                        FaceSource::Detector => "detector",
                    };
                    let b = f.crop;
                    format!(
                        " (face {}x{} at {},{}, from the {from})",
                        b.width, b.height, b.x, b.y
                    )
                }
                Some(None) => " (no face found: whole image)".into(),
            };
            super::print_line(format!("{}: {}{face}", r.path.display(), t.join(", ")));
        }
    }
    if failed > 0 {
        return Err(Error::Data {
            path: "predict".into(),
            message: format!(
                "predicted {} of {} images; {failed} could not be read (named above)",
                rows.len() - failed,
                rows.len()
            ),
        });
    }
    Ok(())
}

/// An image, its top-3 classes with probabilities, and the face crop used (with a
/// face crop: `Some(None)` when no face was found and the whole image was used); or why
/// it could not be predicted (`top` is then empty).
pub struct Prediction {
    pub path: PathBuf,
    pub top: Vec<(String, f32)>,
    pub face: Option<Option<FoundFace>>,
    pub error: Option<String>,
}

/// Image files named by `inputs`: files as given, folders as their images in name order.
pub fn image_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::Data {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        folder::IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                    })
                })
                .collect();
            v.sort();
            if v.is_empty() {
                return Err(Error::Data {
                    path: p.display().to_string(),
                    message: "no images in this folder".into(),
                });
            }
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Top-3 classes of each image (files, or every image in a folder); with `crop`, each image
/// is first cropped to its face. An image that cannot be read gets its error instead, and the
/// others are still predicted.
pub fn predict(
    gpu: &Gpu,
    path: &Path,
    inputs: &[PathBuf],
    crop: Option<FaceCrop>,
) -> Result<Vec<Prediction>> {
    let ck = checkpoint::load(path)?;
    let files = image_files(inputs)?;
    let c = &ck.config;
    let batch = files.len().clamp(1, 32);
    let net = pollster::block_on(InferenceNetwork::from_checkpoint(gpu, &ck, batch))?;
    // Per file: its sample's index, or why there is none; and the face crop.
    let mut samples = Vec::with_capacity(files.len());
    let mut slots: Vec<std::result::Result<usize, String>> = Vec::with_capacity(files.len());
    for f in &files {
        match landmarks::pts_beside(f) {
            Ok(landmarks) => {
                slots.push(Ok(samples.len()));
                samples.push(Sample {
                    name: f.display().to_string(),
                    pixels: Pixels::File(f.clone()),
                    label: 0,
                    split: folder::Split::Unsplit,
                    group: None,
                    landmarks,
                });
            }
            Err(e) => slots.push(Err(e.to_string())),
        }
    }
    // An image that cannot be read to search it is left whole for the loader, which names it
    // below.
    let found: Vec<FaceResult> = match crop {
        Some(c) => crop::crop_samples(&mut samples, c, &|_, _| {})?
            .1
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; samples.len()],
    };
    let faces: Vec<FaceResult> = slots
        .iter()
        .map(|s| s.as_ref().ok().and_then(|&i| found[i]))
        .collect();
    let source = DatasetSource {
        samples,
        template: Template::Fer2013,
    };
    let idx: Vec<usize> = (0..source.len()).collect();
    let (e, failed) = if idx.is_empty() {
        (None, BTreeSet::new())
    } else {
        let e = train::evaluate(gpu, &net, &source, &idx, false, None)?;
        let failed: BTreeSet<usize> = e.failed.iter().copied().collect();
        (Some(e), failed)
    };
    // Rows of the evaluation, in order, for the samples that loaded.
    let k = c.classes.len();
    let mut rows = e.as_ref().map(|e| e.probs.chunks_exact(k));
    let mut load_errors = e.as_ref().map(|e| e.failures.iter());
    Ok(files
        .into_iter()
        .zip(faces)
        .zip(slots)
        .map(|((path, face), slot)| {
            let error = match slot {
                Err(message) => Some(message),
                Ok(i) if failed.contains(&i) => load_errors
                    .as_mut()
                    .and_then(|f| f.next().cloned())
                    .or_else(|| Some(format!("{}: cannot be read", path.display()))),
                Ok(_) => None,
            };
            if error.is_some() {
                return Prediction {
                    path,
                    top: Vec::new(),
                    face,
                    error,
                };
            }
            let row = rows
                .as_mut()
                .and_then(|r| r.next())
                .expect("one row per image that loaded");
            let mut top: Vec<(String, f32)> =
                c.classes.iter().cloned().zip(row.iter().copied()).collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            top.truncate(3);
            Prediction {
                path,
                top,
                face,
                error: None,
            }
        })
        .collect())
}
