//! `fer-cbam explain`: what the attention gates did to an image, clean and occluded, and where
//! the prediction is sensitive; also the demo's figures.

use std::path::{Path, PathBuf};

use fer_cbam::data::folder;
use fer_cbam::data::occlusion::{Occlusion, Template};
use fer_cbam::data::synthetic::{self, Landmarks};
use fer_cbam::explain::{self, Column, Explainer, Figure, Inspection, Sensitivity};
use fer_cbam::model::checkpoint::{self, Checkpoint};
use fer_cbam::{Error, Gpu, Result};
use serde_json::{json, Value};

/// `fer-cbam explain`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Checkpoint to explain (its config says the input size; images are resized to it).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Image files (PNG, JPEG, TIFF; any size, converted to gray). An image inside a folder
    /// named after a class (`happy/x.png`) is marked with that true class.
    pub images: Vec<PathBuf>,
    /// Explain this many synthetic faces instead of (or besides) files: faces the trainer
    /// never draws (see --synthetic-first).
    #[arg(long, value_parser = super::count)]
    pub synthetic: Option<usize>,
    /// Seed of the synthetic face set.
    #[arg(long, default_value_t = 2026)]
    pub synthetic_seed: u64,
    /// Index of the first synthetic face; the default lies beyond every training set
    /// `train --synthetic N` draws (N < 1,000,000).
    #[arg(long, value_parser = super::synthetic_index, default_value_t = 1_000_000)]
    pub synthetic_first: u64,
    /// The occluded column: eyes, mouth, patch8, patch16, patch24 (the paper's; a patch
    /// scales with the image size), or none for the clean column only.
    #[arg(long, default_value = "mouth")]
    pub occlusion: String,
    /// Landmark template for the eye and mouth boxes of image files: fer2013 or ckplus48
    /// (synthetic faces use their exact landmarks).
    #[arg(long, default_value = "fer2013")]
    pub landmarks: Template,
    /// Also draw occlusion sensitivity: a black patch slid over the face, the drop of the
    /// true class's probability (the predicted class's when the true one is unknown).
    #[arg(long)]
    pub sensitivity: bool,
    /// Side of the sliding patch in pixels at the checkpoint's input size [default: size/8].
    #[arg(long, value_parser = super::pixels)]
    pub patch: Option<usize>,
    /// Step between patch positions in pixels [default: size/16].
    #[arg(long, value_parser = super::pixels)]
    pub stride: Option<usize>,
    /// Images per submission (patched copies for the sensitivity map go through in batches).
    #[arg(long, value_parser = super::batch_size, default_value_t = 32)]
    pub batch_size: usize,
    /// Crop each image file to a square around its face first, as training does: the box of
    /// the `.pts` landmarks beside it, else the built-in detector's; `none` uses it whole
    /// [default: what the checkpoint was trained with].
    #[arg(long, value_name = "none|face")]
    pub crop: Option<fer_cbam::data::crop::CropMode>,
    /// With --crop face: the margin on every side of the face box, as a fraction of its side
    /// [default: 0.25, or the checkpoint's].
    #[arg(long, value_name = "M")]
    pub face_margin: Option<f32>,
    /// Output folder: one PNG per image and explain.json.
    #[arg(long)]
    pub out: PathBuf,
}

/// One image to explain.
pub struct Item {
    /// For titles and JSON: the path, or "synthetic face #i (seed s)".
    pub name: String,
    /// File name stem of its figure.
    pub stem: String,
    /// `[C, S, S]` at the checkpoint's input.
    pub pixels: Vec<u8>,
    pub label: Option<usize>,
    pub landmarks: Landmarks,
    pub occlusion: Option<Occlusion>,
}

/// What the explanation of a set of items wrote.
pub struct Written {
    pub figures: Vec<PathBuf>,
}

fn parse_occlusion(s: &str) -> Result<Option<Occlusion>> {
    match s {
        "none" | "clean" => Ok(None),
        o => o
            .parse()
            .map(Some)
            .map_err(|e: String| Error::InvalidConfig {
                op: "--occlusion".into(),
                message: e,
            }),
    }
}

