//! `train`, `eval` and `predict`: data selection, progress, reports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use clap::Args;
use fer_cbam::data::dataset::{self, Format, Pixels, Sample};
use fer_cbam::data::face::{self, FaceBox};
use fer_cbam::data::occlusion::Template;
use fer_cbam::data::{folder, split};
use fer_cbam::model::{checkpoint, ModelConfig, Network, ParamTable, TrainOptions};
use fer_cbam::ops::adam::AdamConfig;
use fer_cbam::sources::{DatasetSource, SyntheticSource};
use fer_cbam::train::{self, Evaluation, ImageSource, TrainLoop};
use fer_cbam::{Error, Gpu, Result};
use indicatif::{ProgressBar, ProgressStyle};

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
    #[arg(long, value_parser = crate::cli::synthetic_count, default_value_t = 3500)]
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
    pub fn describe(&self) -> String {
        match self {
            Data::Synthetic { train, test } => format!(
                "synthetic faces (seed {}): {} train, {} test",
                train.seed, train.len, test.len
            ),
            Data::Folder { train, test, note } => {
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
    pub fn load(&self) -> Result<Data> {
        let Some(root) = &self.data else {
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
        let mut note = format!("{}", root.display());
        for s in &ds.skipped {
            note += &format!(" (skipped {} with {} entries)", s.path.display(), s.entries);
        }
        for n in &ds.notes {
            note += &format!(" ({n})");
        }
        note += &format!(" ({})", ds.landmark_summary());
        let template = self.landmarks;
        if ds.has_splits {
            let train = DatasetSource::new(&ds, template, |s| s.split == folder::Split::Train);
            let test = DatasetSource::new(&ds, template, |s| s.split == folder::Split::Test);
            return Ok(Data::Folder { train, test, note });
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
        })
    }
}

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

/// Reads the network's parameters and Adam state back and saves them as `out_path` and its
/// optimizer state, as one pair (see [`checkpoint::save_training`]).
/// Parameters that are no longer finite are a divergence the loss has not shown yet (the last
/// update ran after the last loss): nothing is written then.
fn save_state(gpu: &Gpu, net: &Network, out_path: &Path, spe: u32) -> Result<PathBuf> {
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
    let (m, v) = net.adam_state();
    let (m, v) = (gpu.read_blocking(m)?, gpu.read_blocking(v)?);
    checkpoint::save_training(out_path, net.config(), &params, &m, &v, net.step())
}

/// Trains `epochs` epochs, saving `out_path` every `saving.every` epochs and at the end. A stop
/// request (Ctrl-C) saves the step reached and comes back as [`Error::Interrupted`] saying how
/// to continue; a divergence writes nothing and says which save, if any, is kept.
#[allow(clippy::too_many_arguments)]
fn train_and_save(
    gpu: &Gpu,
    net: &mut Network,
    source: &dyn ImageSource,
    idx: &[usize],
    epochs: usize,
    seed: u64,
    strict: bool,
    augment: Option<train::Augment<'_>>,
    saving: &Saving,
    out_path: &Path,
    report: &mut dyn FnMut(&train::Progress, &[String]),
) -> Result<()> {
    let spe = (idx.len() / net.batch()).max(1) as u32;
    // The step this run ends at: a run that starts mid-epoch finishes that epoch as its first.
    let target = (net.step() / spe + epochs as u32) * spe;
    let every = saving.every.unwrap_or(epochs).clamp(1, epochs.max(1));
    let mut left = epochs;
    let mut last_save: Option<u32> = None;
    // A divergence says what stays on disk: the last save of this run, or nothing.
    let kept = |e: Error, last_save: Option<u32>| match e {
        Error::Diverged {
            step, epoch, what, ..
        } => Error::Diverged {
            step,
            epoch,
            what,
            kept: match last_save {
                Some(s) => format!(
                    "; nothing more was written: {} (saved at step {s}) is the last good save",
                    out_path.display()
                ),
                None => format!("; nothing was written to {}", out_path.display()),
            },
        },
        e => e,
    };
    while left > 0 {
        let n = every.min(left);
        let opts = TrainLoop {
            epochs: n,
            seed,
            strict,
        };
        let trained = train::train(gpu, net, source, idx, &opts, augment, &mut *report)
            .and_then(|_| save_state(gpu, net, out_path, spe).map(|_| ()));
        match trained {
            Ok(()) => {}
            Err(Error::Interrupted { step, .. }) => {
                let optim = save_state(gpu, net, out_path, spe).map_err(|e| kept(e, last_save))?;
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
            Err(e) => return Err(kept(e, last_save)),
        }
        left -= n;
        last_save = Some(net.step());
    }
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
    Ok(())
}

/// Trains and writes the checkpoint and its optimizer state; evaluates on the test side.
#[allow(clippy::too_many_arguments)]
pub fn train_command(
    gpu: &Gpu,
    config: ModelConfig,
    data: &Data,
    out_path: &Path,
    resume: Option<&Path>,
    epochs: usize,
    batch: usize,
    adam: AdamConfig,
    seed: u64,
    strict: bool,
    augment: Option<train::Augment<'_>>,
    out: &Output,
    saving: &Saving,
) -> Result<(Evaluation, f64, Vec<String>)> {
    let (config, packed, optim) = match resume {
        Some(path) => {
            let st = checkpoint::load_training(path)?;
            check_classes(path, &st.checkpoint.config)?;
            (
                st.checkpoint.config,
                st.checkpoint.packed,
                Some((st.m, st.v, st.step)),
            )
        }
        None => {
            // The parameters are one device buffer: a network too large for it fails here,
            // before a gigabyte is initialised on the CPU for nothing.
            let table = ParamTable::new(&config);
            gpu.check_size("params", 4 * table.packed_len() as u64, true)?;
            (config, table.init(seed), None)
        }
    };
    out.say(format!("data: {}", data.describe()));
    out.say(format!(
        "model: {}x{}x{}, widths {:?}, attention {:?}, {} parameters; batch {batch}, {epochs} epochs",
        config.in_channels,
        config.image_size,
        config.image_size,
        config.widths,
        config.attention,
        ParamTable::new(&config).count()
    ));
    let options = TrainOptions {
        adam,
        seed: seed as u32,
        class_weights: None,
    };
    let mut net = pollster::block_on(Network::new(gpu, &config, batch, options))?;
    net.write_params(gpu, &packed)?;
    if let Some((m, v, step)) = &optim {
        net.write_adam_state(gpu, m, v, *step)?;
        out.say(format!("resumed at step {step}"));
    }
    let idx: Vec<usize> = (0..data.train().len()).collect();
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
    let mut unreadable = BTreeSet::new();
    let armed = Armed::new();
    train_and_save(
        gpu,
        &mut net,
        data.train(),
        &idx,
        epochs,
        seed,
        strict,
        augment,
        saving,
        out_path,
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
                "epoch {}  loss {:.4}  acc {:.3}  {:.1} img/s",
                p.epoch + 1,
                p.loss,
                p.accuracy,
                p.images_per_second
            ));
        },
    )?;
    drop(armed);
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    out.say(format!(
        "trained {} steps in {seconds:.1} s; wrote {} and {}",
        net.step() - first_step,
        out_path.display(),
        checkpoint::optimizer_path(out_path).display()
    ));
    let test: Vec<usize> = (0..data.test().len()).collect();
    let eval = train::evaluate(gpu, &net, data.test(), &test, strict, None)?;
    Ok((eval, seconds, unreadable.into_iter().collect()))
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
    net.write_params(gpu, &ck.packed)?;
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
        s += &unreadable_lines("images could not be read and were left out", &e.failures);
    }
    s
}

