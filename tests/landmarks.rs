//! 68-point landmarks: CK+ `_landmarks.txt`, iBUG `.pts` (picked up beside images), and the
//! `file,x0,y0,...,x67,y67[,flagged]` sidecar that `tools/landmarks.py` writes, attached to a
//! dataset's samples, normalised by each image's size, with the source reported per image.

mod common;
use common::TempDir;

use std::path::Path;

use fer_cbam::data::dataset::{open, Dataset, LandmarkOrigin, Pixels, SampleLandmarks};
use fer_cbam::data::landmarks::{attach_sidecar, read_ckplus, read_pts, read_sidecar};
use fer_cbam::data::occlusion::Template;
use fer_cbam::sources::DatasetSource;
use fer_cbam::Error;

fn write_png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x + y) as u8]))
        .save(path)
        .unwrap();
}

fn err_at<T: std::fmt::Debug>(r: fer_cbam::Result<T>) -> (String, String) {
    match r {
        Err(Error::Data { path, message }) => (path, message),
        other => panic!("expected a data error, got {other:?}"),
    }
}

/// Point k at (k, 100 + k): distinct per point, so a swapped or shifted index shows.
fn point(k: usize) -> [f32; 2] {
    [k as f32, 100.0 + k as f32]
}

fn pts_text(n: usize) -> String {
    let mut s = format!("version: 1\nn_points: {n}\n{{\n");
    for k in 0..n {
        let p = point(k);
        s += &format!("{} {}\n", p[0], p[1]);
    }
    s + "}\n"
}

/// A sidecar row as tools/landmarks.py writes it.
fn sidecar_row(file: &str, scale: f32, flagged: u8) -> String {
    let pts: Vec<String> = (0..68)
        .flat_map(|k| point(k).map(|v| format!("{:.2}", v * scale)))
        .collect();
    format!("{file},{},{flagged}\n", pts.join(","))
}

fn sidecar_header() -> String {
    let cols: Vec<String> = (0..68).map(|k| format!("x{k},y{k}")).collect();
    format!("file,{},flagged\n", cols.join(","))
}

fn assert_points(lm: &SampleLandmarks, w: f32, h: f32, scale: f32) {
    for (k, p) in lm.points.iter().enumerate() {
        let want = [point(k)[0] * scale / w, point(k)[1] * scale / h];
        assert!(
            (p[0] - want[0]).abs() < 1e-5 && (p[1] - want[1]).abs() < 1e-5,
            "point {k}: {p:?}, want {want:?}"
        );
    }
}

#[test]
fn ckplus_landmark_files_read_scientific_notation() {
    let t = TempDir::new("lm-ck");
    let text: String = (0..68)
        .map(|k| format!("   {:.7e}   {:.7e}\n", point(k)[0], point(k)[1]))
        .collect();
    assert!(
        text.starts_with("   0.0000000e0   1.0000000e2\n"),
        "{}",
        &text[..40]
    );
    let f = t.file("a_landmarks.txt", &text);
    let pts = read_ckplus(&f).unwrap();
    for (k, p) in pts.iter().enumerate() {
        assert_eq!(*p, point(k));
    }
    // 69 points: the 69th line is named.
    let f = t.file("b_landmarks.txt", &format!("{text}   1.0e+00   1.0e+00\n"));
    let (path, message) = err_at(read_ckplus(&f));
    assert_eq!(path, format!("{} line 69", f.display()));
    assert!(message.contains("more than 68"), "{message}");
    // Three numbers on a line.
    let f = t.file("c_landmarks.txt", "1 2\n1 2 3\n");
    let (path, message) = err_at(read_ckplus(&f));
    assert_eq!(path, format!("{} line 2", f.display()));
    assert!(message.contains("two numbers"), "{message}");
    let (path, _) = err_at(read_ckplus(&t.path().join("missing.txt")));
    assert!(path.ends_with("missing.txt"));
}

