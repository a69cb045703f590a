//! `train`, `eval` and `predict`: data selection, progress, reports.

use std::path::{Path, PathBuf};

use clap::Args;
use fer_cbam::data::crop::{self, CropMode, CropReport, FaceCrop, FoundFace};
use fer_cbam::data::dataset::{self, Format, Pixels, Sample};
use fer_cbam::data::occlusion::Template;
use fer_cbam::data::{folder, landmarks, split};
use fer_cbam::model::checkpoint::{TrainingMeta, ValidationMeta};
use fer_cbam::model::{checkpoint, ModelConfig, Network, ParamTable, TrainOptions};
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::sources::{DatasetSource, SyntheticSource};
use fer_cbam::train::{self, EpochEnd, Evaluation, ImageSource, LrSchedule, Score, TrainLoop};
use fer_cbam::{Error, Gpu, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::recipe::{self, RecipeArgs};

/// Where the images come from.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Dataset folder or file: class folders (`<root>/<class>/*`, or
    /// `<root>/train|test/<class>/*`) or a distributed form (see --format).
    /// Without it: the embedded synthetic face set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Form of --data; detected from its files when not given.
    #[arg(long)]
    pub format: Option<Format>,
    /// Number of synthetic faces when --data is not given (80% train, 20% test).
    #[arg(long, default_value_t = 3500)]
    pub synthetic: usize,
    /// Seed of the synthetic face set.
    #[arg(long, default_value_t = 2026)]
    pub synthetic_seed: u64,
    /// Seed of the stratified 80:20 split of a folder without train/ and test/.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Keep every subject's images on one side of the split (CK+ `S005_...`, JAFFE `KA.`).
    #[arg(long, value_parser = ["subject", "none"], default_value = "none")]
    pub group_by: String,
    /// CK+: keep only the last (apex) frame of each sequence (the paper's 309 images).
    #[arg(long)]
    pub ckplus_apex: bool,
    /// Stop at the first unreadable image instead of reporting, counting and going on.
    #[arg(long)]
    pub strict: bool,
    /// Landmark template for images without landmarks of their own: fer2013 or ckplus48.
    #[arg(long, default_value = "fer2013")]
    pub landmarks: Template,
    /// Landmarks for --data's images from a CSV sidecar `file,x0,y0,...,x67,y67[,flagged]` in
    /// image pixels (tools/landmarks.py writes one); rows match images by path relative to
    /// --data, or by the end of one image's path (a base name). Replaces the dataset's own
    /// landmarks where both exist.
    #[arg(long, value_name = "PATH")]
    pub landmarks_csv: Option<PathBuf>,
    /// Crop each image to a square around its face before resizing: `face` takes the box of
    /// the image's own landmarks (CK+ as distributed, .pts, AffectNet, --landmarks-csv) or else
    /// the built-in face detector's, grown by --face-margin; an image without a face is used
    /// whole and listed. `none` uses images whole [default: none for training; what the
    /// checkpoint was trained with for eval and a resumed train].
    #[arg(long, value_name = "none|face")]
    pub crop: Option<CropMode>,
    /// With --crop face: the margin added on every side of the face box, as a fraction of its
    /// side [default: 0.25, or the checkpoint's].
    #[arg(long, value_name = "M")]
    pub face_margin: Option<f32>,
}

/// The crop that `--crop` and `--face-margin` ask for, given the crop a checkpoint was trained
/// with (`trained`; `None` for a fresh run or a checkpoint trained on whole images).
pub fn resolve_crop(
    mode: Option<CropMode>,
    margin: Option<f32>,
    trained: Option<FaceCrop>,
) -> Result<Option<FaceCrop>> {
    let crop = match (mode, trained) {
        (Some(CropMode::None), _) | (None, None) => None,
        (Some(CropMode::Face), t) | (None, t @ Some(_)) => Some(FaceCrop::new(
            margin
                .or(t.map(|t| t.margin))
                .unwrap_or(crop::DEFAULT_MARGIN),
        )?),
    };
    if crop.is_none() && margin.is_some() {
        return Err(Error::InvalidConfig {
            op: "--face-margin".into(),
            message: "only applies with --crop face".into(),
        });
    }
    Ok(crop)
}

