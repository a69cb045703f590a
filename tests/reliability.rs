//! Bad input and faults, class by class (docs/reliability.md has the table): every test builds
//! its own bad input, and checks that the program refuses it in one line naming the file, or
//! keeps the user's work, instead of crashing, answering wrongly or destroying a file.

mod common;
use common::{gpu, tmp_dir, TempDir};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fer_cbam::data::dataset::{self, Format};
use fer_cbam::data::{face, folder};
use fer_cbam::model::checkpoint::{self, CONFIG_KEY};
use fer_cbam::model::{ModelConfig, Network, ParamTable, TrainOptions};
use fer_cbam::sources::SyntheticSource;
use fer_cbam::train::{self, TrainLoop};
use fer_cbam::Error;

/// Runs the binary with extra environment variables.
fn bin_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn bin(args: &[&str]) -> Output {
    bin_env(args, &[])
}

/// stderr without lavapipe's harmless XDG_RUNTIME_DIR line.
fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The process failed with status `code`, saying so in exactly one line that contains every
/// one of `needles` (no panic, no abort).
fn assert_one_line_error(o: &Output, code: i32, needles: &[&str]) {
    let e = stderr_of(o);
    assert_eq!(o.status.code(), Some(code), "status of: {e}");
    assert_eq!(e.lines().count(), 1, "one line expected: {e}");
    for n in needles {
        assert!(e.contains(n), "{n:?} missing from: {e}");
    }
    assert!(
        !e.contains("panicked") && !e.contains("memory allocation"),
        "{e}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The tiny model every CLI run here trains: 16x16, two stages.
const TINY: [&str; 8] = [
    "--image-size",
    "16",
    "--widths",
    "4,8",
    "--batch-size",
    "8",
    "--synthetic",
    "70",
];

fn tiny_config() -> ModelConfig {
    ModelConfig {
        image_size: 16,
        widths: vec![4, 8],
        ..ModelConfig::default()
    }
}

fn write_png(path: &Path, side: u32, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(side, side, image::Luma([value]))
        .save(path)
        .unwrap();
}

// --- Crashes: sizes ------------------------------------------------------------------------

#[test]
fn sizes_from_flags_are_refused_before_anything_is_allocated() {
    let dir = TempDir::new("rel-sizes");
    let out = dir.path().join("x.safetensors");
    let out = s(&out);
    // Each of these aborted (allocation failure) or panicked (capacity overflow) before.
    for (args, needle) in [
        (
            vec!["init", "--out", out, "--in-channels", "1000000000000"],
            "--in-channels",
        ),
        (
            vec!["init", "--out", out, "--widths", "100000000,2"],
            "--widths",
        ),
        (
            vec!["init", "--out", out, "--image-size", "100000000000000"],
            "--image-size",
        ),
        (
            vec!["train", "--out", out, "--synthetic", "100000000000000000"],
            "--synthetic",
        ),
        (
            vec!["train", "--out", out, "--batch-size", "1000000000000000"],
            "--batch-size",
        ),
    ] {
        let o = bin(&args);
        assert_one_line_error(&o, 2, &[needle]);
    }
    // Each size within its range, the whole too large: refused by the config's own bound.
    let o = bin(&["init", "--out", out, "--widths", "4096,4096,4096,4096"]);
    assert_one_line_error(&o, 1, &["parameters", "at most"]);
    assert!(!Path::new(out).exists());
}

#[test]
fn device_sizes_that_overflow_are_errors_not_wrapped_buffers() {
    // 2^40 x 2^40 floats: the byte count overflows u64 (a panic in debug builds, a small
    // wrapped buffer in release ones, before).
    let e = gpu().zeros("huge", &[1 << 40, 1 << 40]).unwrap_err();
    assert!(
        matches!(e, Error::BufferTooLarge { ref name, .. } if name == "huge"),
        "{e}"
    );
    let e = pollster::block_on(Network::new(
        gpu(),
        &tiny_config(),
        1 << 20,
        TrainOptions::default(),
    ))
    .err()
    .expect("batch 2^20 must be refused")
    .to_string();
    assert!(e.contains("batch size 1048576"), "{e}");
}

#[test]
fn a_network_too_large_for_the_device_is_refused_before_it_is_initialised() {
    // Two stages of width 2048: 37.8 M parameters, within every bound of the config, and
    // 151 MB of parameters, over the 128 MiB storage binding lavapipe allows.
    let config = ModelConfig {
        widths: vec![2048, 2048],
        image_size: 16,
        ..ModelConfig::default()
    };
    config.validate().unwrap();
    let bytes = 4 * ParamTable::new(&config).packed_len() as u64;
    if bytes <= gpu().limits.max_storage_buffer_binding_size {
        eprintln!("skipped: this device binds {bytes} bytes of parameters");
        return;
    }
    let dir = TempDir::new("rel-toolarge");
    let out = dir.path().join("m.safetensors");
    let o = bin(&[
        "train",
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--widths",
        "2048,2048",
        "--synthetic",
        "70",
        "--batch-size",
        "8",
    ]);
    assert_one_line_error(&o, 1, &["params", "max_storage_buffer_binding_size"]);
}

/// A safetensors file written by hand: `meta` as the header's metadata, tensors as given.
fn raw_safetensors(tensors: &[(String, Vec<usize>, Vec<f32>)], meta: &[(&str, String)]) -> Vec<u8> {
    let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), &d[..]))
        .collect();
    let meta = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    checkpoint::to_bytes(&refs, meta).unwrap()
}

