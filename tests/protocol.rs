//! The evaluation protocols (`kfold`, `holdout`, `cross`) through the binary, on tiny models,
//! and the loss's class weights on the network.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use fer_cbam::model::{ModelConfig, Network, ParamTable, TrainOptions};
use fer_cbam_reference::softmax_xent as ref_xent;
use serde_json::Value;

/// Tiny model flags: each model trains in well under a second on lavapipe.
const TINY: [&str; 11] = [
    "--image-size",
    "16",
    "--widths",
    "4,8",
    "--batch-size",
    "8",
    "--epochs",
    "1",
    "--seed",
    "3",
    "--quiet",
];

/// Runs a protocol command into `out` and returns its parsed report.json.
fn run(args: &[&str], out: &Path) -> Value {
    let mut a: Vec<&str> = args.to_vec();
    a.extend_from_slice(&TINY);
    a.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let (ok, stdout, stderr) = run_bin(&a);
    assert!(ok, "{a:?}: {stderr}");
    assert!(stdout.contains("report written to"), "{stdout}");
    for f in ["report.json", "report.md"] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
        .expect("report.json parses");
    for key in [
        "protocol",
        "complete",
        "settings",
        "classes",
        "occlusions",
        "data",
        "folds",
        "models",
        "summary",
        "seconds",
    ] {
        assert!(v.get(key).is_some(), "report.json lacks {key}");
    }
    assert_eq!(v["complete"], true);
    let models = v["models"].as_array().unwrap();
    let curves = std::fs::read_dir(out.join("curves")).unwrap().count();
    assert_eq!(curves, models.len(), "one curve file per model");
    for m in models {
        let id = m["id"].as_str().unwrap();
        let csv = std::fs::read_to_string(out.join("curves").join(format!("{id}.csv"))).unwrap();
        assert_eq!(csv.lines().count(), 2, "header and one epoch: {csv}");
        assert_eq!(m["curve"].as_array().unwrap().len(), 1);
        let png = out.join("figures").join("curves").join(format!("{id}.png"));
        assert!(image::open(&png).is_ok(), "{} is not a PNG", png.display());
    }
    // Figures: a confusion heat map and ROC curves per summary row (pooled over folds), one
    // metrics section per row, and the accuracy bars.
    let summary = v["summary"].as_array().unwrap();
    let md = std::fs::read_to_string(out.join("metrics.md")).unwrap();
    assert_eq!(md.matches("\n## ").count(), summary.len(), "{md}");
    for kind in ["confusion", "roc"] {
        let n = std::fs::read_dir(out.join("figures"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(kind))
            .count();
        assert_eq!(n, summary.len(), "{kind} figures");
    }
    assert!(image::open(out.join("figures").join("accuracy.png")).is_ok());
    v
}

/// The report without wall times, which are the only thing a seeded rerun may change.
fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.contains("seconds"))
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// Checks, per (k, attention, occlusion), that the folds' evaluations cover every example
/// exactly once, that each evaluation's labels are its examples' labels, and that the summary
/// row's summed confusion counts every example once.
fn check_kfold(v: &Value, n: usize, ks: &[usize], attentions: &[&str], occlusions: &[&str]) {
    let samples = v["data"]["samples"].as_array().unwrap();
    assert_eq!(samples.len(), n);
    let label = |i: usize| samples[i]["label"].as_u64().unwrap() as u32;
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), ks.iter().sum::<usize>() * attentions.len());
    let summary = v["summary"].as_array().unwrap();
    assert_eq!(
        summary.len(),
        ks.len() * attentions.len() * occlusions.len()
    );
    for &k in ks {
        for &a in attentions {
            let ms: Vec<&Value> = models
                .iter()
                .filter(|m| m["k"] == k && m["attention"] == a)
                .collect();
            assert_eq!(ms.len(), k, "k={k} {a}");
            for &o in occlusions {
                let mut seen = vec![0; n];
                for m in &ms {
                    let e = m["evaluations"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|e| e["occlusion"] == o)
                        .unwrap_or_else(|| panic!("{} has no {o} evaluation", m["id"]));
                    let idx = usizes(&e["indices"]);
                    let labels = usizes(&e["labels"]);
                    assert_eq!(idx.len(), labels.len());
                    assert_eq!(e["probs"].as_array().unwrap().len(), 7 * idx.len());
                    for (&i, &y) in idx.iter().zip(&labels) {
                        seen[i] += 1;
                        assert_eq!(label(i), y as u32, "label of example {i}");
                    }
                }
                assert!(
                    seen.iter().all(|&c| c == 1),
                    "k={k} {a} {o}: each example once, got {seen:?}"
                );
                let row = summary
                    .iter()
                    .find(|r| r["k"] == k && r["attention"] == a && r["occlusion"] == o)
                    .unwrap();
                assert_eq!(row["models"], k);
                assert_eq!(row["accuracies"].as_array().unwrap().len(), k);
                let total: u64 = row["confusion"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()))
                    .sum();
                assert_eq!(
                    total as usize, n,
                    "summed confusion counts every example once"
                );
                let accs: Vec<f64> = row["accuracies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect();
                let mean = accs.iter().sum::<f64>() / k as f64;
                assert!((row["accuracy_mean"].as_f64().unwrap() - mean).abs() < 1e-12);
            }
        }
    }
    // The folds of each k: disjoint, covering, and what the models were tested on.
    for f in v["folds"].as_array().unwrap() {
        let k = f["k"].as_u64().unwrap() as usize;
        let tests: Vec<Vec<usize>> = f["test"].as_array().unwrap().iter().map(usizes).collect();
        assert_eq!(tests.len(), k);
        let mut all: Vec<usize> = tests.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..n).collect::<Vec<_>>(),
            "k={k}: folds partition the pool"
        );
        for m in models.iter().filter(|m| m["k"] == k) {
            let fold = m["fold"].as_u64().unwrap() as usize;
            assert_eq!(m["test_size"].as_u64().unwrap() as usize, tests[fold].len());
            assert_eq!(
                m["train_size"].as_u64().unwrap() as usize,
                n - tests[fold].len()
            );
        }
    }
}