/// Crops `ds` to its faces with a progress bar on stderr (unless `quiet`): the detector takes
/// about 17 ms of CPU per 640x490 frame (docs/training.md), a minute or more for a large set.
pub fn crop_dataset(ds: &mut dataset::Dataset, crop: FaceCrop, quiet: bool) -> Result<CropReport> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(ds.samples.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images  finding faces  [{eta}]")
            .unwrap(),
    );
    let r = crop::crop_samples(&mut ds.samples, crop, &|done, _| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    Ok(r?.0)
}

/// The two sides of the data.
pub enum Data {
    Synthetic {
        train: SyntheticSource,
        test: SyntheticSource,
    },
    Folder {
        train: DatasetSource,
        test: DatasetSource,
        note: String,
        /// With `--crop face`: what the crop found, over both sides.
        crop: Option<CropReport>,
    },
}

impl Data {
    pub fn train(&self) -> &dyn ImageSource {
        match self {
            Data::Synthetic { train, .. } => train,
            Data::Folder { train, .. } => train,
        }
    }
    pub fn test(&self) -> &dyn ImageSource {
        match self {
            Data::Synthetic { test, .. } => test,
            Data::Folder { test, .. } => test,
        }
    }
    /// Labels and subjects of the training side, for the validation split.
    pub fn train_labels_groups(&self) -> (Vec<usize>, Vec<Option<String>>) {
        match self {
            Data::Synthetic { train, .. } => (train.labels(), vec![None; train.len]),
            Data::Folder { train, .. } => (train.labels(), train.groups()),
        }
    }
    pub fn crop(&self) -> Option<&CropReport> {
        match self {
            Data::Synthetic { .. } => None,
            Data::Folder { crop, .. } => crop.as_ref(),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Data::Synthetic { train, test } => format!(
                "synthetic faces (seed {}): {} train, {} test",
                train.seed, train.len, test.len
            ),
            Data::Folder {
                train, test, note, ..
            } => {
                format!(
                    "{note}: {} train, {} test",
                    train.samples.len(),
                    test.samples.len()
                )
            }
        }
    }
}

impl DataArgs {
    /// The data with the crop of the flags alone (a run without a checkpoint to follow).
    pub fn load(&self) -> Result<Data> {
        self.load_with(self.crop_for(None)?, true)
    }

    /// The crop the flags ask for, given what a checkpoint was trained with.
    pub fn crop_for(&self, trained: Option<FaceCrop>) -> Result<Option<FaceCrop>> {
        resolve_crop(self.crop, self.face_margin, trained)
    }

