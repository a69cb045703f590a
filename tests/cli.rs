//! The binary's commands: happy paths and one-line errors on bad input.

use std::process::Command;

fn fer_cbam(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fer-cbam-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["info", "--help"],
        vec!["init", "--help"],
    ] {
        let (ok, stdout, _) = fer_cbam(&cmd);
        assert!(ok && stdout.contains("Usage"), "{cmd:?}: {stdout}");
    }
}

#[test]
fn info_model_prints_the_parameter_table() {
    let (ok, stdout, stderr) = fer_cbam(&["info", "--model"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("stages.0.conv.weight") && stdout.contains("[32, 3, 3, 3]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("head.fc2.bias") && stdout.contains("434001"),
        "{stdout}"
    );
    let (ok, stdout, _) = fer_cbam(&["info", "--model", "--attention", "none"]);
    assert!(
        ok && !stdout.contains("cbam") && stdout.contains(&format!("{}", 434_001 - 11_786)),
        "{stdout}"
    );
}

#[test]
fn init_writes_a_loadable_checkpoint_and_the_same_seed_gives_the_same_file() {
    let dir = tmp_dir("init");
    let a = dir.join("a.safetensors");
    let b = dir.join("b.safetensors");
    for p in [&a, &b] {
        let (ok, stdout, stderr) = fer_cbam(&[
            "init",
            "--seed",
            "5",
            "--out",
            p.to_str().unwrap(),
            "--image-size",
            "48",
            "--widths",
            "8,16,32",
        ]);
        assert!(ok && stdout.contains("wrote"), "{stderr}");
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let ck = fer_cbam::model::checkpoint::load(&a).unwrap();
    assert_eq!(ck.config.widths, [8, 16, 32]);
    assert_eq!(ck.config.image_size, 48);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let dir = tmp_dir("bad");
    let out = dir.join("x.safetensors");
    let (ok, _, stderr) = fer_cbam(&[
        "init",
        "--out",
        out.to_str().unwrap(),
        "--image-size",
        "8",
        "--widths",
        "8,8,8,8",
    ]);
    assert!(
        !ok && stderr.trim().lines().count() == 1 && stderr.contains("image size 8"),
        "{stderr}"
    );
    assert!(!out.exists());
    let (ok, _, stderr) = fer_cbam(&["init", "--out", "/nonexistent-dir/x.safetensors"]);
    assert!(
        !ok && stderr.trim().lines().count() == 1
            && stderr.contains("/nonexistent-dir/x.safetensors"),
        "{stderr}"
    );
    let (ok, _, stderr) = fer_cbam(&[
        "init",
        "--out",
        out.to_str().unwrap(),
        "--attention",
        "sideways",
    ]);
    assert!(!ok && stderr.contains("sideways"), "{stderr}");
}