#[test]
fn kfold_on_synthetic_faces_is_stratified_complete_and_reproducible() {
    let dir = tmp_dir("protocol-kfold-synth");
    let args = [
        "kfold",
        "--synthetic",
        "70",
        "--folds",
        "2,5",
        "--attention",
        "none",
        "--occlusions",
        "clean,patch16,eyes",
    ];
    let a = run(&args, &dir.join("a"));
    assert_eq!(a["protocol"], "kfold");
    check_kfold(&a, 70, &[2, 5], &["none"], &["clean", "patch16", "eyes"]);
    // Stratified: without groups a class's count differs by at most one between folds.
    let samples = a["data"]["samples"].as_array().unwrap();
    for f in a["folds"].as_array().unwrap() {
        let mut per_class: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let folds = f["test"].as_array().unwrap();
        for (fi, t) in folds.iter().enumerate() {
            for i in usizes(t) {
                let c = samples[i]["label"].as_u64().unwrap();
                per_class.entry(c).or_insert_with(|| vec![0; folds.len()])[fi] += 1;
            }
        }
        for (c, counts) in per_class {
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "class {c} over folds: {counts:?}");
        }
    }
    let md = std::fs::read_to_string(dir.join("a").join("report.md")).unwrap();
    assert!(
        md.contains("| k | attention | clean | patch16 | eyes |"),
        "{md}"
    );
    assert!(md.contains("| 5 | none |") && md.contains("±"), "{md}");
    // Seeded: a rerun writes the same report, wall times aside.
    let b = run(&args, &dir.join("b"));
    assert!(
        without_times(&a) == without_times(&b),
        "a seeded rerun must give the same report"
    );
}

/// A CK+-like folder: 16x16 PNGs named `S<subject>_<sequence>_<frame>.png` in class folders,
/// `subjects` subjects with one sequence of `frames` frames in each of two classes (brightness
/// and a bar position by class, noise by frame).
fn write_subjects(root: &Path, subjects: usize, frames: usize) -> usize {
    let classes = ["angry", "happy", "sad", "surprise"];
    let mut n = 0;
    for s in 0..subjects {
        for q in 0..2 {
            let c = (s + q) % classes.len();
            let d = root.join(classes[c]);
            std::fs::create_dir_all(&d).unwrap();
            for f in 0..frames {
                let img = image::GrayImage::from_fn(16, 16, |x, y| {
                    let bar = (y as usize / 4 == c) as u8 * 100;
                    image::Luma(
                        [(30 + 30 * c as u32 + (x * 7 + y * 3 + f as u32) % 11) as u8 + bar],
                    )
                });
                img.save(d.join(format!("S{:03}_{:03}_{:08}.png", s + 1, q + 1, f + 1)))
                    .unwrap();
                n += 1;
            }
        }
    }
    n
}