/// "N <what>:" and one indented line per failure (each names its file).
pub fn unreadable_lines(what: &str, failures: &[String]) -> String {
    let mut s = format!("{} {what}:\n", failures.len());
    for f in failures {
        s += &format!("  {f}\n");
    }
    s
}

/// Every image that could not be read, training and test side, each once.
pub fn all_unreadable(e: &Evaluation, train: &[String]) -> Vec<String> {
    let all: BTreeSet<&String> = e.failures.iter().chain(train).collect();
    all.into_iter().cloned().collect()
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

/// An image, its top-3 classes with probabilities, and the face crop used (with
/// `--detect-face`: `Some(None)` when no face was found and the whole image was used); or why
/// it could not be predicted (`top` is then empty).
pub struct Prediction {
    pub path: PathBuf,
    pub top: Vec<(String, f32)>,
    pub face: Option<Option<FaceBox>>,
    pub error: Option<String>,
}

/// An [`ImageSource`] that remembers which examples failed to load, so that results can be
/// matched back to their images when unreadable ones are left out.
struct Recording<'a> {
    inner: &'a DatasetSource,
    failed: Mutex<BTreeSet<usize>>,
}

impl ImageSource for Recording<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        let r = self.inner.load(i, channels, size);
        if r.is_err() {
            self.failed.lock().unwrap().insert(i);
        }
        r
    }
    fn describe(&self, i: usize) -> String {
        self.inner.describe(i)
    }
}

/// Top-3 classes of each image (files, or every image in a folder); with `detect_face` (the
/// crop margin), each image is first cropped to its largest face. An image that cannot be
/// read (or searched for a face) gets its error instead, and the others are still predicted.
pub fn predict_command(
    gpu: &Gpu,
    path: &Path,
    inputs: &[PathBuf],
    detect_face: Option<f32>,
) -> Result<Vec<Prediction>> {
    let ck = checkpoint::load(path)?;
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
    let c = &ck.config;
    let batch = files.len().clamp(1, 32);
    let net = pollster::block_on(Network::new(gpu, c, batch, TrainOptions::default()))?;
    net.write_params(gpu, &ck.packed)?;
    let mut samples = Vec::with_capacity(files.len());
    // Per file: its sample's index, or why there is none; and the face crop.
    let mut slots: Vec<std::result::Result<usize, String>> = Vec::with_capacity(files.len());
    let mut faces = Vec::with_capacity(files.len());
    // One detector for all the images: the 1.2 MB model is parsed once, not per image.
    let mut detector = detect_face
        .map(|margin| face::FaceDetector::new().map(|d| (d, margin)))
        .transpose()?;
    for f in &files {
        let sample = match detector.as_mut() {
            Some((d, margin)) => face::face_sample(d, f, *margin).map(|(sample, crop)| {
                faces.push(Some(crop));
                sample
            }),
            None => {
                faces.push(None);
                Ok(Sample {
                    name: f.display().to_string(),
                    pixels: Pixels::File(f.clone()),
                    label: 0,
                    split: folder::Split::Unsplit,
                    group: None,
                    landmarks: None,
                })
            }
        };
        match sample {
            Ok(sample) => {
                slots.push(Ok(samples.len()));
                samples.push(sample);
            }
            Err(e) => {
                faces.push(None);
                slots.push(Err(e.to_string()));
            }
        }
    }
    let source = DatasetSource {
        samples,
        template: Template::Fer2013,
    };
    let recording = Recording {
        inner: &source,
        failed: Mutex::default(),
    };
    let idx: Vec<usize> = (0..source.len()).collect();
    let (e, failed) = if idx.is_empty() {
        (None, BTreeSet::new())
    } else {
        let e = train::evaluate(gpu, &net, &recording, &idx, false, None)?;
        (Some(e), recording.failed.into_inner().unwrap())
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
