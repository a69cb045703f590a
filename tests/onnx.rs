//! `fer-cbam export --onnx`: the command's checks, the file decoded against the checkpoint,
//! and the exported graph run by onnxruntime on a batch of synthetic faces for every network
//! variant, its logits held against the engine's forward on the same batch.
//!
//! onnxruntime comes from a Python that has it: `FER_CBAM_ONNX_PYTHON`, else the venv that
//! `tools/install-onnx-test.sh` (run by .ci/run) makes in target/onnx-venv, else `python3`.
//! Without one the test says so on stderr and passes, except under `CI`, where it fails.

mod common;
mod interop;

use std::path::{Path, PathBuf};
use std::process::Command;

use fer_cbam::model::{checkpoint, onnx, ParamTable};
use fer_cbam::onnx_proto::{all, first, read_fields};
use fer_cbam_reference::check::Tol;
use interop::BATCH;

/// Two f32 implementations of the same graph: the engine's WGSL on lavapipe and onnxruntime's
/// CPU kernels. Both round every op to f32 but sum in different orders (the 3x3 convs' up to
/// 576 products, the reductions over up to 16x16 pixels), fuse multiply-adds differently and
/// use their own exp for ELU and sigmoid: a few ulps per op, growing through four stages to
/// about 1e-6 of the logits' scale (measured: see docs/interop.md). A wrong weight layout, pad,
/// gate order, epsilon or running statistic moves them by 1e-2 or more; the test also checks,
/// per variant, that changing one pixel by 16 levels moves the logits by more than 10x this
/// bound, so the bound is tight enough to see an error that small.
const TOL: Tol = Tol {
    atol: 2e-5,
    rtol: 2e-5,
    why: "f32 against f32, different summation orders, FMA and exp: a few ulps per op through \
          4 stages; errors of layout, order or statistics are 1e-2 and more",
};

const BIN: &str = env!("CARGO_BIN_EXE_fer-cbam");

fn export(ck: &Path, out: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["export", "--checkpoint"])
        .arg(ck)
        .arg("--onnx")
        .arg(out)
        .output()
        .unwrap()
}