/// Synthetic face `index` of set `seed` as an item.
pub fn synthetic_item(
    seed: u64,
    index: u64,
    channels: usize,
    size: usize,
    occlusion: Option<Occlusion>,
) -> Item {
    let face = synthetic::generate(seed, index, size);
    Item {
        name: format!("synthetic face #{index} (seed {seed})"),
        stem: format!("synthetic-{index}"),
        pixels: face.image(channels),
        label: Some(face.label),
        landmarks: face.landmarks,
        occlusion,
    }
}

pub fn run(args: &Args) -> Result<()> {
    fer_cbam::files::check_folder(&args.out, &[&args.checkpoint])?;
    let gpu = super::new_gpu()?;
    let w = explain_all(&gpu, args)?;
    for f in &w.figures {
        super::print_line(format!("wrote {}", f.display()));
    }
    super::print_line(format!("wrote {}", args.out.join("explain.json").display()));
    Ok(())
}

/// The command's work: checks every input before the first figure is drawn.
fn explain_all(gpu: &Gpu, a: &Args) -> Result<Written> {
    let occ = parse_occlusion(&a.occlusion)?;
    if a.images.is_empty() && a.synthetic.unwrap_or(0) == 0 {
        return Err(Error::InvalidConfig {
            op: "explain".into(),
            message: "nothing to explain: give image files or --synthetic N".into(),
        });
    }
    // Figures are named after their images: one must not land on an input (an image in the
    // output folder, or the checkpoint).
    let mut inputs: Vec<&Path> = a.images.iter().map(PathBuf::as_path).collect();
    inputs.push(&a.checkpoint);
    let stem_of = |path: &Path| {
        path.file_stem()
            .map_or("image".into(), |s| s.to_string_lossy().into_owned())
    };
    for path in &a.images {
        fer_cbam::files::check_target(&a.out.join(format!("{}.png", stem_of(path))), &inputs)?;
    }
    fer_cbam::files::check_target(&a.out.join("explain.json"), &inputs)?;
    let ck = checkpoint::load(&a.checkpoint)?;
    let (channels, size) = (ck.config.in_channels, ck.config.image_size);
    let trained = checkpoint::load_training_meta(&a.checkpoint)?;
    let crop = super::data::resolve_crop(a.crop, a.face_margin, trained.and_then(|t| t.crop))?;
    let (samples, faces) = super::data::file_samples(&a.images, crop)?;
    let mut items = Vec::new();
    let mut lm_origin = Vec::new();
    for ((path, sample), face) in a.images.iter().zip(&samples).zip(&faces) {
        let pixels = sample.load(size, channels)?;
        // The image's own landmarks (a .pts beside it, mapped into the crop) place the eye and
        // mouth boxes where they are; the template only where there are none.
        let landmarks = match &sample.landmarks {
            Some(l) => l.at(size),
            None => a.landmarks.landmarks(size),
        };
        lm_origin.push(sample.landmarks.is_some());
        if let Some(None) = face {
            eprintln!("note: no face found in {}: explained whole", path.display());
        }
        let label = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| folder::class_index(&n.to_string_lossy()));
        let stem = stem_of(path);
        items.push(Item {
            name: path.display().to_string(),
            stem,
            pixels,
            label,
            landmarks,
            occlusion: occ,
        });
    }
    for k in 0..a.synthetic.unwrap_or(0) as u64 {
        let index = a.synthetic_first + k;
        items.push(synthetic_item(a.synthetic_seed, index, channels, size, occ));
    }
    let patch = a.patch.unwrap_or((size / 8).max(1));
    let stride = a.stride.unwrap_or((size / 16).max(1));
    let sens = a.sensitivity.then_some((patch, stride));
    let own = lm_origin.iter().filter(|&&o| o).count();
    let mut origin = if a.images.is_empty() {
        "exact (the generator's own geometry)".to_string()
    } else {
        format!(
            "{own} files from their .pts, {} from the {:?} template; exact for synthetic faces",
            lm_origin.len() - own,
            a.landmarks
        )
    };
    if let Some(c) = crop {
        let found = faces.iter().filter(|f| matches!(f, Some(Some(_)))).count();
        origin += &format!(
            "; files cropped to their faces (margin {}): {found} of {} found",
            c.margin,
            faces.len()
        );
    }
    let job = Explanation {
        ck: &ck,
        ck_path: &a.checkpoint,
        sensitivity: sens,
        batch_size: a.batch_size,
        out: &a.out,
        landmark_origin: &origin,
    };
    explain_items(gpu, &job, items)
}

