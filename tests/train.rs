//! The training and evaluation loops: a learnable toy task is learned, runs are reproducible,
//! unreadable examples are counted (or stop a strict run), and metrics add up.

mod common;
use common::*;

use fer_cbam::model::{ModelConfig, Network, Norm, ParamTable, TrainOptions};
use fer_cbam::train::{
    evaluate, fit, train, Evaluation, ImageSource, LrSchedule, Score, TrainLoop, Validation,
};
use fer_cbam::{Error, Result};

/// Class c is a bright square at one of 7 positions on a dark background, with noise.
struct Squares {
    n: usize,
    broken: Vec<usize>,
}

/// The squares with every label moved on by one: the better a model learns the squares, the
/// worse it scores here, so the best epoch on it is an early one, not the last.
struct Misnamed(Squares);

impl ImageSource for Misnamed {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        self.0
            .load(i, channels, size)
            .map(|(px, y)| (px, (y + 1) % 7))
    }
    fn describe(&self, i: usize) -> String {
        self.0.describe(i)
    }
}

impl ImageSource for Squares {
    fn len(&self) -> usize {
        self.n
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        if self.broken.contains(&i) {
            return Err(Error::Data {
                path: format!("square #{i}"),
                message: "corrupt".into(),
            });
        }
        let label = (i % 7) as u32;
        let noise = random(i as u64, size * size);
        let mut px = vec![0u8; channels * size * size];
        let (cy, cx) = (
            (label as usize / 3) * size / 3,
            (label as usize % 3) * size / 3,
        );
        for c in 0..channels {
            for y in 0..size {
                for x in 0..size {
                    let inside = y >= cy && y < cy + size / 3 && x >= cx && x < cx + size / 3;
                    let v = if inside { 200.0 } else { 40.0 } + 30.0 * noise[y * size + x];
                    px[(c * size + y) * size + x] = v as u8;
                }
            }
        }
        Ok((px, label))
    }
    fn describe(&self, i: usize) -> String {
        format!("square #{i}")
    }
}

fn setup(seed: u64) -> Network {
    setup_with(seed, Norm::None)
}

fn setup_with(seed: u64, norm: Norm) -> Network {
    let config = ModelConfig {
        image_size: 16,
        widths: vec![8, 16],
        dropout: 0.0,
        norm,
        ..ModelConfig::default()
    };
    let options = TrainOptions {
        seed: seed as u32,
        ..Default::default()
    };
    let mut net = block_on(Network::new(gpu(), &config, 14, options)).unwrap();
    let table = ParamTable::new(&config);
    net.write_params(gpu(), &table.init(seed)).unwrap();
    net.write_buffers(gpu(), &table.init_buffers(), 0).unwrap();
    net.set_lr(gpu(), 0.01).unwrap();
    net
}

#[test]
fn a_learnable_task_is_learned_and_reproducibly() {
    let data = Squares {
        n: 140,
        broken: vec![],
    };
    let idx: Vec<usize> = (0..140).collect();
    let run = || {
        let mut net = setup(1);
        let opts = TrainLoop {
            epochs: 15,
            seed: 3,
            strict: true,
            schedule: None,
        };
        let mut seen = Vec::new();
        let last = train(gpu(), &mut net, &data, &idx, &opts, None, &mut |p, _| {
            seen.push(p.loss)
        })
        .unwrap();
        let eval = evaluate(gpu(), &net, &data, &idx, true, None).unwrap();
        (seen, last, eval, read(net.params()))
    };
    let (losses, last, eval, params) = run();
    assert_eq!(last.steps_per_epoch, 10);
    assert_eq!(last.step, 150);
    assert!(
        losses.len() >= 15,
        "one readback per epoch at least: {losses:?}"
    );
    assert!(
        losses[0] > 1.5 && *losses.last().unwrap() < 0.5 * losses[0],
        "loss did not fall: {losses:?}"
    );
    assert!(eval.accuracy() > 0.9, "accuracy {}", eval.accuracy());
    assert_eq!(eval.labels.len(), 140);
    let (_, _, eval2, params2) = run();
    assert_eq!(
        params, params2,
        "same seed and data must give the same parameters"
    );
    assert_eq!(eval.probs, eval2.probs);
}

