//! `--crop face`: crops from landmarks (a CK+-as-distributed fixture) and from the detector (a
//! CK+ face pasted into a larger picture), the landmarks mapped into the crop so the eye box
//! still covers the eyes, and train / eval / predict cropping as the checkpoint was trained.

mod common;
use common::*;

use fer_cbam::data::crop::{self, landmark_box, FaceSource};
use fer_cbam::data::dataset::{self, LandmarkOrigin, Pixels, Sample, SampleLandmarks};
use fer_cbam::data::face::FaceBox;
use fer_cbam::data::folder::Split;
use fer_cbam::data::occlusion::{self, Occlusion, Template};
use fer_cbam::model::checkpoint::FaceCrop;

/// Frame size of the fixture (CK+'s are 640x490; small here to keep the test fast).
const W: u32 = 120;
const H: u32 = 96;
const FACE: (u32, u32) = (40, 48);

/// Where subject `s`'s face box is in its frame: a different place for each.
fn face_at(s: u32) -> (u32, u32) {
    (
        8 + (s * 17) % (W - FACE.0 - 16),
        4 + (s * 11) % (H - FACE.1 - 12),
    )
}

/// The 68 points of subject `s`, in frame pixels: the FER2013 template laid over its face box.
fn points_of(s: u32) -> Vec<[f32; 2]> {
    let (fx, fy) = face_at(s);
    Template::Fer2013
        .landmarks(1)
        .iter()
        .map(|p| {
            [
                fx as f32 + p[0] * FACE.0 as f32,
                fy as f32 + p[1] * FACE.1 as f32,
            ]
        })
        .collect()
}

fn mean(points: &[[f32; 2]]) -> [f32; 2] {
    let n = points.len() as f32;
    let (x, y) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
    [x / n, y / n]
}

/// CK+ as distributed, `subjects` sequences (one per subject, labels cycling through the seven
/// classes), each apex frame a bright face box on a textured background, with black 5x5 eyes
/// at the eye landmarks' centres, and its `_landmarks.txt`.
fn ckplus_frames(t: &TempDir, subjects: u32) {
    let codes = ["1", "3", "4", "5", "6", "7", "0"];
    for s in 1..=subjects {
        let id = format!("S{s:03}");
        let (fx, fy) = face_at(s);
        let pts = points_of(s);
        let eyes = [mean(&pts[36..42]), mean(&pts[42..48])];
        let img = image::GrayImage::from_fn(W, H, |x, y| {
            let dark_eye = eyes
                .iter()
                .any(|e| (x as f32 - e[0]).abs() < 2.5 && (y as f32 - e[1]).abs() < 2.5);
            let in_face = (fx..fx + FACE.0).contains(&x) && (fy..fy + FACE.1).contains(&y);
            image::Luma([if dark_eye {
                0
            } else if in_face {
                210
            } else {
                90 + ((x * 7 + y * 13) % 40) as u8
            }])
        });
        let rel = format!("{id}/001/{id}_001_00000002");
        let png = t.path().join(format!("cohn-kanade-images/{rel}.png"));
        std::fs::create_dir_all(png.parent().unwrap()).unwrap();
        img.save(&png).unwrap();
        t.file(
            &format!("Emotion/{rel}_emotion.txt"),
            &format!("   {}.0000000e+00\n", codes[s as usize % 7]),
        );
        let lm: String = pts
            .iter()
            .map(|p| format!("   {:.7e}   {:.7e}\n", p[0], p[1]))
            .collect();
        t.file(&format!("Landmarks/{rel}_landmarks.txt"), &lm);
    }
}

