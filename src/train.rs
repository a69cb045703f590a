//! Training and evaluation loops (native only: a CPU thread decodes and occludes the next batch
//! while the GPU trains on this one), the learning-rate schedule they follow, and model
//! selection on a validation split.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::metrics::{self, Metrics};
use crate::model::network::{Network, HISTORY};
use crate::model::Evaluate;
use crate::rng::SplitMix64;

pub mod schedule;
pub use schedule::{Decay, LrSchedule};

/// Anything that yields labelled images: the synthetic faces, a folder, a CSV.
pub trait ImageSource: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Example `i`: pixels `[channels, size, size]` (0..255; occluders are 0) and its label.
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)>;
    /// Where example `i` came from, for error messages (a path, or "synthetic #i").
    fn describe(&self, i: usize) -> String;
}

/// A request to stop training, process-wide because Ctrl-C is: [`train`] checks it after every
/// step it submits and returns [`Error::Interrupted`] with the network at a whole step, ready
/// to be saved and resumed exactly.
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running [`train`] to stop after its current step (a signal handler may call it).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested and not yet cleared.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Clears a stop request (before a new run).
pub fn clear_stop() {
    STOP.store(false, Ordering::SeqCst);
}

/// One batch prepared on the CPU thread.
struct Prepared {
    images: Vec<f32>,
    labels: Vec<u32>,
    /// Rows that are real examples (the rest repeat the last one to fill the batch).
    real: usize,
    /// Examples that failed to load and were replaced (non-strict mode), and why.
    failures: Vec<String>,
    /// The indices of those examples, in the same order.
    failed: Vec<usize>,
    /// The examples behind the real rows, in row order.
    loaded: Vec<usize>,
}

/// What a training run reports after each readback.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub epoch: usize,
    pub step: u32,
    pub steps_per_epoch: usize,
    /// Mean loss and accuracy over the steps read back so far this epoch.
    pub loss: f64,
    pub accuracy: f64,
    pub images_per_second: f64,
    /// Examples that could not be loaded so far (reported, replaced, counted).
    pub failures: usize,
    /// Learning rate of the last step.
    pub lr: f64,
}

/// Training options of the loop (the optimizer's live in the network).
#[derive(Clone, Debug)]
pub struct TrainLoop {
    pub epochs: usize,
    pub seed: u64,
    /// Stop at the first unreadable example instead of counting it and going on.
    pub strict: bool,
    /// The learning rate of every step; `None` keeps the rate the network has.
    pub schedule: Option<LrSchedule>,
}

/// A per-example transform applied on the CPU thread before the /255 mapping (occlusion as
/// augmentation); gets the pixels, the example index and the epoch.
pub type Augment<'a> = &'a (dyn Fn(&mut [u8], usize, usize) + Sync);