#[test]
fn evaluation_covers_a_partial_last_batch() {
    let data = Squares {
        n: 20,
        broken: vec![],
    };
    let net = setup(2);
    let idx: Vec<usize> = (0..20).collect();
    let eval = evaluate(gpu(), &net, &data, &idx, true, None).unwrap();
    assert_eq!(
        eval.labels,
        idx.iter().map(|i| (i % 7) as u32).collect::<Vec<_>>()
    );
    assert_eq!(eval.probs.len(), 20 * 7);
    for row in eval.probs.chunks(7) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // Example 19 sits in the second batch (14 + 6): its row must be its own, not padding.
    let single = evaluate(gpu(), &net, &data, &[19], true, None).unwrap();
    assert_eq!(&eval.probs[19 * 7..], &single.probs[..]);
}

#[test]
fn unreadable_examples_are_counted_or_stop_a_strict_run() {
    let data = Squares {
        n: 28,
        broken: vec![3, 17],
    };
    let idx: Vec<usize> = (0..28).collect();
    let mut net = setup(3);
    let mut reported = Vec::new();
    let opts = TrainLoop {
        epochs: 1,
        seed: 0,
        strict: false,
        schedule: None,
    };
    let p = train(gpu(), &mut net, &data, &idx, &opts, None, &mut |_, f| {
        reported.extend_from_slice(f)
    })
    .unwrap();
    assert_eq!(p.failures, 2);
    assert!(
        reported.iter().any(|r| r.contains("square #3"))
            && reported.iter().any(|r| r.contains("square #17"))
    );
    let strict = TrainLoop {
        strict: true,
        ..opts
    };
    let err = train(gpu(), &mut net, &data, &idx, &strict, None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt"), "{err}");
    let eval = evaluate(gpu(), &net, &data, &idx, false, None).unwrap();
    assert_eq!((eval.labels.len(), eval.failures.len()), (26, 2));
}

#[test]
fn metrics_follow_their_definitions() {
    // 3 classes; rows are one-hot predictions.
    let onehot = |c: usize| {
        (0..3)
            .map(|j| if j == c { 1.0 } else { 0.0 })
            .collect::<Vec<f32>>()
    };
    let preds = [0, 0, 1, 1, 1, 2, 0];
    let labels = vec![0, 0, 1, 1, 2, 2, 2];
    let e = Evaluation {
        probs: preds.iter().flat_map(|&c| onehot(c)).collect(),
        labels,
        classes: 3,
        failures: vec![],
        failed: vec![],
    };
    assert_eq!(
        e.confusion(),
        vec![vec![2, 0, 0], vec![0, 2, 0], vec![1, 1, 1]]
    );
    assert!((e.accuracy() - 5.0 / 7.0).abs() < 1e-12);
    let pc = e.per_class();
    assert!((pc[0].0 - 2.0 / 3.0).abs() < 1e-12 && (pc[0].1 - 1.0).abs() < 1e-12);
    assert!((pc[2].0 - 1.0).abs() < 1e-12 && (pc[2].1 - 1.0 / 3.0).abs() < 1e-12);
    assert!((pc[2].2 - 0.5).abs() < 1e-12);
    assert_eq!(pc[1].3, 2);
}

#[test]
fn the_best_validation_epoch_is_the_one_kept() {
    let data = Squares {
        n: 140,
        broken: vec![],
    };
    let val = Misnamed(Squares {
        n: 28,
        broken: vec![],
    });
    let idx: Vec<usize> = (0..140).collect();
    let val_idx: Vec<usize> = (0..28).collect();
    // Long enough to leave the plateau at chance (loss ln 7) that the first epochs sit on.
    let epochs = 12;
    let mut net = setup(4);
    let opts = TrainLoop {
        epochs,
        seed: 5,
        strict: true,
        schedule: Some(LrSchedule::constant(0.01)),
    };
    let validation = Validation {
        source: &val,
        indices: &val_idx,
        keep_best: true,
        previous_best: None,
    };
    // The parameters after every epoch, read back here only to check what fit() kept.
    let mut after = Vec::new();
    let fitted = fit(
        gpu(),
        &mut net,
        &data,
        &idx,
        &opts,
        None,
        Some(&validation),
        &mut |_, _| {},
        &mut |net, e| {
            after.push((e.clone(), read(net.params())));
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(after.len(), epochs);
    let scores: Vec<Score> = after.iter().map(|(e, _)| e.val.unwrap()).collect();
    let mut best = 0;
    for (k, s) in scores.iter().enumerate() {
        if s.beats(&scores[best]) {
            best = k;
        }
    }
    assert!(
        best < epochs - 1,
        "the misnamed set should peak before the last epoch: {scores:?}"
    );
    assert_eq!(fitted.kept, Some(best + 1));
    assert_eq!(fitted.best, Some(scores[best]));
    let flags: Vec<bool> = after.iter().map(|(e, _)| e.best).collect();
    assert!(flags[0] && flags[best], "{flags:?}");
    assert_eq!(
        read(net.params()),
        after[best].1,
        "the network holds the best epoch's parameters"
    );
    assert_ne!(after[best].1, after[epochs - 1].1);
    assert_eq!(net.step(), after[best].0.step, "and its step count");
    // The kept state scores on the validation set what it scored when it was kept.
    let again = Score::of(
        best + 1,
        &evaluate(gpu(), &net, &val, &val_idx, true, None).unwrap(),
    );
    assert_eq!(again, scores[best]);

    // Resumed from the kept state with its score to beat, a run whose epochs all score worse
    // keeps the state it started from.
    let start = read(net.params());
    let step = net.step();
    let resumed = Validation {
        previous_best: Some(Score {
            epoch: best + 1,
            accuracy: 1.0,
            loss: 0.0,
        }),
        ..validation
    };
    let opts = TrainLoop { epochs: 1, ..opts };
    let f = fit(
        gpu(),
        &mut net,
        &data,
        &idx,
        &opts,
        None,
        Some(&resumed),
        &mut |_, _| {},
        &mut |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(f.kept, Some(best + 1));
    assert_eq!((read(net.params()), net.step()), (start, step));
}

/// With batch norm the kept state includes the running statistics and their batch count: an
/// evaluation of the kept epoch must use that epoch's statistics, not the last epoch's.
#[test]
fn the_best_validation_epoch_keeps_its_running_statistics() {
    let data = Squares {
        n: 140,
        broken: vec![],
    };
    let val = Misnamed(Squares {
        n: 28,
        broken: vec![],
    });
    let idx: Vec<usize> = (0..140).collect();
    let val_idx: Vec<usize> = (0..28).collect();
    let epochs = 8;
    let mut net = setup_with(4, Norm::Batch);
    let opts = TrainLoop {
        epochs,
        seed: 5,
        strict: true,
        schedule: Some(LrSchedule::constant(0.01)),
    };
    let validation = Validation {
        source: &val,
        indices: &val_idx,
        keep_best: true,
        previous_best: None,
    };
    let mut after = Vec::new();
    let fitted = fit(
        gpu(),
        &mut net,
        &data,
        &idx,
        &opts,
        None,
        Some(&validation),
        &mut |_, _| {},
        &mut |net, e| {
            let stats = read(net.buffers().expect("batch norm has buffers"));
            after.push((e.clone(), read(net.params()), stats, net.batches_tracked()));
            Ok(())
        },
    )
    .unwrap();
    let kept = fitted.kept.expect("a best epoch is kept") - 1;
    assert!(
        kept < epochs - 1,
        "the misnamed set should peak before the last epoch"
    );
    let (e, params, stats, tracked) = &after[kept];
    assert_ne!(
        stats,
        &after[epochs - 1].2,
        "the statistics moved after the kept epoch"
    );
    assert_eq!(&read(net.params()), params);
    assert_eq!(
        &read(net.buffers().unwrap()),
        stats,
        "the kept epoch's running statistics"
    );
    assert_eq!(net.batches_tracked(), *tracked);
    assert_eq!(u64::from(e.step), *tracked, "one batch tracked per step");
}

#[test]
fn the_schedule_sets_every_steps_rate() {
    let data = Squares {
        n: 28,
        broken: vec![],
    };
    let idx: Vec<usize> = (0..28).collect();
    // Warm-up over the first of 3 epochs (2 steps each), then a cosine to 0 at the end.
    let s = LrSchedule {
        base: 0.004,
        decay: fer_cbam::train::Decay::Cosine,
        warmup_epochs: 1,
        total_epochs: 3,
    };
    let mut net = setup(6);
    let mut rates = Vec::new();
    let opts = TrainLoop {
        epochs: 3,
        seed: 1,
        strict: true,
        schedule: Some(s),
    };
    train(gpu(), &mut net, &data, &idx, &opts, None, &mut |p, _| {
        rates.push((p.step, p.lr))
    })
    .unwrap();
    assert_eq!(net.step(), 6);
    for (t, lr) in &rates {
        assert_eq!(*lr, s.lr(*t, 2), "step {t}");
    }
    assert_eq!(
        net.lr(),
        s.lr(6, 2),
        "the network runs at the last step's rate"
    );
    // Going past the end of a cosine schedule is refused before any step.
    let err = train(gpu(), &mut net, &data, &idx, &opts, None, &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("past the end of its cosine schedule"), "{err}");
    assert_eq!(net.step(), 6);
}
