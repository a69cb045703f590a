//! `explain` and `occlude`: the files they write, their sizes, what the gate statistics say, the
//! sensitivity map, and one-line errors on bad input. Small freshly initialised checkpoints keep
//! every run to a second or two.

mod common;
use common::{gpu, run_bin, tmp_dir};

use std::path::{Path, PathBuf};

use fer_cbam::explain::{self, Explainer, Map};
use serde_json::Value;

/// `fer-cbam init` with `flags` into `dir/name`.
fn init(dir: &Path, name: &str, flags: &[&str]) -> PathBuf {
    let ck = dir.join(name);
    let mut args = vec!["init", "--seed", "3", "--out", ck.to_str().unwrap()];
    args.extend_from_slice(flags);
    let (ok, _, stderr) = run_bin(&args);
    assert!(ok, "{stderr}");
    ck
}

const SMALL: [&str; 4] = ["--image-size", "32", "--widths", "8,16,32,64"];

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn write_png(path: &Path, side: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(side, side, |x, y| {
        image::Luma([((x * 7 + y * 3) % 256) as u8])
    })
    .save(path)
    .unwrap();
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Asserts the one-line error contract: failure, one line on stderr, containing `needle`.
fn one_line_error(args: &[&str], needle: &str) {
    let (ok, _, stderr) = run_bin(args);
    assert!(!ok, "{args:?} should fail");
    assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
}

#[test]
fn explain_writes_one_figure_per_face_and_gate_statistics_shaped_as_the_stages() {
    let dir = tmp_dir("explain-synthetic");
    let ck = init(&dir, "m.safetensors", &SMALL);
    let out = dir.join("out");
    let (ok, stdout, stderr) = run_bin(&[
        "explain",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--synthetic",
        "2",
        "--occlusion",
        "mouth",
        "--sensitivity",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let doc = read_json(&out.join("explain.json"));
    let images = doc["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    for (n, im) in images.iter().enumerate() {
        let fig = PathBuf::from(im["figure"].as_str().unwrap());
        assert_eq!(
            fig,
            out.join(format!("synthetic-{}-mouth.png", 1_000_000 + n))
        );
        // Two columns of 2 x 128 px panels + 8 px gap, 24 px apart, 10 px margins.
        let (w, h) = png_size(&fig);
        assert_eq!(w, 2 * 10 + 2 * (2 * 128 + 8) + 24, "{}", fig.display());
        assert_eq!(
            [w as u64, h as u64],
            [
                im["figure_size"][0].as_u64().unwrap(),
                im["figure_size"][1].as_u64().unwrap()
            ]
        );
        assert!(h > 128 * 3 && h < 1200, "height {h}");
        let bytes = std::fs::metadata(&fig).unwrap().len();
        assert!(bytes < 300_000, "{} is {bytes} bytes", fig.display());
        assert!(im["label"].is_string(), "synthetic faces know their class");

        let cols = im["columns"].as_array().unwrap();
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0]["occlusion"], "none");
        assert_eq!(cols[1]["occlusion"], "mouth");
        for col in cols {
            let probs = col["probabilities"].as_array().unwrap();
            assert_eq!(probs.len(), 7);
            let sum: f64 = probs.iter().map(|p| f(&p["p"])).sum();
            assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
            let stages = col["stages"].as_array().unwrap();
            assert_eq!(stages.len(), 4);
            for (i, st) in stages.iter().enumerate() {
                let side = 32 >> (i + 1); // the stage's pooled size, where the gates act
                let sp = &st["spatial"];
                assert_eq!(sp["shape"], serde_json::json!([1, side, side]), "stage {i}");
                let ch = &st["channel"];
                assert_eq!(ch["shape"], serde_json::json!([8 << i]), "stage {i}");
                for g in [sp, ch] {
                    let (lo, mean, hi) = (f(&g["min"]), f(&g["mean"]), f(&g["max"]));
                    assert!(
                        (0.0..=1.0).contains(&lo) && lo <= mean && mean <= hi && hi <= 1.0,
                        "stage {i}: {g}"
                    );
                }
            }
            let s = &col["sensitivity"];
            assert_eq!(s["shape"], serde_json::json!([32, 32]));
            // Patch 32/8 = 4 at stride 32/16 = 2: starts 0, 2, ..., 28 on each axis.
            assert_eq!(
                (s["patch"].as_u64(), s["stride"].as_u64()),
                (Some(4), Some(2))
            );
            assert_eq!(s["positions"].as_u64(), Some(15 * 15));
            assert_eq!(s["class"], im["label"], "the true class is the one watched");
        }
        // The mouth box changes what every spatial gate sees, so every map moves; the clean
        // column is compared with itself. At initialisation stage 0 moves by ~5e-3 on average
        // (the box zeroes ~15% of its input) and the change shrinks ~10x per stage (to ~2e-6 at
        // stage 3), so stage 0 must move by more than 1e-3 and the others at all.
        let stages = |c: usize| cols[c]["stages"].as_array().unwrap().clone();
        for (i, (c, o)) in stages(0).iter().zip(&stages(1)).enumerate() {
            let clean = f(&c["spatial"]["mean_abs_change_from_clean"]);
            let moved = f(&o["spatial"]["mean_abs_change_from_clean"]);
            assert_eq!(clean, 0.0);
            let floor = if i == 0 { 1e-3 } else { 0.0 };
            assert!(
                moved > floor,
                "stage {i}: M_s barely moved under the mouth box ({moved})"
            );
        }
    }
}

#[test]
fn explain_files_of_any_size_on_a_checkpoint_of_other_channels_and_size() {
    let dir = tmp_dir("explain-files");
    // One input channel at 16x16: a 48x48 file is resized and not replicated.
    let ck = init(
        &dir,
        "g.safetensors",
        &[
            "--in-channels",
            "1",
            "--image-size",
            "16",
            "--widths",
            "4,8",
        ],
    );
    let happy = dir.join("data/happy/S010_006_00000015.png");
    let loose = dir.join("loose.png");
    write_png(&happy, 48);
    write_png(&loose, 20);
    let out = dir.join("out");
    let (ok, _, stderr) = run_bin(&[
        "explain",
        "--checkpoint",
        ck.to_str().unwrap(),
        happy.to_str().unwrap(),
        loose.to_str().unwrap(),
        "--occlusion",
        "eyes",
        "--landmarks",
        "ckplus48",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let doc = read_json(&out.join("explain.json"));
    let images = doc["images"].as_array().unwrap();
    assert_eq!(
        images[0]["label"], "happy",
        "the class folder gives the true class"
    );
    assert!(images[1]["label"].is_null());
    for im in images {
        assert!(Path::new(im["figure"].as_str().unwrap()).exists());
        let st = &im["columns"][1]["stages"];
        assert_eq!(st[0]["spatial"]["shape"], serde_json::json!([1, 8, 8]));
        assert_eq!(st[1]["spatial"]["shape"], serde_json::json!([1, 4, 4]));
        assert!(im["columns"][0].get("sensitivity").is_none());
    }
    assert!(out.join("S010_006_00000015-eyes.png").exists());
    assert!(out.join("loose-eyes.png").exists());
}

#[test]
fn explain_without_attention_says_there_are_no_gates_and_still_gives_probabilities() {
    let dir = tmp_dir("explain-none");
    let mut flags = SMALL.to_vec();
    flags.extend(["--attention", "none"]);
    let ck = init(&dir, "n.safetensors", &flags);
    let out = dir.join("out");
    let (ok, _, stderr) = run_bin(&[
        "explain",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--synthetic",
        "1",
        "--occlusion",
        "none",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let doc = read_json(&out.join("explain.json"));
    let im = &doc["images"][0];
    let cols = im["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 1, "--occlusion none: the clean column only");
    assert_eq!(cols[0]["probabilities"].as_array().unwrap().len(), 7);
    for st in cols[0]["stages"].as_array().unwrap() {
        assert!(st["spatial"].is_null() && st["channel"].is_null(), "{st}");
    }
    let (w, _) = png_size(Path::new(im["figure"].as_str().unwrap()));
    assert_eq!(w, 2 * 10 + 2 * 128 + 8, "one column");
}

#[test]
fn explain_bad_inputs_are_one_line_errors_and_write_nothing() {
    let dir = tmp_dir("explain-bad");
    let ck = init(&dir, "m.safetensors", &SMALL);
    let ck = ck.to_str().unwrap();
    let good = dir.join("good.png");
    write_png(&good, 32);
    let corrupt = dir.join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n not really").unwrap();
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let (g, c) = (good.to_str().unwrap(), corrupt.to_str().unwrap());
    let missing = dir.join("missing.png");
    let m = missing.to_str().unwrap();
    one_line_error(&["explain", "--checkpoint", ck, m, "--out", o], m);
    one_line_error(&["explain", "--checkpoint", ck, c, "--out", o], c);
    one_line_error(
        &["explain", "--checkpoint", ck, g, c, "--out", o],
        "cannot decode",
    );
    let nock = dir.join("nope.safetensors");
    let n = nock.to_str().unwrap();
    one_line_error(&["explain", "--checkpoint", n, g, "--out", o], n);
    // A PNG is not a checkpoint.
    one_line_error(
        &["explain", "--checkpoint", g, g, "--out", o],
        "not a safetensors",
    );
    let bogus = [
        "explain",
        "--checkpoint",
        ck,
        g,
        "--occlusion",
        "bogus",
        "--out",
        o,
    ];
    one_line_error(&bogus, "bogus");
    one_line_error(
        &["explain", "--checkpoint", ck, "--out", o],
        "nothing to explain",
    );
    let big = [
        "explain",
        "--checkpoint",
        ck,
        g,
        "--sensitivity",
        "--patch",
        "33",
        "--out",
        o,
    ];
    one_line_error(&big, "patch 33");
    assert!(!out.exists(), "no output folder after a failed run");
}

#[test]
fn occlude_draws_one_row_per_occlusion_type() {
    let dir = tmp_dir("explain-occlude");
    let out = dir.join("grid.png");
    let (ok, stdout, stderr) = run_bin(&[
        "occlude",
        "--synthetic",
        "70",
        "--count",
        "3",
        "--image-size",
        "32",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("grid.png"), "{stdout}");
    // 32 px faces zoomed 3x (96 px cells, 4 px apart) below a 3-line title and column titles.
    let (w, h) = png_size(&out);
    let top = 10 + 4 * 10 + 4;
    assert_eq!((w, h), (10 + 54 + 3 * 100 - 4 + 10, top + 6 * 100 - 4 + 10));
    // Each occluded row has black squares the clean row does not: count black pixels per row
    // over the first face.
    let img = image::open(&out).unwrap().to_luma8();
    let x0 = 10 + 8 * 6 + 6;
    let black = |row: u32| {
        let y0 = top + row * 100;
        (y0..y0 + 96)
            .flat_map(|y| (x0..x0 + 96).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y)[0] == 0)
            .count()
    };
    let clean = black(0);
    for (row, name) in ["patch8", "patch16", "patch24", "eyes", "mouth"]
        .iter()
        .enumerate()
    {
        // The smallest, patch8 at 32 px, is a 2x2 square: 36 zoomed pixels.
        assert!(
            black(row as u32 + 1) >= clean + 36,
            "{name}: {} black pixels, clean {clean}",
            black(row as u32 + 1)
        );
    }
    one_line_error(
        &[
            "occlude",
            "--data",
            dir.join("nowhere").to_str().unwrap(),
            "--out",
            "x.png",
        ],
        "nowhere",
    );
}

/// The library: batching must not change a row, and the sensitivity map's corner pixel, which
/// only the patch at (0, 0) covers, must be exactly that patch's drop.
#[test]
fn sensitivity_corner_is_the_first_patch_and_batches_agree() {
    let g = gpu();
    let config = fer_cbam::model::ModelConfig {
        image_size: 16,
        widths: vec![4, 8],
        ..Default::default()
    };
    let packed = fer_cbam::model::ParamTable::new(&config).init(11);
    let faces: Vec<Vec<u8>> = (0..5)
        .map(|i| fer_cbam::data::synthetic::generate(7, i, 16).image(3))
        .collect();
    let ex3 = Explainer::new(g, &config, &packed, 3).unwrap();
    let ex5 = Explainer::new(g, &config, &packed, 5).unwrap();
    let a = ex3.inspect(&faces).unwrap();
    let b = ex5.inspect(&faces).unwrap();
    let p = ex3.probabilities(5, |i| faces[i].clone()).unwrap();
    for i in 0..5 {
        // The same kernels on the same row: batch position does not enter the arithmetic.
        assert_eq!(a[i].probs, b[i].probs, "face {i}");
        assert_eq!(&p[i * 7..(i + 1) * 7], a[i].probs.as_slice(), "face {i}");
        for (sa, sb) in a[i].stages.iter().zip(&b[i].stages) {
            assert_eq!(sa.spatial, sb.spatial);
            assert_eq!(sa.channel, sb.channel);
        }
    }
    assert_ne!(a[0].probs, a[1].probs, "different faces, different rows");

    let s = ex3.sensitivity(&faces[0], Some(2), 4, 3).unwrap();
    // Starts 0, 3, 6, 9 and the last, 12: five per axis.
    assert_eq!(s.positions, 25);
    assert_eq!((s.drop.h, s.drop.w), (16, 16));
    let mut patched = faces[0].clone();
    for c in 0..3 {
        for y in 0..4 {
            patched[c * 256 + y * 16..c * 256 + y * 16 + 4].fill(0);
        }
    }
    let q = ex3.inspect(&[faces[0].clone(), patched]).unwrap();
    assert_eq!(s.base, q[0].probs[2]);
    assert_eq!(s.drop.values[0], q[0].probs[2] - q[1].probs[2]);
    assert!(ex3.sensitivity(&faces[0], None, 17, 1).is_err());
}

#[test]
fn bilinear_upsampling_keeps_pixel_centres_and_clamps_at_the_border() {
    let m = Map {
        h: 2,
        w: 2,
        values: vec![0.0, 1.0, 2.0, 3.0],
    };
    assert_eq!(m.sample(0.25, 0.25), 0.0);
    assert_eq!(m.sample(0.75, 0.25), 1.0);
    assert_eq!(m.sample(0.75, 0.75), 3.0);
    assert_eq!(m.sample(0.5, 0.5), 1.5);
    assert_eq!(
        m.sample(0.0, 0.0),
        0.0,
        "clamped outside the outer pixel centres"
    );
    assert_eq!(m.sample(1.0, 1.0), 3.0);
    assert_eq!((m.min(), m.max(), m.mean()), (0.0, 3.0, 1.5));
    // The colour maps' ends.
    assert_eq!(explain::viridis(0.0).0, [68, 1, 84]);
    assert_eq!(explain::viridis(1.0).0, [253, 231, 37]);
    assert_eq!(explain::coolwarm(0.0).0, [235, 235, 235]);
}

#[test]
fn the_bitmap_font_draws_every_printable_character_distinctly() {
    let glyphs: Vec<[u8; 7]> = (32u8..127)
        .map(|c| fer_cbam::figures::text::glyph(c as char))
        .collect();
    for (i, g) in glyphs.iter().enumerate().skip(1) {
        assert!(
            g.iter().any(|&r| r != 0),
            "{:?} is blank",
            (i as u8 + 32) as char
        );
        assert!(g.iter().all(|&r| r < 32), "5 columns only");
        for (j, h) in glyphs.iter().enumerate().skip(i + 1) {
            assert_ne!(
                g,
                h,
                "{:?} and {:?}",
                (i as u8 + 32) as char,
                (j as u8 + 32) as char
            );
        }
    }
    assert_eq!(
        fer_cbam::figures::text::glyph('\u{e9}'),
        fer_cbam::figures::text::glyph('?')
    );
}
