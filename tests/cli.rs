//! The binary's commands: happy paths and one-line errors on bad input.

mod common;
use common::{run_bin, tmp_dir};

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["info", "--help"],
        vec!["init", "--help"],
    ] {
        let (ok, stdout, _) = run_bin(&cmd);
        assert!(ok && stdout.contains("Usage"), "{cmd:?}: {stdout}");
    }
}

/// Every command that builds a model takes the recipe flags, with help text naming the choices.
#[test]
fn every_model_building_command_takes_the_recipe_flags() {
    for cmd in [
        "info", "init", "train", "kfold", "holdout", "cross", "demo", "profile",
    ] {
        let (ok, stdout, stderr) = run_bin(&[cmd, "--help"]);
        assert!(ok, "{cmd}: {stderr}");
        for flag in [
            "--norm <none|batch>",
            "--init <pytorch|he|glorot>",
            "--gate <multiply|residual>",
        ] {
            assert!(stdout.contains(flag), "{cmd} --help lacks {flag}: {stdout}");
        }
    }
    let (ok, _, stderr) = run_bin(&["init", "--out", "x.safetensors", "--norm", "layer"]);
    assert!(
        !ok && stderr.contains("layer") && stderr.contains("none, batch"),
        "{stderr}"
    );
    let (ok, _, stderr) = run_bin(&["init", "--out", "x.safetensors", "--init", "zeros"]);
    assert!(
        !ok && stderr.contains("zeros") && stderr.contains("pytorch, he, glorot"),
        "{stderr}"
    );
}

#[test]
fn info_model_shows_the_batch_norm_parameters_and_buffers() {
    let (ok, stdout, stderr) = run_bin(&["info", "--model", "--norm", "batch"]);
    assert!(ok, "{stderr}");
    for want in [
        "stages.3.bn.weight",
        "stages.0.bn.running_mean",
        "stages.2.bn.running_var",
        "stages.1.bn.num_batches_tracked",
        "434961",
        "stages.0.bn_out",
        "stages.0.d_bn_out",
    ] {
        assert!(stdout.contains(want), "no {want}: {stdout}");
    }
}