fn prepare(
    source: &dyn ImageSource,
    indices: &[usize],
    batch: usize,
    channels: usize,
    size: usize,
    strict: bool,
    augment: Option<(Augment<'_>, usize)>,
) -> Result<Prepared> {
    let plane = channels * size * size;
    let mut images = Vec::with_capacity(batch * plane);
    let mut labels = Vec::with_capacity(batch);
    let mut failures = Vec::new();
    let mut failed = Vec::new();
    let mut loaded = Vec::with_capacity(batch);
    for &i in indices {
        match source.load(i, channels, size) {
            Ok((mut px, y)) => {
                if let Some((f, epoch)) = augment {
                    f(&mut px, i, epoch);
                }
                images.extend(px.iter().map(|&p| p as f32 / 255.0));
                labels.push(y);
                loaded.push(i);
            }
            Err(e) if !strict => {
                failures.push(e.to_string());
                failed.push(i);
            }
            Err(e) => return Err(e),
        }
    }
    let real = labels.len();
    if real == 0 {
        // Nothing to fill the batch with: evaluation skips it, training stops on it.
        return Ok(Prepared {
            images,
            labels,
            real,
            failures,
            failed,
            loaded,
        });
    }
    while labels.len() < batch {
        let last = images[(real - 1) * plane..real * plane].to_vec();
        images.extend(last);
        labels.push(labels[real - 1]);
    }
    Ok(Prepared {
        images,
        labels,
        real,
        failures,
        failed,
        loaded,
    })
}

/// Trains `net` on `indices` of `source` for `opts.epochs`, shuffling each epoch (seeded), the
/// last partial batch dropped. Calls `report` after every readback (every HISTORY steps and at
/// the end of each epoch). Returns the last progress.
///
/// A network stopped in the middle of an epoch (its step count is not a multiple of the steps
/// per epoch) continues that epoch where it stopped, which counts as the first of
/// `opts.epochs`. A non-finite loss in a readback stops with [`Error::Diverged`]; a stop request
/// ([`request_stop`]) with [`Error::Interrupted`] after the step in flight.
pub fn train(
    gpu: &Gpu,
    net: &mut Network,
    source: &dyn ImageSource,
    indices: &[usize],
    opts: &TrainLoop,
    augment: Option<Augment<'_>>,
    report: &mut dyn FnMut(&Progress, &[String]),
) -> Result<Progress> {
    let batch = net.batch();
    let (channels, size) = (net.config().in_channels, net.config().image_size);
    let steps_per_epoch = indices.len() / batch;
    if steps_per_epoch == 0 {
        return Err(Error::InvalidConfig {
            op: "train".into(),
            message: format!(
                "{} training examples do not fill one batch of {batch}",
                indices.len()
            ),
        });
    }
    // Epochs are numbered from the network's step count, and each epoch's order and occlusions
    // depend only on (seed, epoch): a run resumed from a checkpoint continues exactly as the
    // uninterrupted run would have.
    let first_epoch = net.step() as usize / steps_per_epoch;
    if let Some(s) = &opts.schedule {
        s.validate()?;
        if s.decay == Decay::Cosine && first_epoch + opts.epochs > s.total_epochs {
            return Err(Error::InvalidConfig {
                op: "train".into(),
                message: format!(
                    "the run would end at epoch {}, past the end of its cosine schedule at epoch {}",
                    first_epoch + opts.epochs,
                    s.total_epochs
                ),
            });
        }
    }
    let done_in_first = net.step() as usize % steps_per_epoch;
    let mut progress = Progress {
        steps_per_epoch,
        lr: net.lr(),
        ..Progress::default()
    };
    for epoch in first_epoch..first_epoch + opts.epochs {
        let mut rng = SplitMix64(opts.seed ^ (epoch as u64).wrapping_mul(0xA076_1D64_78BD_642F));
        let mut order = indices.to_vec();
        // Fisher-Yates with our own generator: the same seed, the same order, everywhere.
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let started = std::time::Instant::now();
        let (mut loss_sum, mut correct_sum, mut steps_read) = (0.0f64, 0.0f64, 0usize);
        let first_step = net.step();
        let read_history = |net: &Network, upto: u32, from: u32| -> Result<(f64, f64, usize)> {
            // Rows of steps from+1 ..= upto, at most HISTORY of them. This waits for the step
            // just submitted: the device idles once per HISTORY steps, not once per step.
            let (index, fut) = gpu.read_later(net.history());
            gpu.wait_for(index)?;
            let h = pollster::block_on(fut)?;
            let (mut l, mut c, mut k) = (0.0, 0.0, 0);
            for t in from + 1..=upto {
                let row = (t as usize - 1) % HISTORY;
                let loss = h[2 * row] as f64;
                // The history is already here: divergence costs no readback of its own.
                if !loss.is_finite() {
                    return Err(Error::Diverged {
                        step: t,
                        epoch: epoch + 1,
                        what: format!("the loss is {loss}"),
                        kept: String::new(),
                    });
                }
                l += loss;
                c += h[2 * row + 1] as f64;
                k += 1;
            }
            Ok((l, c, k))
        };
        // Batches of this epoch that a stopped run already trained on.
        let skip = if epoch == first_epoch {
            done_in_first
        } else {
            0
        };
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = sync_channel::<Result<Prepared>>(2);
            let order = &order;
            scope.spawn(move || {
                for chunk in order.chunks_exact(batch).skip(skip) {
                    let p = prepare(
                        source,
                        chunk,
                        batch,
                        channels,
                        size,
                        opts.strict,
                        augment.map(|f| (f, epoch)),
                    );
                    let stop = p.is_err();
                    if tx.send(p).is_err() || stop {
                        return;
                    }
                }
            });
            let mut last_read = first_step;
            for (k, prepared) in rx.iter().enumerate() {
                let p = prepared?;
                if p.real == 0 {
                    return Err(Error::Data {
                        path: p.failures.join("; "),
                        message: "no example of this batch could be loaded".into(),
                    });
                }
                progress.failures += p.failures.len();
                if let Some(s) = &opts.schedule {
                    // A queued uniform write, applied before this step's submission; skipped
                    // while the rate stays the same.
                    let lr = s.lr(net.step() + 1, steps_per_epoch);
                    if lr != net.lr() {
                        net.set_lr(gpu, lr)?;
                    }
                    progress.lr = lr;
                }
                net.write_batch(gpu, &p.images, &p.labels)?;
                net.train_step(gpu, true)?;
                let done = skip + k + 1 == steps_per_epoch;
                if net.step() - last_read >= HISTORY as u32 || done {
                    let (l, c, n) = read_history(net, net.step(), last_read)?;
                    last_read = net.step();
                    loss_sum += l;
                    correct_sum += c;
                    steps_read += n;
                    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
                    progress.epoch = epoch;
                    progress.step = net.step();
                    progress.loss = loss_sum / steps_read as f64;
                    progress.accuracy = correct_sum / (steps_read * batch) as f64;
                    progress.images_per_second = ((k + 1) * batch) as f64 / elapsed;
                    report(&progress, &p.failures);
                } else if !p.failures.is_empty() {
                    report(&progress, &p.failures);
                }
                if stop_requested() {
                    return Err(Error::Interrupted {
                        step: net.step(),
                        saved: String::new(),
                    });
                }
            }
            Ok(())
        })?;
    }
    Ok(progress)
}