#[test]
fn a_landmark_box_and_a_crop_of_pixels_in_memory_are_exact() {
    // Points as fractions of a 10x8 image: x 0.2..0.65 -> pixels 2..6.5, y 0.25..0.75 -> 2..6.
    let pts = [[0.2, 0.25], [0.65, 0.75], [0.4, 0.5]];
    assert_eq!(
        landmark_box(&pts, 10, 8),
        Some(FaceBox {
            x: 2,
            y: 2,
            width: 5,
            height: 4
        })
    );
    assert_eq!(
        landmark_box(&[[0.5, 0.5]], 10, 8),
        None,
        "a point has no box"
    );
    // Clipped to the image.
    assert_eq!(
        landmark_box(&[[-0.5, -1.0], [2.0, 0.5]], 10, 8),
        Some(FaceBox {
            x: 0,
            y: 0,
            width: 10,
            height: 4
        })
    );

    let data: Vec<u8> = (0..80).collect();
    let mut lm = [[0.0f32; 2]; 68];
    lm[0] = [0.5, 0.5]; // pixel (5, 4)
    lm[1] = [0.3, 0.625]; // pixel (3, 5)
    let mut s = Sample {
        name: "mem".into(),
        pixels: Pixels::Gray {
            width: 10,
            height: 8,
            data: data.into(),
        },
        label: 0,
        split: Split::Unsplit,
        group: None,
        landmarks: Some(SampleLandmarks {
            points: lm,
            origin: LandmarkOrigin::File("x.pts".into()),
        }),
    };
    let c = FaceBox {
        x: 3,
        y: 2,
        width: 4,
        height: 4,
    };
    crop::apply(&mut s, c, 10, 8);
    let img = s.load_original().unwrap();
    assert_eq!(img.dimensions(), (4, 4));
    for y in 0..4u32 {
        for x in 0..4u32 {
            assert_eq!(img.get_pixel(x, y).0[0] as u32, (y + 2) * 10 + x + 3);
        }
    }
    // (5, 4) is (2, 2) of the crop, (3, 5) is (0, 3): fractions of its side 4.
    let l = s.landmarks.as_ref().unwrap();
    assert_eq!(l.points[0], [0.5, 0.5]);
    assert_eq!(l.points[1], [0.0, 0.75]);
    // A box of a file narrows to a box of a box.
    let mut f = Sample {
        pixels: Pixels::Crop {
            path: "a.png".into(),
            x: -5,
            y: 7,
            width: 50,
            height: 40,
        },
        landmarks: None,
        ..s.clone()
    };
    crop::apply(&mut f, c, 50, 40);
    assert_eq!(
        f.pixels,
        Pixels::Crop {
            path: "a.png".into(),
            x: -2,
            y: 9,
            width: 4,
            height: 4
        }
    );
}

#[test]
fn ckplus_frames_are_cropped_to_their_landmarks_and_the_eye_box_follows() {
    let t = TempDir::new("crop-ck");
    ckplus_frames(&t, 6);
    let mut ds = dataset::open(t.path(), None).unwrap();
    assert_eq!(ds.samples.len(), 6);
    let before = ds.samples.clone();
    let (report, faces) =
        crop::crop_samples(&mut ds.samples, FaceCrop::new(0.25).unwrap(), &|_, _| {}).unwrap();
    assert_eq!(
        (
            report.from_landmarks,
            report.from_detector,
            report.no_face.len()
        ),
        (6, 0, 0),
        "{report:?}"
    );
    for ((s, old), face) in ds.samples.iter().zip(&before).zip(&faces) {
        let subject: u32 = s.group.as_ref().unwrap()[1..].parse().unwrap();
        let face = face.unwrap();
        assert_eq!(face.from, FaceSource::Landmarks);
        let Pixels::Crop {
            x,
            y,
            width,
            height,
            ..
        } = s.pixels
        else {
            panic!("{:?}", s.pixels)
        };
        assert_eq!(width, height, "square");
        // It holds every landmark, with the margin: 1.5 times the box's longer side unless the
        // frame is too small for it.
        let pts = points_of(subject);
        let (x0, x1) = pts
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[0]), b.max(p[0])));
        let (y0, y1) = pts
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[1]), b.max(p[1])));
        assert!(
            (x as f32) <= x0
                && (y as f32) <= y0
                && (x + width as i64) as f32 >= x1
                && (y + height as i64) as f32 >= y1,
            "crop {x},{y} {width} misses the landmarks {x0}..{x1} x {y0}..{y1}"
        );
        // (The points went through fractions of the frame and back: a whole-pixel edge may
        // land one pixel either way.)
        let want = ((x1.ceil() - x0.floor()).max(y1.ceil() - y0.floor()) * 1.5).round() as usize;
        assert!(
            width.abs_diff(want.min(H as usize)) <= 2,
            "subject {subject}: side {width}, want {want}"
        );

        // At the network's size the dark eyes are where the mapped landmarks say, and the eye
        // occlusion built from those landmarks covers every dark pixel.
        let size = 32;
        let img = s.load(size, 1).unwrap();
        let l = s.landmarks.as_ref().unwrap().at(size);
        let dark: Vec<(usize, usize)> = (0..size * size)
            .filter(|&i| img[i] < 60)
            .map(|i| (i % size, i / size))
            .collect();
        assert!(!dark.is_empty());
        let n = dark.len() as f32;
        let centroid = [
            dark.iter().map(|d| d.0 as f32 + 0.5).sum::<f32>() / n,
            dark.iter().map(|d| d.1 as f32 + 0.5).sum::<f32>() / n,
        ];
        let eyes = mean(&l[36..48]);
        assert!(
            (centroid[0] - eyes[0]).abs() < 1.0 && (centroid[1] - eyes[1]).abs() < 1.0,
            "dark eyes at {centroid:?}, mapped landmarks' eyes at {eyes:?}"
        );
        let r = occlusion::region(Occlusion::Eyes, size, &l, 0);
        assert!(
            dark.iter().all(|&(px, py)| r.contains(px, py)),
            "eye box {r:?} misses dark pixels {dark:?}"
        );
        // Uncropped, the same eye box would be somewhere else entirely.
        let whole = old.landmarks.as_ref().unwrap().at(size);
        let r_whole = occlusion::region(Occlusion::Eyes, size, &whole, 0);
        assert_ne!(r, r_whole);
    }
}