#[test]
fn sizes_from_a_checkpoint_header_are_checked_against_what_the_file_holds() {
    let dir = TempDir::new("rel-header");
    let path = dir.path().join("huge.safetensors");
    let small: Vec<(String, Vec<usize>, Vec<f32>)> =
        vec![("head.fc2.bias".into(), vec![7], vec![0.0; 7])];
    let configs = [
        // Widths and image size far past any device: was a `capacity overflow` or an abort.
        r#"{"image_size":128,"in_channels":3,"widths":[1099511627776,2],"hidden":128,"attention":"full","dropout":0.2,"classes":["a","b"]}"#.to_string(),
        r#"{"image_size":1000000000000,"in_channels":3,"widths":[8],"hidden":128,"attention":"full","dropout":0.2,"classes":["a","b"]}"#.to_string(),
        r#"{"image_size":128,"in_channels":1000000000,"widths":[8],"hidden":128,"attention":"full","dropout":0.2,"classes":["a","b"]}"#.to_string(),
        r#"{"image_size":128,"in_channels":3,"widths":[8],"hidden":4000000000,"attention":"full","dropout":0.2,"classes":["a","b"]}"#.to_string(),
        // Valid sizes, and a table of 300 M parameters the file does not hold.
        serde_json::to_string(&ModelConfig {
            widths: vec![4096, 4096, 4096],
            ..ModelConfig::default()
        })
        .unwrap(),
        // Within every bound: still, the tensors are not in the file.
        serde_json::to_string(&ModelConfig {
            widths: vec![2048, 2048, 2048],
            ..ModelConfig::default()
        })
        .unwrap(),
    ];
    for config in configs {
        std::fs::write(
            &path,
            raw_safetensors(&small, &[(CONFIG_KEY, config.clone())]),
        )
        .unwrap();
        let e = checkpoint::load(&path).err().expect(&config).to_string();
        assert!(e.contains("huge.safetensors"), "{e}");
    }
}

#[test]
fn a_face_box_cannot_ask_for_gigabytes_of_pixels() {
    let dir = TempDir::new("rel-box");
    let root = dir.path();
    write_png(&root.join("Manually_Annotated_Images/1/a.png"), 32, 100);
    let header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n";
    for (row, needle) in [
        ("1/a.png,0,0,1000000000000,1000000000000,,1,0,0", "face box"),
        ("1/a.png,-9e18,0,16,16,,1,0,0", "face box"),
    ] {
        dir.file("training.csv", &format!("{header}{row}\n"));
        let e = dataset::open(root, Some(Format::AffectNetCsv))
            .expect_err(row)
            .to_string();
        assert!(
            e.contains("training.csv line 2") && e.contains(needle),
            "{e}"
        );
    }
    // A box of sane size that misses the image: an error when loaded, naming the image.
    dir.file(
        "training.csv",
        &format!("{header}1/a.png,5000,5000,16,16,,1,0,0\n"),
    );
    let ds = dataset::open(root, Some(Format::AffectNetCsv)).unwrap();
    let e = ds.samples[0].load(16, 3).unwrap_err().to_string();
    assert!(e.contains("a.png") && e.contains("outside"), "{e}");
}

#[test]
fn a_closed_stdout_stops_the_output_not_the_program() {
    let dir = TempDir::new("rel-pipe");
    let ck = dir.path().join("m.safetensors");
    checkpoint::save(
        &ck,
        &tiny_config(),
        &ParamTable::new(&tiny_config()).init(0),
    )
    .unwrap();
    let imgs = dir.path().join("imgs");
    for i in 0..40 {
        write_png(&imgs.join(format!("{i:02}.png")), 16, (i * 5) as u8);
    }
    // `fer-cbam predict ... | head -0`: the reader is gone before the first line is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(["predict", "--checkpoint", s(&ck), s(&imgs)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let e = stderr_of(&o);
    assert!(o.status.success(), "{:?}: {e}", o.status);
    assert!(!e.contains("panicked"), "{e}");
}

// --- Silent wrong results ------------------------------------------------------------------

#[test]
fn a_checkpoint_with_nan_or_inf_weights_is_refused() {
    let dir = TempDir::new("rel-nan");
    let config = tiny_config();
    let table = ParamTable::new(&config);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = table
            .entries()
            .iter()
            .map(|e| {
                let mut v = vec![0.01; e.len()];
                if e.name == "head.fc2.weight" {
                    v[5] = bad;
                }
                (e.name.clone(), e.shape.clone(), v)
            })
            .collect();
        let path = dir.path().join("nan.safetensors");
        let json = serde_json::to_string(&config).unwrap();
        std::fs::write(&path, raw_safetensors(&tensors, &[(CONFIG_KEY, json)])).unwrap();
        let e = checkpoint::load(&path)
            .err()
            .expect("must fail")
            .to_string();
        assert!(
            e.contains("nan.safetensors") && e.contains("head.fc2.weight`[5]"),
            "{e}"
        );
        // ... and never written in the first place.
        let mut packed = table.init(0);
        packed[table.get("stages.0.conv.bias").unwrap().offset] = bad;
        let out = dir.path().join("out.safetensors");
        let e = checkpoint::save(&out, &config, &packed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("stages.0.conv.bias`[0]") && !out.exists(), "{e}");
    }
    // What eval and predict said with exit 0 before: now one line naming the file.
    let path = dir.path().join("nan.safetensors");
    let img = dir.path().join("a.png");
    write_png(&img, 16, 90);
    let o = bin(&["predict", "--checkpoint", s(&path), s(&img)]);
    assert_one_line_error(&o, 1, &["nan.safetensors", "finite"]);
}

