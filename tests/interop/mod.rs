//! What the interop tests (tests/onnx.rs, tests/torch_model.rs) share: one checkpoint per
//! network variant (every attention variant, norm and gate, and a one-channel input), a batch
//! of synthetic faces, the engine's logits on it, and finding a Python that has a module.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use fer_cbam::data::synthetic;
use fer_cbam::model::params::ParamKind;
use fer_cbam::model::{checkpoint, Attention, Gate, ModelConfig, Network, Norm, ParamTable};

use crate::common;

/// The input size of the small variants.
pub const SIZE: usize = 32;
/// Faces in the batch; the last is the first with one pixel changed.
pub const BATCH: usize = 8;

/// Every weight of a fixture is its init (PyTorch's default) times this. Without batch norm a
/// freshly initialised network is nearly blind to its input (each gate near 0.5 halves the
/// signal, twice per stage): the logits of two different faces differed by 2.5e-5. Scaled,
/// one pixel changed in one face moves the logits well above the tolerances (each test checks
/// that it does, per variant). Residual gates amplify instead (up to 2x each), so they get
/// less, which keeps every fixture's logits within 1..100 as a trained network's are.
pub fn weight_scale(config: &ModelConfig) -> f32 {
    match config.gate {
        Gate::Residual => 2.0,
        Gate::Multiply => 4.0,
    }
}

pub struct Variant {
    pub name: String,
    pub config: ModelConfig,
    pub checkpoint: PathBuf,
}

/// Every option of the spec that changes the graph, at 32x32 with widths 8-16-32-64: 4
/// attention variants x 2 norms x 2 gate forms (the gate form of a network without gates
/// changes nothing, so `none` is tested once per norm), and a one-channel input; then the
/// spec's own network (128x128, widths 32-64-128-256) with the recipe's batch norm and
/// residual gates.
pub fn configs() -> Vec<(String, ModelConfig)> {
    let base = ModelConfig {
        image_size: SIZE,
        widths: vec![8, 16, 32, 64],
        hidden: 32,
        ..ModelConfig::default()
    };
    let mut out = Vec::new();
    for attention in [
        Attention::Full,
        Attention::Channel,
        Attention::Spatial,
        Attention::None,
    ] {
        for norm in [Norm::None, Norm::Batch] {
            for gate in [Gate::Multiply, Gate::Residual] {
                if attention == Attention::None && gate == Gate::Residual {
                    continue;
                }
                let name = format!(
                    "{}-{norm}-{gate}",
                    serde_json::to_value(attention).unwrap().as_str().unwrap()
                );
                out.push((
                    name,
                    ModelConfig {
                        attention,
                        norm,
                        gate,
                        ..base.clone()
                    },
                ));
            }
        }
    }
    out.push((
        "full-batch-multiply-gray1".into(),
        ModelConfig {
            in_channels: 1,
            norm: Norm::Batch,
            ..base
        },
    ));
    out.push((
        "spec-128-full-batch-residual".into(),
        ModelConfig {
            norm: Norm::Batch,
            gate: Gate::Residual,
            ..ModelConfig::default()
        },
    ));
    out
}

/// Parameters and buffers for `config`, seeded by `seed`: the init with weights scaled by
/// [`weight_scale`]; with batch norm, gamma in [0.5, 1.5), beta in [-0.2, 0.2), running means
/// in [-0.5, 0.5) and running variances in [0.25, 2.25), so that evaluation mode differs from
/// training mode and from the identity.
pub fn parameters(config: &ModelConfig, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let table = ParamTable::new(config);
    let mut packed = table.init(seed);
    for e in table.entries() {
        let v = &mut packed[e.offset..e.offset + e.len()];
        match e.kind {
            ParamKind::Weight => v.iter_mut().for_each(|x| *x *= weight_scale(config)),
            ParamKind::BnWeight => {
                let r = common::random(seed ^ e.offset as u64, v.len());
                v.iter_mut().zip(r).for_each(|(x, r)| *x = 1.0 + 0.5 * r);
            }
            ParamKind::BnBias => {
                let r = common::random(seed ^ e.offset as u64, v.len());
                v.iter_mut().zip(r).for_each(|(x, r)| *x = 0.2 * r);
            }
            _ => {}
        }
    }
    let mut buffers = table.init_buffers();
    for e in table.buffers() {
        let v = &mut buffers[e.offset..e.offset + e.len()];
        let r = common::random(seed ^ 0xb0ff ^ e.offset as u64, v.len());
        match e.kind {
            ParamKind::RunningMean => v.iter_mut().zip(r).for_each(|(x, r)| *x = 0.5 * r),
            _ => v.iter_mut().zip(r).for_each(|(x, r)| *x = 1.25 + r),
        }
    }
    (packed, buffers)
}

