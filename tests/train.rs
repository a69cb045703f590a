//! The training and evaluation loops: a learnable toy task is learned, runs are reproducible,
//! unreadable examples are counted (or stop a strict run), and metrics add up.

mod common;
use common::*;

use fer_cbam::model::{ModelConfig, Network, ParamTable, TrainOptions};
use fer_cbam::train::{evaluate, train, Evaluation, ImageSource, TrainLoop};
use fer_cbam::{Error, Result};

/// Class c is a bright square at one of 7 positions on a dark background, with noise.
struct Squares {
    n: usize,
    broken: Vec<usize>,
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
    let config = ModelConfig {
        image_size: 16,
        widths: vec![8, 16],
        dropout: 0.0,
        ..ModelConfig::default()
    };
    let options = TrainOptions {
        seed: seed as u32,
        ..Default::default()
    };
    let mut net = block_on(Network::new(gpu(), &config, 14, options)).unwrap();
    net.write_params(gpu(), &ParamTable::new(&config).init(seed))
        .unwrap();
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
