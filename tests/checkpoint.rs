//! The parameter table (names, shapes, the spec's counts), the seeded init, and safetensors
//! checkpoints: round trip, atomic writes, and every way a file can be wrong.

mod common;
use common::tmp_dir;

use std::collections::HashMap;

use fer_cbam::model::checkpoint::{self, CONFIG_KEY};
use fer_cbam::model::params::ParamKind;
use fer_cbam::model::{Attention, Gate, Init, ModelConfig, Norm, ParamTable};
use safetensors::tensor::{Dtype, SafeTensors};

#[test]
fn the_default_table_matches_the_spec_counts() {
    let table = ParamTable::new(&ModelConfig::default());
    assert_eq!(table.count(), 434_001);
    let sum = |pred: &dyn Fn(&str) -> bool| -> usize {
        table
            .entries()
            .iter()
            .filter(|e| pred(&e.name))
            .map(|e| e.len())
            .sum()
    };
    assert_eq!(
        sum(&|n| n.contains(".conv.") && !n.contains("cbam")),
        388_416
    );
    assert_eq!(sum(&|n| n.contains("cbam")), 11_786);
    assert_eq!(sum(&|n| n.starts_with("head.")), 33_799);
    let e = table.get("stages.0.cbam.channel.fc1.weight").unwrap();
    assert_eq!(e.shape, [2, 32]);
    assert_eq!(
        table
            .get("stages.3.cbam.spatial.conv.weight")
            .unwrap()
            .shape,
        [1, 2, 7, 7]
    );
    assert_eq!(table.get("head.fc2.weight").unwrap().shape, [7, 128]);
    for e in table.entries() {
        assert_eq!(
            e.offset % 64,
            0,
            "{} must start on a 256-byte boundary",
            e.name
        );
    }
}

#[test]
fn ablations_drop_the_gate_parameters() {
    let count = |attention| {
        ParamTable::new(&ModelConfig {
            attention,
            ..ModelConfig::default()
        })
        .count()
    };
    assert_eq!(count(Attention::None), 434_001 - 11_786);
    assert_eq!(count(Attention::Spatial), 434_001 - 11_786 + 4 * 99);
    assert_eq!(count(Attention::Channel), 434_001 - 4 * 99);
    // Small widths: C < 16 gives a hidden width of 1.
    let small = ModelConfig {
        widths: vec![8, 16],
        image_size: 32,
        ..ModelConfig::default()
    };
    let t = ParamTable::new(&small);
    assert_eq!(
        t.get("stages.0.cbam.channel.fc1.weight").unwrap().shape,
        [1, 8]
    );
    assert_eq!(t.get("head.fc1.weight").unwrap().shape, [128, 16]);
}

#[test]
fn init_is_seeded_and_within_pytorch_bounds() {
    let table = ParamTable::new(&ModelConfig::default());
    let a = table.init(7);
    assert_eq!(a, table.init(7));
    assert_ne!(a, table.init(8));
    for e in table.entries() {
        let b = 1.0 / (e.fan_in as f32).sqrt();
        let v = &a[e.offset..e.offset + e.len()];
        assert!(v.iter().all(|x| x.abs() <= b), "{} outside +-{b}", e.name);
        // A uniform(-b, b) sample of this size spans most of the interval.
        if e.len() >= 100 {
            let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(max > 0.9 * b, "{}: max |w| {max} for bound {b}", e.name);
        }
    }
    // Padding between entries stays zero.
    let used: usize = table.entries().iter().map(|e| e.len()).sum();
    assert_eq!(a.iter().filter(|x| **x != 0.0).count(), used);
    assert_eq!(table.get("stages.0.conv.weight").unwrap().fan_in, 27);
    assert_eq!(
        table.get("stages.1.cbam.spatial.conv.bias").unwrap().fan_in,
        98
    );
}