    /// The data, each image cropped to its face with `crop`; `quiet` hides the progress bar of
    /// the face search.
    pub fn load_with(&self, crop: Option<FaceCrop>, quiet: bool) -> Result<Data> {
        let Some(root) = &self.data else {
            if crop.is_some() {
                return Err(Error::InvalidConfig {
                    op: "--crop face".into(),
                    message: "needs --data: the synthetic faces are drawn as face crops".into(),
                });
            }
            if let Some(csv) = &self.landmarks_csv {
                return Err(Error::Data {
                    path: csv.display().to_string(),
                    message:
                        "--landmarks-csv needs --data: the synthetic faces have exact landmarks"
                            .into(),
                });
            }
            if self.synthetic < 10 {
                return Err(Error::InvalidConfig {
                    op: "--synthetic".into(),
                    message: format!("{} faces are too few to split", self.synthetic),
                });
            }
            let n_test = self.synthetic / 5;
            let n_train = self.synthetic - n_test;
            return Ok(Data::Synthetic {
                train: SyntheticSource {
                    seed: self.synthetic_seed,
                    first: 0,
                    len: n_train,
                },
                test: SyntheticSource {
                    seed: self.synthetic_seed,
                    first: n_train as u64,
                    len: n_test,
                },
            });
        };
        let mut ds = dataset::open(root, self.format)?;
        if self.ckplus_apex {
            ds.keep_last_frame_per_sequence();
        }
        if let Some(csv) = &self.landmarks_csv {
            fer_cbam::data::landmarks::attach_sidecar(&mut ds, csv)?;
        }
        // After the landmarks are attached (they place the crop) and before the split.
        let crop = match crop {
            Some(c) => Some(crop_dataset(&mut ds, c, quiet)?),
            None => None,
        };
        let mut note = format!("{}", root.display());
        for s in &ds.skipped {
            note += &format!(" (skipped {} with {} entries)", s.path.display(), s.entries);
        }
        for n in &ds.notes {
            note += &format!(" ({n})");
        }
        note += &format!(" ({})", ds.landmark_summary());
        if let Some(c) = &crop {
            note += &format!(" ({})", c.summary(10));
        }
        let template = self.landmarks;
        if ds.has_splits {
            let train = DatasetSource::new(&ds, template, |s| s.split == folder::Split::Train);
            let test = DatasetSource::new(&ds, template, |s| s.split == folder::Split::Test);
            return Ok(Data::Folder {
                train,
                test,
                note,
                crop,
            });
        }
        let all = DatasetSource::new(&ds, template, |_| true);
        let groups = all.groups();
        let grouped = self.group_by == "subject";
        let part = split::stratified(
            &all.labels(),
            grouped.then_some(&groups[..]),
            split::TEST_FRACTION,
            self.split_seed,
        )?;
        note += &format!(
            ", stratified 80:20 split (seed {}{})",
            self.split_seed,
            if grouped { ", by subject" } else { "" }
        );
        Ok(Data::Folder {
            train: all.pick(&part.train),
            test: all.pick(&part.test),
            note,
            crop,
        })
    }
}

pub struct Output {
    pub quiet: bool,
    pub json: bool,
}

impl Output {
    fn say(&self, line: impl AsRef<str>) {
        if !self.quiet && !self.json {
            println!("{}", line.as_ref());
        }
    }
}

/// Everything a training run needs besides the model config and the data.
pub struct TrainJob<'a> {
    pub out_path: &'a Path,
    /// Continue from this checkpoint and its optimizer state.
    pub resume: Option<&'a Path>,
    /// Epochs to train in this run (on top of a resumed checkpoint's).
    pub epochs: usize,
    pub batch: usize,
    /// Adam's settings; `lr` is the schedule's base rate.
    pub adam: AdamConfig,
    pub seed: u64,
    pub strict: bool,
    /// Fraction of training images occluded, redrawn every epoch.
    pub occlusion_mix: f64,
    pub recipe: &'a RecipeArgs,
    /// Seed of the validation split (--split-seed) and whether it keeps subjects together.
    pub split_seed: u64,
    pub grouped: bool,
    /// The data's face crop, recorded in the checkpoint for eval and predict.
    pub crop: Option<FaceCrop>,
}

/// What a training run did.
pub struct Trained {
    /// The written checkpoint on the test side.
    pub eval: Evaluation,
    pub seconds: f64,
    pub epochs: Vec<EpochEnd>,
    pub schedule: LrSchedule,
    /// Validation images, and the epoch whose state was written when the best was kept.
    pub val_images: usize,
    pub kept: Option<usize>,
    pub best: Option<Score>,
}