#[test]
fn pts_files_read_and_malformed_ones_name_the_line() {
    let t = TempDir::new("lm-pts");
    let f = t.file("a.pts", &pts_text(68));
    let pts = read_pts(&f).unwrap();
    assert_eq!(pts[0], point(0));
    assert_eq!(pts[67], point(67));
    let good = pts_text(68);
    let cases = [
        (pts_text(5), 2, "5 points"),
        (good.replace("version: 1", "verson 1"), 1, "version: 1"),
        (good.replace("{", "["), 3, "expected `{`"),
        (
            good.replace("\n30 130\n", "\n30 x\n"),
            34,
            "\"x\" is not a number",
        ),
        (good.replace("\n67 167\n", "\n"), 71, "`}` after 67 of 68"),
        (good.replace("}\n", "1 1\n}\n"), 72, "expected `}`"),
    ];
    for (text, line, words) in cases {
        let f = t.file("b.pts", &text);
        let (path, message) = err_at(read_pts(&f));
        assert_eq!(path, format!("{} line {line}", f.display()), "{message}");
        assert!(message.contains(words), "{message}");
    }
    let f = t.file("c.pts", "version: 1\nn_points: 68\n{\n1 2\n");
    let (path, message) = err_at(read_pts(&f));
    assert_eq!(path, f.display().to_string());
    assert!(message.contains("ends before point 1"), "{message}");
}

/// A class-folder set: happy/a.png (200x100) with a .pts beside it, happy/b.png (50x50),
/// sad/b.png (50x50, same base name), sad/c.png (40x80).
fn folder_fixture(t: &TempDir) {
    write_png(&t.path().join("happy/a.png"), 200, 100);
    t.file("happy/a.pts", &pts_text(68));
    write_png(&t.path().join("happy/b.png"), 50, 50);
    write_png(&t.path().join("sad/b.png"), 50, 50);
    write_png(&t.path().join("sad/c.png"), 40, 80);
}

#[test]
fn pts_beside_an_image_is_attached_and_others_fall_back_to_the_template() {
    let t = TempDir::new("lm-pts-attach");
    folder_fixture(&t);
    let ds = open(t.path(), None).unwrap();
    let a = ds
        .samples
        .iter()
        .find(|s| s.name.ends_with("a.png"))
        .unwrap();
    let lm = a.landmarks.as_ref().expect("a.pts attached");
    assert_eq!(
        lm.origin,
        LandmarkOrigin::File(t.path().join("happy/a.pts"))
    );
    assert_points(lm, 200.0, 100.0, 1.0);
    assert!(ds
        .notes
        .iter()
        .any(|n| n.contains("1 images have an iBUG .pts")));
    assert_eq!(
        ds.landmark_summary(),
        "landmarks: 1 from the dataset's files, 0 from a sidecar CSV (0 flagged: no face found), 3 from the canonical template"
    );
    let src = DatasetSource::new(&ds, Template::Fer2013, |_| true);
    let ia = src
        .samples
        .iter()
        .position(|s| s.name.ends_with("a.png"))
        .unwrap();
    let ib = (ia + 1) % src.samples.len();
    // At 64 px, point 3 of (3, 103) in 200x100 is (0.96, 65.92).
    let p = src.landmarks(ia, 64)[3];
    assert!(
        (p[0] - 0.96).abs() < 1e-4 && (p[1] - 65.92).abs() < 1e-4,
        "{p:?}"
    );
    assert_eq!(src.landmarks(ib, 64), Template::Fer2013.landmarks(64));
    assert!(src.landmark_origin(ia).contains("a.pts"));
    assert!(src.landmark_origin(ib).contains("template"));
    // A malformed .pts stops the load, named.
    t.file("sad/c.pts", &pts_text(3));
    let (path, _) = err_at(open(t.path(), None));
    assert_eq!(
        path,
        format!("{} line 2", t.path().join("sad/c.pts").display())
    );
}

