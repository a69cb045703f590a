//! `fer-cbam train`: one model, trained on the embedded synthetic faces or --data, saved with
//! its optimizer state (for --resume), and evaluated on the held-out test side. Ctrl-C saves
//! the step reached; a progress bar shows steps, loss, accuracy and the learning rate.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use fer_cbam::model::checkpoint::{self, FaceCrop, TrainingMeta, ValidationMeta};
use fer_cbam::model::{ModelConfig, Network, ParamTable, TrainOptions};
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::sources::Data;
use fer_cbam::train::{self, EpochEnd, Evaluation, ImageSource, LrSchedule, Score, TrainLoop};
use fer_cbam::{Error, Gpu, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::config::ConfigArgs;
use super::data::DataArgs;
use super::recipe::RecipeArgs;
use super::report;

/// `fer-cbam train`.
#[derive(clap::Args)]
pub struct Args {
    /// Output checkpoint (.safetensors); the optimizer state goes beside it
    /// (.optim.safetensors) for --resume. Both are checked writable before training starts.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from this checkpoint and its optimizer state (its config is used); the two
    /// must be a pair saved together (same step, matching parameters). A run stopped
    /// mid-epoch continues that epoch, which counts as the first of --epochs. It may be the
    /// same path as --out (the run continues in place).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Epochs to train (at least 1; `init` writes an untrained checkpoint).
    #[arg(long, value_parser = super::epochs, default_value_t = 10)]
    pub epochs: usize,
    /// Also save --out (and its optimizer state) every N epochs during training, not only
    /// at the end. Ctrl-C always saves the step reached, then stops.
    #[arg(long, value_name = "N", value_parser = super::every)]
    pub checkpoint_every: Option<usize>,
    /// Training batch size.
    #[arg(long, value_parser = super::batch_size, default_value_t = 64)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, value_parser = super::positive, default_value_t = 1e-3)]
    pub lr: f64,
    /// Decoupled (AdamW) weight decay.
    #[arg(long, value_parser = super::non_negative, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Seed of the initialisation, the shuffling and the dropout masks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dropout probability of the head.
    #[arg(long, value_parser = super::dropout, default_value_t = 0.2)]
    pub dropout: f32,
    /// Fraction of training images that get one of the paper's five occlusions (random
    /// 8/16/24 px patch, eyes, mouth), redrawn every epoch.
    #[arg(long, value_parser = super::fraction, default_value_t = 0.0)]
    pub occlusion_mix: f64,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// No progress bar, only the final report.
    #[arg(long)]
    pub quiet: bool,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let Args {
        out,
        resume,
        recipe,
        data,
        quiet,
        json,
        ..
    } = args;
    let (quiet, json) = (*quiet, *json);
    // Everything that can fail before training is checked before training: where the results
    // go first (a run must not end on a missing folder), then what is resumed.
    let mut inputs = data.input_files();
    // The pair being resumed is an input too, unless the run continues it in place.
    if let Some(r) = resume
        .as_ref()
        .filter(|r| !fer_cbam::files::same_file(r, out))
    {
        inputs.extend([r.clone(), checkpoint::optimizer_path(r)]);
    }
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    checkpoint::check_pair_outputs(out, &inputs)?;
    // A resumed run takes its config from the checkpoint it continues, once the checkpoint and
    // its optimizer state are known to be a pair, and its face crop unless --crop says
    // otherwise.
    let (c, trained_crop) = match resume {
        Some(path) => {
            let st = checkpoint::load_training(path)?;
            (st.checkpoint.config, st.meta.and_then(|t| t.crop))
        }
        None => {
            let mut c = args.config.config(recipe.default_norm())?;
            c.dropout = args.dropout;
            c.validate()?;
            (c, None)
        }
    };
    recipe.check(c.image_size)?;
    let crop = data.crop_for(trained_crop)?;
    let gpu = super::new_gpu()?;
    let d = data.load_with(crop, quiet || json)?;
    let adam = AdamConfig {
        lr: args.lr,
        weight_decay: args.weight_decay,
        ..Default::default()
    };
    let o = Output { quiet, json };
    o.say(format!("device: {}", gpu.summary()));
    let classes = c.classes.clone();
    install_interrupt_handler();
    let job = TrainJob {
        out_path: out,
        resume: resume.as_deref(),
        epochs: args.epochs,
        batch: args.batch_size,
        adam,
        seed: args.seed,
        strict: data.strict,
        occlusion_mix: args.occlusion_mix,
        recipe,
        split_seed: data.split_seed,
        grouped: data.group_by == "subject",
        crop,
        saving: Saving {
            every: args.checkpoint_every,
        },
    };
    let t = train(&gpu, c, &d, &job, &o)?;
    if json {
        let mut v = report::json(&t.eval, &classes);
        v["train_seconds"] = serde_json::json!(t.seconds);
        v["checkpoint"] = serde_json::json!(out);
        v["lr_schedule"] = serde_json::json!(t.schedule);
        v["augmentation"] = serde_json::json!(recipe.augmentation());
        v["epochs"] = serde_json::json!(t.epochs);
        v["validation"] = serde_json::json!({
            "images": t.val_images,
            "best": t.best,
            "kept_epoch": t.kept,
        });
        v["crop"] = serde_json::json!(d.crop());
        v["unreadable"] = serde_json::json!(report::all_unreadable(&t.eval, &t.unreadable));
        v["train_unreadable"] = serde_json::json!(t.unreadable);
        super::print_line(v);
    } else {
        super::print_line(format!("test: {}", report::text(&t.eval, &classes)));
        if !t.unreadable.is_empty() {
            super::print_text(report::unreadable_lines(
                "training images could not be read; each time, its row of the batch was \
                 filled with a copy of a readable image of the same batch",
                &t.unreadable,
            ));
        }
    }
    Ok(())
}

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
/// What [`fit_and_save`] trains on and where it saves.
struct Fit<'a> {
    source: &'a dyn ImageSource,
    idx: &'a [usize],
    opts: &'a TrainLoop,
    augment: Option<train::Augment<'a>>,
    validation: Option<&'a train::Validation<'a>>,
    saving: &'a Saving,
    out_path: &'a Path,
    /// The training metadata of a state, from its validation score.
    meta: &'a dyn Fn(Option<Score>) -> TrainingMeta,
}

fn fit_and_save(
    gpu: &Gpu,
    net: &mut Network,
    fit: &Fit<'_>,
    report: &mut dyn FnMut(&train::Progress, &[String]),
    on_epoch: &mut dyn FnMut(&Network, &EpochEnd) -> Result<()>,
) -> Result<train::Fitted> {
    let Fit {
        source,
        idx,
        opts,
        augment,
        validation,
        saving,
        out_path,
        meta,
    } = *fit;
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
pub fn train(
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
            super::eval::check_classes(path, &st.checkpoint.config)?;
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
        &Fit {
            source: data.train(),
            idx: &idx,
            opts: &opts,
            augment: fer_cbam::data::augment::as_augment(&augment),
            validation: validation.as_ref(),
            saving: &job.saving,
            out_path: job.out_path,
            meta: &meta,
        },
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
