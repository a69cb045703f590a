//! Seeded random corruptions of valid files, for every reader: dataset forms (FER2013's CSV,
//! AffectNet's CSV, RAF-DB's list, CK+'s emotion and landmark files, JAFFE's palette TIFFs),
//! the images a class folder holds (PNG, JPEG, TIFF, palette TIFF), the landmark readers
//! (CK+ text, iBUG .pts, sidecar CSV, image headers), checkpoints and optimizer state.
//!
//! Each corruption is a truncation, flipped bits, a number in the text replaced by a huge (or
//! negative, or not-a-) number, or a binary word overwritten with a huge value. Whatever the
//! file becomes, reading it must give a value or an error naming the file: never a panic,
//! never an abort (an abort ends this test binary, which fails it just the same). A failure
//! prints the target, iteration and corruption, which the seed reproduces.

mod common;
use common::{palette_tiff, TempDir};

use std::path::Path;

use fer_cbam::data::dataset::{self, Format};
use fer_cbam::data::{folder, landmarks};
use fer_cbam::model::checkpoint;
use fer_cbam::model::{ModelConfig, ParamTable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Corruptions per target: each reads a tiny file, so all of them take a few seconds.
const ITERATIONS: usize = 250;

const HUGE: [&str; 10] = [
    "99999999999999999999999",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "-9223372036854775809",
    "-1",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
];

/// One corruption of `valid`, and what it was (for the failure message).
fn corrupt(rng: &mut StdRng, valid: &[u8]) -> (Vec<u8>, String) {
    let mut b = valid.to_vec();
    match rng.random_range(0..4) {
        0 => {
            let at = rng.random_range(0..b.len());
            b.truncate(at);
            (b, format!("truncated at {at}"))
        }
        1 => {
            let n = rng.random_range(1..=8);
            let mut at = Vec::new();
            for _ in 0..n {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
                at.push(i);
            }
            (b, format!("bits flipped at {at:?}"))
        }
        2 => {
            // A run of ASCII digits (a count, a size, a label, an offset in a JSON header).
            let runs: Vec<(usize, usize)> = {
                let mut runs = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    if b[i].is_ascii_digit() {
                        let start = i;
                        while i < b.len() && b[i].is_ascii_digit() {
                            i += 1;
                        }
                        runs.push((start, i));
                    } else {
                        i += 1;
                    }
                }
                runs
            };
            if runs.is_empty() {
                return corrupt(rng, valid);
            }
            let (s, e) = runs[rng.random_range(0..runs.len())];
            let with = HUGE[rng.random_range(0..HUGE.len())];
            b.splice(s..e, with.bytes());
            (b, format!("number at {s}..{e} replaced by {with}"))
        }
        _ => {
            // A binary word (a length, an offset, a TIFF tag's count) made huge.
            let words: [&[u8]; 4] = [
                &[0xFF; 4],
                &[0xFF, 0xFF, 0xFF, 0x7F],
                &[0x7F, 0xFF, 0xFF, 0xFF],
                &[0xFF; 8],
            ];
            let w = words[rng.random_range(0..words.len())];
            let at = rng.random_range(0..b.len());
            let end = (at + w.len()).min(b.len());
            b[at..end].copy_from_slice(&w[..end - at]);
            (b, format!("{} bytes at {at} set to {w:02x?}", end - at))
        }
    }
}

/// Writes `ITERATIONS` corruptions of `valid` to `file`, calling `read` on each: it returns
/// the error messages it met, each of which must contain one of `names` (the corrupted file's,
/// or the sample the error is about). A panic fails the test with the corruption that caused
/// it.
fn fuzz(
    target: &str,
    seed: u64,
    file: &Path,
    valid: &[u8],
    names: &[&str],
    read: impl Fn() -> Vec<String>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut errors, mut ok) = (0, 0);
    for i in 0..ITERATIONS {
        let (bytes, what) = corrupt(&mut rng, valid);
        std::fs::write(file, &bytes).unwrap();
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&read))
            .unwrap_or_else(|_| panic!("{target}: iteration {i} ({what}) panicked"));
        if got.is_empty() {
            ok += 1;
        }
        for e in got {
            errors += 1;
            assert!(
                names.iter().any(|n| e.contains(n)),
                "{target}: iteration {i} ({what}): the error does not name the file: {e}"
            );
        }
    }
    // Most corruptions must be noticed, or the target is not reading what it claims to.
    assert!(
        errors > 0,
        "{target}: {ok} corruptions of {ITERATIONS} all read fine"
    );
    // The valid file still reads, without error.
    std::fs::write(file, valid).unwrap();
    assert!(read().is_empty(), "{target}: the valid file fails");
}

/// Opens a dataset and loads every sample: every error met, as text.
fn open_and_load(root: &Path, format: Format) -> Vec<String> {
    match dataset::open(root, Some(format)) {
        Err(e) => vec![e.to_string()],
        Ok(ds) => ds
            .samples
            .iter()
            .filter_map(|s| s.load(16, 3).err().map(|e| format!("{e} [{}]", s.name)))
            .collect(),
    }
}