#[test]
fn kfold_by_subject_never_splits_a_subject_across_folds() {
    let dir = tmp_dir("protocol-kfold-groups");
    let data = dir.join("ck");
    let n = write_subjects(&data, 12, 2);
    // A landmark sidecar for the angry images only: the report must say that those came from
    // it and the rest from the template.
    let mut angry: Vec<String> = std::fs::read_dir(data.join("angry"))
        .unwrap()
        .flatten()
        .map(|e| format!("angry/{}", e.file_name().to_string_lossy()))
        .collect();
    angry.sort();
    let mut csv = String::from("file");
    for k in 0..68 {
        csv += &format!(",x{k},y{k}");
    }
    for f in &angry {
        csv += &format!("\n{f}");
        for k in 0..68 {
            csv += &format!(",{},{}", 2 + k % 12, 3 + k % 10);
        }
    }
    let sidecar = dir.join("lm.csv");
    std::fs::write(&sidecar, csv + "\n").unwrap();
    let v = run(
        &[
            "kfold",
            "--data",
            data.to_str().unwrap(),
            "--landmarks-csv",
            sidecar.to_str().unwrap(),
            "--group-by",
            "subject",
            "--landmarks",
            "ckplus48",
            "--folds",
            "3",
            "--attention",
            "full,none",
            "--occlusions",
            "clean,mouth",
            "--class-weights",
        ],
        &dir.join("out"),
    );
    check_kfold(&v, n, &[3], &["full", "none"], &["clean", "mouth"]);
    let samples = v["data"]["samples"].as_array().unwrap();
    for f in v["folds"].as_array().unwrap() {
        let mut fold_of: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
        for (fi, t) in f["test"].as_array().unwrap().iter().enumerate() {
            for i in usizes(t) {
                let g = samples[i]["group"]
                    .as_str()
                    .expect("CK+ names carry a subject");
                fold_of.entry(g.to_string()).or_default().insert(fi);
            }
        }
        assert_eq!(fold_of.len(), 12);
        for (g, folds) in fold_of {
            assert_eq!(folds.len(), 1, "subject {g} in folds {folds:?}");
        }
    }
    let lm = v["data"]["test_landmarks"].as_str().unwrap();
    assert!(lm.contains("template (CkPlus48)"), "{lm}");
    assert!(lm.contains("sidecar"), "{lm}");
    assert!(
        v["data"]["train"]
            .as_str()
            .unwrap()
            .contains(&format!("{} from a sidecar CSV", angry.len())),
        "{}",
        v["data"]["train"]
    );
    // Class weights come from each model's own training side: mean 1 over its classes.
    for m in v["models"].as_array().unwrap() {
        let w: Vec<f64> = m["class_weights"]
            .as_array()
            .expect("--class-weights records the weights")
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(w.len(), 7);
        let present = [0usize, 3, 5, 6]; // angry, happy, sad, surprise
        let mean = present.iter().map(|&c| w[c]).sum::<f64>() / 4.0;
        assert!((mean - 1.0).abs() < 1e-5, "{w:?}");
    }
}