/// Writes one checkpoint per config into `dir`.
pub fn variants(dir: &Path) -> Vec<Variant> {
    configs()
        .into_iter()
        .enumerate()
        .map(|(i, (name, config))| {
            let (packed, buffers) = parameters(&config, 100 + i as u64);
            let path = dir.join(format!("{name}.safetensors"));
            checkpoint::save_with_buffers(&path, &config, &packed, &buffers, 12).unwrap();
            Variant {
                name,
                config,
                checkpoint: path,
            }
        })
        .collect()
}

/// `[BATCH, size, size]` gray pixels: synthetic faces past any training set's indices, and as
/// the last one the first face with its centre pixel changed by 64 levels.
pub fn gray_batch(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH * size * size);
    for i in 0..BATCH - 1 {
        out.extend(synthetic::generate(2026, 1_000_000 + i as u64, size).pixels);
    }
    let mut nudged = out[..size * size].to_vec();
    nudged[size * size / 2 + size / 2] ^= 0x40;
    out.extend(nudged);
    out
}

/// The engine's logits and probabilities, `[BATCH, K]` each, on [`gray_batch`] (pixel / 255,
/// replicated to the config's channels), through the checkpoint file as every command loads
/// it.
pub fn engine_forward(v: &Variant) -> (Vec<f32>, Vec<f32>) {
    let gray = gray_batch(v.config.image_size);
    let ck = checkpoint::load(&v.checkpoint).unwrap();
    let c = &ck.config;
    let gpu = common::gpu();
    let net = common::block_on(Network::new(gpu, c, BATCH, Default::default())).unwrap();
    net.load(gpu, &ck).unwrap();
    let plane = c.image_size * c.image_size;
    let mut images = Vec::with_capacity(BATCH * c.in_channels * plane);
    for face in gray.chunks_exact(plane) {
        for _ in 0..c.in_channels {
            images.extend(face.iter().map(|&p| p as f32 / 255.0));
        }
    }
    net.write_batch(gpu, &images, &[0; BATCH]).unwrap();
    net.forward_eval(gpu).unwrap();
    let n = BATCH * c.classes.len();
    (
        gpu.read_blocking(net.logits()).unwrap()[..n].to_vec(),
        gpu.read_blocking(net.probs()).unwrap()[..n].to_vec(),
    )
}

/// Largest |a - b| over all elements, and the largest |a| (the scale the difference is held
/// to).
pub fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let s = b.iter().map(|y| y.abs()).fold(0.0, f32::max);
    (d, s)
}

/// How much the logits of the nudged face (the batch's last) differ from the first face's:
/// the smallest input change the tests must be able to see.
pub fn one_pixel_effect(logits: &[f32], k: usize) -> f32 {
    let (first, last) = (&logits[..k], &logits[(BATCH - 1) * k..]);
    max_diff(first, last).0
}

pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Prints a skip where a plain `cargo test` run shows it (the harness captures `eprintln!`).
pub fn skip(msg: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
}

/// Whether `python` runs and imports every module in `modules`.
pub fn has_modules(python: &Path, modules: &[&str]) -> bool {
    Command::new(python)
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The first candidate that imports `modules`: the value of `env_var` if set (and then only
/// it, so a wrong setting is not papered over), else each of `fallbacks`.
pub fn find_python(env_var: &str, fallbacks: &[PathBuf], modules: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        assert!(
            has_modules(&p, modules),
            "{env_var}={} cannot import {}",
            p.display(),
            modules.join(", ")
        );
        return Some(p);
    }
    fallbacks.iter().find(|p| has_modules(p, modules)).cloned()
}

/// Runs `python script args...` and returns its stdout; a failure shows its stderr.
pub fn run_python(python: &Path, script: &Path, args: &[&Path]) -> String {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{}",
        python.display(),
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `[rows][cols]` JSON array of numbers, flattened.
pub fn matrix(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}

/// Writes each variant's [`gray_batch`] as raw bytes and a job file naming them and the
/// model files (`files[i]` for `variants[i]`) for the Python scripts beside this module;
/// returns the job file.
pub fn write_job(dir: &Path, variants: &[Variant], files: &[PathBuf]) -> PathBuf {
    let mut models = serde_json::Map::new();
    for (v, file) in variants.iter().zip(files) {
        let size = v.config.image_size;
        let batch = dir.join(format!("batch-{size}.u8"));
        if !batch.exists() {
            std::fs::write(&batch, gray_batch(size)).unwrap();
        }
        models.insert(
            v.name.clone(),
            serde_json::json!({ "file": file, "batch": batch, "size": size }),
        );
    }
    let job = serde_json::json!({ "n": BATCH, "models": models });
    let path = dir.join("job.json");
    std::fs::write(&path, job.to_string()).unwrap();
    path
}

/// A script of this folder.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}
