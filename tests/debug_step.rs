//! `fer-cbam debug-step` end to end through the binary, held against the reference network,
//! for the spec's network and with every recipe option (batch norm in training mode, with the
//! running statistics after the step in the output; He init; residual gates); and its one-line
//! errors on bad batch files.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::Path;

use fer_cbam::model::{checkpoint, Gate, Init, ModelConfig, Norm, ParamTable};
use fer_cbam_reference::{adam as ref_adam, network as reference};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn config() -> ModelConfig {
    ModelConfig {
        image_size: 16,
        widths: vec![4, 8],
        ..ModelConfig::default()
    }
}

fn write_batch(path: &Path, images: &[f32], shape: Vec<usize>, labels: &[i64], label_dtype: Dtype) {
    let lbytes: Vec<u8> = match label_dtype {
        Dtype::I64 => labels.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => labels
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect(),
    };
    let views = vec![
        (
            "images",
            TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(images)).unwrap(),
        ),
        (
            "labels",
            TensorView::new(label_dtype, vec![labels.len()], &lbytes).unwrap(),
        ),
    ];
    std::fs::write(
        path,
        safetensors::serialize(views, None::<HashMap<String, String>>).unwrap(),
    )
    .unwrap();
}

fn run(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("{name} missing"));
    assert_eq!(t.dtype(), Dtype::F32);
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn debug_step_writes_what_the_reference_network_computes() {
    check_debug_step("debug-ok", config());
}

#[test]
fn debug_step_with_every_recipe_option_writes_the_running_statistics() {
    check_debug_step(
        "debug-recipe",
        ModelConfig {
            norm: Norm::Batch,
            init: Init::He,
            gate: Gate::Residual,
            ..config()
        },
    );
}

fn check_debug_step(name: &str, config: ModelConfig) {
    let dir = tmp_dir(name);
    let table = ParamTable::new(&config);
    let packed = table.init(4);
    let ck = dir.join("c.safetensors");
    checkpoint::save(&ck, &config, &packed).unwrap();
    let n = 3;
    let images: Vec<f32> = random(8, n * 3 * 16 * 16).iter().map(|v| v.abs()).collect();
    let labels = [6i64, 0, 3];
    let batch = dir.join("b.safetensors");
    write_batch(&batch, &images, vec![n, 3, 16, 16], &labels, Dtype::I64);
    let out = dir.join("o.safetensors");
    let (ok, stderr) = run(&[
        "debug-step",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--batch",
        batch.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--lr",
        "0.01",
    ]);
    assert!(ok, "{stderr}");

    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let rc = reference::Config {
        image_size: 16,
        in_channels: 3,
        widths: vec![4, 8],
        hidden: 128,
        classes: 7,
        channel_gate: true,
        spatial_gate: true,
        dropout: config.dropout,
        batch_norm: config.norm == Norm::Batch,
        residual: config.gate == Gate::Residual,
    };
    let params: reference::Params = table
        .entries()
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                to_f64(&packed[e.offset..e.offset + e.len()]),
            )
        })
        .collect();
    let buffers = table.init_buffers();
    let mut state = params.clone();
    for e in table.buffers() {
        state.insert(
            e.name.clone(),
            to_f64(&buffers[e.offset..e.offset + e.len()]),
        );
    }
    let labels_u: Vec<u32> = labels.iter().map(|&v| v as u32).collect();
    let drop = reference::DropoutState {
        training: false,
        seeds: [0, 1],
        step: 1,
    };
    let want = reference::forward_backward(&rc, &state, &to_f64(&images), &labels_u, drop);
    // The same chain as tests/network.rs: ~1e-3 relative, 1e-4 of the largest magnitude absolute.
    let tol = |r: &[f64]| Tol {
        atol: 1e-4 * r.iter().fold(0.0f64, |m, v| m.max(v.abs())),
        rtol: 1e-3,
        why: "f32 network vs f64 reference (see tests/network.rs)",
    };
    assert_close(
        "logits",
        &f32s(&st, "logits"),
        &want.logits,
        tol(&want.logits),
    );
    assert_close("loss", &f32s(&st, "loss"), &[want.loss], tol(&[want.loss]));
    let c = ref_adam::Config {
        lr: 0.01,
        ..ref_adam::Config::default()
    };
    // Batch norm in training mode: the running statistics moved once, by the batch's.
    for e in table.buffers() {
        let w = &want.running[&e.name];
        assert_close(
            &format!("param.{}", e.name),
            &f32s(&st, &format!("param.{}", e.name)),
            w,
            tol(w),
        );
    }
    let names: Vec<String> = st.names().into_iter().map(String::from).collect();
    let expected = 2 + 2 * table.entries().len() + table.buffers().len();
    assert_eq!(names.len(), expected, "{names:?}");
    if config.norm == Norm::Batch {
        assert!(names.contains(&"param.stages.1.bn.running_var".to_string()));
    }
    for e in table.entries() {
        let g = &want.grads[&e.name];
        let got = f32s(&st, &format!("grad.{}", e.name));
        // A conv bias in front of a batch norm has a zero gradient in exact arithmetic: both
        // sides hold round-off, which must stay at the floor of its weight's gradient, and
        // Adam's step on it may go either way (lr).
        if config.norm == Norm::Batch && e.name.ends_with(".conv.bias") && !e.name.contains("cbam")
        {
            let wname = e.name.replace(".bias", ".weight");
            let floor = tol(&want.grads[&wname]).atol;
            assert!(
                got.iter().all(|g| (*g as f64).abs() <= floor),
                "grad.{}: {got:?} above {floor:e}",
                e.name
            );
            let before = &params[&e.name];
            let after = f32s(&st, &format!("param.{}", e.name));
            for (a, b) in after.iter().zip(before) {
                assert!((*a as f64 - b).abs() <= 0.01 * 1.01, "param.{}", e.name);
            }
            continue;
        }
        assert_close(&format!("grad.{}", e.name), &got, g, tol(g));
        // One Adam step moves every parameter with a resolvable gradient by lr * sign(g).
        let mut p = params[&e.name].clone();
        let (mut m, mut v) = (vec![0.0; p.len()], vec![0.0; p.len()]);
        ref_adam::step(&mut p, g, &mut m, &mut v, &c, 1);
        let got = f32s(&st, &format!("param.{}", e.name));
        let floor = 1e-4 * g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for i in 0..p.len() {
            let slack = if g[i] != 0.0 && g[i].abs() <= floor {
                2.0 * 0.01
            } else {
                1e-6
            };
            assert!(
                (got[i] as f64 - p[i]).abs() <= slack,
                "param.{}[{i}]: {} vs {}",
                e.name,
                got[i],
                p[i]
            );
        }
    }
}