#[test]
fn recipe_flags_reach_the_checkpoint_and_batch_norm_training_resumes_exactly() {
    let dir = tmp_dir("cli-recipe");
    let init = dir.join("init.safetensors");
    let (ok, _, stderr) = run_bin(&[
        "init",
        "--out",
        init.to_str().unwrap(),
        "--image-size",
        "16",
        "--widths",
        "4,8",
        "--norm",
        "batch",
        "--init",
        "he",
        "--gate",
        "residual",
    ]);
    assert!(ok, "{stderr}");
    let ck = fer_cbam::model::checkpoint::load(&init).unwrap();
    use fer_cbam::model::{Gate, Init, Norm};
    assert_eq!(
        (ck.config.norm, ck.config.init, ck.config.gate),
        (Norm::Batch, Init::He, Gate::Residual)
    );
    assert_eq!(ck.batches_tracked, 0);

    // A cosine schedule planned for the two epochs, so that the resumed one continues its curve.
    let recipe = [
        "--norm",
        "batch",
        "--gate",
        "residual",
        "--init",
        "he",
        "--schedule-epochs",
        "2",
    ];
    let train = |out: &std::path::Path, epochs: &str, resume: Option<&std::path::Path>| {
        let mut args = vec![
            "train",
            "--out",
            out.to_str().unwrap(),
            "--synthetic",
            "70",
            "--json",
            "--image-size",
            "16",
            "--widths",
            "4,8",
            "--batch-size",
            "8",
            "--epochs",
            epochs,
        ];
        args.extend_from_slice(&recipe);
        if let Some(r) = resume {
            args.extend_from_slice(&["--resume", r.to_str().unwrap()]);
        }
        let (ok, stdout, stderr) = run_bin(&args);
        assert!(ok, "{stderr}");
        serde_json::from_str::<serde_json::Value>(stdout.trim()).expect(&stdout)
    };
    let one = dir.join("one.safetensors");
    let report = train(&one, "1", None);
    let ck = fer_cbam::model::checkpoint::load(&one).unwrap();
    assert_eq!(ck.batches_tracked, 7, "56 training faces in batches of 8");
    let table = fer_cbam::model::ParamTable::new(&ck.config);
    assert_ne!(
        ck.buffers,
        table.init_buffers(),
        "the running statistics moved"
    );
    // eval reloads the running statistics: the same predictions as the evaluation that train
    // ran on the network in memory.
    let (ok, stdout, stderr) = run_bin(&[
        "eval",
        "--checkpoint",
        one.to_str().unwrap(),
        "--synthetic",
        "70",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let eval: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(eval["confusion"], report["confusion"]);
    // One epoch, then a resumed one, equals two in one run: parameters, Adam's state and the
    // running statistics all carry over.
    let resumed = dir.join("resumed.safetensors");
    train(&resumed, "1", Some(&one));
    let two = dir.join("two.safetensors");
    train(&two, "2", None);
    assert!(
        std::fs::read(&two).unwrap() == std::fs::read(&resumed).unwrap(),
        "a resumed batch-norm run must continue exactly"
    );
    assert_eq!(
        fer_cbam::model::checkpoint::load(&two)
            .unwrap()
            .batches_tracked,
        14
    );
}

#[test]
fn info_model_prints_the_parameter_table() {
    let (ok, stdout, stderr) = run_bin(&["info", "--model"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("stages.0.conv.weight") && stdout.contains("[32, 3, 3, 3]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("head.fc2.bias") && stdout.contains("434001"),
        "{stdout}"
    );
    let (ok, stdout, _) = run_bin(&["info", "--model", "--attention", "none"]);
    assert!(
        ok && !stdout.contains("cbam") && stdout.contains(&format!("{}", 434_001 - 11_786)),
        "{stdout}"
    );
}

#[test]
fn init_writes_a_loadable_checkpoint_and_the_same_seed_gives_the_same_file() {
    let dir = tmp_dir("cli-init");
    let a = dir.join("a.safetensors");
    let b = dir.join("b.safetensors");
    for p in [&a, &b] {
        let (ok, stdout, stderr) = run_bin(&[
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
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "the same seed must give the same bytes"
    );
    let ck = fer_cbam::model::checkpoint::load(&a).unwrap();
    assert_eq!(ck.config.widths, [8, 16, 32]);
    assert_eq!(ck.config.image_size, 48);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let dir = tmp_dir("cli-bad");
    let out = dir.join("x.safetensors");
    let (ok, _, stderr) = run_bin(&[
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
    let (ok, _, stderr) = run_bin(&["init", "--out", "/nonexistent-dir/x.safetensors"]);
    assert!(
        !ok && stderr.trim().lines().count() == 1
            && stderr.contains("/nonexistent-dir/x.safetensors"),
        "{stderr}"
    );
    let (ok, _, stderr) = run_bin(&[
        "init",
        "--out",
        out.to_str().unwrap(),
        "--attention",
        "sideways",
    ]);
    assert!(!ok && stderr.contains("sideways"), "{stderr}");
}

/// Tiny model flags for fast end-to-end runs.
/// One epoch of a tiny network, on a cosine schedule planned for two (so that a resumed second
/// epoch continues the same curve).
const TINY: [&str; 10] = [
    "--image-size",
    "16",
    "--widths",
    "4,8",
    "--batch-size",
    "8",
    "--epochs",
    "1",
    "--schedule-epochs",
    "2",
];

#[test]
fn train_resume_eval_and_predict_end_to_end_on_synthetic_faces() {
    let dir = tmp_dir("cli-train");
    let ck = dir.join("m.safetensors");
    let ck_s = ck.to_str().unwrap();
    let mut args = vec![
        "train",
        "--out",
        ck_s,
        "--synthetic",
        "70",
        "--json",
        "--occlusion-mix",
        "0.5",
    ];
    args.extend_from_slice(&TINY);
    let (ok, stdout, stderr) = run_bin(&args);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert_eq!(v["images"], 14);
    assert_eq!(v["confusion"].as_array().unwrap().len(), 7);
    let optim = dir.join("m.optim.safetensors");
    assert!(ck.exists() && optim.exists());
    let step_of = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        meta.metadata().as_ref().unwrap()["adam.step"]
            .parse::<u32>()
            .unwrap()
    };
    assert_eq!(step_of(&optim), 7, "56 training faces in batches of 8");
    // The same seed, data and config give a bit-identical checkpoint.
    let again = dir.join("again.safetensors");
    let mut args2 = vec![
        "train",
        "--out",
        again.to_str().unwrap(),
        "--synthetic",
        "70",
        "--quiet",
        "--occlusion-mix",
        "0.5",
    ];
    args2.extend_from_slice(&TINY);
    assert!(run_bin(&args2).0);
    assert!(
        std::fs::read(&ck).unwrap() == std::fs::read(&again).unwrap(),
        "retraining changed the checkpoint"
    );

    // Resume continues the step count from the optimizer state.
    let ck2 = dir.join("m2.safetensors");
    let (ok, _, stderr) = run_bin(&[
        "train",
        "--resume",
        ck_s,
        "--out",
        ck2.to_str().unwrap(),
        "--synthetic",
        "70",
        "--epochs",
        "1",
        "--schedule-epochs",
        "2",
        "--batch-size",
        "8",
        "--quiet",
        "--occlusion-mix",
        "0.5",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(step_of(&dir.join("m2.optim.safetensors")), 14);
    // ... exactly: one epoch plus a resumed epoch equals two epochs in one run, which saves
    // after each epoch on the way (a save during training changes nothing of the run).
    let two = dir.join("two.safetensors");
    let (ok, _, stderr) = run_bin(&[
        "train",
        "--out",
        two.to_str().unwrap(),
        "--synthetic",
        "70",
        "--epochs",
        "2",
        "--checkpoint-every",
        "1",
        "--batch-size",
        "8",
        "--quiet",
        "--image-size",
        "16",
        "--widths",
        "4,8",
        "--occlusion-mix",
        "0.5",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        std::fs::read(&two).unwrap() == std::fs::read(&ck2).unwrap(),
        "a resumed run must continue exactly"
    );

    for occ in ["none", "eyes", "patch16"] {
        let (ok, stdout, stderr) = run_bin(&[
            "eval",
            "--checkpoint",
            ck_s,
            "--synthetic",
            "70",
            "--occlusion",
            occ,
            "--json",
        ]);
        assert!(ok, "{occ}: {stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(v["images"], 14);
        assert_eq!(v["occlusion"], occ);
        assert!(v["landmarks"].as_str().unwrap().contains("exact"));
    }
    let (ok, _, stderr) = run_bin(&[
        "eval",
        "--checkpoint",
        ck_s,
        "--synthetic",
        "70",
        "--occlusion",
        "nose",
    ]);
    assert!(!ok && stderr.contains("nose"), "{stderr}");

    if let Some(img) = common::dataset("ckplus/happy") {
        let (ok, stdout, stderr) =
            run_bin(&["predict", "--checkpoint", ck_s, img.to_str().unwrap()]);
        assert!(ok, "{stderr}");
        let first = stdout.lines().next().unwrap();
        assert_eq!(first.matches(", ").count(), 2, "top-3 per image: {first}");
        assert_eq!(
            stdout.lines().count(),
            std::fs::read_dir(&img).unwrap().count()
        );
    }
}

#[test]
fn the_recipe_resumes_exactly_and_keeps_the_best_validation_epoch() {
    let dir = tmp_dir("cli-recipe-val");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let recipe = [
        "--synthetic",
        "70",
        "--image-size",
        "16",
        "--widths",
        "4,8",
        "--batch-size",
        "8",
        "--occlusion-mix",
        "0.5",
        "--flip",
        "--shift",
        "2",
        "--lr-schedule",
        "cosine",
        "--warmup-epochs",
        "1",
        "--val-fraction",
        "0.2",
    ];
    let train = |out: &str, extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["train", "--out", out, "--json"];
        a.extend_from_slice(&recipe);
        a.extend_from_slice(extra);
        let (ok, stdout, stderr) = run_bin(&a);
        assert!(ok, "{a:?}: {stderr}");
        serde_json::from_str(stdout.trim()).expect(&stdout)
    };
    // Two epochs in one run.
    let (two, one, resumed) = (
        p("two.safetensors"),
        p("one.safetensors"),
        p("resumed.safetensors"),
    );
    let v = train(&two, &["--epochs", "2"]);
    let epochs = v["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    // 56 training faces, 8 of each class: 2 of each held out (a fifth, rounded), 42 left, 5
    // steps of 8.
    assert_eq!(v["validation"]["images"], 14);
    assert_eq!(epochs[1]["step"], 10);
    for e in epochs {
        assert!(e["val"]["accuracy"].is_number(), "{e}");
    }
    let kept = v["validation"]["kept_epoch"].as_u64().unwrap();
    assert!(kept == 1 || kept == 2);
    // Warm-up over the first epoch: its last step at the base rate; then the cosine.
    assert_eq!(epochs[0]["lr"], 1e-3);
    let lr2 = epochs[1]["lr"].as_f64().unwrap();
    assert!(lr2 > 0.0 && lr2 < 1e-4, "{lr2}");
    assert_eq!(v["lr_schedule"]["total_epochs"], 2);

    // The same run stopped after one epoch of its two, then resumed for the other: the same
    // checkpoint and optimizer state to the bit, augmentation, schedule and selection included.
    train(&one, &["--epochs", "1", "--schedule-epochs", "2"]);
    let r = train(&resumed, &["--epochs", "1", "--resume", &one]);
    assert_eq!(r["validation"]["kept_epoch"], kept);
    let optim = |ck: &str| ck.replace(".safetensors", ".optim.safetensors");
    assert!(
        std::fs::read(&two).unwrap() == std::fs::read(&resumed).unwrap(),
        "a resumed run must continue exactly"
    );
    assert!(std::fs::read(optim(&two)).unwrap() == std::fs::read(optim(&resumed)).unwrap());

    // The flags reach the loop: without the flip, another model.
    let noflip = p("noflip.safetensors");
    let mut a = vec!["train", "--out", &noflip, "--quiet", "--epochs", "1"];
    a.extend(recipe.iter().filter(|f| **f != "--flip"));
    a.extend(["--schedule-epochs", "2"]);
    let (ok, _, stderr) = run_bin(&a);
    assert!(ok, "{stderr}");
    assert!(std::fs::read(&noflip).unwrap() != std::fs::read(&one).unwrap());

    // Contradictions are one-line errors.
    for (extra, want) in [
        (
            vec!["--select", "best-val", "--val-fraction", "0"],
            "--val-fraction",
        ),
        (vec!["--shift", "16"], "--shift"),
        (vec!["--val-fraction", "1.5"], "--val-fraction"),
        (
            vec![
                "--lr-schedule",
                "cosine",
                "--epochs",
                "3",
                "--schedule-epochs",
                "2",
            ],
            "cosine schedule",
        ),
    ] {
        let mut a = vec!["train", "--out", &noflip];
        a.extend_from_slice(&recipe[..8]);
        a.extend_from_slice(&extra);
        let (ok, _, stderr) = run_bin(&a);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert!(
            !ok && lines.len() == 1 && lines[0].contains(want),
            "{extra:?}: {stderr}"
        );
    }
}

/// Writes a small class-per-folder dataset of 16x16 PNGs (brightness by class), one corrupt.
fn write_folder(root: &std::path::Path, per_class: usize) {
    for (c, class) in ["angry", "happy", "sad"].iter().enumerate() {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..per_class {
            let v = (40 + 80 * c + i) as u8;
            image::GrayImage::from_pixel(16, 16, image::Luma([v]))
                .save(d.join(format!("{i}.png")))
                .unwrap();
        }
    }
    std::fs::create_dir_all(root.join("contempt")).unwrap();
    std::fs::write(root.join("happy").join("broken.png"), b"not a png").unwrap();
}

#[test]
fn folder_training_counts_unreadable_files_or_stops_when_strict() {
    let dir = tmp_dir("cli-folder");
    let data = dir.join("data");
    write_folder(&data, 10);
    let ck = dir.join("f.safetensors");
    let mut args = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        ck.to_str().unwrap(),
    ];
    args.extend_from_slice(&TINY);
    let (ok, stdout, stderr) = run_bin(&args);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("skipped contempt") || stdout.contains("contempt"),
        "{stdout}"
    );
    assert!(
        stderr.contains("broken.png")
            || stdout.contains("broken.png")
            || stdout.contains("could not be read"),
        "{stdout}{stderr}"
    );
    args.push("--strict");
    let (ok, _, stderr) = run_bin(&args);
    assert!(
        !ok && stderr.trim().lines().count() == 1 && stderr.contains("broken.png"),
        "{stderr}"
    );
}

#[test]
fn bad_data_folders_are_one_line_errors() {
    let dir = tmp_dir("cli-baddata");
    let out = dir.join("x.safetensors");
    let missing = dir.join("nope");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (folder, expect) in [(&missing, "does not exist"), (&empty, "empty")] {
        let mut args = vec![
            "train",
            "--data",
            folder.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(&TINY);
        let (ok, _, stderr) = run_bin(&args);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert!(
            !ok && lines.len() == 1
                && lines[0].contains(folder.to_str().unwrap())
                && lines[0].contains(expect),
            "{stderr}"
        );
    }
    assert!(!out.exists());
    let (ok, _, stderr) = run_bin(&[
        "predict",
        "--checkpoint",
        "/nonexistent.safetensors",
        "x.png",
    ]);
    assert!(
        !ok && stderr.contains("/nonexistent.safetensors"),
        "{stderr}"
    );
}

#[test]
fn demo_writes_its_report() {
    let dir = tmp_dir("cli-demo");
    let out = dir.join("report");
    let (ok, stdout, stderr) = run_bin(&[
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--synthetic",
        "70",
        "--epochs",
        "1",
        "--quiet",
    ]);
    assert!(ok, "{stderr}");
    for row in [
        "| clean |",
        "| patch8 |",
        "| patch16 |",
        "| patch24 |",
        "| eyes |",
        "| mouth |",
    ] {
        assert!(stdout.contains(row), "missing {row}: {stdout}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("with attention") && md.contains("the whole demo"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["results"].as_array().unwrap().len(), 2);
    assert!(out.join("full.safetensors").exists() && out.join("none.safetensors").exists());
    // The attention model's explain figures, linked from the report. 70 faces: 56 train, so the
    // test faces start at index 56.
    for name in [
        "synthetic-56-mouth",
        "synthetic-57-eyes",
        "synthetic-58-mouth",
    ] {
        let png = out.join("explain").join(format!("{name}.png"));
        assert!(png.exists(), "{} missing", png.display());
        assert!(md.contains(&format!("(explain/{name}.png)")), "{md}");
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("explain/explain.json")).unwrap())
            .unwrap();
    assert_eq!(doc["config"]["attention"], "full");
    assert!(doc["images"][0]["columns"][1]["sensitivity"].is_object());
}

#[test]
fn a_checkpoint_with_other_classes_is_refused_in_one_line() {
    let dir = tmp_dir("cli-classes");
    let config = fer_cbam::model::ModelConfig {
        image_size: 16,
        widths: vec![4, 8],
        classes: vec!["calm".into(), "excited".into(), "bored".into()],
        ..Default::default()
    };
    let ck = dir.join("other.safetensors");
    let packed = fer_cbam::model::ParamTable::new(&config).init(0);
    fer_cbam::model::checkpoint::save(&ck, &config, &packed).unwrap();
    let (ok, _, stderr) = run_bin(&[
        "eval",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--synthetic",
        "70",
    ]);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect();
    assert!(!ok && lines.len() == 1, "{stderr}");
    assert!(
        lines[0].contains("other.safetensors")
            && lines[0].contains("calm")
            && lines[0].contains("differ"),
        "{stderr}"
    );
}

/// The training commands default to batch norm and a cosine schedule; `--spec` gives the spec's
/// network and constant rate; `init` keeps the spec's network; `--spec` with `--norm` is refused.
#[test]
fn training_defaults_to_the_recipe_and_spec_restores_the_paper() {
    use fer_cbam::model::{checkpoint, Norm};
    let dir = tmp_dir("cli-spec");
    let train = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let mut args = vec![
            "train",
            "--out",
            out.to_str().unwrap(),
            "--synthetic",
            "70",
            "--quiet",
        ];
        args.extend_from_slice(&TINY);
        args.extend_from_slice(extra);
        let (ok, _, stderr) = run_bin(&args);
        assert!(ok, "{stderr}");
        let ck = checkpoint::load(&out).unwrap();
        let meta = checkpoint::load_training_meta(&out).unwrap().unwrap();
        (
            ck.config.norm,
            meta.recipe["lr_schedule"]["decay"]["kind"].clone(),
        )
    };
    assert_eq!(
        train("default.safetensors", &[]),
        (Norm::Batch, "cosine".into())
    );
    assert_eq!(
        train("spec.safetensors", &["--spec"]),
        (Norm::None, "constant".into())
    );
    // One flag of the recipe can still be changed alone.
    assert_eq!(
        train("constant.safetensors", &["--lr-schedule", "constant"]),
        (Norm::Batch, "constant".into())
    );

    let init = dir.join("init.safetensors");
    let (ok, _, stderr) = run_bin(&["init", "--out", init.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(checkpoint::load(&init).unwrap().config.norm, Norm::None);

    let bad = dir.join("bad.safetensors");
    let (ok, _, stderr) = run_bin(&[
        "train",
        "--out",
        bad.to_str().unwrap(),
        "--spec",
        "--norm",
        "batch",
    ]);
    assert!(
        !ok && stderr.contains("--spec") && stderr.contains("--norm"),
        "{stderr}"
    );
    assert!(!bad.exists());
}