/// A validation score: accuracy, with the mean cross-entropy breaking ties (small validation
/// sets tie often).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The epoch (1-based, counted over the whole run and its resumptions) it was measured after.
    pub epoch: usize,
    pub accuracy: f64,
    pub loss: f64,
}

impl Score {
    pub fn of(epoch: usize, e: &Evaluation) -> Score {
        Score {
            epoch,
            accuracy: e.accuracy(),
            loss: e.loss(),
        }
    }
    /// Strictly better: higher accuracy, or equal accuracy and lower loss.
    pub fn beats(&self, other: &Score) -> bool {
        self.accuracy > other.accuracy
            || (self.accuracy == other.accuracy && self.loss < other.loss)
    }
}

/// Held-out training examples evaluated (clean) after every epoch, for model selection.
pub struct Validation<'a> {
    pub source: &'a dyn ImageSource,
    pub indices: &'a [usize],
    /// Put back, at the end, the state of the epoch with the best score.
    pub keep_best: bool,
    /// The best score of the run this one resumes: the starting state counts as an epoch with
    /// that score, so a resumed run keeps it unless an epoch beats it, as the uninterrupted run
    /// would have.
    pub previous_best: Option<Score>,
}

/// One finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochEnd {
    /// 1-based, counted over the whole run and its resumptions.
    pub epoch: usize,
    pub step: u32,
    /// Mean training loss and accuracy over the epoch's steps.
    pub loss: f64,
    pub accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    pub val: Option<Score>,
    /// Whether this epoch's score is the best so far.
    pub best: bool,
}

/// What [`fit`] did.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub last: Progress,
    pub epochs: Vec<EpochEnd>,
    /// The best validation score, from this run or the one it resumed.
    pub best: Option<Score>,
    /// With `keep_best`: the epoch whose state the network holds at the end.
    pub kept: Option<usize>,
}

