//! Every distributed dataset form read into `Dataset`: FER2013's CSV, JAFFE, CK+ as
//! distributed, RAF-DB, AffectNet's CSV, and format detection. Fixtures are written by the tests
//! into temp folders; each format's happy path checks labels (in the spec's order), splits,
//! subjects and landmarks, and each kind of bad input must be an error naming the file (and the
//! line, for text formats).

mod common;
use common::TempDir;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use fer_cbam::data::dataset::{detect, open, Dataset, Format, LandmarkOrigin, Pixels};
use fer_cbam::data::folder::Split;
use fer_cbam::model::CLASSES;
use fer_cbam::Error;

fn write_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn label(name: &str) -> usize {
    CLASSES.iter().position(|c| *c == name).unwrap()
}

/// The error's `path` (file, and line for text formats) and message.
fn data_err(r: fer_cbam::Result<Dataset>) -> (String, String) {
    match r {
        Err(Error::Data { path, message }) => (path, message),
        Err(other) => panic!("expected a data error, got {other}"),
        Ok(ds) => panic!("expected an error, read {} samples", ds.samples.len()),
    }
}

/// Asserts the error names `file` at `line` and its message contains `words`.
fn assert_err_at(r: fer_cbam::Result<Dataset>, file: &Path, line: u64, words: &str) {
    let (path, message) = data_err(r);
    assert_eq!(path, format!("{} line {line}", file.display()), "{message}");
    assert!(message.contains(words), "{path}: {message}");
}

// ---------------------------------------------------------------------------------- FER2013