#[test]
fn a_network_whose_scores_overflow_is_an_error_not_the_first_class() {
    // Finite weights of 1e30 overflow f32 on the way to the scores (NaN): every image would be
    // scored "angry", the first class.
    let config = tiny_config();
    let net = pollster::block_on(Network::new(gpu(), &config, 4, TrainOptions::default())).unwrap();
    let huge = vec![1e30f32; ParamTable::new(&config).packed_len()];
    net.write_params(gpu(), &huge).unwrap();
    let data = SyntheticSource {
        seed: 1,
        first: 0,
        len: 6,
    };
    let idx: Vec<usize> = (0..6).collect();
    let e = train::evaluate(gpu(), &net, &data, &idx, true, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("synthetic face #0") && e.contains("overflow"),
        "{e}"
    );
}

#[test]
fn training_that_diverges_stops_and_keeps_the_last_good_save() {
    let dir = tmp_dir("rel-diverge");
    let good = dir.join("good.safetensors");
    let mut args = vec!["train", "--out", s(&good), "--epochs", "1", "--quiet"];
    args.extend_from_slice(&TINY);
    let o = bin(&args);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let before = (
        std::fs::read(&good).unwrap(),
        std::fs::read(checkpoint::optimizer_path(&good)).unwrap(),
    );
    // Continue in place with a weight decay that blows the parameters up.
    let mut args = vec![
        "train",
        "--resume",
        s(&good),
        "--out",
        s(&good),
        "--epochs",
        "4",
        "--lr",
        "0.1",
        "--weight-decay",
        "100000",
        "--checkpoint-every",
        "1",
        "--quiet",
    ];
    args.extend_from_slice(&TINY);
    let o = bin(&args);
    assert_one_line_error(&o, 1, &["diverged", "good.safetensors"]);
    // A save between the start and the divergence would have changed the files; none did,
    // and the pair on disk still resumes.
    let after = (
        std::fs::read(&good).unwrap(),
        std::fs::read(checkpoint::optimizer_path(&good)).unwrap(),
    );
    assert!(before == after, "the last good save was overwritten");
    checkpoint::load_training(&good).unwrap();
    // A fresh run that diverges writes nothing at all.
    let fresh = dir.join("fresh.safetensors");
    let mut args = vec![
        "train",
        "--out",
        s(&fresh),
        "--epochs",
        "4",
        "--lr",
        "0.1",
        "--weight-decay",
        "100000",
        "--quiet",
    ];
    args.extend_from_slice(&TINY);
    let o = bin(&args);
    assert_one_line_error(&o, 1, &["diverged", "nothing was written"]);
    assert!(!fresh.exists() && !checkpoint::optimizer_path(&fresh).exists());
}

#[test]
fn a_checkpoint_and_optimizer_state_out_of_step_are_refused() {
    let dir = TempDir::new("rel-pair");
    let config = tiny_config();
    let table = ParamTable::new(&config);
    let n = table.packed_len();
    let (m, v) = (vec![0.01f32; n], vec![0.02f32; n]);
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    checkpoint::save_training(
        &a,
        &checkpoint::TrainingState::new(&config, &table.init(1), &m, &v, 7),
    )
    .unwrap();
    checkpoint::save_training(
        &b,
        &checkpoint::TrainingState::new(&config, &table.init(2), &m, &v, 14),
    )
    .unwrap();
    let st = checkpoint::load_training(&a).unwrap();
    assert_eq!((st.step, st.checkpoint.packed), (7, table.init(1)));

    // A crash between the two renames of a save: the new checkpoint, the old optimizer state.
    let c = dir.path().join("c.safetensors");
    std::fs::copy(&b, &c).unwrap();
    std::fs::copy(
        checkpoint::optimizer_path(&a),
        checkpoint::optimizer_path(&c),
    )
    .unwrap();
    let e = checkpoint::load_training(&c).err().unwrap().to_string();
    assert!(
        e.contains("c.optim.safetensors") && e.contains("out of step") && e.contains("step 7"),
        "{e}"
    );
    // The same step, other parameters (another run's optimizer state).
    checkpoint::save_training(
        &b,
        &checkpoint::TrainingState::new(&config, &table.init(2), &m, &v, 7),
    )
    .unwrap();
    std::fs::copy(&b, &c).unwrap();
    let e = checkpoint::load_training(&c).err().unwrap().to_string();
    assert!(e.contains("other parameters"), "{e}");
    // A checkpoint from `init` has no step: it was never half of a pair.
    checkpoint::save(&c, &config, &table.init(1)).unwrap();
    let e = checkpoint::load_training(&c).err().unwrap().to_string();
    assert!(e.contains("no training step"), "{e}");
    // `train --resume` says so in one line, before any training.
    std::fs::copy(&b, &c).unwrap();
    let out = dir.path().join("d.safetensors");
    let o = bin(&[
        "train",
        "--resume",
        s(&c),
        "--out",
        s(&out),
        "--epochs",
        "1",
    ]);
    assert_one_line_error(&o, 1, &["c.optim.safetensors", "out of step"]);
    assert!(stdout_of(&o).is_empty());
}