/// [`train`] for `opts.epochs` epochs, one at a time, with a validation evaluation after each
/// when `validation` is given (one readback per evaluation, between steps) and, with
/// `keep_best`, the best epoch's state kept in a device-side [`Snapshot`](crate::model::Snapshot)
/// and restored at the end. `on_epoch` sees the network after every epoch (before any restore).
#[allow(clippy::too_many_arguments)]
pub fn fit(
    gpu: &Gpu,
    net: &mut Network,
    source: &dyn ImageSource,
    indices: &[usize],
    opts: &TrainLoop,
    augment: Option<Augment<'_>>,
    validation: Option<&Validation<'_>>,
    report: &mut dyn FnMut(&Progress, &[String]),
    on_epoch: &mut dyn FnMut(&Network, &EpochEnd) -> Result<()>,
) -> Result<Fitted> {
    if let Some(v) = validation {
        if v.indices.is_empty() {
            return Err(Error::InvalidConfig {
                op: "validation".into(),
                message: "the validation split is empty".into(),
            });
        }
    }
    let keep = validation.filter(|v| v.keep_best);
    let mut best = validation.and_then(|v| v.previous_best);
    // Allocated once, before the first step; overwritten by copies on the device.
    let mut snapshot = match keep {
        Some(_) => Some(net.snapshot(gpu)?),
        None => None,
    };
    let mut kept = keep.and(best).map(|b| b.epoch);
    let mut epochs = Vec::with_capacity(opts.epochs);
    let mut last = Progress::default();
    let one = TrainLoop {
        epochs: 1,
        ..opts.clone()
    };
    for _ in 0..opts.epochs {
        // One epoch per call: train() numbers epochs from the network's step count, so this is
        // the same run as one call with all epochs, with a point to evaluate at.
        let mut seen = None;
        train(gpu, net, source, indices, &one, augment, &mut |p, f| {
            seen = Some(p.clone());
            report(p, f)
        })?;
        last = seen.expect("an epoch reports at least once");
        let epoch = last.epoch + 1;
        let val = match validation {
            Some(v) => Some(Score::of(
                epoch,
                &evaluate(gpu, net, v.source, v.indices, opts.strict, None)?,
            )),
            None => None,
        };
        let improved = val.is_some_and(|s| best.is_none_or(|b| s.beats(&b)));
        if improved {
            best = val;
            if let Some(snap) = snapshot.as_mut() {
                net.save_snapshot(gpu, snap)?;
                kept = Some(epoch);
            }
        }
        let end = EpochEnd {
            epoch,
            step: net.step(),
            loss: last.loss,
            accuracy: last.accuracy,
            lr: last.lr,
            val,
            best: improved,
        };
        on_epoch(net, &end)?;
        epochs.push(end);
    }
    if let (Some(snap), Some(k)) = (&snapshot, kept) {
        if epochs.last().is_none_or(|e| e.epoch != k) {
            net.restore_snapshot(gpu, snap)?;
        }
    }
    Ok(Fitted {
        last,
        epochs,
        best,
        kept,
    })
}

/// Classification results over a set.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// `[n, K]` probabilities of every example, in the order given.
    pub probs: Vec<f32>,
    pub labels: Vec<u32>,
    pub classes: usize,
    /// Examples that could not be loaded (non-strict) and were left out, and why...
    pub failures: Vec<String>,
    /// ... and their indices in the source, in the same order.
    pub failed: Vec<usize>,
}