fn png(side: u32, seed: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(side, side, |x, y| {
        image::Luma([(x * 13 + y * 7) as u8 ^ seed])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn fer2013_csv() {
    let dir = TempDir::new("fuzz-fer2013");
    let mut csv = String::from("emotion,pixels,Usage\n");
    for i in 0..6 {
        let px: Vec<String> = (0..16)
            .map(|k| ((i * 31 + k * 17) % 256).to_string())
            .collect();
        let usage = if i < 4 { "Training" } else { "PublicTest" };
        csv += &format!("{},{},{usage}\n", i % 7, px.join(" "));
    }
    let file = dir.path().join("fer2013.csv");
    fuzz(
        "fer2013",
        1,
        &file,
        csv.as_bytes(),
        &["fer2013.csv"],
        || open_and_load(&file, Format::Fer2013Csv),
    );
}

fn landmark_text(sep: &str) -> String {
    (0..68)
        .map(|k| format!("{}{sep}{}", 10.0 + (k % 9) as f32, 12.5 + (k / 9) as f32))
        .collect::<Vec<_>>()
        .join(if sep == ";" { ";" } else { "\n" })
}

#[test]
fn affectnet_csv() {
    let dir = TempDir::new("fuzz-affectnet");
    let root = dir.path();
    for (k, name) in ["1/a.png", "2/b.png"].iter().enumerate() {
        let p = root.join("Manually_Annotated_Images").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, png(32, k as u8)).unwrap();
    }
    let lm = landmark_text(";");
    let csv = format!(
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n\
         1/a.png,2,3,24,24,{lm},1,0.5,-0.1\n\
         2/b.png,0,0,32,32,,3,0.1,0.2\n\
         1/a.png,8,8,16,16,{lm},6,0.0,0.0\n"
    );
    let file = root.join("training.csv");
    fuzz(
        "affectnet",
        2,
        &file,
        csv.as_bytes(),
        &["training.csv"],
        || open_and_load(root, Format::AffectNetCsv),
    );
}

#[test]
fn rafdb_list() {
    let dir = TempDir::new("fuzz-rafdb");
    let root = dir.path();
    let aligned = root.join("Image/aligned");
    std::fs::create_dir_all(&aligned).unwrap();
    std::fs::create_dir_all(root.join("EmoLabel")).unwrap();
    for (k, n) in ["train_00001", "train_00002", "test_00001"]
        .iter()
        .enumerate()
    {
        std::fs::write(aligned.join(format!("{n}_aligned.png")), png(16, k as u8)).unwrap();
    }
    let list = "train_00001.png 1\ntrain_00002.png 4\ntest_00001.png 7\n";
    let file = root.join("EmoLabel/list_patition_label.txt");
    fuzz(
        "rafdb",
        3,
        &file,
        list.as_bytes(),
        &["list_patition_label.txt"],
        || open_and_load(root, Format::RafDb),
    );
}

/// CK+ as distributed, one labelled sequence: (root, emotion file, landmark file).
fn ckplus(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let seq = Path::new("S005/001");
    let stem = "S005_001_00000011";
    let img = root.join("cohn-kanade-images").join(seq);
    std::fs::create_dir_all(&img).unwrap();
    std::fs::write(img.join(format!("{stem}.png")), png(24, 5)).unwrap();
    let emo = root.join("Emotion").join(seq);
    std::fs::create_dir_all(&emo).unwrap();
    let lm = root.join("Landmarks").join(seq);
    std::fs::create_dir_all(&lm).unwrap();
    (
        emo.join(format!("{stem}_emotion.txt")),
        lm.join(format!("{stem}_landmarks.txt")),
    )
}

#[test]
fn ckplus_emotion_and_landmark_files() {
    let dir = TempDir::new("fuzz-ckplus");
    let root = dir.path();
    let (emo, lm) = ckplus(root);
    let lm_text = landmark_text(" ");
    std::fs::write(&lm, &lm_text).unwrap();
    let code = "   3.0000000e+00\n";
    fuzz(
        "ckplus emotion",
        4,
        &emo,
        code.as_bytes(),
        &["_emotion.txt"],
        || open_and_load(root, Format::CkPlus),
    );
    fuzz(
        "ckplus landmarks",
        5,
        &lm,
        lm_text.as_bytes(),
        &["_landmarks.txt"],
        || {
            let mut e = open_and_load(root, Format::CkPlus);
            e.extend(landmarks::read_ckplus(&lm).err().map(|e| e.to_string()));
            e
        },
    );
}

#[test]
fn jaffe_palette_tiffs() {
    let dir = TempDir::new("fuzz-jaffe");
    let palette: Vec<(u16, u16, u16)> = (0..256u32)
        .map(|i| {
            let v = (i * 257) as u16;
            (v, v / 2, 65535 - v)
        })
        .collect();
    let tiff = palette_tiff(12, 10, |x, y| (x * 20 + y) as u8, &palette);
    let file = dir.path().join("KA.HA1.29.tiff");
    fuzz("jaffe", 6, &file, &tiff, &["KA.HA1.29.tiff"], || {
        let mut e = open_and_load(dir.path(), Format::Jaffe);
        e.extend(landmarks::image_size(&file).err().map(|e| e.to_string()));
        e
    });
}

#[test]
fn class_folder_images() {
    let dir = TempDir::new("fuzz-folder");
    let happy = dir.path().join("happy");
    std::fs::create_dir_all(&happy).unwrap();
    let img = image::GrayImage::from_fn(16, 12, |x, y| image::Luma([(x * 9 + y * 5) as u8]));
    let encoded = |f: image::ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, f).unwrap();
        out.into_inner()
    };
    for (k, (name, bytes)) in [
        ("a.png", encoded(image::ImageFormat::Png)),
        ("b.jpg", encoded(image::ImageFormat::Jpeg)),
        ("c.tiff", encoded(image::ImageFormat::Tiff)),
        (
            "d.tif",
            palette_tiff(8, 8, |x, y| (x + y) as u8, &[(0, 0, 0), (65535, 0, 0)]),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let file = happy.join(name);
        fuzz(name, 10 + k as u64, &file, &bytes, &[name], || {
            let mut e: Vec<String> = folder::decode(&file, 16, 3)
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .collect();
            e.extend(landmarks::image_size(&file).err().map(|e| e.to_string()));
            e
        });
    }
}

#[test]
fn landmark_files() {
    let dir = TempDir::new("fuzz-landmarks");
    let root = dir.path();
    let pts_text = format!("version: 1\nn_points: 68\n{{\n{}\n}}\n", landmark_text(" "));
    let pts = root.join("face.pts");
    fuzz("pts", 20, &pts, pts_text.as_bytes(), &["face.pts"], || {
        landmarks::read_pts(&pts)
            .err()
            .map(|e| e.to_string())
            .into_iter()
            .collect()
    });
    // A sidecar CSV attached to a class folder (its rows are matched to images, and the image
    // sizes read to place the points).
    let data = root.join("data");
    for (class, k) in [("happy", 0u8), ("sad", 1)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        std::fs::write(data.join(class).join("x.png"), png(20, k)).unwrap();
    }
    let row = |f: &str| {
        let v: Vec<String> = (0..136).map(|k| format!("{}.5", 2 + k % 15)).collect();
        format!("{f},{},0\n", v.join(","))
    };
    let sidecar = format!("file,...\n{}{}", row("happy/x.png"), row("sad/x.png"));
    let csv = root.join("sidecar.csv");
    fuzz(
        "sidecar",
        21,
        &csv,
        sidecar.as_bytes(),
        &["sidecar.csv"],
        || {
            let mut ds = dataset::open(&data, Some(Format::Folder)).unwrap();
            landmarks::attach_sidecar(&mut ds, &csv)
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .collect()
        },
    );
}

#[test]
fn checkpoints_and_optimizer_state() {
    let dir = TempDir::new("fuzz-checkpoint");
    let config = ModelConfig {
        image_size: 16,
        widths: vec![4, 8],
        hidden: 8,
        ..ModelConfig::default()
    };
    let table = ParamTable::new(&config);
    let n = table.packed_len();
    let path = dir.path().join("m.safetensors");
    let optim = checkpoint::save_training(
        &path,
        &checkpoint::TrainingState::new(
            &config,
            &table.init(7),
            &vec![0.001; n],
            &vec![0.002; n],
            42,
        ),
    )
    .unwrap();
    let valid = std::fs::read(&path).unwrap();
    let valid_optim = std::fs::read(&optim).unwrap();
    let saved = table.init(7);
    fuzz("checkpoint", 30, &path, &valid, &["m.safetensors"], || {
        // From the file, and from the same bytes in memory (the browser's path). Whatever still
        // loads holds exactly the saved parameters, as long as the header's hash survived
        // (files without one, as PyTorch writes them, are taken as they are).
        let bytes = std::fs::read(&path).unwrap();
        let hashed = bytes
            .windows(checkpoint::HASH_KEY.len())
            .any(|w| w == checkpoint::HASH_KEY.as_bytes());
        let mut e = Vec::new();
        for r in [
            checkpoint::load(&path),
            checkpoint::from_bytes(&bytes, &path),
        ] {
            match r {
                Ok(ck) => assert!(
                    ck.packed == saved || !hashed,
                    "a corrupted checkpoint with its hash loaded other values"
                ),
                Err(x) => e.push(x.to_string()),
            }
        }
        e
    });
    std::fs::write(&path, &valid).unwrap();
    fuzz(
        "optimizer state",
        31,
        &optim,
        &valid_optim,
        &["m.optim.safetensors"],
        || {
            checkpoint::load_training(&path)
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .collect()
        },
    );
}