#[test]
fn identical_saves_are_identical_bytes() {
    // The optimizer file's header has three metadata keys; the safetensors crate writes them in
    // hash-map order, which changed between runs.
    let dir = TempDir::new("rel-order");
    let config = tiny_config();
    let table = ParamTable::new(&config);
    let n = table.packed_len();
    let (m, v) = (vec![0.5f32; n], vec![0.25f32; n]);
    let mut seen = Vec::new();
    for i in 0..8 {
        let p = dir.path().join(format!("{i}.safetensors"));
        let optim = checkpoint::save_training(
            &p,
            &checkpoint::TrainingState::new(&config, &table.init(3), &m, &v, 5),
        )
        .unwrap();
        seen.push((std::fs::read(&p).unwrap(), std::fs::read(&optim).unwrap()));
    }
    assert!(seen.iter().all(|x| *x == seen[0]), "saves differ");
    let bytes = &seen[0].1;
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let keys = ["adam.step", "fer_cbam.config", "fer_cbam.params_fnv1a64"];
    let at: Vec<usize> = keys.iter().map(|k| header.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{header}");
}

// --- Files destroyed -----------------------------------------------------------------------

#[test]
fn an_output_that_is_an_input_or_not_a_regular_file_is_refused_and_left_intact() {
    let dir = TempDir::new("rel-clobber");
    let root = dir.path();
    let config = tiny_config();
    let ck = root.join("c.safetensors");
    checkpoint::save(&ck, &config, &ParamTable::new(&config).init(0)).unwrap();
    let ck_bytes = std::fs::read(&ck).unwrap();
    // debug-step's checkpoint as its output.
    let o = bin(&[
        "debug-step",
        "--checkpoint",
        s(&ck),
        "--batch",
        s(&root.join("b.safetensors")),
        "--out",
        s(&ck),
    ]);
    assert_one_line_error(&o, 1, &["c.safetensors", "also an input"]);
    // train's dataset CSV as its output (through another spelling of the same path).
    let mut csv = String::from("emotion,pixels,Usage\n");
    for i in 0..20 {
        let px = vec![(i * 10).to_string(); 16 * 16].join(" ");
        csv += &format!("{},{px},Training\n", i % 7);
    }
    let data = root.join("fer.csv");
    std::fs::write(&data, &csv).unwrap();
    let other_spelling = root.join(".").join("fer.csv");
    let o = bin(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&other_spelling),
        "--epochs",
        "1",
    ]);
    assert_one_line_error(&o, 1, &["fer.csv", "also an input"]);
    assert_eq!(std::fs::read_to_string(&data).unwrap(), csv);
    assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
    // The optimizer state of the pair being resumed, given as the new checkpoint.
    let pair = root.join("pair.safetensors");
    let n = ParamTable::new(&config).packed_len();
    let optim = checkpoint::save_training(
        &pair,
        &checkpoint::TrainingState::new(
            &config,
            &ParamTable::new(&config).init(0),
            &vec![0.0; n],
            &vec![0.0; n],
            3,
        ),
    )
    .unwrap();
    let optim_bytes = std::fs::read(&optim).unwrap();
    let o = bin(&[
        "train",
        "--resume",
        s(&pair),
        "--out",
        s(&optim),
        "--epochs",
        "1",
    ]);
    assert_one_line_error(&o, 1, &["pair.optim.safetensors", "also an input"]);
    assert_eq!(std::fs::read(&optim).unwrap(), optim_bytes);
    // explain names each figure after its image: in the image's own folder, the figure of
    // `a.png` would be written over it.
    let img = root.join("a.png");
    write_png(&img, 16, 80);
    let img_bytes = std::fs::read(&img).unwrap();
    let o = bin(&["explain", "--checkpoint", s(&ck), s(&img), "--out", s(root)]);
    assert_one_line_error(&o, 1, &["a.png", "also an input"]);
    assert_eq!(std::fs::read(&img).unwrap(), img_bytes);
    // Paths that are not regular files: a folder, a link (whose target stays untouched).
    let folder = root.join("folder.safetensors");
    std::fs::create_dir(&folder).unwrap();
    let o = bin(&["init", "--out", s(&folder)]);
    assert_one_line_error(&o, 1, &["folder.safetensors", "a folder"]);
    assert!(folder.is_dir());
    #[cfg(unix)]
    {
        let link = root.join("link.safetensors");
        std::os::unix::fs::symlink(&ck, &link).unwrap();
        let o = bin(&["init", "--out", s(&link)]);
        assert_one_line_error(&o, 1, &["link.safetensors", "symbolic link"]);
        assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
        // And the library's own writer, whoever calls it.
        let e = fer_cbam::files::write_atomic(&link, b"x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read(&ck).unwrap(), ck_bytes);
    }
}

// --- Work lost -----------------------------------------------------------------------------

#[test]
fn every_output_location_is_checked_before_any_work() {
    let dir = TempDir::new("rel-early");
    let root = dir.path();
    let file = root.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("m.safetensors");
    let missing = root.join("missing").join("m.safetensors");
    let mut runs: Vec<(Vec<&str>, &str)> = Vec::new();
    let mut train = vec!["train", "--out", s(&missing), "--epochs", "50"];
    train.extend_from_slice(&TINY);
    runs.push((train, "missing"));
    let mut train = vec!["train", "--out", s(&under_file), "--epochs", "50"];
    train.extend_from_slice(&TINY);
    runs.push((train, "a-file"));
    runs.push((vec!["demo", "--out", s(&under_file)], "a-file"));
    runs.push((
        vec!["kfold", "--out", s(&under_file), "--synthetic", "70"],
        "a-file",
    ));
    runs.push((vec!["occlude", "--out", s(&missing)], "missing"));
    runs.push((
        vec!["profile", "--trace", s(&missing), "--image-size", "16"],
        "missing",
    ));
    for (args, needle) in runs {
        let o = bin(&args);
        assert_one_line_error(&o, 1, &[needle]);
        // Nothing ran: no device line, no data line, no training.
        assert!(stdout_of(&o).is_empty(), "{args:?}: {}", stdout_of(&o));
    }
}

/// Sends SIGINT to a child process.
#[cfg(unix)]
fn interrupt(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT {pid}");
}