#[test]
fn a_checkpoint_round_trips_with_its_config() {
    let dir = tmp_dir("test-roundtrip");
    let config = ModelConfig {
        image_size: 48,
        attention: Attention::Channel,
        widths: vec![8, 16, 16],
        ..ModelConfig::default()
    };
    let packed = ParamTable::new(&config).init(3);
    let path = dir.join("c.safetensors");
    checkpoint::save(&path, &config, &packed).unwrap();
    let loaded = checkpoint::load(&path).unwrap();
    assert_eq!(loaded.config, config);
    assert_eq!(loaded.packed, packed);
    // Only the checkpoint is left: the temporary file was renamed into place.
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["c.safetensors"]);
}

/// Writes a safetensors file by hand with the default config's metadata and the given tensors.
fn write_raw(
    path: &std::path::Path,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    config: Option<&ModelConfig>,
) {
    let mut meta = HashMap::new();
    if let Some(c) = config {
        meta.insert(CONFIG_KEY.to_string(), serde_json::to_string(c).unwrap());
    }
    let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), &d[..]))
        .collect();
    std::fs::write(path, checkpoint::to_bytes(&refs, meta).unwrap()).unwrap();
}

fn all_tensors(config: &ModelConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    ParamTable::new(config)
        .entries()
        .iter()
        .map(|e| (e.name.clone(), e.shape.clone(), vec![0.5; e.len()]))
        .collect()
}