impl Evaluation {
    /// Each example's predicted class ([`metrics::argmax`] of its row).
    pub fn predictions(&self) -> Vec<u32> {
        metrics::predictions(&self.probs, self.classes)
            .into_iter()
            .map(|p| p as u32)
            .collect()
    }
    /// `confusion[true][predicted]`.
    pub fn confusion(&self) -> Vec<Vec<usize>> {
        metrics::confusion(&self.probs, &self.labels, self.classes)
    }
    pub fn accuracy(&self) -> f64 {
        metrics::accuracy(&self.confusion())
    }
    /// Per class: (precision, recall, F1, support); a class never predicted has precision 0.
    pub fn per_class(&self) -> Vec<(f64, f64, f64, usize)> {
        metrics::class_scores(&self.confusion())
            .into_iter()
            .map(|s| (s.precision, s.recall, s.f1, s.support))
            .collect()
    }
    /// Everything [`Metrics`] reports of this evaluation; `classes` names its K columns.
    ///
    /// # Panics
    /// When `classes.len()` differs from the evaluation's class count (see [`Metrics::new`]).
    pub fn metrics(&self, classes: &[String]) -> Metrics {
        assert_eq!(
            classes.len(),
            self.classes,
            "Evaluation::metrics: {} class names for an evaluation of {} classes",
            classes.len(),
            self.classes
        );
        Metrics::new(&self.probs, &self.labels, classes)
    }
    /// Mean cross-entropy `-ln p(label)` (a probability that rounded to 0 counts as the
    /// smallest positive f32).
    pub fn loss(&self) -> f64 {
        let n = self.labels.len();
        let total: f64 = self
            .probs
            .chunks_exact(self.classes)
            .zip(&self.labels)
            .map(|(row, &y)| -(row[y as usize].max(f32::MIN_POSITIVE) as f64).ln())
            .sum();
        total / n.max(1) as f64
    }
    /// Unweighted mean of the per-class F1 over classes present in the labels.
    pub fn macro_f1(&self) -> f64 {
        metrics::macro_f1(&metrics::class_scores(&self.confusion()))
    }
}

/// Runs the network in evaluation mode over `indices` of `source`; probabilities are copied
/// into one device buffer and read back once at the end.
pub fn evaluate(
    gpu: &Gpu,
    net: &dyn Evaluate,
    source: &dyn ImageSource,
    indices: &[usize],
    strict: bool,
    augment: Option<Augment<'_>>,
) -> Result<Evaluation> {
    let batch = net.batch();
    let k = net.config().classes.len();
    let (channels, size) = (net.config().in_channels, net.config().image_size);
    let batches = indices.len().div_ceil(batch).max(1);
    let all = gpu.zeros("eval.probs", &[batches * batch, k])?;
    let mut labels = Vec::with_capacity(indices.len());
    let mut rows = Vec::with_capacity(indices.len());
    let mut evaluated = Vec::with_capacity(indices.len());
    let mut failures = Vec::new();
    let mut failed = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = sync_channel::<Result<Prepared>>(2);
        scope.spawn(move || {
            for chunk in indices.chunks(batch) {
                let p = prepare(
                    source,
                    chunk,
                    batch,
                    channels,
                    size,
                    strict,
                    augment.map(|f| (f, 0)),
                );
                let stop = p.is_err();
                if tx.send(p).is_err() || stop {
                    return;
                }
            }
        });
        for (b, prepared) in rx.iter().enumerate() {
            let p = prepared?;
            if p.real == 0 {
                failures.extend(p.failures);
                failed.extend(p.failed);
                continue;
            }
            net.write_batch(gpu, &p.images, &p.labels)?;
            net.forward_eval_into(gpu, &all, b * batch)?;
            labels.extend_from_slice(&p.labels[..p.real]);
            rows.extend((0..p.real).map(|r| b * batch + r));
            evaluated.extend_from_slice(&p.loaded);
            failures.extend(p.failures);
            failed.extend(p.failed);
        }
        Ok(())
    })?;
    let (index, fut) = gpu.read_later(&all);
    gpu.wait_for(index)?;
    let flat = pollster::block_on(fut)?;
    // NaN scores would all compare false and make every image the first class; finite weights
    // can still overflow f32 on the way to them.
    for (j, &r) in rows.iter().enumerate() {
        if let Some(p) = flat[r * k..(r + 1) * k].iter().find(|p| !p.is_finite()) {
            let i = evaluated[j];
            return Err(Error::Data {
                path: source.describe(i),
                message: format!(
                    "the network's output for this image is {p}: the parameters overflow f32"
                ),
            });
        }
    }
    let probs = rows
        .iter()
        .flat_map(|&r| flat[r * k..(r + 1) * k].iter().copied())
        .collect();
    Ok(Evaluation {
        probs,
        labels,
        classes: k,
        failures,
        failed,
    })
}