/// The checkpoint [`explain_items`] explains with, and how.
pub struct Explanation<'a> {
    pub ck: &'a Checkpoint,
    pub ck_path: &'a Path,
    /// Occlusion sensitivity's patch side and stride in pixels, when it is drawn.
    pub sensitivity: Option<(usize, usize)>,
    pub batch_size: usize,
    /// The output folder.
    pub out: &'a Path,
    /// Where the items' landmarks came from, in words (for explain.json).
    pub landmark_origin: &'a str,
}

/// Explains `items` with checkpoint `ck` into `out`: one figure per item (a clean column, and an
/// occluded one where the item has an occlusion) and `out/explain.json`.
pub fn explain_items(gpu: &Gpu, job: &Explanation<'_>, items: Vec<Item>) -> Result<Written> {
    let Explanation {
        ck,
        ck_path,
        sensitivity,
        batch_size,
        out,
        landmark_origin,
    } = *job;
    let config = &ck.config;
    let (channels, size) = (config.in_channels, config.image_size);
    if let Some((patch, stride)) = sensitivity {
        if patch == 0 || patch > size || stride == 0 {
            return Err(Error::InvalidConfig {
                op: "--patch/--stride".into(),
                message: format!(
                    "patch {patch} and stride {stride} must be positive and the patch at most the input size {size}"
                ),
            });
        }
    }
    if batch_size == 0 {
        return Err(Error::InvalidConfig {
            op: "--batch-size".into(),
            message: "must be positive".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Data {
        path: out.display().to_string(),
        message: format!("cannot create the output folder: {e}"),
    })?;

    // Every item's columns: the clean image, then the occluded one, occluded by the same code
    // (and the same per-index patch seed) as `eval --occlusion`.
    let mut images: Vec<Vec<u8>> = Vec::new();
    let mut spans = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let first = images.len();
        images.push(it.pixels.clone());
        if let Some(o) = it.occlusion {
            let mut px = it.pixels.clone();
            let lm = |_: usize, _: usize| it.landmarks;
            fer_cbam::data::augment::occluded(o, channels, size, lm)(&mut px, i, 0);
            images.push(px);
        }
        spans.push(first..images.len());
    }
    // Sensitivity runs hundreds of patched copies: worth the full batch. Otherwise no more
    // rows than there are images.
    let batch = if sensitivity.is_some() {
        batch_size
    } else {
        batch_size.min(images.len().max(1))
    };
    let ex = Explainer::from_checkpoint(gpu, ck, batch)?;
    let inspections = ex.inspect(&images)?;
    let mut sens: Vec<Option<Sensitivity>> = Vec::new();
    for (it, span) in items.iter().zip(&spans) {
        for j in span.clone() {
            sens.push(match sensitivity {
                Some((patch, stride)) => Some(ex.sensitivity(&images[j], it.label, patch, stride)?),
                None => None,
            });
        }
    }

    let mut figures = Vec::new();
    let mut entries = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (i, (it, span)) in items.iter().zip(&spans).enumerate() {
        let mut stem = it.stem.clone();
        if let Some(o) = it.occlusion {
            stem += &format!("-{o}");
        }
        if !used.insert(stem.clone()) {
            stem += &format!("-{i}");
            used.insert(stem.clone());
        }
        let columns: Vec<Column> = span
            .clone()
            .map(|j| Column {
                title: if j == span.start {
                    "clean".into()
                } else {
                    format!("occluded: {}", it.occlusion.expect("second column"))
                },
                image: &images[j],
                inspection: &inspections[j],
                sensitivity: sens[j].as_ref(),
            })
            .collect();
        let fig = explain::figure(&Figure {
            title: format!(
                "{}  |  {}",
                it.name,
                ck_path
                    .file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            ),
            classes: &config.classes,
            label: it.label,
            image_size: size,
            columns,
        });
        let path = out.join(format!("{stem}.png"));
        explain::save_png(&path, &fig)?;
        let cols: Vec<Value> = span
            .clone()
            .map(|j| {
                column_json(
                    if j == span.start { None } else { it.occlusion },
                    &inspections[j],
                    &inspections[span.start],
                    sens[j].as_ref(),
                    &config.classes,
                )
            })
            .collect();
        entries.push(json!({
            "image": it.name,
            "label": it.label.map(|c| config.classes[c].clone()),
            "figure": path,
            "figure_size": [fig.width(), fig.height()],
            "columns": cols,
        }));
        figures.push(path);
    }
    let doc = json!({
        "checkpoint": ck_path,
        "config": config,
        "landmarks": landmark_origin,
        "images": entries,
    });
    fer_cbam::files::write_atomic(
        &out.join("explain.json"),
        serde_json::to_string_pretty(&doc).unwrap().as_bytes(),
    )?;
    Ok(Written { figures })
}

fn stats(values: &[f32]) -> Value {
    let min = values.iter().copied().fold(f32::INFINITY, f32::min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mean = values.iter().sum::<f32>() / values.len().max(1) as f32;
    json!({"min": min, "max": max, "mean": mean})
}

fn column_json(
    occ: Option<Occlusion>,
    ins: &Inspection,
    clean: &Inspection,
    sens: Option<&Sensitivity>,
    classes: &[String],
) -> Value {
    let stages: Vec<Value> = ins
        .stages
        .iter()
        .zip(&clean.stages)
        .enumerate()
        .map(|(i, (st, cl))| {
            let spatial = st.spatial.as_ref().map(|m| {
                let mut v = stats(&m.values);
                v["shape"] = json!([1, m.h, m.w]);
                // How far attention moved from the clean image's map: 0 for the clean column.
                if let Some(c) = &cl.spatial {
                    let d: f32 = m
                        .values
                        .iter()
                        .zip(&c.values)
                        .map(|(a, b)| (a - b).abs())
                        .sum::<f32>()
                        / m.values.len().max(1) as f32;
                    v["mean_abs_change_from_clean"] = json!(d);
                }
                v
            });
            let channel = st.channel.as_ref().map(|g| {
                let mut v = stats(g);
                v["shape"] = json!([g.len()]);
                v
            });
            json!({"stage": i, "spatial": spatial, "channel": channel})
        })
        .collect();
    let p = ins.predicted();
    let mut v = json!({
        "occlusion": occ.map_or("none".to_string(), |o| o.to_string()),
        "probabilities": classes.iter().zip(&ins.probs).map(|(c, p)| json!({"class": c, "p": p})).collect::<Vec<_>>(),
        "predicted": classes[p],
        "stages": stages,
    });
    if let Some(s) = sens {
        v["sensitivity"] = json!({
            "class": classes[s.class],
            "patch": s.patch,
            "stride": s.stride,
            "positions": s.positions,
            "base": s.base,
            "shape": [s.drop.h, s.drop.w],
            "min_drop": s.drop.min(),
            "max_drop": s.drop.max(),
        });
    }
    v
}

/// The demo's figures: the first three test faces under the attention model, each clean beside
/// one occlusion (mouth, eyes, mouth), with sensitivity maps, into `out`.
pub fn demo_figures(
    gpu: &Gpu,
    ck: &Checkpoint,
    ck_path: &Path,
    seed: u64,
    first: u64,
    out: &Path,
) -> Result<Vec<PathBuf>> {
    let (channels, size) = (ck.config.in_channels, ck.config.image_size);
    let occ = [Occlusion::Mouth, Occlusion::Eyes, Occlusion::Mouth];
    let items = occ
        .iter()
        .enumerate()
        .map(|(k, &o)| synthetic_item(seed, first + k as u64, channels, size, Some(o)))
        .collect();
    let sens = ((size / 8).max(1), (size / 16).max(1));
    let job = Explanation {
        ck,
        ck_path,
        sensitivity: Some(sens),
        batch_size: 32,
        out,
        landmark_origin: "exact (the generator's own geometry)",
    };
    Ok(explain_items(gpu, &job, items)?.figures)
}