#[test]
fn bad_checkpoints_are_errors_naming_the_file_and_the_tensor() {
    let dir = tmp_dir("test-bad");
    let config = ModelConfig {
        image_size: 32,
        widths: vec![8, 16],
        ..ModelConfig::default()
    };
    let load_err = |name: &str| {
        checkpoint::load(&dir.join(name))
            .err()
            .expect("must fail")
            .to_string()
    };

    std::fs::write(dir.join("garbage.safetensors"), b"this is not a checkpoint").unwrap();
    let e = load_err("garbage.safetensors");
    assert!(
        e.contains("garbage.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );

    let e = load_err("missing.safetensors");
    assert!(
        e.contains("missing.safetensors") && e.contains("cannot read"),
        "{e}"
    );

    write_raw(&dir.join("nometa.safetensors"), all_tensors(&config), None);
    assert!(load_err("nometa.safetensors").contains("not a fer-cbam checkpoint"));

    let mut t = all_tensors(&config);
    t.retain(|(n, _, _)| n != "head.fc1.bias");
    write_raw(&dir.join("lacking.safetensors"), t, Some(&config));
    let e = load_err("lacking.safetensors");
    assert!(e.contains("head.fc1.bias") && e.contains("missing"), "{e}");

    let mut t = all_tensors(&config);
    if let Some(x) = t.iter_mut().find(|(n, _, _)| n == "stages.1.conv.weight") {
        x.1 = vec![16, 8, 3, 1];
        x.2.truncate(16 * 8 * 3);
    }
    write_raw(&dir.join("shape.safetensors"), t, Some(&config));
    let e = load_err("shape.safetensors");
    assert!(
        e.contains("stages.1.conv.weight")
            && e.contains("[16, 8, 3, 1]")
            && e.contains("[16, 8, 3, 3]"),
        "{e}"
    );

    // A checkpoint of another config: the tensors do not match what its header says.
    let other = ModelConfig {
        widths: vec![8, 32],
        ..config.clone()
    };
    write_raw(
        &dir.join("other.safetensors"),
        all_tensors(&config),
        Some(&other),
    );
    let e = load_err("other.safetensors");
    assert!(
        e.contains("stages.1.conv.weight") && e.contains("[32, 8, 3, 3]"),
        "{e}"
    );

    let mut t = all_tensors(&config);
    t.push(("stages.9.extra".into(), vec![1], vec![0.0]));
    write_raw(&dir.join("extra.safetensors"), t, Some(&config));
    assert!(load_err("extra.safetensors").contains("unexpected tensor `stages.9.extra`"));
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = tmp_dir("test-nowrite");
    let config = ModelConfig::default();
    let path = dir.join("no-such-folder").join("c.safetensors");
    let e = checkpoint::save(&path, &config, &ParamTable::new(&config).init(0))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no-such-folder") && e.contains("cannot write"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}

#[test]
fn batch_norm_adds_its_parameters_and_buffers_with_pytorch_names() {
    let spec = ModelConfig::default();
    let bn = ModelConfig {
        norm: Norm::Batch,
        ..spec.clone()
    };
    let (a, b) = (ParamTable::new(&spec), ParamTable::new(&bn));
    // gamma and beta per channel of every stage: 2 * (32 + 64 + 128 + 256).
    assert_eq!(b.count(), 434_001 + 960);
    assert!(a.buffers().is_empty() && a.counters().is_empty() && a.buffers_len() == 0);
    for (i, w) in [32, 64, 128, 256].into_iter().enumerate() {
        for name in ["weight", "bias"] {
            assert_eq!(b.get(&format!("stages.{i}.bn.{name}")).unwrap().shape, [w]);
        }
        for name in ["running_mean", "running_var"] {
            let e = b.buffer(&format!("stages.{i}.bn.{name}")).unwrap();
            assert_eq!(e.shape, [w]);
            assert_eq!(
                e.offset % 64,
                0,
                "{} must start on a 256-byte boundary",
                e.name
            );
            assert!(
                b.get(&e.name).is_none(),
                "{} is a buffer, not a parameter",
                e.name
            );
        }
    }
    assert_eq!(b.counters()[3], "stages.3.bn.num_batches_tracked");
    // gamma 1, beta 0; running mean 0, variance 1.
    let p = b.init(4);
    assert!(b
        .slice(&p, "stages.2.bn.weight")
        .unwrap()
        .iter()
        .all(|&v| v == 1.0));
    assert!(b
        .slice(&p, "stages.2.bn.bias")
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    let buffers = b.init_buffers();
    let e = b.buffer("stages.1.bn.running_var").unwrap();
    assert!(buffers[e.offset..e.offset + 64].iter().all(|&v| v == 1.0));
    let e = b.buffer("stages.1.bn.running_mean").unwrap();
    assert!(buffers[e.offset..e.offset + 64].iter().all(|&v| v == 0.0));
    // Constants consume no draws: the same seed gives the same conv and gate weights.
    let q = a.init(4);
    for e in a.entries() {
        assert_eq!(a.slice(&q, &e.name), b.slice(&p, &e.name), "{}", e.name);
    }
}

/// Mean and (biased) variance of a sample. A sample variance of n values errs by about
/// sqrt((kurtosis - 1) / n) of the variance (one standard error), a mean by sqrt(var / n): the
/// tests allow 6 of those, which a wrong scale (a factor sqrt(2) or 3 in the variance) far
/// exceeds at these sizes.
fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn he_and_glorot_follow_their_definitions_and_are_seeded() {
    for init in [Init::He, Init::Glorot] {
        let config = ModelConfig {
            init,
            norm: Norm::Batch,
            ..ModelConfig::default()
        };
        let table = ParamTable::new(&config);
        let a = table.init(7);
        assert_eq!(
            a,
            table.init(7),
            "{init}: the same seed gives the same weights"
        );
        assert_ne!(a, table.init(8));
        let mut weights = 0;
        for e in table.entries() {
            let v = table.slice(&a, &e.name).unwrap();
            match e.kind {
                ParamKind::Bias | ParamKind::BnBias => {
                    assert!(
                        v.iter().all(|&x| x == 0.0),
                        "{init} {}: biases are 0",
                        e.name
                    )
                }
                ParamKind::BnWeight => assert!(v.iter().all(|&x| x == 1.0)),
                ParamKind::Weight => {
                    weights += 1;
                    let n = v.len() as f64;
                    let (fan_in, fan_out) = (e.fan_in as f64, e.fan_out as f64);
                    // Normal: kurtosis 3; uniform(-b, b): variance b^2/3, kurtosis 1.8.
                    let (var, kurtosis) = match init {
                        Init::He => (2.0 / fan_in, 3.0),
                        _ => {
                            let b = (6.0 / (fan_in + fan_out)).sqrt();
                            assert!(v.iter().all(|&x| (x as f64).abs() <= b), "{}", e.name);
                            (b * b / 3.0, 1.8)
                        }
                    };
                    let (m, s2) = moments(v);
                    assert!(
                        m.abs() <= 6.0 * (var / n).sqrt(),
                        "{init} {}: mean {m} of {n} values with variance {var}",
                        e.name
                    );
                    assert!(
                        (s2 - var).abs() <= 6.0 * var * ((kurtosis - 1.0) / n).sqrt(),
                        "{init} {}: variance {s2}, expected {var} ({n} values)",
                        e.name
                    );
                }
                _ => unreachable!(),
            }
        }
        // Every conv and linear layer: 4 stage convs, 2 gate MLP layers and a 7x7 conv per
        // stage, the head's two layers.
        assert_eq!(weights, 4 + 4 * 3 + 2, "{init}");
    }
    // He's weights are normal: about 68.3% within one standard deviation (the first stage's
    // 864 and the second's 18,432 weights together).
    let table = ParamTable::new(&ModelConfig {
        init: Init::He,
        ..ModelConfig::default()
    });
    let a = table.init(3);
    let (mut inside, mut n) = (0usize, 0usize);
    for name in ["stages.0.conv.weight", "stages.1.conv.weight"] {
        let e = table.get(name).unwrap();
        let std = (2.0 / e.fan_in as f64).sqrt();
        for &x in table.slice(&a, name).unwrap() {
            inside += ((x as f64).abs() <= std) as usize;
            n += 1;
        }
    }
    let frac = inside as f64 / n as f64;
    let se = (0.6827 * 0.3173 / n as f64).sqrt();
    assert!((frac - 0.6827).abs() <= 6.0 * se, "{frac} within one std");
}

#[test]
fn the_portable_logarithm_matches_libm_to_an_ulp() {
    let mut worst = 0.0f64;
    let mut x = 1e-300f64;
    while x < 1e300 {
        for m in [1.0, 1.1, 1.41, 1.415, 1.9, 2.5, 7.3] {
            let v = x * m;
            let (got, want) = (fer_cbam::rng::ln(v), v.ln());
            worst = worst.max((got - want).abs() / want.abs().max(1e-300));
        }
        x *= 1.7;
    }
    for v in [
        1.0,
        0.999_999,
        1.000_001,
        std::f64::consts::SQRT_2,
        0.5,
        2.0,
    ] {
        let (got, want) = (fer_cbam::rng::ln(v), v.ln());
        assert!(
            (got - want).abs() <= 2.0 * f64::EPSILON * want.abs().max(1e-16),
            "ln {v}"
        );
    }
    assert!(worst <= 2.0 * f64::EPSILON, "relative error {worst:e}");
}

#[test]
fn a_batch_norm_checkpoint_keeps_its_running_statistics_and_counter() {
    let dir = tmp_dir("test-bn");
    let config = ModelConfig {
        image_size: 32,
        widths: vec![8, 16],
        norm: Norm::Batch,
        init: Init::Glorot,
        gate: Gate::Residual,
        ..ModelConfig::default()
    };
    let table = ParamTable::new(&config);
    let packed = table.init(2);
    // Distinct values in every entry; the padding between entries stays 0, as loading leaves it.
    let mut buffers = vec![0.0f32; table.buffers_len()];
    for e in table.buffers() {
        for (i, v) in buffers[e.offset..e.offset + e.len()].iter_mut().enumerate() {
            *v = 0.25 + (e.offset + i) as f32;
        }
    }
    let path = dir.join("bn.safetensors");
    checkpoint::save_with_buffers(&path, &config, &packed, &buffers, 123).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.config, config);
    assert_eq!(ck.packed, packed);
    assert_eq!(ck.buffers, buffers);
    assert_eq!(ck.batches_tracked, 123);
    // PyTorch's layout: f32 running statistics, an I64 scalar (shape []) per counter.
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("stages.1.bn.num_batches_tracked").unwrap();
    assert_eq!((t.dtype(), t.shape()), (Dtype::I64, &[][..]));
    assert_eq!(t.data(), 123i64.to_le_bytes());
    let t = st.tensor("stages.0.bn.running_var").unwrap();
    assert_eq!((t.dtype(), t.shape()), (Dtype::F32, &[8][..]));
    // A fresh checkpoint (`save`) has the initial buffers and no batches tracked.
    checkpoint::save(&path, &config, &packed).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.buffers, table.init_buffers());
    assert_eq!(ck.batches_tracked, 0);

    // What goes wrong, named.
    let load_err = |p: &std::path::Path| checkpoint::load(p).err().expect("must fail").to_string();
    let mut t = all_tensors(&config);
    write_raw(&dir.join("nobuffers.safetensors"), t.clone(), Some(&config));
    let e = load_err(&dir.join("nobuffers.safetensors"));
    assert!(
        e.contains("stages.0.bn.running_mean") && e.contains("missing"),
        "{e}"
    );
    for b in table.buffers() {
        t.push((b.name.clone(), b.shape.clone(), vec![1.0; b.len()]));
    }
    type Tensors = [(String, Vec<usize>, Vec<f32>)];
    let write_counters = |t: &Tensors, name: &str, counters: &[(String, i64)]| {
        let refs: Vec<(String, Vec<usize>, &[f32])> = t
            .iter()
            .map(|(n, s, d)| (n.clone(), s.clone(), &d[..]))
            .collect();
        let mut meta = HashMap::new();
        meta.insert(
            CONFIG_KEY.to_string(),
            serde_json::to_string(&config).unwrap(),
        );
        let bytes = checkpoint::to_bytes_with_counters(&refs, counters, meta).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        dir.join(name)
    };
    let p = write_counters(&t, "nocounter.safetensors", &[]);
    let e = load_err(&p);
    assert!(
        e.contains("stages.0.bn.num_batches_tracked") && e.contains("missing"),
        "{e}"
    );
    let p = write_counters(
        &t,
        "disagree.safetensors",
        &[
            ("stages.0.bn.num_batches_tracked".into(), 5),
            ("stages.1.bn.num_batches_tracked".into(), 6),
        ],
    );
    let e = load_err(&p);
    assert!(
        e.contains("stages.1.bn.num_batches_tracked") && e.contains("same number"),
        "{e}"
    );
    // A float counter is the wrong dtype.
    t.push(("stages.0.bn.num_batches_tracked".into(), vec![], vec![5.0]));
    let p = write_counters(&t, "float.safetensors", &[]);
    let e = load_err(&p);
    assert!(
        e.contains("num_batches_tracked") && e.contains("I64"),
        "{e}"
    );
}

#[test]
fn checkpoints_written_before_the_recipe_options_load_as_the_spec_network() {
    let dir = tmp_dir("test-old");
    let config = ModelConfig {
        image_size: 32,
        widths: vec![8, 16],
        ..ModelConfig::default()
    };
    let mut json: serde_json::Value = serde_json::to_value(&config).unwrap();
    for key in ["norm", "init", "gate"] {
        assert!(json.as_object_mut().unwrap().remove(key).is_some(), "{key}");
    }
    let t = all_tensors(&config);
    let refs: Vec<(String, Vec<usize>, &[f32])> = t
        .iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), &d[..]))
        .collect();
    let mut meta = HashMap::new();
    meta.insert(CONFIG_KEY.to_string(), json.to_string());
    let path = dir.join("old.safetensors");
    std::fs::write(&path, checkpoint::to_bytes(&refs, meta).unwrap()).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.config, config);
    assert_eq!(
        (ck.config.norm, ck.config.init, ck.config.gate),
        (Norm::None, Init::Pytorch, Gate::Multiply)
    );
    assert!(ck.buffers.is_empty() && ck.batches_tracked == 0);
}