#[test]
fn sidecar_attaches_by_relative_path_or_base_name_and_reports_flags() {
    let t = TempDir::new("lm-sidecar");
    folder_fixture(&t);
    let csv = t.file(
        "lm.csv",
        &format!(
            "{}{}{}{}",
            sidecar_header(),
            sidecar_row("happy/b.png", 0.25, 0),
            sidecar_row("c.png", 0.5, 1),
            sidecar_row("elsewhere/zzz.png", 1.0, 0),
        ),
    );
    let rows = read_sidecar(&csv).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[1].file.as_str(), rows[1].line, rows[1].flagged),
        ("c.png", 3, true)
    );
    let mut ds = open(t.path(), None).unwrap();
    let r = attach_sidecar(&mut ds, &csv).unwrap();
    assert_eq!((r.attached, r.flagged, r.unknown, r.replaced), (2, 1, 1, 0));
    let by = |end: &str| ds.samples.iter().find(|s| s.name.ends_with(end)).unwrap();
    let b = by("happy/b.png").landmarks.as_ref().unwrap();
    assert_eq!(
        b.origin,
        LandmarkOrigin::Sidecar {
            csv: csv.clone(),
            flagged: false
        }
    );
    assert_points(b, 50.0, 50.0, 0.25);
    let c = by("sad/c.png").landmarks.as_ref().unwrap();
    assert_eq!(
        c.origin,
        LandmarkOrigin::Sidecar {
            csv: csv.clone(),
            flagged: true
        }
    );
    assert_points(c, 40.0, 80.0, 0.5);
    assert!(by("sad/b.png").landmarks.is_none());
    assert_eq!(
        ds.landmark_summary(),
        "landmarks: 1 from the dataset's files, 2 from a sidecar CSV (1 flagged: no face found), 1 from the canonical template"
    );
    let note = ds.notes.last().unwrap();
    assert!(
        note.contains("1 rows name no image of this dataset"),
        "{note}"
    );
    // A base name two images share cannot be placed.
    let csv = t.file("amb.csv", &sidecar_row("b.png", 1.0, 0));
    let mut ds = open(t.path(), None).unwrap();
    let (path, message) = err_at(attach_sidecar(&mut ds, &csv));
    assert_eq!(path, format!("{} line 1", csv.display()));
    assert!(message.contains("ends the paths of 2 images"), "{message}");
}

#[test]
fn sidecar_malformed_rows_name_file_and_line() {
    let t = TempDir::new("lm-sidecar-bad");
    let good = sidecar_row("a.png", 1.0, 0);
    let cases = [
        (good.replace(",0\n", ",2\n"), "flagged is \"2\""),
        (good.replacen(",1.00,", ",one,", 1), "x1 is \"one\""),
        (good.replacen(",100.00,", ",,", 1), "y0 is \"\""),
        ("a.png,1,2,3\n".to_string(), "4 columns"),
        (good.replacen("a.png", "", 1), "file column is empty"),
    ];
    for (bad, words) in cases {
        let csv = t.file("lm.csv", &format!("{}{good}{bad}", sidecar_header()));
        let (path, message) = err_at(read_sidecar(&csv));
        assert_eq!(path, format!("{} line 3", csv.display()), "{message}");
        assert!(message.contains(words), "{words}: {message}");
    }
    let (path, _) = err_at(read_sidecar(&t.path().join("none.csv")));
    assert!(path.ends_with("none.csv"));
}

#[test]
fn sidecar_replaces_dataset_landmarks_and_maps_into_crops() {
    // CK+ as distributed with its own landmarks: the sidecar wins and says so.
    let t = TempDir::new("lm-sidecar-ck");
    write_png(
        &t.path()
            .join("cohn-kanade-images/S005/001/S005_001_00000003.png"),
        64,
        32,
    );
    t.file("Emotion/S005/001/S005_001_00000003_emotion.txt", "1\n");
    let ck: String = (0..68).map(|k| format!("{} {}\n", k, k)).collect();
    t.file("Landmarks/S005/001/S005_001_00000003_landmarks.txt", &ck);
    let mut ds = open(t.path(), None).unwrap();
    assert!(matches!(
        ds.samples[0].landmarks.as_ref().unwrap().origin,
        LandmarkOrigin::File(_)
    ));
    let csv = t.file(
        "lm.csv",
        &sidecar_row("cohn-kanade-images/S005/001/S005_001_00000003.png", 0.25, 0),
    );
    let r = attach_sidecar(&mut ds, &csv).unwrap();
    assert_eq!((r.attached, r.replaced), (1, 1));
    assert_points(ds.samples[0].landmarks.as_ref().unwrap(), 64.0, 32.0, 0.25);

    // AffectNet: sidecar points are in the original image, the sample is the face box.
    let t = TempDir::new("lm-sidecar-crop");
    write_png(
        &t.path().join("Manually_Annotated_Images/1/a.png"),
        300,
        300,
    );
    t.file(
        "training.csv",
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n1/a.png,10,20,100,200,,1,0,0\n",
    );
    let mut ds = open(t.path(), None).unwrap();
    assert!(matches!(ds.samples[0].pixels, Pixels::Crop { .. }));
    assert!(ds.samples[0].landmarks.is_none());
    let csv = t.file("lm.csv", &sidecar_row("1/a.png", 1.0, 0));
    attach_sidecar(&mut ds, &csv).unwrap();
    let lm = ds.samples[0].landmarks.as_ref().unwrap();
    for (k, p) in lm.points.iter().enumerate() {
        let want = [(point(k)[0] - 10.0) / 100.0, (point(k)[1] - 20.0) / 200.0];
        assert!(
            (p[0] - want[0]).abs() < 1e-5 && (p[1] - want[1]).abs() < 1e-5,
            "{k}: {p:?}"
        );
    }
}