/// The one line of stderr of a failed command.
fn failure(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn export_checks_its_inputs_and_outputs_first() {
    let dir = common::tmp_dir("onnx-cli");
    let v = interop::variants(&dir).into_iter().next().unwrap();
    let before = std::fs::read(&v.checkpoint).unwrap();

    // The output may not be the checkpoint: writing it would destroy what is read.
    let e = failure(&export(&v.checkpoint, &v.checkpoint));
    assert!(e.contains("is also an input"), "{e}");
    assert_eq!(std::fs::read(&v.checkpoint).unwrap(), before);

    // A folder that does not exist is named; nothing is created.
    let missing = dir.join("no-such-folder/m.onnx");
    let e = failure(&export(&v.checkpoint, &missing));
    assert!(e.contains("no-such-folder"), "{e}");
    assert!(!dir.join("no-such-folder").exists());

    // A folder is not a file path.
    let e = failure(&export(&v.checkpoint, &dir));
    assert!(e.contains("folder"), "{e}");

    // A file that is not a checkpoint is named, and no output appears.
    let not_ck = dir.join("not.safetensors");
    std::fs::write(&not_ck, b"hello").unwrap();
    let out = dir.join("x.onnx");
    let e = failure(&export(&not_ck, &out));
    assert!(
        e.contains("not.safetensors") && e.contains("not a safetensors file"),
        "{e}"
    );
    let e = failure(&export(&dir.join("absent.safetensors"), &out));
    assert!(e.contains("absent.safetensors"), "{e}");
    assert!(!out.exists());

    // And a good run says what it wrote.
    let o = export(&v.checkpoint, &out);
    assert!(o.status.success(), "{o:?}");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains("opset 17") && said.contains("`input`"),
        "{said}"
    );
    assert!(out.is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fields of `bytes` as a message, which must be one.
fn msg(bytes: &[u8]) -> Vec<(u32, fer_cbam::onnx_proto::Value<'_>)> {
    read_fields(bytes).unwrap()
}

#[test]
fn the_file_holds_the_checkpoints_tensors_bit_for_bit_and_says_how_to_feed_it() {
    let dir = common::tmp_dir("onnx-decode");
    for v in interop::variants(&dir) {
        let out = dir.join(format!("{}.onnx", v.name));
        assert!(export(&v.checkpoint, &out).status.success());
        let bytes = std::fs::read(&out).unwrap();
        let model = msg(&bytes);
        assert_eq!(first(&model, 1).unwrap().as_int(), Some(onnx::IR_VERSION));
        let graph = msg(first(&model, 7).unwrap().as_bytes().unwrap());

        // Initializers: name -> (dims, f32 values).
        let ck = checkpoint::load(&v.checkpoint).unwrap();
        let table = ParamTable::new(&ck.config);
        let mut seen = 0;
        for t in all(&graph, 5) {
            let t = msg(t.as_bytes().unwrap());
            let name = first(&t, 8).unwrap().as_str().unwrap();
            let dims: Vec<usize> = all(&t, 1).map(|d| d.as_int().unwrap() as usize).collect();
            let raw = first(&t, 9).unwrap().as_bytes().unwrap();
            let (entry, src) = match (table.get(name), table.buffer(name)) {
                (Some(e), _) => (e, &ck.packed),
                (None, Some(e)) => (e, &ck.buffers),
                // The Unsqueeze axes: an int64 constant of the graph's own.
                (None, None) => {
                    assert_eq!(name, "axes.hw");
                    continue;
                }
            };
            assert_eq!(dims, entry.shape, "{}: {name}", v.name);
            let want: Vec<u8> = src[entry.offset..entry.offset + entry.len()]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            assert_eq!(
                raw,
                &want[..],
                "{}: {name} differs from the checkpoint",
                v.name
            );
            seen += 1;
        }
        assert_eq!(
            seen,
            table.entries().len() + table.buffers().len(),
            "{}: every parameter and buffer",
            v.name
        );

        // The input: its name, a free batch dimension and the config's shape, documented.
        let input = msg(all(&graph, 11).next().unwrap().as_bytes().unwrap());
        assert_eq!(first(&input, 1).unwrap().as_str(), Some(onnx::INPUT));
        let doc = first(&input, 3).unwrap().as_str().unwrap();
        assert!(doc.contains("p / 255"), "{doc}");
        let ty = msg(first(&input, 2).unwrap().as_bytes().unwrap());
        let tensor = msg(first(&ty, 1).unwrap().as_bytes().unwrap());
        let shape = msg(first(&tensor, 2).unwrap().as_bytes().unwrap());
        let dims: Vec<String> = all(&shape, 1)
            .map(|d| {
                let d = msg(d.as_bytes().unwrap());
                match &d[0] {
                    (1, x) => x.as_int().unwrap().to_string(),
                    (2, x) => x.as_str().unwrap().to_string(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        let c = v.config.in_channels.to_string();
        let s = v.config.image_size.to_string();
        assert_eq!(dims, ["N", c.as_str(), &s, &s], "{}", v.name);
        let outputs: Vec<&str> = all(&graph, 12)
            .map(|o| {
                first(&msg(o.as_bytes().unwrap()), 1)
                    .unwrap()
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(outputs, [onnx::LOGITS, onnx::PROBABILITIES]);
        // The model's doc string says the same, and names the classes in order.
        let doc = first(&model, 6).unwrap().as_str().unwrap();
        assert!(doc.contains("p / 255") && doc.contains(&ck.config.classes.join(", ")));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn onnx_python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/onnx-venv/bin/python");
    interop::find_python(
        "FER_CBAM_ONNX_PYTHON",
        &[venv, PathBuf::from("python3")],
        &["onnxruntime", "numpy"],
    )
}

#[test]
fn onnxruntime_gives_the_engines_logits_for_every_variant() {
    let Some(python) = onnx_python() else {
        let msg = "the ONNX parity test needs a Python with onnxruntime and numpy \
                   (tools/install-onnx-test.sh makes target/onnx-venv; or set FER_CBAM_ONNX_PYTHON)";
        assert!(!interop::ci(), "{msg}; CI is set, so this is a failure");
        interop::skip(msg);
        return;
    };
    let dir = common::tmp_dir("onnx-ort");
    let variants = interop::variants(&dir);
    let files: Vec<PathBuf> = variants
        .iter()
        .map(|v| {
            let out = dir.join(format!("{}.onnx", v.name));
            let o = export(&v.checkpoint, &out);
            assert!(o.status.success(), "{}: {o:?}", v.name);
            out
        })
        .collect();
    let job = interop::write_job(&dir, &variants, &files);
    let printed = interop::run_python(&python, &interop::script("onnx_run.py"), &[&job]);
    let ort: serde_json::Value = serde_json::from_str(&printed).unwrap();
    println!("onnxruntime {}", ort["onnxruntime"]);

    let mut worst = 0.0f32;
    for v in &variants {
        let r = &ort[&v.name];
        let k = v.config.classes.len();
        assert_eq!(r["input"], onnx::INPUT);
        assert_eq!(
            r["input_shape"],
            serde_json::json!([
                "N",
                v.config.in_channels,
                v.config.image_size,
                v.config.image_size
            ])
        );
        let config: fer_cbam::model::ModelConfig =
            serde_json::from_str(r["metadata"][onnx::CONFIG_KEY].as_str().unwrap()).unwrap();
        assert_eq!(config, v.config, "{}: the config in metadata_props", v.name);

        let (logits, probs) = interop::engine_forward(v);
        let ort_logits = interop::matrix(&r["logits"]);
        let (d, scale) = interop::max_diff(&ort_logits, &logits);
        let bound = (TOL.atol + TOL.rtol * scale as f64) as f32;
        let effect = interop::one_pixel_effect(&logits, k);
        println!(
            "{:<28} max |logit| {scale:8.3}  max |diff| {d:.2e} (bound {bound:.1e})  one pixel moves the logits by {effect:.1e}",
            v.name
        );
        assert!(
            d <= bound,
            "{}: onnxruntime and engine logits differ by {d:e} > {bound:e} ({})\nonnxruntime {ort_logits:?}\nengine      {logits:?}",
            v.name,
            TOL.why
        );
        assert!(
            effect > 10.0 * bound,
            "{}: one pixel moves the logits by only {effect:e}: the fixture is too insensitive \
             for a bound of {bound:e} to mean much",
            v.name
        );
        let (dp, _) = interop::max_diff(&interop::matrix(&r["probabilities"]), &probs);
        assert!(dp <= bound, "{}: probabilities differ by {dp:e}", v.name);
        // The batch dimension is free: three images alone give their rows of the batch.
        let (d3, _) = interop::max_diff(&interop::matrix(&r["logits_first3"]), &logits[..3 * k]);
        assert!(d3 <= bound, "{}: a batch of 3 differs by {d3:e}", v.name);
        worst = worst.max(d / scale.max(1.0));
    }
    println!("largest difference relative to max(1, max |logit|): {worst:.2e}");
    assert_eq!(BATCH, 8);
    let _ = std::fs::remove_dir_all(&dir);
}