#[test]
fn bad_batch_files_are_one_line_errors_naming_the_file() {
    let dir = tmp_dir("debug-bad");
    let config = config();
    let ck = dir.join("c.safetensors");
    checkpoint::save(&ck, &config, &ParamTable::new(&config).init(0)).unwrap();
    let out = dir.join("o.safetensors");
    let images = vec![0.5f32; 2 * 3 * 16 * 16];
    type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "float_labels",
            Box::new(|p: &Path| write_batch(p, &images, vec![2, 3, 16, 16], &[1, 2], Dtype::F32)),
            "I64",
        ),
        (
            "wrong_size",
            Box::new(|p: &Path| write_batch(p, &images, vec![2, 3, 32, 8], &[1, 2], Dtype::I64)),
            "[N, 3, 16, 16]",
        ),
        (
            "bad_label",
            Box::new(|p: &Path| write_batch(p, &images, vec![2, 3, 16, 16], &[1, 7], Dtype::I64)),
            "label 7",
        ),
        (
            "garbage",
            Box::new(|p: &Path| std::fs::write(p, b"nope").unwrap()),
            "not a safetensors file",
        ),
    ];
    for (name, make, expect) in cases {
        let batch = dir.join(format!("{name}.safetensors"));
        make(&batch);
        let (ok, stderr) = run(&[
            "debug-step",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--batch",
            batch.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert!(!ok && lines.len() == 1, "{name}: {stderr}");
        assert!(
            lines[0].contains(&format!("{name}.safetensors")) && lines[0].contains(expect),
            "{name}: {stderr}"
        );
        assert!(!out.exists(), "{name}: nothing may be written on failure");
    }
    let (ok, stderr) = run(&[
        "debug-step",
        "--checkpoint",
        "/nonexistent.safetensors",
        "--batch",
        "x",
        "--out",
        "y",
    ]);
    assert!(
        !ok && stderr.contains("/nonexistent.safetensors"),
        "{stderr}"
    );
}