#[test]
fn validation_parts_come_from_each_folds_training_side_by_subject() {
    let dir = tmp_dir("protocol-kfold-val");
    let data = dir.join("ck");
    let n = write_subjects(&data, 12, 2);
    let v = run(
        &[
            "kfold",
            "--data",
            data.to_str().unwrap(),
            "--group-by",
            "subject",
            "--folds",
            "3",
            "--attention",
            "none",
            "--occlusions",
            "clean",
            "--val-fraction",
            "0.3",
            "--flip",
            "--lr-schedule",
            "step",
        ],
        &dir.join("out"),
    );
    let samples = v["data"]["samples"].as_array().unwrap();
    let subject = |i: usize| samples[i]["group"].as_str().unwrap().to_string();
    let test_folds: Vec<Vec<usize>> = v["folds"][0]["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(usizes)
        .collect();
    for m in v["models"].as_array().unwrap() {
        let fold = m["fold"].as_u64().unwrap() as usize;
        let test: BTreeSet<usize> = test_folds[fold].iter().copied().collect();
        let val: BTreeSet<usize> = usizes(&m["val_indices"]).into_iter().collect();
        assert!(!val.is_empty());
        assert!(val.is_disjoint(&test), "validation from the test side: {m}");
        let train: BTreeSet<usize> = (0..n)
            .filter(|i| !test.contains(i) && !val.contains(i))
            .collect();
        assert_eq!(m["train_size"].as_u64().unwrap() as usize, train.len());
        let (vs, ts): (BTreeSet<String>, BTreeSet<String>) = (
            val.iter().map(|&i| subject(i)).collect(),
            train.iter().map(|&i| subject(i)).collect(),
        );
        assert!(
            vs.is_disjoint(&ts),
            "a subject on both sides: {vs:?} {ts:?}"
        );
        // About 0.3 of the 8 training subjects.
        assert!((2..=3).contains(&vs.len()), "{vs:?}");
        assert_eq!(m["kept_epoch"], 1, "one epoch: the best is the only one");
        assert!(m["curve"][0]["val_accuracy"].is_number(), "{m}");
    }
    assert_eq!(v["settings"]["val_fraction"], 0.3);
    assert_eq!(v["settings"]["lr_schedule"]["decay"]["kind"], "step");
    let md = std::fs::read_to_string(dir.join("out").join("report.md")).unwrap();
    assert!(md.contains("kept epoch"), "{md}");
    let csv = std::fs::read_to_string(dir.join("out/curves/k3-none-fold0.csv")).unwrap();
    assert!(
        csv.starts_with("epoch,loss,accuracy,test_accuracy,val_accuracy,lr\n"),
        "{csv}"
    );
}

#[test]
fn holdout_and_cross_dataset_reports() {
    let dir = tmp_dir("protocol-holdout-cross");
    let a = dir.join("a");
    let b = dir.join("b");
    let n_a = write_subjects(&a, 10, 3);
    let n_b = write_subjects(&b, 4, 2);

    let v = run(
        &[
            "holdout",
            "--data",
            a.to_str().unwrap(),
            "--group-by",
            "subject",
            "--occlusions",
            "clean,patch24,eyes",
        ],
        &dir.join("holdout"),
    );
    assert_eq!(v["protocol"], "holdout");
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "full and none by default");
    let n_test = v["data"]["samples"].as_array().unwrap().len();
    for m in models {
        assert!(m["k"].is_null() && m["fold"].is_null());
        assert_eq!(m["test_size"].as_u64().unwrap() as usize, n_test);
        assert_eq!(
            m["train_size"].as_u64().unwrap() as usize + n_test,
            n_a,
            "80:20 of all images"
        );
        let occ: Vec<&str> = m["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["occlusion"].as_str().unwrap())
            .collect();
        assert_eq!(occ, ["clean", "patch24", "eyes"]);
        for e in m["evaluations"].as_array().unwrap() {
            assert_eq!(usizes(&e["indices"]), (0..n_test).collect::<Vec<_>>());
        }
    }
    assert_eq!(v["summary"].as_array().unwrap().len(), 2 * 3);
    let md = std::fs::read_to_string(dir.join("holdout").join("report.md")).unwrap();
    assert!(
        md.contains("| attention | clean | patch24 | eyes |"),
        "{md}"
    );

    let v = run(
        &[
            "cross",
            "--train",
            &format!("{},{}", a.display(), b.display()),
            "--test",
            b.to_str().unwrap(),
            "--attention",
            "none",
            "--occlusions",
            "clean,mouth",
        ],
        &dir.join("cross"),
    );
    assert_eq!(v["protocol"], "cross");
    let m = &v["models"][0];
    assert_eq!(m["train_size"].as_u64().unwrap() as usize, n_a + n_b);
    assert_eq!(m["test_size"].as_u64().unwrap() as usize, n_b);
    assert_eq!(usizes(&m["evaluations"][1]["indices"]).len(), n_b);
    assert_eq!(v["data"]["samples"].as_array().unwrap().len(), n_b);
}

#[test]
fn bad_protocol_inputs_are_one_line_errors() {
    let dir = tmp_dir("protocol-bad");
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let missing = dir.join("missing");
    let m = missing.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["kfold", "--synthetic", "40", "--folds", "1"],
            "--folds",
        ),
        (vec!["kfold", "--data", m], m),
        (vec!["holdout", "--data", m], m),
        (vec!["cross", "--train", m, "--test", m], m),
        (
            vec!["kfold", "--synthetic", "40", "--occlusions", "clean,nose"],
            "nose",
        ),
        (
            vec!["kfold", "--synthetic", "40", "--group-by", "subject"],
            "subject",
        ),
    ];
    for (args, want) in cases {
        let mut a = args.clone();
        a.extend_from_slice(&["--out", o, "--image-size", "16", "--widths", "4,8"]);
        let (ok, _, stderr) = run_bin(&a);
        assert!(
            !ok && stderr.trim().lines().count() == 1
                && stderr.starts_with("error:")
                && stderr.contains(want),
            "{args:?}: {stderr}"
        );
        assert!(!out.exists(), "{args:?}: nothing written on a bad input");
    }
    // Clap's own errors for a bad value: the first line says what and names it.
    let (ok, _, stderr) = run_bin(&["kfold", "--attention", "bogus", "--out", o]);
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        !ok && first.starts_with("error:") && first.contains("bogus"),
        "{stderr}"
    );
}