/// `n` pixels as FER2013 writes them.
fn pixels(n: usize, base: u8) -> String {
    (0..n)
        .map(|i| (base as usize + i).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn fer2013_csv_labels_splits_and_pixels() {
    let t = TempDir::new("fmt-fer");
    let csv = t.file(
        "fer2013.csv",
        &format!(
            "emotion,pixels,Usage\n0,{},Training\n4,{},PublicTest\n6,{},PrivateTest\n5,{},Training\n",
            pixels(9, 10),
            pixels(9, 20),
            pixels(9, 30),
            pixels(9, 40)
        ),
    );
    for root in [csv.as_path(), t.path()] {
        assert_eq!(detect(root).unwrap(), Format::Fer2013Csv);
        let ds = open(root, None).unwrap();
        assert_eq!(ds.format, Format::Fer2013Csv);
        assert!(ds.has_splits);
        let got: Vec<_> = ds.samples.iter().map(|s| (s.label, s.split)).collect();
        assert_eq!(
            got,
            [
                (label("angry"), Split::Train),
                (label("sad"), Split::Test),
                (label("neutral"), Split::Test),
                (label("surprise"), Split::Train),
            ]
        );
        assert_eq!(ds.samples[1].name, format!("{} line 3", csv.display()));
        assert!(
            ds.notes
                .iter()
                .any(|n| n.contains("PublicTest (1) + PrivateTest (1)")),
            "{:?}",
            ds.notes
        );
        // A 3x3 row loaded at 3x3 is the row itself, replicated per channel.
        let want: Vec<u8> = (20..29).collect();
        assert_eq!(ds.samples[1].load(3, 1).unwrap(), want);
        assert_eq!(ds.samples[1].load(3, 3).unwrap(), want.repeat(3));
    }
}

#[test]
fn fer2013_columns_are_found_by_name_and_usage_is_optional() {
    let t = TempDir::new("fmt-fer-order");
    let csv = t.file(
        "icml_face_data.csv",
        &format!(
            "emotion, Usage, pixels\n3,Training,{}\n1,PrivateTest,{}\n",
            pixels(4, 0),
            pixels(4, 9)
        ),
    );
    let ds = open(&csv, None).unwrap();
    assert_eq!(ds.samples[0].label, label("happy"));
    assert_eq!(ds.samples[1].split, Split::Test);
    assert_eq!(
        ds.samples[1].pixels,
        Pixels::Gray {
            width: 2,
            height: 2,
            data: vec![9, 10, 11, 12].into()
        }
    );
    let csv = t.file(
        "train.csv",
        &format!("emotion,pixels\n2,{}\n", pixels(4, 0)),
    );
    let ds = open(&csv, None).unwrap();
    assert!(!ds.has_splits);
    assert_eq!(ds.samples[0].split, Split::Unsplit);
}

#[test]
fn fer2013_malformed_rows_name_file_and_line() {
    let t = TempDir::new("fmt-fer-bad");
    let ok = format!("0,{},Training\n", pixels(4, 0));
    let cases = [
        (format!("3,{}\n", pixels(4, 0)), "2 columns"),
        (
            format!("3,{},Training\n", pixels(5, 0)),
            "5 pixels do not make a square",
        ),
        (
            format!("3,{} x,Training\n", pixels(3, 0)),
            "pixel 3 is \"x\"",
        ),
        (
            format!("3,{} 256,Training\n", pixels(3, 0)),
            "pixel 3 is \"256\"",
        ),
        (
            format!("7,{},Training\n", pixels(4, 0)),
            "unknown emotion \"7\"",
        ),
        (
            format!("happy,{},Training\n", pixels(4, 0)),
            "unknown emotion \"happy\"",
        ),
        (
            format!("3,{},Validation\n", pixels(4, 0)),
            "unknown Usage \"Validation\"",
        ),
        ("3,,Training\n".to_string(), "0 pixels"),
    ];
    for (bad, words) in cases {
        let csv = t.file(
            "fer2013.csv",
            &format!("emotion,pixels,Usage\n{ok}{ok}{bad}{ok}"),
        );
        assert_err_at(open(&csv, Some(Format::Fer2013Csv)), &csv, 4, words);
    }
    let csv = t.file("fer2013.csv", &format!("label,pixels,Usage\n{ok}"));
    assert_err_at(open(&csv, Some(Format::Fer2013Csv)), &csv, 1, "lacks");
}

// ------------------------------------------------------------------------------------ JAFFE

#[test]
fn jaffe_names_give_labels_and_subjects() {
    let t = TempDir::new("fmt-jaffe");
    let names = [
        ("KA.AN1.39.png", "angry", "KA"),
        ("KA.DI2.43.png", "disgust", "KA"),
        ("KL.FE3.57.png", "fear", "KL"),
        ("KM.HA1.4.png", "happy", "KM"),
        ("NA.NE1.202.png", "neutral", "NA"),
        ("TM.SA2.191.png", "sad", "TM"),
        ("YM.SU3.60.png", "surprise", "YM"),
    ];
    for (n, _, _) in names {
        write_png(&t.path().join(n), 4, 4, |x, _| x as u8);
    }
    write_png(&t.path().join("README.png"), 4, 4, |_, _| 0);
    t.file("README", "JAFFE");
    assert_eq!(detect(t.path()).unwrap(), Format::Jaffe);
    let ds = open(t.path(), None).unwrap();
    assert!(!ds.has_splits);
    let got: HashSet<_> = ds
        .samples
        .iter()
        .map(|s| (s.label, s.group.clone().unwrap()))
        .collect();
    let want: HashSet<_> = names
        .iter()
        .map(|(_, c, g)| (label(c), g.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(ds.samples.len(), 7);
    assert!(
        ds.notes.iter().any(|n| n.contains("left out 1 images")),
        "{:?}",
        ds.notes
    );
}

#[test]
fn jaffe_unknown_expression_code_names_the_file() {
    let t = TempDir::new("fmt-jaffe-bad");
    write_png(&t.path().join("KA.AN1.39.png"), 4, 4, |_, _| 0);
    write_png(&t.path().join("KA.XX1.40.png"), 4, 4, |_, _| 0);
    let (path, message) = data_err(open(t.path(), None));
    assert!(path.ends_with("KA.XX1.40.png"), "{path}");
    assert!(
        message.contains("unknown expression code \"XX\""),
        "{message}"
    );
}

// -------------------------------------------------------------------------------------- CK+

/// CK+ landmark text: 68 points `(k, 2k)` scaled, in the files' scientific notation.
fn ck_landmarks(scale: f32) -> String {
    (0..68)
        .map(|k| {
            format!(
                "   {:.7e}   {:.7e}\n",
                k as f32 * scale,
                2.0 * k as f32 * scale
            )
        })
        .collect()
}

/// A tiny CK+: S005/001 disgust with landmarks (frames 1-3, 40x30), S010/002 contempt,
/// S011/001 unlabelled, S012/004 happy without a landmark file.
fn ckplus_fixture(t: &TempDir) {
    for f in 1..=3 {
        write_png(
            &t.path().join(format!(
                "cohn-kanade-images/S005/001/S005_001_0000000{f}.png"
            )),
            40,
            30,
            |x, _| x as u8,
        );
    }
    t.file(
        "Emotion/S005/001/S005_001_00000003_emotion.txt",
        "   3.0000000e+00\n",
    );
    t.file(
        "Landmarks/S005/001/S005_001_00000003_landmarks.txt",
        &ck_landmarks(0.25),
    );
    write_png(
        &t.path()
            .join("cohn-kanade-images/S010/002/S010_002_00000005.png"),
        8,
        8,
        |_, _| 0,
    );
    t.file(
        "Emotion/S010/002/S010_002_00000005_emotion.txt",
        "   2.0000000e+00\n",
    );
    write_png(
        &t.path()
            .join("cohn-kanade-images/S011/001/S011_001_00000001.png"),
        8,
        8,
        |_, _| 0,
    );
    std::fs::create_dir_all(t.path().join("Emotion/S011/001")).unwrap();
    write_png(
        &t.path()
            .join("cohn-kanade-images/S012/004/S012_004_00000020.png"),
        8,
        8,
        |_, _| 0,
    );
    t.file("Emotion/S012/004/S012_004_00000020_emotion.txt", "5.0\n");
}

#[test]
fn ckplus_apex_frames_labels_subjects_and_normalised_landmarks() {
    let t = TempDir::new("fmt-ck");
    ckplus_fixture(&t);
    assert_eq!(detect(t.path()).unwrap(), Format::CkPlus);
    let ds = open(t.path(), None).unwrap();
    assert_eq!(ds.format, Format::CkPlus);
    assert_eq!(ds.samples.len(), 2, "{:?}", ds.samples);
    let (a, b) = (&ds.samples[0], &ds.samples[1]);
    assert_eq!(
        (a.label, a.group.as_deref()),
        (label("disgust"), Some("S005"))
    );
    assert_eq!(
        (b.label, b.group.as_deref()),
        (label("happy"), Some("S012"))
    );
    assert!(a.name.ends_with("S005_001_00000003.png"), "{}", a.name);
    let lm = a.landmarks.as_ref().expect("S005's landmarks");
    assert!(
        matches!(&lm.origin, LandmarkOrigin::File(p) if p.ends_with("S005_001_00000003_landmarks.txt"))
    );
    // Point k is (k/4, k/2) px in a 40x30 frame: fractions (k/160, k/60).
    for (k, p) in lm.points.iter().enumerate() {
        let want = [k as f32 / 160.0, k as f32 / 60.0];
        assert!(
            (p[0] - want[0]).abs() < 1e-6 && (p[1] - want[1]).abs() < 1e-6,
            "{k}: {p:?}"
        );
    }
    assert!(b.landmarks.is_none());
    let notes = ds.notes.join(" | ");
    assert!(
        notes.contains("1 sequences without an emotion file"),
        "{notes}"
    );
    assert!(notes.contains("1 sequences labelled contempt"), "{notes}");
    assert!(
        notes.contains("1 labelled frames have no landmark file"),
        "{notes}"
    );
    assert_eq!(a.load(40, 1).unwrap().len(), 1600);
}

#[test]
fn ckplus_bad_files_name_file_and_line() {
    let cases: [(&str, &str, u64, &str); 4] = [
        (
            "Emotion/S005/001/S005_001_00000003_emotion.txt",
            "  happy\n",
            1,
            "not a number",
        ),
        (
            "Emotion/S005/001/S005_001_00000003_emotion.txt",
            "\n   9.0000000e+00\n",
            2,
            "unknown emotion 9",
        ),
        (
            "Emotion/S005/001/S005_001_00000003_emotion.txt",
            "1.5\n",
            1,
            "unknown emotion 1.5",
        ),
        (
            "Landmarks/S005/001/S005_001_00000003_landmarks.txt",
            "   1.0e+00   2.0e+00\n   3.0e+00   y\n",
            2,
            "\"y\" is not a number",
        ),
    ];
    for (rel, text, line, words) in cases {
        let t = TempDir::new("fmt-ck-bad");
        ckplus_fixture(&t);
        let f = t.file(rel, text);
        assert_err_at(open(t.path(), None), &f, line, words);
    }
    // Too few points: the file is named with the count.
    let t = TempDir::new("fmt-ck-short");
    ckplus_fixture(&t);
    let short: String = ck_landmarks(1.0)
        .lines()
        .take(67)
        .map(|l| format!("{l}\n"))
        .collect();
    let f = t.file("Landmarks/S005/001/S005_001_00000003_landmarks.txt", &short);
    let (path, message) = data_err(open(t.path(), None));
    assert_eq!(path, f.display().to_string());
    assert!(message.contains("67 points"), "{message}");
    // An emotion file naming a frame that is not there.
    let t = TempDir::new("fmt-ck-missing");
    ckplus_fixture(&t);
    let f = t.file("Emotion/S005/001/S005_001_00000009_emotion.txt", "1\n");
    let (path, message) = data_err(open(t.path(), None));
    assert_eq!(path, f.display().to_string());
    assert!(
        message.contains("S005_001_00000009.png, which does not exist"),
        "{message}"
    );
}

// ----------------------------------------------------------------------------------- RAF-DB

#[test]
fn rafdb_labels_splits_and_original_fallback() {
    let t = TempDir::new("fmt-raf");
    t.file(
        "EmoLabel/list_patition_label.txt",
        "train_00001.jpg 5\ntrain_00002.jpg 1\ntest_0001.jpg 7\ntest_0002.jpg 6\n",
    );
    for n in ["train_00001", "train_00002", "test_0001"] {
        write_png(
            &t.path().join(format!("Image/aligned/{n}_aligned.jpg")),
            4,
            4,
            |_, _| 0,
        );
    }
    write_png(
        &t.path().join("Image/original/test_0002.jpg"),
        6,
        6,
        |_, _| 0,
    );
    assert_eq!(detect(t.path()).unwrap(), Format::RafDb);
    let ds = open(t.path(), None).unwrap();
    assert!(ds.has_splits);
    let got: Vec<_> = ds.samples.iter().map(|s| (s.label, s.split)).collect();
    assert_eq!(
        got,
        [
            (label("sad"), Split::Train),
            (label("surprise"), Split::Train),
            (label("neutral"), Split::Test),
            (label("angry"), Split::Test),
        ]
    );
    assert!(ds.samples[3].name.ends_with("Image/original/test_0002.jpg"));
    assert!(ds
        .notes
        .iter()
        .any(|n| n.contains("1 images read from Image/original")));
}

#[test]
fn rafdb_bad_lines_name_file_and_line() {
    let cases = [
        ("train_00002.jpg 8", "unknown label \"8\""),
        ("train_00002.jpg 0", "unknown label \"0\""),
        ("train_00002.jpg", "found 1 fields"),
        ("val_00002.jpg 3", "neither train_ nor test_"),
        ("train_00099.jpg 3", "image \"train_00099.jpg\" is missing"),
    ];
    for (bad, words) in cases {
        let t = TempDir::new("fmt-raf-bad");
        let list = t.file(
            "EmoLabel/list_patition_label.txt",
            &format!("train_00001.jpg 5\n{bad}\n"),
        );
        for n in ["train_00001", "train_00002"] {
            write_png(
                &t.path().join(format!("Image/aligned/{n}_aligned.jpg")),
                4,
                4,
                |_, _| 0,
            );
        }
        assert_err_at(open(t.path(), None), &list, 2, words);
    }
}

// -------------------------------------------------------------------------------- AffectNet

const AFFECTNET_HEADER: &str = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal";

/// 136 `;`-separated numbers: point k at (x + k/10, y + k/20).
fn affectnet_landmarks(x: f32, y: f32) -> String {
    (0..68)
        .flat_map(|k| [x + k as f32 / 10.0, y + k as f32 / 20.0])
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(";")
}

fn affectnet_fixture(t: &TempDir) -> (PathBuf, PathBuf) {
    write_png(
        &t.path().join("Manually_Annotated_Images/1/a.png"),
        20,
        20,
        |x, y| (10 * y + x) as u8,
    );
    write_png(
        &t.path().join("Manually_Annotated_Images/2/b.png"),
        20,
        20,
        |_, _| 200,
    );
    let train = t.file(
        "training.csv",
        &format!(
            "{AFFECTNET_HEADER}\n1/a.png,2,4,8,8,\"{}\",6,0.1,0.2\n2/b.png,0,0,20,20,,7,0,0\n2/b.png,0,0,20,20,,10,0,0\n",
            affectnet_landmarks(2.0, 4.0)
        ),
    );
    // The release's validation.csv has no header row.
    let val = t.file(
        "validation.csv",
        &format!(
            "2/b.png,15,15,10,10,{},1,0.5,0.5\n",
            affectnet_landmarks(15.0, 15.0)
        ),
    );
    (train, val)
}

#[test]
fn affectnet_csv_crops_face_boxes_and_makes_landmarks_relative() {
    let t = TempDir::new("fmt-affect");
    let (train, _) = affectnet_fixture(&t);
    assert_eq!(detect(t.path()).unwrap(), Format::AffectNetCsv);
    assert_eq!(detect(&train).unwrap(), Format::AffectNetCsv);
    let ds = open(t.path(), None).unwrap();
    assert!(ds.has_splits);
    assert_eq!(ds.samples.len(), 2);
    let (a, b) = (&ds.samples[0], &ds.samples[1]);
    assert_eq!((a.label, a.split), (label("angry"), Split::Train));
    assert_eq!((b.label, b.split), (label("happy"), Split::Test));
    assert!(matches!(
        &a.pixels,
        Pixels::Crop { x: 2, y: 4, width: 8, height: 8, path } if path.ends_with("1/a.png")
    ));
    // Point k at (2 + k/10, 4 + k/20) px: (k/10, k/20) inside an 8x8 box.
    let lm = a.landmarks.as_ref().unwrap();
    for (k, p) in lm.points.iter().enumerate() {
        let want = [k as f32 / 80.0, k as f32 / 160.0];
        assert!(
            (p[0] - want[0]).abs() < 1e-3 && (p[1] - want[1]).abs() < 1e-3,
            "{k}: {p:?}"
        );
    }
    // The crop is the 8x8 box at (2, 4) of the image.
    let want: Vec<u8> = (4..12)
        .flat_map(|y| (2..10).map(move |x| (10 * y + x) as u8))
        .collect();
    assert_eq!(a.load(8, 1).unwrap(), want);
    // b's 10x10 box at (15, 15) overhangs the 20x20 image: the outside is black.
    let px = b.load(10, 1).unwrap();
    assert_eq!((px[0], px[4], px[5], px[99]), (200, 200, 0, 0));
    let notes = ds.notes.join(" | ");
    assert!(notes.contains("1 contempt, 1 no-face"), "{notes}");
    // One CSV alone is no split.
    let one = open(&train, None).unwrap();
    assert!(!one.has_splits);
    assert_eq!(one.samples[0].split, Split::Unsplit);
}

#[test]
fn affectnet_bad_rows_name_file_and_line() {
    let lm = affectnet_landmarks(2.0, 4.0);
    let cases = [
        (
            format!("1/a.png,2,4,8,8,\"{lm}\",11,0,0"),
            "unknown expression \"11\"",
        ),
        (
            format!("1/a.png,2,4,8,8,\"{lm};1\",1,0,0"),
            "has 137 numbers",
        ),
        (format!("1/a.png,2,4,8,8,\"{lm}\",1,0"), "8 columns"),
        (
            format!("1/a.png,2,four,8,8,\"{lm}\",1,0,0"),
            "face_y is \"four\"",
        ),
        (
            format!("1/a.png,2,4,0,8,\"{lm}\",1,0,0"),
            "face box 0x8 is empty",
        ),
        (format!("9/z.png,2,4,8,8,\"{lm}\",1,0,0"), "is missing"),
    ];
    for (bad, words) in cases {
        let t = TempDir::new("fmt-affect-bad");
        affectnet_fixture(&t);
        let csv = t.file("training.csv", &format!("{AFFECTNET_HEADER}\n{bad}\n"));
        assert_err_at(open(t.path(), None), &csv, 2, words);
    }
}

// -------------------------------------------------------------------------------- detection

#[test]
fn detection_and_override() {
    let t = TempDir::new("fmt-detect");
    // Class folders.
    write_png(&t.path().join("folder/happy/x.png"), 4, 4, |_, _| 0);
    assert_eq!(detect(&t.path().join("folder")).unwrap(), Format::Folder);
    // A folder of nothing recognisable: the error says what was looked for.
    t.file("junk/notes.txt", "hello");
    std::fs::create_dir_all(t.path().join("junk/misc")).unwrap();
    let (path, message) = match detect(&t.path().join("junk")) {
        Err(Error::Data { path, message }) => (path, message),
        other => panic!("{other:?}"),
    };
    assert!(path.ends_with("junk"));
    for words in [
        "FER2013",
        "AffectNet",
        "cohn-kanade-images",
        "list_patition_label.txt",
        "JAFFE",
        "class folders",
        "--format",
    ] {
        assert!(message.contains(words), "{words}: {message}");
    }
    // A CSV with some other header.
    let other = t.file("other.csv", "a,b\n1,2\n");
    let (path, message) = match detect(&other) {
        Err(Error::Data { path, message }) => (path, message),
        other => panic!("{other:?}"),
    };
    assert_eq!(path, format!("{} line 1", other.display()));
    assert!(message.contains("neither FER2013's"), "{message}");
    // A file that is not a CSV.
    let png = t.path().join("folder/happy/x.png");
    assert!(detect(&png).is_err());
    // --format wins over detection: a JAFFE folder read as class folders has none.
    write_png(&t.path().join("jaffe/KA.AN1.39.png"), 4, 4, |_, _| 0);
    assert_eq!(detect(&t.path().join("jaffe")).unwrap(), Format::Jaffe);
    let (_, message) = data_err(open(t.path().join("jaffe"), Some(Format::Folder)));
    assert!(message.contains("empty class set"), "{message}");
    // Format names round-trip through --format's parser.
    for f in Format::ALL {
        assert_eq!(f.name().parse::<Format>().unwrap(), f);
    }
}

// ------------------------------------------------------------------------- CK+48 apex set

#[test]
fn ckplus48_apex_set_is_the_papers_309_images_from_106_subjects() {
    let Some(root) = common::dataset("ckplus") else {
        return;
    };
    let mut ds = open(&root, None).unwrap();
    assert_eq!(ds.format, Format::Folder);
    assert_eq!(ds.samples.len(), 927);
    assert_eq!(ds.keep_last_frame_per_sequence(), 618);
    assert_eq!(ds.samples.len(), 309);
    // The paper's Table 1: angry, disgust, fear, happy, neutral, sad, surprise.
    assert_eq!(ds.counts(None), [45, 59, 25, 69, 0, 28, 83]);
    let subjects: HashSet<_> = ds
        .samples
        .iter()
        .map(|s| s.group.clone().unwrap())
        .collect();
    assert_eq!(subjects.len(), 106);
}