/// A CK+48 face scaled to 192 px and pasted at (150, 90) into a flat 400x320 picture, or
/// `None` when the dataset is not beside the repository.
fn photo() -> Option<image::GrayImage> {
    let dir = common::dataset("ckplus/happy")?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let face = image::open(files.first()?).ok()?.to_luma8();
    let face = image::imageops::resize(&face, 192, 192, image::imageops::FilterType::Triangle);
    let mut p = image::GrayImage::from_pixel(400, 320, image::Luma([128]));
    image::imageops::replace(&mut p, &face, 150, 90);
    Some(p)
}

#[test]
fn a_folder_without_landmarks_is_cropped_by_the_detector() {
    let Some(p) = photo() else { return };
    let t = TempDir::new("crop-detector");
    std::fs::create_dir_all(t.path().join("happy")).unwrap();
    p.save(t.path().join("happy/photo.png")).unwrap();
    image::GrayImage::from_pixel(64, 64, image::Luma([100]))
        .save(t.path().join("happy/flat.png"))
        .unwrap();
    let mut ds = dataset::open(t.path(), None).unwrap();
    let (report, faces) =
        crop::crop_samples(&mut ds.samples, FaceCrop::new(0.25).unwrap(), &|_, _| {}).unwrap();
    assert_eq!(
        (report.from_landmarks, report.from_detector),
        (0, 1),
        "{report:?}"
    );
    assert_eq!(report.no_face.len(), 1);
    assert!(report.no_face[0].ends_with("flat.png"), "{report:?}");
    assert!(report.summary(5).contains("flat.png"));
    let i = ds
        .samples
        .iter()
        .position(|s| s.name.ends_with("photo.png"))
        .unwrap();
    let f = faces[i].expect("a face");
    assert_eq!(f.from, FaceSource::Detector);
    let c = f.crop;
    // Centred on the pasted face (150..342 x 90..282), about its size with the margin.
    let (cx, cy) = (c.x + c.width / 2, c.y + c.height / 2);
    assert!(
        (216..276).contains(&cx) && (156..216).contains(&cy),
        "{c:?}"
    );
    assert!(
        (180..=320).contains(&c.width) && c.width == c.height,
        "{c:?}"
    );
    assert!(matches!(ds.samples[i].pixels, Pixels::Crop { .. }));
    // The face without a face stays whole.
    let j = 1 - i;
    assert!(matches!(ds.samples[j].pixels, Pixels::File(_)));
}