/// Trains and writes the checkpoint and its optimizer state; evaluates on the test side.
pub fn train_command(
    gpu: &Gpu,
    config: ModelConfig,
    data: &Data,
    job: &TrainJob<'_>,
    out: &Output,
) -> Result<Trained> {
    let recipe = job.recipe;
    let (ck, optim, previous) = match job.resume {
        Some(path) => {
            let ck = checkpoint::load(path)?;
            check_classes(path, &ck.config)?;
            let optim = checkpoint::load_optimizer(&checkpoint::optimizer_path(path), &ck.config)?;
            let meta = checkpoint::load_training(path)?;
            (ck, Some(optim), meta)
        }
        None => {
            let table = ParamTable::new(&config);
            let ck = checkpoint::Checkpoint {
                packed: table.init(job.seed),
                buffers: table.init_buffers(),
                batches_tracked: 0,
                config,
            };
            (ck, None, None)
        }
    };
    let config = ck.config.clone();
    recipe.check(config.image_size)?;
    let (batch, epochs) = (job.batch, job.epochs);
    let (labels, groups) = data.train_labels_groups();
    let all: Vec<usize> = (0..data.train().len()).collect();
    let part = recipe.hold_out(
        &all,
        &labels,
        job.grouped.then_some(&groups[..]),
        job.split_seed,
    )?;
    let (idx, val_idx) = (part.train, part.test);
    out.say(format!("data: {}", data.describe()));
    if !val_idx.is_empty() {
        out.say(format!(
            "validation: {} of the {} training images ({}{}), evaluated clean after every epoch",
            val_idx.len(),
            all.len(),
            recipe.val_fraction,
            if job.grouped { ", by subject" } else { "" }
        ));
    }
    out.say(format!(
        "model: {}x{}x{}, widths {:?}, attention {:?}, norm {}, init {}, gate {}, {} parameters; batch {batch}, {epochs} epochs",
        config.in_channels,
        config.image_size,
        config.image_size,
        config.widths,
        config.attention,
        config.norm,
        config.init,
        config.gate,
        ParamTable::new(&config).count()
    ));
    let options = TrainOptions {
        adam: job.adam,
        seed: job.seed as u32,
        class_weights: None,
    };
    let mut net = pollster::block_on(Network::new(gpu, &config, batch, options))?;
    net.load(gpu, &ck)?;
    if let Some((m, v, step)) = &optim {
        net.write_adam_state(gpu, m, v, *step)?;
        out.say(format!("resumed at step {step}"));
    }
    let steps_per_epoch = (idx.len() / batch).max(1);
    let end = net.step() as usize / steps_per_epoch + epochs;
    let schedule = recipe.schedule(job.adam.lr, end)?;
    let augmentation = recipe.augmentation();
    out.say(format!(
        "recipe: learning rate {}; augmentation {}; {}% of training images occluded",
        schedule.describe(),
        augmentation.describe(),
        (job.occlusion_mix * 100.0).round()
    ));
    // A resumed run competes with the state it starts from, when that was selected on the same
    // validation split.
    let previous_best = previous
        .as_ref()
        .and_then(|m| m.validation.as_ref())
        .filter(|v| {
            v.fraction == recipe.val_fraction
                && v.seed == job.split_seed
                && v.grouped == job.grouped
        })
        .map(|v| Score {
            epoch: v.epoch,
            accuracy: v.accuracy,
            loss: v.loss,
        });
    let lm = super::occlude::landmarks_of(data, false);
    let (ch, size) = (config.in_channels, config.image_size);
    let augment = recipe::training_augment(job.occlusion_mix, augmentation, job.seed, ch, size, lm);
    let total = (idx.len() / batch * epochs) as u64;
    let bar = if out.quiet || out.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap(),
    );
    let started = std::time::Instant::now();
    let first_step = net.step();
    let opts = TrainLoop {
        epochs,
        seed: job.seed,
        strict: job.strict,
        schedule: Some(schedule),
    };
    let validation = (!val_idx.is_empty()).then(|| train::Validation {
        source: data.train(),
        indices: &val_idx,
        keep_best: recipe.keep_best(),
        previous_best,
    });
    let fitted = train::fit(
        gpu,
        &mut net,
        data.train(),
        &idx,
        &opts,
        recipe::as_augment(&augment),
        validation.as_ref(),
        &mut |p, failures| {
            for f in failures {
                bar.suspend(|| eprintln!("warning: skipped {f}"));
            }
            bar.set_position((p.step - first_step) as u64);
            bar.set_message(format!(
                "epoch {}  loss {:.4}  acc {:.3}  lr {:.2e}  {:.1} img/s",
                p.epoch + 1,
                p.loss,
                p.accuracy,
                p.lr,
                p.images_per_second
            ));
        },
        &mut |_, e| {
            if let Some(v) = &e.val {
                bar.suspend(|| {
                    out.say(format!(
                        "epoch {}: train loss {:.4} acc {:.3}, lr {:.2e}; validation acc {:.4} loss {:.4}{}",
                        e.epoch,
                        e.loss,
                        e.accuracy,
                        e.lr,
                        v.accuracy,
                        v.loss,
                        if e.best { " (best so far)" } else { "" }
                    ))
                });
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    // The written state's own validation score: the kept epoch's, or the last one's.
    let written = match fitted.kept {
        Some(_) => fitted.best,
        None => fitted.epochs.last().and_then(|e| e.val),
    };
    let meta = TrainingMeta {
        crop: job.crop,
        recipe: recipe.to_json(&schedule, job.occlusion_mix),
        validation: written.map(|s| ValidationMeta {
            fraction: recipe.val_fraction,
            seed: job.split_seed,
            grouped: job.grouped,
            epoch: s.epoch,
            accuracy: s.accuracy,
            loss: s.loss,
        }),
    };
    let params = gpu.read_blocking(net.params())?;
    let buffers = match net.buffers() {
        Some(t) => gpu.read_blocking(t)?,
        None => Vec::new(),
    };
    checkpoint::save_trained(
        job.out_path,
        &config,
        &params,
        &buffers,
        net.batches_tracked(),
        &meta,
    )?;
    let (m, v) = net.adam_state();
    let (m, v) = (gpu.read_blocking(m)?, gpu.read_blocking(v)?);
    checkpoint::save_optimizer(
        &checkpoint::optimizer_path(job.out_path),
        &config,
        &m,
        &v,
        net.step(),
    )?;
    if let (Some(k), Some(b)) = (fitted.kept, fitted.best) {
        out.say(format!(
            "kept the state after epoch {k} (the best validation accuracy, {:.4}; loss {:.4}){}",
            b.accuracy,
            b.loss,
            if fitted.epochs.last().is_some_and(|e| e.epoch != k) {
                ": the checkpoint and its optimizer state are that epoch's, not the last one's"
            } else {
                ""
            }
        ));
    }
    out.say(format!(
        "trained {} steps in {seconds:.1} s; wrote {} and {}",
        fitted.epochs.last().map_or(0, |e| e.step - first_step),
        job.out_path.display(),
        checkpoint::optimizer_path(job.out_path).display()
    ));
    let test: Vec<usize> = (0..data.test().len()).collect();
    let eval = train::evaluate(gpu, &net, data.test(), &test, job.strict, None)?;
    Ok(Trained {
        eval,
        seconds,
        epochs: fitted.epochs,
        schedule,
        val_images: val_idx.len(),
        kept: fitted.kept,
        best: fitted.best,
    })
}

/// Evaluates a checkpoint on the test side of `data` (or both sides with `all`).
pub fn eval_command(
    gpu: &Gpu,
    path: &Path,
    data: &Data,
    which: &str,
    batch: usize,
    strict: bool,
    augment: Option<train::Augment<'_>>,
) -> Result<Evaluation> {
    let ck = checkpoint::load(path)?;
    check_classes(path, &ck.config)?;
    let net = pollster::block_on(Network::new(
        gpu,
        &ck.config,
        batch,
        TrainOptions::default(),
    ))?;
    net.load(gpu, &ck)?;
    let source = match which {
        "train" => data.train(),
        _ => data.test(),
    };
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

/// A human-readable report: accuracy, macro F1, per-class precision/recall/F1, confusion matrix.
pub fn report(e: &Evaluation, classes: &[String]) -> String {
    let mut s = format!(
        "accuracy {:.4}  macro-F1 {:.4}  ({} images)\n",
        e.accuracy(),
        e.macro_f1(),
        e.labels.len()
    );
    s += &format!(
        "{:<10} {:>9} {:>9} {:>9} {:>8}\n",
        "class", "precision", "recall", "F1", "support"
    );
    for (c, (p, r, f, n)) in e.per_class().iter().enumerate() {
        s += &format!(
            "{:<10} {:>9.3} {:>9.3} {:>9.3} {:>8}\n",
            classes[c], p, r, f, n
        );
    }
    s += "confusion (rows true, columns predicted):\n";
    s += &format!("{:<10}", "");
    for c in classes {
        s += &format!(" {:>8}", &c[..c.len().min(8)]);
    }
    s += "\n";
    for (c, row) in e.confusion().iter().enumerate() {
        s += &format!("{:<10}", classes[c]);
        for v in row {
            s += &format!(" {v:>8}");
        }
        s += "\n";
    }
    if !e.failures.is_empty() {
        s += &format!(
            "{} images could not be read and were left out\n",
            e.failures.len()
        );
    }
    s
}

/// JSON for scripts.
pub fn report_json(e: &Evaluation, classes: &[String]) -> serde_json::Value {
    let per: Vec<serde_json::Value> = e
        .per_class()
        .iter()
        .enumerate()
        .map(|(c, (p, r, f, n))| {
            serde_json::json!({"class": classes[c], "precision": p, "recall": r, "f1": f, "support": n})
        })
        .collect();
    serde_json::json!({
        "images": e.labels.len(),
        "accuracy": e.accuracy(),
        "macro_f1": e.macro_f1(),
        "per_class": per,
        "confusion": e.confusion(),
        "unreadable": e.failures,
    })
}

/// An image, its top-3 classes with probabilities, and the face crop used (with a face crop:
/// `Some(None)` when no face was found and the whole image was used).
pub struct Prediction {
    pub path: PathBuf,
    pub top: Vec<(String, f32)>,
    pub face: Option<Option<FoundFace>>,
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

/// Per image: `None` without a face crop; with one, the crop found (`None`: used whole).
pub type FaceResult = Option<Option<FoundFace>>;

/// Image files as samples (label unknown), each with the `.pts` beside it if there is one, and
/// cropped to its face with `crop` as training crops (landmarks first, then the detector).
pub fn file_samples(
    files: &[PathBuf],
    crop: Option<FaceCrop>,
) -> Result<(Vec<Sample>, Vec<FaceResult>)> {
    let mut samples = Vec::with_capacity(files.len());
    for f in files {
        samples.push(Sample {
            name: f.display().to_string(),
            pixels: Pixels::File(f.clone()),
            label: 0,
            split: folder::Split::Unsplit,
            group: None,
            landmarks: landmarks::pts_beside(f)?,
        });
    }
    let faces = match crop {
        Some(c) => {
            let (report, faces) = crop::crop_samples(&mut samples, c, &|_, _| {})?;
            if let Some(bad) = report.unreadable.first() {
                // Strict, as predict is: the loader names the file and the problem.
                let i = samples
                    .iter()
                    .position(|s| &s.name == bad)
                    .expect("one of them");
                samples[i].load_original()?;
            }
            faces.into_iter().map(Some).collect()
        }
        None => vec![None; files.len()],
    };
    Ok((samples, faces))
}

/// Top-3 classes of each image (files, or every image in a folder); with `crop`, each image
/// is first cropped to its face.
pub fn predict_command(
    gpu: &Gpu,
    path: &Path,
    inputs: &[PathBuf],
    crop: Option<FaceCrop>,
) -> Result<Vec<Prediction>> {
    let ck = checkpoint::load(path)?;
    let files = image_files(inputs)?;
    let c = &ck.config;
    let batch = files.len().clamp(1, 32);
    let net = pollster::block_on(Network::new(gpu, c, batch, TrainOptions::default()))?;
    net.load(gpu, &ck)?;
    let (samples, faces) = file_samples(&files, crop)?;
    let source = DatasetSource {
        samples,
        template: Template::Fer2013,
    };
    let idx: Vec<usize> = (0..files.len()).collect();
    let e = train::evaluate(gpu, &net, &source, &idx, true, None)?;
    let k = c.classes.len();
    Ok(files
        .into_iter()
        .zip(faces)
        .zip(e.probs.chunks_exact(k))
        .map(|((path, face), row)| {
            let mut top: Vec<(String, f32)> =
                c.classes.iter().cloned().zip(row.iter().copied()).collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            top.truncate(3);
            Prediction { path, top, face }
        })
        .collect())
}