/// The loss with class weights: a step of the weighted network has the reference's weighted
/// loss and weighted logit gradient on the network's own logits.
#[test]
fn a_weighted_step_has_the_reference_weighted_loss() {
    let gpu = gpu();
    let config = ModelConfig {
        image_size: 16,
        widths: vec![4, 8],
        dropout: 0.0,
        ..ModelConfig::default()
    };
    let (n, k) = (6, config.classes.len());
    let weights = [0.5f32, 2.0, 1.0, 1.0, 3.0, 0.25, 1.0];
    let packed = ParamTable::new(&config).init(4);
    let images: Vec<f32> = random(8, n * 3 * 16 * 16)
        .iter()
        .map(|v| 0.5 + 0.5 * v)
        .collect();
    let labels: Vec<u32> = vec![0, 1, 4, 5, 1, 6];
    let step = |w: Option<Vec<f32>>| {
        let options = TrainOptions {
            class_weights: w,
            ..TrainOptions::default()
        };
        let net = block_on(Network::new(gpu, &config, n, options)).unwrap();
        net.write_params(gpu, &packed).unwrap();
        net.write_batch(gpu, &images, &labels).unwrap();
        net.forward_backward(gpu, false).unwrap();
        gpu.wait().unwrap();
        let bias = net.table().get("head.fc2.bias").unwrap().offset;
        let grads = read(net.grads());
        (
            read(net.logits()),
            read(net.loss())[0],
            grads[bias..bias + k].to_vec(),
        )
    };
    let (logits, loss, d_bias) = step(Some(weights.to_vec()));
    let shape = ref_xent::Shape { n, k };
    let w64 = to_f64(&weights);
    let want = ref_xent::forward(&to_f64(&logits), &labels, Some(&w64), &shape);
    // One f32 log-sum-exp per row and a weighted sum of 6 terms: a few ulps of the loss.
    let tol = Tol {
        atol: 1e-6,
        rtol: 1e-5,
        why: "f32 softmax cross-entropy over 6 rows of 7 logits vs f64: ~10 roundings",
    };
    assert_close("weighted loss", &[loss], &[want.loss], tol);
    // The fc2 bias gradient is the column sum of the weighted dlogits.
    let d = ref_xent::backward(&want.probs, &labels, Some(&w64), &shape);
    let col: Vec<f64> = (0..k).map(|c| (0..n).map(|r| d[r * k + c]).sum()).collect();
    assert_close("weighted d fc2.bias", &d_bias, &col, tol);
    // And the weights matter: the unweighted loss of the same logits is another number.
    let (logits2, plain, _) = step(None);
    assert_eq!(logits, logits2, "the weights do not touch the forward");
    let unweighted = ref_xent::forward(&to_f64(&logits), &labels, None, &shape).loss;
    assert_close("plain loss", &[plain], &[unweighted], tol);
    assert!(
        (want.loss - unweighted).abs() > 1e-3,
        "test needs distinct losses"
    );
    // A wrong number of weights is refused.
    let bad = TrainOptions {
        class_weights: Some(vec![1.0; 3]),
        ..TrainOptions::default()
    };
    let err = block_on(Network::new(gpu, &config, n, bad)).err().unwrap();
    assert!(err.to_string().contains("class weights"), "{err}");
}