#[cfg(unix)]
#[test]
fn training_saves_as_it_goes_and_on_ctrl_c_and_resumes_exactly() {
    let dir = tmp_dir("rel-ctrlc");
    let train_args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--out",
            s(out),
            "--occlusion-mix",
            "0.5",
            "--quiet",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(TINY.iter().map(|x| x.to_string()));
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    // 56 training faces in batches of 8: 7 steps an epoch.
    let epochs = "60";
    let full = dir.join("full.safetensors");
    let args = train_args(&full, &["--epochs", epochs]);
    let o = Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));

    let run = dir.join("run.safetensors");
    let args = train_args(&run, &["--epochs", epochs, "--checkpoint-every", "1"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first save after epoch 1 appears while the run goes on: read it, then Ctrl-C. A run
    // that ends first never saved during training.
    while !run.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) without saving during training");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Saves go on every epoch: a read can fall between the two renames of one (out of step,
    // which is what the check is for), and the next read finds the pair whole.
    let load = || {
        let mut tries = 0;
        loop {
            match checkpoint::load_training(&run) {
                Ok(st) => return st,
                Err(_) if tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    };
    let step = load().step;
    assert!(
        step > 0 && step % 7 == 0 && step < 420,
        "mid-training save at step {step}"
    );
    interrupt(child.id());
    let o = child.wait_with_output().unwrap();
    // A notice when Ctrl-C arrives (a step can take seconds), then the one-line outcome.
    let e = stderr_of(&o);
    assert_eq!(o.status.code(), Some(130), "{e}");
    let lines: Vec<&str> = e.lines().collect();
    assert!(
        lines.len() == 2 && lines[0].contains("stopping after this step"),
        "{e}"
    );
    let e = lines[1].to_string();
    for needle in [
        "interrupted after step",
        "run.safetensors",
        "run.optim.safetensors",
        "--resume",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from {e}");
    }
    let more: String = e
        .split("--epochs ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    // The saved pair is whole and matches; continue in place for the epochs left.
    let saved = load().step;
    assert!(saved >= step && saved < 420, "interrupted at {saved}");
    let mut args = train_args(&run, &["--epochs", &more]);
    args.extend(["--resume".to_string(), s(&run).to_string()]);
    let o = Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(
        std::fs::read(&run).unwrap() == std::fs::read(&full).unwrap(),
        "interrupted at step {saved} and resumed: the checkpoint differs from the uninterrupted run"
    );
    assert!(
        std::fs::read(checkpoint::optimizer_path(&run)).unwrap()
            == std::fs::read(checkpoint::optimizer_path(&full)).unwrap(),
        "the optimizer state differs from the uninterrupted run"
    );
}

/// Class c is a bright square at one of 7 places, with noise: learnable in a few epochs.
struct Squares;

impl train::ImageSource for Squares {
    fn len(&self) -> usize {
        200
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> fer_cbam::Result<(Vec<u8>, u32)> {
        let label = (i % 7) as u32;
        let noise = common::random(i as u64, size * size);
        let (cy, cx) = (
            (label as usize / 3) * size / 3,
            (label as usize % 3) * size / 3,
        );
        let mut px = vec![0u8; channels * size * size];
        for (j, p) in px.iter_mut().enumerate() {
            let (y, x) = ((j / size) % size, j % size);
            let inside = y >= cy && y < cy + size / 3 && x >= cx && x < cx + size / 3;
            *p = (if inside { 200.0 } else { 40.0 } + 30.0 * noise[y * size + x]) as u8;
        }
        Ok((px, label))
    }
    fn describe(&self, i: usize) -> String {
        format!("square #{i}")
    }
}

#[test]
fn a_run_stopped_mid_epoch_resumes_to_the_same_bits() {
    // The only test in this binary that trains in-process: the stop request is process-wide.
    let config = ModelConfig {
        dropout: 0.2,
        ..tiny_config()
    };
    let options = TrainOptions {
        seed: 4,
        ..Default::default()
    };
    let fresh = || {
        let mut net = pollster::block_on(Network::new(gpu(), &config, 2, options.clone())).unwrap();
        net.write_params(gpu(), &ParamTable::new(&config).init(4))
            .unwrap();
        net.set_lr(gpu(), 0.003).unwrap();
        net
    };
    let idx: Vec<usize> = (0..200).collect();
    let opts = |epochs| TrainLoop {
        epochs,
        seed: 9,
        strict: true,
        schedule: None,
    };
    // 100 steps an epoch; 2 epochs without a stop.
    let mut whole = fresh();
    train::train(
        gpu(),
        &mut whole,
        &Squares,
        &idx,
        &opts(2),
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(whole.step(), 200);

    // Stop at the first readback (step 64, inside epoch 1), the way Ctrl-C does.
    train::clear_stop();
    let mut first = fresh();
    let e = train::train(
        gpu(),
        &mut first,
        &Squares,
        &idx,
        &opts(2),
        None,
        &mut |p, _| {
            if p.step == 64 {
                train::request_stop();
            }
        },
    )
    .unwrap_err();
    train::clear_stop();
    assert!(matches!(e, Error::Interrupted { step: 64, .. }), "{e}");
    // Through the files, as the CLI saves and resumes.
    let dir = TempDir::new("rel-midepoch");
    let path = dir.path().join("s.safetensors");
    let (m, v) = first.adam_state();
    checkpoint::save_training(
        &path,
        &checkpoint::TrainingState::new(
            &config,
            &common::read(first.params()),
            &common::read(m),
            &common::read(v),
            first.step(),
        ),
    )
    .unwrap();
    let st = checkpoint::load_training(&path).unwrap();
    let mut resumed = fresh();
    resumed.write_params(gpu(), &st.checkpoint.packed).unwrap();
    resumed
        .write_adam_state(gpu(), &st.m, &st.v, st.step)
        .unwrap();
    // The rest of epoch 1 counts as the first of the two epochs asked for.
    train::train(
        gpu(),
        &mut resumed,
        &Squares,
        &idx,
        &opts(2),
        None,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(resumed.step(), 200);
    assert_eq!(common::read(resumed.params()), common::read(whole.params()));
    let (m1, v1) = resumed.adam_state();
    let (m2, v2) = whole.adam_state();
    assert_eq!(common::read(m1), common::read(m2));
    assert_eq!(common::read(v1), common::read(v2));
}

// --- Escape --------------------------------------------------------------------------------

#[test]
fn annotation_paths_cannot_leave_the_dataset_folder() {
    let dir = TempDir::new("rel-escape");
    let outside = dir.path().join("secret.png");
    write_png(&outside, 16, 10);
    let root = dir.path().join("ds");
    write_png(&root.join("Image/aligned/train_00001_aligned.png"), 16, 20);
    write_png(&root.join("Image/original/test_00001.png"), 16, 20);
    // RAF-DB: `..`, an absolute path, `..` hidden inside a name.
    for entry in [
        "../../../secret.png".to_string(),
        s(&outside).to_string(),
        "train_00001/../../../secret.png".to_string(),
    ] {
        let list = format!("train_00001.png 1\n{entry} 2\ntest_00001.png 3\n");
        std::fs::create_dir_all(root.join("EmoLabel")).unwrap();
        std::fs::write(root.join("EmoLabel/list_patition_label.txt"), list).unwrap();
        let e = dataset::open(&root, Some(Format::RafDb))
            .expect_err(&entry)
            .to_string();
        assert!(
            e.contains("list_patition_label.txt line 2") && e.contains("refused"),
            "{e}"
        );
    }
    // AffectNet: the same through subDirectory_filePath.
    let an = dir.path().join("an");
    write_png(&an.join("Manually_Annotated_Images/1/a.png"), 16, 30);
    let header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n";
    for entry in ["../../secret.png".to_string(), s(&outside).to_string()] {
        std::fs::write(
            an.join("training.csv"),
            format!("{header}1/a.png,0,0,16,16,,1,0,0\n{entry},0,0,16,16,,1,0,0\n"),
        )
        .unwrap();
        let e = dataset::open(&an, Some(Format::AffectNetCsv))
            .expect_err(&entry)
            .to_string();
        assert!(
            e.contains("training.csv line 3") && e.contains("refused"),
            "{e}"
        );
    }
}

// --- Memory --------------------------------------------------------------------------------

/// CRC-32 (PNG's, ISO 3309).
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A valid 1-bit gray PNG of `side` x `side` black pixels, small on disk: its zlib stream is
/// one fixed-Huffman block of a literal zero and runs of length 258 at distance 1 (13 bits
/// each), about 315 KB for 20000x20000. Decoded it is `side`^2 bytes of 8-bit gray at least.
fn png_bomb(side: u32) -> Vec<u8> {
    let row = 1 + side.div_ceil(8) as u64;
    let total = row * side as u64;
    let mut bits = BitWriter::default();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = fixed Huffman
    let code = |bits: &mut BitWriter, code: u32, len: u32| {
        for i in (0..len).rev() {
            bits.put((code >> i) & 1, 1);
        }
    };
    code(&mut bits, 0x30, 8); // literal 0
    let mut left = total - 1;
    while left >= 258 {
        code(&mut bits, 0xC5, 8); // length 258 (symbol 285)
        code(&mut bits, 0, 5); // distance 1
        left -= 258;
    }
    for _ in 0..left {
        code(&mut bits, 0x30, 8);
    }
    code(&mut bits, 0, 7); // end of block
    let mut z = vec![0x78, 0x01];
    z.extend(bits.finish());
    // Adler-32 of `total` zero bytes: a stays 1, b adds a once per byte.
    let adler = ((total % 65521) << 16 | 1) as u32;
    z.extend(adler.to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([1, 0, 0, 0, 0]); // 1 bit, gray, deflate, adaptive filter, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &z);
    chunk(b"IEND", &[]);
    png
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    acc: u32,
    n: u32,
}

impl BitWriter {
    /// `len` bits of `v`, least significant first (deflate's order for everything but codes).
    fn put(&mut self, v: u32, len: u32) {
        for i in 0..len {
            self.acc |= ((v >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.bytes.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

#[test]
fn an_image_that_decodes_to_gigabytes_is_refused_from_its_header() {
    let dir = TempDir::new("rel-bomb");
    // The same construction at a small size decodes, so the big one is a valid PNG too.
    let small = dir.path().join("small.png");
    std::fs::write(&small, png_bomb(40)).unwrap();
    let g = folder::decode_original(&small).unwrap();
    assert_eq!(g.dimensions(), (40, 40));
    assert!(g.iter().all(|&v| v == 0));

    let bomb = dir.path().join("bomb.png");
    let bytes = png_bomb(20000);
    assert!(bytes.len() < 400_000, "{} bytes", bytes.len());
    std::fs::write(&bomb, bytes).unwrap();
    // Refused from the header, before 400 million pixels are decoded; every reader (the
    // datasets, the face crop, predict) decodes through this one function.
    let e = folder::decode_original(&bomb).unwrap_err().to_string();
    assert!(e.contains("bomb.png") && e.contains("20000x20000"), "{e}");
}

// --- Smaller gaps --------------------------------------------------------------------------

#[cfg(unix)]
#[test]
fn dangling_and_looping_links_are_unreadable_images_not_a_failed_load() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new("rel-links");
    let root = dir.path().join("ds");
    for (class, v) in [("happy", 200), ("sad", 50)] {
        for i in 0..3 {
            write_png(&root.join(class).join(format!("{i}.png")), 16, v);
        }
    }
    symlink(root.join("nowhere.png"), root.join("happy/dangling.png")).unwrap();
    symlink(root.join("sad/loop.png"), root.join("sad/loop.png")).unwrap();
    let ds = dataset::open(&root, None).unwrap();
    assert_eq!(ds.samples.len(), 8);
    let bad: Vec<String> = ds
        .samples
        .iter()
        .filter_map(|s| s.load(16, 3).err().map(|e| e.to_string()))
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad.iter().any(|e| e.contains("dangling.png")));
    assert!(bad.iter().any(|e| e.contains("loop.png")));
    // JAFFE reads sub-folders: a link back up must not recurse forever.
    let jaffe = dir.path().join("jaffe");
    std::fs::create_dir_all(jaffe.join("sub")).unwrap();
    write_png(&jaffe.join("KA.HA1.29.png"), 16, 100);
    symlink(&jaffe, jaffe.join("sub/up")).unwrap();
    let ds = dataset::open(&jaffe, Some(Format::Jaffe)).unwrap();
    assert_eq!(ds.samples.len(), 1);
}

/// `root/{train,test}/{happy,sad}/*.png`, with one broken file on each side.
fn split_folder(root: &Path) -> (PathBuf, PathBuf) {
    for side in ["train", "test"] {
        // 7 + 1 broken + 8 = 16 training files: whole batches of 4, none left out by the loop.
        for (class, v, n) in [("happy", 200, 7), ("sad", 50, 8)] {
            for i in 0..n {
                write_png(&root.join(side).join(class).join(format!("{i}.png")), 16, v);
            }
        }
    }
    let (a, b) = (
        root.join("train/happy/broken-train.png"),
        root.join("test/sad/broken-test.png"),
    );
    std::fs::write(&a, b"not a png").unwrap();
    std::fs::write(&b, b"not a png either").unwrap();
    (a, b)
}

#[test]
fn unreadable_images_are_named_in_every_report() {
    let dir = TempDir::new("rel-unreadable");
    let data = dir.path().join("data");
    split_folder(&data);
    let out = dir.path().join("m.safetensors");
    let args = [
        "train",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--image-size",
        "16",
        "--widths",
        "4,8",
        "--batch-size",
        "4",
        "--epochs",
        "2",
    ];
    let mut json = args.to_vec();
    json.push("--json");
    let o = bin(&json);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let v: serde_json::Value = serde_json::from_str(stdout_of(&o).trim()).unwrap();
    let names = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let (train, all) = (names("train_unreadable"), names("unreadable"));
    assert!(
        train.len() == 1 && train[0].contains("broken-train.png"),
        "{train:?}"
    );
    assert!(
        all.len() == 2
            && all.iter().any(|f| f.contains("broken-train.png"))
            && all.iter().any(|f| f.contains("broken-test.png")),
        "{all:?}"
    );
    // The warning during training says what happened to it, once.
    let e = stderr_of(&o);
    assert_eq!(e.matches("broken-train.png").count(), 1, "{e}");
    // The text report names both, not only their count.
    let o = bin(&args);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let text = stdout_of(&o);
    assert!(
        text.contains("broken-train.png") && text.contains("broken-test.png"),
        "{text}"
    );
    assert!(
        text.contains("device: "),
        "which adapter and backend ran: {text}"
    );
}

#[test]
fn predict_goes_on_past_a_bad_image() {
    let dir = TempDir::new("rel-predict");
    let ck = dir.path().join("m.safetensors");
    checkpoint::save(
        &ck,
        &tiny_config(),
        &ParamTable::new(&tiny_config()).init(0),
    )
    .unwrap();
    let imgs = dir.path().join("imgs");
    write_png(&imgs.join("a.png"), 16, 30);
    std::fs::write(imgs.join("b.png"), b"broken").unwrap();
    write_png(&imgs.join("c.png"), 24, 200);
    let o = bin(&["predict", "--checkpoint", s(&ck), s(&imgs)]);
    let out = stdout_of(&o);
    let e = stderr_of(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("a.png: ") && out.contains("c.png: "), "{out}");
    assert!(
        e.lines()
            .any(|l| l.contains("b.png") && l.contains("cannot decode")),
        "{e}"
    );
    assert!(e.contains("predicted 2 of 3 images"), "{e}");
    // As JSON: one object per image, the bad one with its error, in order.
    let o = bin(&["predict", "--checkpoint", s(&ck), s(&imgs), "--json"]);
    let rows: Vec<serde_json::Value> = stdout_of(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert!(rows[1]["error"].as_str().unwrap().contains("b.png"));
    assert!(rows[0]["top3"].is_array() && rows[2]["top3"].is_array());
}

#[test]
fn a_slow_fallback_backend_is_said_loudly() {
    // No Vulkan driver: wgpu falls back to OpenGL (where Mesa's GL is installed).
    let o = bin_env(
        &["info"],
        &[
            ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
            ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
        ],
    );
    let e = stderr_of(&o);
    if !o.status.success() {
        assert!(e.contains("no GPU adapter"), "{e}");
        eprintln!("skipped the OpenGL fallback check: no OpenGL adapter on this machine ({e})");
    } else {
        assert!(stdout_of(&o).contains("backend:  Gl"), "{}", stdout_of(&o));
        assert!(
            e.contains("warning: running on the OpenGL backend") && e.contains("WGPU_BACKEND"),
            "{e}"
        );
        // Asked for on purpose: no warning.
        let o = bin_env(&["info"], &[("WGPU_BACKEND", "gl")]);
        assert!(o.status.success() && !stderr_of(&o).contains("warning"));
    }
    // The ordinary run says which adapter and backend it uses, and how to choose another.
    let o = bin(&["info"]);
    let out = stdout_of(&o);
    assert!(o.status.success() && out.contains("backend:") && out.contains("WGPU_BACKEND"));
}

#[test]
fn every_numeric_flag_is_range_checked() {
    let dir = TempDir::new("rel-ranges");
    let out = dir.path().join("x.safetensors");
    let o = s(&out);
    let d = s(dir.path());
    let ck = "/nonexistent.safetensors";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["init", "--out", o, "--in-channels", "2"],
            "--in-channels",
        ),
        (
            vec!["init", "--out", o, "--in-channels", "0"],
            "--in-channels",
        ),
        (
            vec!["init", "--out", o, "--image-size", "0"],
            "--image-size",
        ),
        (vec!["init", "--out", o, "--widths", "8,0"], "--widths"),
        (vec!["info", "--batch-size", "0"], "--batch-size"),
        (vec!["train", "--out", o, "--epochs", "0"], "init"),
        (
            vec!["train", "--out", o, "--batch-size", "0"],
            "--batch-size",
        ),
        (vec!["train", "--out", o, "--lr", "0"], "--lr"),
        (vec!["train", "--out", o, "--lr=-1"], "--lr"),
        (vec!["train", "--out", o, "--lr", "inf"], "--lr"),
        (
            vec!["train", "--out", o, "--weight-decay=-0.1"],
            "--weight-decay",
        ),
        (vec!["train", "--out", o, "--dropout", "1"], "--dropout"),
        (vec!["train", "--out", o, "--dropout", "nan"], "--dropout"),
        (
            vec!["train", "--out", o, "--occlusion-mix", "1.5"],
            "--occlusion-mix",
        ),
        (
            vec!["train", "--out", o, "--occlusion-mix=-0.5"],
            "--occlusion-mix",
        ),
        (vec!["train", "--out", o, "--synthetic", "5"], "--synthetic"),
        (
            vec!["train", "--out", o, "--checkpoint-every", "0"],
            "--checkpoint-every",
        ),
        (
            vec!["eval", "--checkpoint", ck, "--batch-size", "100000"],
            "--batch-size",
        ),
        (
            vec![
                "debug-step",
                "--checkpoint",
                ck,
                "--batch",
                ck,
                "--out",
                o,
                "--beta1",
                "1",
            ],
            "--beta1",
        ),
        (
            vec![
                "debug-step",
                "--checkpoint",
                ck,
                "--batch",
                ck,
                "--out",
                o,
                "--beta2=-0.1",
            ],
            "--beta2",
        ),
        (
            vec![
                "debug-step",
                "--checkpoint",
                ck,
                "--batch",
                ck,
                "--out",
                o,
                "--eps",
                "0",
            ],
            "--eps",
        ),
        (
            vec!["predict", "--checkpoint", ck, "x.png", "--face-margin", "3"],
            "--face-margin",
        ),
        (vec!["demo", "--out", d, "--epochs", "0"], "--epochs"),
        (vec!["demo", "--out", d, "--synthetic", "3"], "--synthetic"),
        (vec!["kfold", "--out", d, "--folds", "1"], "--folds"),
        (
            vec!["holdout", "--out", d, "--in-channels", "4"],
            "--in-channels",
        ),
        (
            vec![
                "cross",
                "--train",
                d,
                "--test",
                d,
                "--out",
                d,
                "--occlusion-mix",
                "2",
            ],
            "--occlusion-mix",
        ),
        (
            vec!["explain", "--checkpoint", ck, "--out", d, "--patch", "0"],
            "--patch",
        ),
        (
            vec![
                "explain",
                "--checkpoint",
                ck,
                "--out",
                d,
                "--synthetic",
                "0",
            ],
            "--synthetic",
        ),
        (vec!["occlude", "--out", o, "--count", "0"], "--count"),
        (vec!["profile", "--steps", "0"], "--steps"),
        (vec!["profile", "--image-size", "99999"], "--image-size"),
    ];
    for (args, needle) in cases {
        let r = bin(&args);
        let e = stderr_of(&r);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.lines().count() == 1 && e.contains(needle),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn a_large_photo_is_searched_for_its_face_at_a_bounded_size() {
    // A CK+ face at 700 px in a 2600x1950 photo: searched on a copy scaled to 2048 (the
    // cascade's pyramid would take about 16 bytes a pixel at full size), the box scaled back.
    let Some(dir) = common::dataset("ckplus/happy") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let first = files.into_iter().next().expect("an image in ckplus/happy");
    const { assert!(2600 > face::DETECT_MAX_SIDE) };
    let face = image::open(first).unwrap().to_luma8();
    let face = image::imageops::resize(&face, 700, 700, image::imageops::FilterType::Nearest);
    let mut photo = image::GrayImage::from_pixel(2600, 1950, image::Luma([128]));
    image::imageops::replace(&mut photo, &face, 1500, 900);
    let tmp = TempDir::new("rel-bigphoto");
    let path = tmp.path().join("photo.png");
    photo.save(&path).unwrap();
    let mut detector = face::FaceDetector::new().unwrap();
    let photo = folder::decode_original(&path).unwrap();
    let b = detector
        .largest_in(&photo)
        .unwrap()
        .expect("the face is found");
    let c = face::square_crop(b, 0.25, photo.width(), photo.height());
    let (cx, cy) = (c.x + c.width / 2, c.y + c.height / 2);
    assert!(
        (1500..2200).contains(&cx) && (900..1600).contains(&cy) && c.width > 300,
        "crop {c:?} is not on the face at 1500,900 (700 px)"
    );
}
