//! `train`, `eval` and `predict`: training with saves and Ctrl-C, evaluation, prediction.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use fer_cbam::data::crop::{self, FoundFace};
use fer_cbam::data::dataset::{Pixels, Sample};
use fer_cbam::data::occlusion::Template;
use fer_cbam::data::{folder, landmarks};
use fer_cbam::model::checkpoint::{FaceCrop, TrainingMeta, ValidationMeta};
use fer_cbam::model::{
    checkpoint, InferenceNetwork, ModelConfig, Network, ParamTable, TrainOptions,
};
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::sources::{Data, DatasetSource};
use fer_cbam::train::{self, EpochEnd, Evaluation, ImageSource, LrSchedule, Score, TrainLoop};
use fer_cbam::{Error, Gpu, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::data::FaceResult;
use super::recipe::RecipeArgs;

/// Where a run says how it goes: progress lines on stdout, unless --quiet or --json.
pub struct Output {
    pub quiet: bool,
    pub json: bool,
}

impl Output {
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet && !self.json {
            super::print_line(line.as_ref());
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
    /// Saves during training, besides the one at the end.
    pub saving: Saving,
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
    /// Training images that could not be read (each named once).
    pub unreadable: Vec<String>,
}

/// When training saves, besides at the end.
#[derive(Clone, Debug, Default)]
pub struct Saving {
    /// Every this many epochs.
    pub every: Option<usize>,
}

/// True while a run trains or saves: a first Ctrl-C then asks the loop to stop and save
/// instead of ending the program.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process). While training is armed, the first Ctrl-C
/// asks the loop to stop after the step in flight, and the run saves what it reached; a second
/// one, or one at any other time, ends the program at once (status 130).
pub fn install_interrupt_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Without a handler (one already set by an embedding program) Ctrl-C keeps its default.
        let _ = ctrlc::set_handler(|| {
            if !ARMED.load(Ordering::SeqCst) || train::stop_requested() {
                super::warn_line("interrupted: quit without saving");
                std::process::exit(130);
            }
            train::request_stop();
            super::warn_line(
                "interrupted: stopping after this step to save (Ctrl-C again to quit without saving)",
            );
        });
    });
}

/// Arms the Ctrl-C handler for as long as it lives.
struct Armed;

impl Armed {
    fn new() -> Armed {
        train::clear_stop();
        ARMED.store(true, Ordering::SeqCst);
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        ARMED.store(false, Ordering::SeqCst);
    }
}

/// Reads the network's state back (parameters, running statistics, Adam's moments, the step)
/// and saves it as `out_path` and its optimizer state, as one pair (see
/// [`checkpoint::save_training`]), with `meta`. Parameters that are no longer finite are a
/// divergence the loss has not shown yet (the last update ran after the last loss): nothing is
/// written then. Returns the optimizer state's path.
fn save_state(
    gpu: &Gpu,
    net: &Network,
    out_path: &Path,
    spe: u32,
    meta: TrainingMeta,
) -> Result<PathBuf> {
    let params = gpu.read_blocking(net.params())?;
    for e in net.table().entries() {
        let t = &params[e.offset..e.offset + e.len()];
        if let Some(i) = t.iter().position(|v| !v.is_finite()) {
            return Err(Error::Diverged {
                step: net.step(),
                epoch: net.step().div_ceil(spe) as usize,
                what: format!("parameter `{}`[{i}] is {}", e.name, t[i]),
                kept: String::new(),
            });
        }
    }
    let buffers = match net.buffers() {
        Some(t) => gpu.read_blocking(t)?,
        None => Vec::new(),
    };
    let (m, v) = net.adam_state();
    let (m, v) = (gpu.read_blocking(m)?, gpu.read_blocking(v)?);
    let state = checkpoint::TrainingState {
        checkpoint: checkpoint::Checkpoint {
            config: net.config().clone(),
            packed: params,
            buffers,
            batches_tracked: net.batches_tracked(),
        },
        m,
        v,
        step: net.step(),
        meta: Some(meta),
    };
    checkpoint::save_training(out_path, &state)
}

