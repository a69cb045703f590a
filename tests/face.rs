//! `predict --detect-face`: the embedded SeetaFace detector and the crop around its box.

mod common;

use fer_cbam::data::face::{detect_largest, square_crop, FaceBox};

/// A CK+ face (48x48 crop) scaled 4x and pasted at (x, y) into a flat gray 400x320 picture: a
/// real face at a known place, as in a photo with background around it.
fn ckplus_in_a_photo(x: u32, y: u32) -> Option<image::GrayImage> {
    let dir = common::dataset("ckplus/happy")?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let face = image::open(files.first()?).ok()?.to_luma8();
    let face = image::imageops::resize(&face, 192, 192, image::imageops::FilterType::Triangle);
    let mut photo = image::GrayImage::from_pixel(400, 320, image::Luma([128]));
    image::imageops::replace(&mut photo, &face, x as i64, y as i64);
    Some(photo)
}

#[test]
fn finds_a_real_face_where_it_was_put() {
    let Some(photo) = ckplus_in_a_photo(150, 90) else {
        return;
    };
    let b = detect_largest(photo.as_raw(), 400, 320)
        .unwrap()
        .expect("a face");
    // The detector's box is tight around brows, eyes and mouth, inside the 192 px crop.
    let (cx, cy) = (b.x + b.width / 2, b.y + b.height / 2);
    assert!(
        (150..342).contains(&cx) && (90..282).contains(&cy),
        "box {b:?} is not on the face at 150,90 (192 px)"
    );
    assert!(
        (60..=230).contains(&b.width),
        "box {b:?} has an implausible size"
    );
}

#[test]
fn a_picture_without_a_face_gives_none() {
    let mut flat = image::GrayImage::from_pixel(200, 160, image::Luma([90]));
    for (x, y, p) in flat.enumerate_pixels_mut() {
        // Smooth stripes: texture, no face.
        p.0[0] = (90.0 + 60.0 * ((x as f32 / 9.0).sin() * (y as f32 / 23.0).cos())) as u8;
    }
    assert_eq!(detect_largest(flat.as_raw(), 200, 160).unwrap(), None);
}

#[test]
fn wrong_pixel_count_is_an_error_not_a_panic() {
    let e = detect_largest(&[0u8; 99], 10, 10).unwrap_err().to_string();
    assert!(e.contains("99 bytes") && e.contains("10x10"), "{e}");
}

#[test]
fn the_crop_is_square_has_the_margin_and_stays_inside() {
    let face = FaceBox {
        x: 100,
        y: 80,
        width: 40,
        height: 50,
    };
    // 50 px face, 0.25 margin each side: 75 px, centred on (120, 105).
    let c = square_crop(face, 0.25, 400, 300);
    assert_eq!((c.width, c.height), (75, 75));
    assert_eq!((c.x, c.y), (83, 68));
    // Near the corner: shifted inside, not cut.
    let c = square_crop(
        FaceBox {
            x: 0,
            y: 0,
            width: 30,
            height: 30,
        },
        0.5,
        400,
        300,
    );
    assert_eq!((c.x, c.y, c.width), (0, 0, 60));
    let c = square_crop(
        FaceBox {
            x: 380,
            y: 280,
            width: 20,
            height: 20,
        },
        0.5,
        400,
        300,
    );
    assert_eq!((c.x + c.width, c.y + c.height), (400, 300));
    // A face box larger than the picture allows: the crop is the image's shorter side.
    let c = square_crop(
        FaceBox {
            x: 10,
            y: 10,
            width: 90,
            height: 90,
        },
        1.0,
        120,
        100,
    );
    assert_eq!((c.width, c.height, c.y), (100, 100, 0));
    assert!(c.x + c.width <= 120);
}

#[test]
fn predict_crops_to_the_face_and_says_when_there_is_none() {
    let Some(photo) = ckplus_in_a_photo(20, 40) else {
        return;
    };
    let dir = common::tmp_dir("face-predict");
    let with = dir.join("photo.png");
    photo.save(&with).unwrap();
    let without = dir.join("flat.png");
    image::GrayImage::from_pixel(64, 64, image::Luma([100]))
        .save(&without)
        .unwrap();
    let ck = dir.join("c.safetensors");
    let bin = env!("CARGO_BIN_EXE_fer-cbam");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let ck_s = ck.to_str().unwrap();
    run(&[
        "init",
        "--image-size",
        "32",
        "--widths",
        "8,16,16,32",
        "--out",
        ck_s,
    ]);
    let out = run(&[
        "predict",
        "--checkpoint",
        ck_s,
        "--detect-face",
        "--json",
        with.to_str().unwrap(),
        without.to_str().unwrap(),
    ]);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let face = rows[0]["face"].as_array().expect("a face box");
    let (x, side) = (face[0].as_u64().unwrap(), face[2].as_u64().unwrap());
    assert!(
        x < 212 && x + side > 20 && face[1].as_u64().unwrap() < 232,
        "{out}"
    );
    assert!(rows[1]["face"].is_null(), "{out}");
    // Without the flag there is no face field at all: old scripts see the old output.
    let plain = run(&[
        "predict",
        "--checkpoint",
        ck_s,
        "--json",
        without.to_str().unwrap(),
    ]);
    assert!(!plain.contains("\"face\""), "{plain}");
    let text = run(&[
        "predict",
        "--checkpoint",
        ck_s,
        "--detect-face",
        without.to_str().unwrap(),
    ]);
    assert!(text.contains("no face found: whole image"), "{text}");
}