#[test]
fn train_eval_and_predict_crop_as_the_checkpoint_was_trained() {
    let t = TempDir::new("crop-cli");
    let ck_fixture = TempDir::new("crop-cli-data");
    ckplus_frames(&ck_fixture, 14);
    let d = ck_fixture.path().to_str().unwrap();
    let ck = t.path().join("c.safetensors");
    let ck_s = ck.to_str().unwrap();
    let (ok, stdout, stderr) = run_bin(&[
        "train",
        "--data",
        d,
        "--crop",
        "face",
        "--out",
        ck_s,
        "--image-size",
        "16",
        "--widths",
        "4,8",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect(&stdout);
    assert_eq!(v["crop"]["from_landmarks"], 14, "{v}");
    assert_eq!(v["crop"]["margin"], 0.25);
    let meta = fer_cbam::model::checkpoint::load_training_meta(&ck)
        .unwrap()
        .unwrap();
    assert_eq!(meta.crop, Some(FaceCrop { margin: 0.25 }));

    // eval crops as the checkpoint was trained unless told otherwise.
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["eval", "--checkpoint", ck_s, "--data", d, "--json"];
        a.extend_from_slice(extra);
        let (ok, stdout, stderr) = run_bin(&a);
        assert!(ok, "{a:?}: {stderr}");
        serde_json::from_str(stdout.trim()).unwrap()
    };
    let e = eval(&[]);
    assert_eq!(
        (
            e["crop"]["margin"].clone(),
            e["crop"]["from_landmarks"].clone()
        ),
        (0.25.into(), 14.into())
    );
    assert!(eval(&["--crop", "none"])["crop"].is_null());
    assert_eq!(eval(&["--face-margin", "0.5"])["crop"]["margin"], 0.5);

    // predict too: the frame has no .pts beside it and no real face, so the detector's
    // answer (none: used whole) is reported, which shows the crop was asked for.
    let frame = ck_fixture
        .path()
        .join("cohn-kanade-images/S001/001/S001_001_00000002.png");
    let (ok, stdout, stderr) = run_bin(&[
        "predict",
        "--checkpoint",
        ck_s,
        "--json",
        frame.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let p: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(p.get("face").is_some() && p["face"].is_null(), "{p}");
    let (ok, stdout, _) = run_bin(&[
        "predict",
        "--checkpoint",
        ck_s,
        "--crop",
        "none",
        "--json",
        frame.to_str().unwrap(),
    ]);
    assert!(ok && !stdout.contains("\"face\""), "{stdout}");

    // explain, too.
    let ex = t.path().join("explain");
    let (ok, _, stderr) = run_bin(&[
        "explain",
        "--checkpoint",
        ck_s,
        frame.to_str().unwrap(),
        "--out",
        ex.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("no face found"), "{stderr}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ex.join("explain.json")).unwrap()).unwrap();
    let lm = doc["landmarks"].as_str().unwrap();
    assert!(
        lm.contains("cropped to their faces (margin 0.25): 0 of 1 found"),
        "{lm}"
    );

    // And the protocols: every image of the pool cropped before the folds are drawn.
    let out = t.path().join("kfold");
    let (ok, _, stderr) = run_bin(&[
        "kfold",
        "--data",
        d,
        "--crop",
        "face",
        "--folds",
        "2",
        "--attention",
        "none",
        "--occlusions",
        "clean,eyes",
        "--image-size",
        "16",
        "--widths",
        "4,8",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        r["data"]["train_crop"]["from_landmarks"], 14,
        "{}",
        r["data"]
    );
    assert_eq!(r["settings"]["crop"]["margin"], 0.25);

    // Contradictions are one-line errors.
    for (args, want) in [
        (
            vec![
                "eval",
                "--checkpoint",
                ck_s,
                "--data",
                d,
                "--crop",
                "none",
                "--face-margin",
                "0.3",
            ],
            "--face-margin",
        ),
        (
            vec![
                "eval",
                "--checkpoint",
                ck_s,
                "--data",
                d,
                "--face-margin",
                "3",
            ],
            "outside 0..2",
        ),
        (
            vec![
                "train",
                "--out",
                ck_s,
                "--crop",
                "face",
                "--synthetic",
                "70",
            ],
            "needs --data",
        ),
    ] {
        let (ok, _, stderr) = run_bin(&args);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert!(
            !ok && lines.len() == 1 && lines[0].contains(want),
            "{args:?}: {stderr}"
        );
    }
}

/// The claim behind one margin for both boxes: on the same faces, the box of the 68 landmarks
/// is about the size of the detector's. Each data set's own landmark template stands in for
/// its faces' landmarks; the faces are pasted, 4x, into a flat picture for the detector.
/// `cargo test --test crop -- --nocapture landmark_box_is` prints the ratios.
#[test]
fn the_landmark_box_is_about_the_size_of_the_detectors() {
    let sets = [
        ("ckplus/happy", Template::CkPlus48),
        ("fer2013/train/happy", Template::Fer2013),
    ];
    for (rel, template) in sets {
        let Some(dir) = common::dataset(rel) else {
            continue;
        };
        let entries = std::fs::read_dir(&dir).unwrap();
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        let side = 192;
        let lm = template.landmarks(side);
        let (x0, x1) = lm
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[0]), b.max(p[0])));
        let (y0, y1) = lm
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[1]), b.max(p[1])));
        let lm_side = (x1 - x0).max(y1 - y0);
        let mut ratios = Vec::new();
        let mut detector = fer_cbam::data::face::FaceDetector::new().unwrap();
        for f in files.iter().step_by(files.len() / 12 + 1).take(12) {
            let face = image::open(f).unwrap().to_luma8();
            let face = image::imageops::resize(
                &face,
                side as u32,
                side as u32,
                image::imageops::FilterType::Triangle,
            );
            let mut p = image::GrayImage::from_pixel(400, 320, image::Luma([128]));
            image::imageops::replace(&mut p, &face, 100, 60);
            if let Some(b) = detector.largest(p.as_raw(), 400, 320).unwrap() {
                ratios.push(lm_side / b.width.max(b.height) as f32);
            }
        }
        assert!(
            ratios.len() >= 8,
            "{rel}: a face in only {} of 12",
            ratios.len()
        );
        let mean = ratios.iter().sum::<f32>() / ratios.len() as f32;
        eprintln!(
            "{rel}: landmark box / detector box = {mean:.3} over {} faces ({ratios:.2?})",
            ratios.len()
        );
        assert!((0.7..1.1).contains(&mean), "{rel}: {mean} ({ratios:?})");
    }
}