/// [`train::fit`] with saves: every `saving.every` epochs (the state of that moment, so that
/// `--resume` continues exactly) and at the end (the kept state: with best-validation
/// selection, the best epoch's). `meta` gives the training metadata of a state from its
/// validation score. A stop request (Ctrl-C) saves the step reached and comes back as
/// [`Error::Interrupted`] saying how to continue; a divergence writes nothing more and says
/// which save, if any, is kept.
#[allow(clippy::too_many_arguments)]
fn fit_and_save(
    gpu: &Gpu,
    net: &mut Network,
    source: &dyn ImageSource,
    idx: &[usize],
    opts: &TrainLoop,
    augment: Option<train::Augment<'_>>,
    validation: Option<&train::Validation<'_>>,
    saving: &Saving,
    out_path: &Path,
    meta: &dyn Fn(Option<Score>) -> TrainingMeta,
    report: &mut dyn FnMut(&train::Progress, &[String]),
    on_epoch: &mut dyn FnMut(&Network, &EpochEnd) -> Result<()>,
) -> Result<train::Fitted> {
    let spe = (idx.len() / net.batch()).max(1) as u32;
    let epochs = opts.epochs;
    // The step this run ends at: a run that starts mid-epoch finishes that epoch as its first.
    let target = (net.step() / spe + epochs as u32) * spe;
    let last_save = std::cell::Cell::new(None::<u32>);
    // A divergence says what stays on disk: the last save of this run, or nothing.
    let kept = |e: Error| match e {
        Error::Diverged {
            step, epoch, what, ..
        } => Error::Diverged {
            step,
            epoch,
            what,
            kept: match last_save.get() {
                Some(s) => format!(
                    "; nothing more was written: {} (saved at step {s}) is the last good save",
                    out_path.display()
                ),
                None => format!("; nothing was written to {}", out_path.display()),
            },
        },
        e => e,
    };
    let mut done = 0;
    let fitted = train::fit(
        gpu,
        net,
        source,
        idx,
        opts,
        augment,
        validation,
        report,
        &mut |net, e| {
            on_epoch(net, e)?;
            done += 1;
            if let Some(every) = saving.every {
                if done % every == 0 && done < epochs {
                    save_state(gpu, net, out_path, spe, meta(e.val))?;
                    last_save.set(Some(net.step()));
                }
            }
            Ok(())
        },
    );
    let fitted = match fitted {
        Ok(f) => f,
        Err(Error::Interrupted { step, .. }) => {
            let optim = save_state(gpu, net, out_path, spe, meta(None)).map_err(kept)?;
            let more = target.saturating_sub(step).div_ceil(spe);
            let how = if more == 0 {
                "every epoch asked for was done".to_string()
            } else {
                format!(
                    "continue with `--resume {} --epochs {more}` and the same data, \
                     --batch-size, --seed and other training flags",
                    out_path.display()
                )
            };
            return Err(Error::Interrupted {
                step,
                saved: format!(
                    " (epoch {}, step {} of {spe}): saved {} and {}; {how}",
                    step.div_ceil(spe),
                    (step - 1) % spe + 1,
                    out_path.display(),
                    optim.display()
                ),
            });
        }
        Err(e) => return Err(kept(e)),
    };
    // The written state's own validation score: the kept epoch's, or the last one's.
    let written = match fitted.kept {
        Some(_) => fitted.best,
        None => fitted.epochs.last().and_then(|e| e.val),
    };
    save_state(gpu, net, out_path, spe, meta(written)).map_err(kept)?;
    // Ctrl-C during the last save: the save finished, and the run stops as asked.
    if train::stop_requested() {
        return Err(Error::Interrupted {
            step: net.step(),
            saved: format!(
                ": every epoch asked for was done and saved in {}",
                out_path.display()
            ),
        });
    }
    Ok(fitted)
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
            let st = checkpoint::load_training(path)?;
            check_classes(path, &st.checkpoint.config)?;
            (st.checkpoint, Some((st.m, st.v, st.step)), st.meta)
        }
        None => {
            // The parameters are one device buffer: a network too large for it fails here,
            // before a gigabyte is initialised on the CPU for nothing.
            let table = ParamTable::new(&config);
            gpu.check_size("params", 4 * table.packed_len() as u64, true)?;
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
    let lm = data.landmarks_of(false);
    let (ch, size) = (config.in_channels, config.image_size);
    let augment =
        fer_cbam::data::augment::training(job.occlusion_mix, augmentation, job.seed, ch, size, lm);
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
    let mut unreadable = BTreeSet::new();
    let meta = |validation: Option<Score>| TrainingMeta {
        crop: job.crop,
        recipe: recipe.to_json(&schedule, job.occlusion_mix),
        validation: validation.map(|s| ValidationMeta {
            fraction: recipe.val_fraction,
            seed: job.split_seed,
            grouped: job.grouped,
            epoch: s.epoch,
            accuracy: s.accuracy,
            loss: s.loss,
        }),
    };
    let armed = Armed::new();
    let fitted = fit_and_save(
        gpu,
        &mut net,
        data.train(),
        &idx,
        &opts,
        fer_cbam::data::augment::as_augment(&augment),
        validation.as_ref(),
        &job.saving,
        job.out_path,
        &meta,
        &mut |p, failures| {
            for f in failures {
                // Named once: a broken file fails the same way every epoch.
                if unreadable.insert(f.clone()) {
                    bar.suspend(|| {
                        super::warn_line(format!(
                            "warning: unreadable, its row of the batch filled with a copy of a \
                             readable image: {f}"
                        ))
                    });
                }
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
    drop(armed);
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
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
        unreadable: unreadable.into_iter().collect(),
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
    let net = pollster::block_on(InferenceNetwork::from_checkpoint(gpu, &ck, batch))?;
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
