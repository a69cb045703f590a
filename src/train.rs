//! Training and evaluation loops (native only: a CPU thread decodes and occludes the next batch
//! while the GPU trains on this one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::network::{Network, HISTORY};
use crate::model::params::SplitMix64;

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
    /// Examples that failed to load and were replaced (non-strict mode).
    failures: Vec<String>,
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
}

/// Training options of the loop (the optimizer's live in the network).
#[derive(Clone, Debug)]
pub struct TrainLoop {
    pub epochs: usize,
    pub seed: u64,
    /// Stop at the first unreadable example instead of counting it and going on.
    pub strict: bool,
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
            Err(e) if !strict => failures.push(e.to_string()),
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
    let done_in_first = net.step() as usize % steps_per_epoch;
    let mut progress = Progress {
        steps_per_epoch,
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

/// Classification results over a set.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// `[n, K]` probabilities of every example, in the order given.
    pub probs: Vec<f32>,
    pub labels: Vec<u32>,
    pub classes: usize,
    /// Examples that could not be loaded (non-strict) and were left out.
    pub failures: Vec<String>,
}

impl Evaluation {
    pub fn predictions(&self) -> Vec<u32> {
        self.probs
            .chunks_exact(self.classes)
            .map(|row| {
                let mut best = 0;
                for (j, &p) in row.iter().enumerate() {
                    if p > row[best] {
                        best = j;
                    }
                }
                best as u32
            })
            .collect()
    }
    /// `confusion[true][predicted]`.
    pub fn confusion(&self) -> Vec<Vec<usize>> {
        let mut m = vec![vec![0; self.classes]; self.classes];
        for (y, p) in self.labels.iter().zip(self.predictions()) {
            m[*y as usize][p as usize] += 1;
        }
        m
    }
    pub fn accuracy(&self) -> f64 {
        let hits = self
            .labels
            .iter()
            .zip(self.predictions())
            .filter(|(y, p)| **y == *p)
            .count();
        hits as f64 / self.labels.len().max(1) as f64
    }
    /// Per class: (precision, recall, F1, support); a class never predicted has precision 0.
    pub fn per_class(&self) -> Vec<(f64, f64, f64, usize)> {
        let m = self.confusion();
        (0..self.classes)
            .map(|c| {
                let tp = m[c][c] as f64;
                let predicted: usize = (0..self.classes).map(|r| m[r][c]).sum();
                let support: usize = m[c].iter().sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                (precision, recall, f1, support)
            })
            .collect()
    }
    /// Unweighted mean of the per-class F1 over classes present in the labels.
    pub fn macro_f1(&self) -> f64 {
        let pc: Vec<_> = self.per_class().into_iter().filter(|c| c.3 > 0).collect();
        pc.iter().map(|c| c.2).sum::<f64>() / pc.len().max(1) as f64
    }
}

/// Runs the network in evaluation mode over `indices` of `source`; probabilities are copied
/// into one device buffer and read back once at the end.
pub fn evaluate(
    gpu: &Gpu,
    net: &Network,
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
                continue;
            }
            net.write_batch(gpu, &p.images, &p.labels)?;
            net.forward_eval_into(gpu, &all, b * batch)?;
            labels.extend_from_slice(&p.labels[..p.real]);
            rows.extend((0..p.real).map(|r| b * batch + r));
            evaluated.extend_from_slice(&p.loaded);
            failures.extend(p.failures);
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
    })
}