/// The sidecar tools/landmarks.py writes for the shared CK+48 set attaches to every image. The
/// tool needs dlib, so the sidecar is not made here: the test runs when `FER_CBAM_CKPLUS_LANDMARKS`
/// names it (`python3 tools/landmarks.py ../shared/datasets/ckplus --out ckplus.csv`), and
/// otherwise says so and passes.
#[test]
fn ckplus48_sidecar_from_the_tool_attaches_to_every_image() {
    let Some(csv) = std::env::var_os("FER_CBAM_CKPLUS_LANDMARKS") else {
        eprintln!(
            "SKIPPED: FER_CBAM_CKPLUS_LANDMARKS is not set (the CSV tools/landmarks.py writes for \
             ../shared/datasets/ckplus)"
        );
        return;
    };
    let Some(root) = common::dataset("ckplus") else {
        return;
    };
    let mut ds: Dataset = open(&root, None).unwrap();
    let r = attach_sidecar(&mut ds, Path::new(&csv)).unwrap();
    // 981 rows: 927 images of the seven classes plus 54 contempt images the dataset skips.
    assert_eq!((r.attached, r.unknown), (927, 54));
    assert!(ds.samples.iter().all(|s| s.landmarks.is_some()));
    // CK+48's crops end at the lower lip: the jaw (points 0-16) falls below and beside the
    // image in most of them (939 of 981), and the lower lip (55-59, 65-67) in about a hundred,
    // by up to 8 px of 48. Brows, eyes and nose (17-47) always lie on the image, and the mouth
    // within a sixth of its height below it; a misread sidecar (x/y swapped, another image's
    // scale) breaks both.
    for s in &ds.samples {
        let pts = s.landmarks.as_ref().unwrap().points;
        for (k, p) in pts.iter().enumerate() {
            let ok = match k {
                0..=16 => p.iter().all(|v| (-0.5..1.5).contains(v)),
                17..=47 => p.iter().all(|v| (0.0..=1.0).contains(v)),
                _ => (0.0..=1.0).contains(&p[0]) && (0.0..1.2).contains(&p[1]),
            };
            assert!(ok, "{} point {k}: {p:?}", s.name);
        }
    }
}

/// A palette TIFF of index 1 under a gray palette, as JAFFE ships.
fn palette_tiff(w: u16, h: u16) -> Vec<u8> {
    let gray: Vec<(u16, u16, u16)> = (0..256u16).map(|i| (i * 257, i * 257, i * 257)).collect();
    common::palette_tiff(w, h, |_, _| 1, &gray)
}

#[test]
fn pts_beside_a_jaffe_palette_tiff_is_normalised_by_its_size() {
    let t = TempDir::new("lm-jaffe-pts");
    std::fs::write(t.path().join("KA.AN1.39.tiff"), palette_tiff(60, 30)).unwrap();
    t.file("KA.AN1.39.pts", &pts_text(68));
    let ds = open(t.path(), None).unwrap();
    assert_eq!(ds.samples.len(), 1);
    assert_points(ds.samples[0].landmarks.as_ref().unwrap(), 60.0, 30.0, 1.0);
    assert_eq!(ds.samples[0].load(4, 1).unwrap(), vec![1; 16]);
}
