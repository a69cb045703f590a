//! The parameter table (names, shapes, the spec's counts), the seeded init, and safetensors
//! checkpoints: round trip, atomic writes, and every way a file can be wrong.

mod common;
use common::tmp_dir;

use std::collections::HashMap;

use fer_cbam::model::checkpoint::{self, CONFIG_KEY};
use fer_cbam::model::{Attention, ModelConfig, ParamTable};

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
