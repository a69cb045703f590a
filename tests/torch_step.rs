//! tools/torch_step.py end to end: a checkpoint and a batch through `fer-cbam debug-step` and
//! through the project's PyTorch module (tools/torch_model.py) in f64 and f32, compared tensor
//! by tensor. Needs a Python with torch and safetensors (`FER_CBAM_PYTHON`, else `python3`);
//! without one the test says so on stderr and passes.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> Option<PathBuf> {
    let exe = std::env::var_os("FER_CBAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("python3"));
    let ok = Command::new(&exe)
        .args(["-c", "import torch, safetensors"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(exe)
}

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/torch_step.py")
}

#[test]
fn torch_step_holds_debug_step_against_pytorch_f64_and_f32() {
    let Some(py) = python() else {
        eprintln!(
            "SKIPPED torch_step_holds_debug_step_against_pytorch_f64_and_f32: no Python with \
             torch and safetensors (set FER_CBAM_PYTHON to one)"
        );
        return;
    };
    let dir = TempDir::new("torch-step");
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let (ok, _, err) = run_bin(&[
        "init",
        "--out",
        &p("c.safetensors"),
        "--seed",
        "3",
        "--image-size",
        "16",
        "--widths",
        "4,8",
    ]);
    assert!(ok, "{err}");
    let run_py = |args: &[&str]| {
        let out = Command::new(&py).arg(tool()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "torch_step.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run_py(&[
        "--checkpoint",
        &p("c.safetensors"),
        "--make-batch",
        &p("b.safetensors"),
        "--n",
        "3",
    ]);
    let (ok, _, err) = run_bin(&[
        "debug-step",
        "--checkpoint",
        &p("c.safetensors"),
        "--batch",
        &p("b.safetensors"),
        "--out",
        &p("o.safetensors"),
    ]);
    assert!(ok, "{err}");
    let text = run_py(&[
        "--checkpoint",
        &p("c.safetensors"),
        "--batch",
        &p("b.safetensors"),
        "--ours",
        &p("o.safetensors"),
        "--json",
        &p("r.json"),
    ]);
    assert!(text.contains("worst per group"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p("r.json")).unwrap()).unwrap();
    let rows = json["tensors"].as_array().unwrap();
    // logits, loss, 2 stages x 8 gate and conv tensors x (grad, param), 4 head x 2.
    assert_eq!(rows.len(), 2 + 2 * (2 * 8 + 4), "{text}");
    for r in rows {
        let name = r["tensor"].as_str().unwrap();
        let (ours, f32) = (
            r["ours"].as_f64().unwrap(),
            r["torch_f32"].as_f64().unwrap(),
        );
        // A small network: sums of at most a few hundred terms, no near-ties at this seed.
        // Both f32 runs agree with f64 to well under 2e-5 (parameters after the step too: at
        // this size every gradient is resolvable).
        assert!(ours < 2e-5, "{name}: ours {ours:e}\n{text}");
        assert!(f32 < 2e-5, "{name}: torch f32 {f32:e}\n{text}");
    }
}
