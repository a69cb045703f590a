//! The paper's occlusions: patch size and placement, exact pixel counts, landmark boxes on
//! synthetic faces, the templates for real crops, parsing, determinism.

mod common;

use std::path::Path;

use fer_cbam::data::folder::{decode, scan};
use fer_cbam::data::occlusion::{
    apply, canonical_landmarks, patch_side, region, Occlusion, Region, Template,
};
use fer_cbam::data::synthetic::{generate, Landmarks};

#[test]
fn patch_side_scales_with_the_image() {
    assert_eq!(patch_side(8, 128), 8);
    assert_eq!(patch_side(24, 128), 24);
    assert_eq!(patch_side(8, 48), 3);
    assert_eq!(patch_side(16, 48), 6);
    assert_eq!(patch_side(24, 48), 9);
    assert_eq!(patch_side(1, 16), 1); // never empty
    assert_eq!(patch_side(500, 64), 64); // never larger than the image
}

#[test]
fn patches_stay_inside_and_cover_every_position() {
    let lm = canonical_landmarks(48);
    for (size, px) in [(48, 8), (48, 24), (128, 16), (100, 24)] {
        let side = patch_side(px, size);
        let span = size - side + 1;
        let mut hit_x = vec![false; span];
        let mut hit_y = vec![false; span];
        let n = 4000;
        let mut sum = 0.0;
        for seed in 0..n {
            let r = region(Occlusion::Patch(px), size, &lm, seed);
            assert_eq!((r.x1 - r.x0, r.y1 - r.y0), (side, side));
            assert!(r.x1 <= size && r.y1 <= size, "{r:?}");
            hit_x[r.x0] = true;
            hit_y[r.y0] = true;
            sum += r.x0 as f64;
        }
        assert!(
            hit_x.iter().all(|&h| h) && hit_y.iter().all(|&h| h),
            "size {size} px {px}"
        );
        // Uniform: the mean position is the middle of the range.
        let mean = sum / n as f64;
        let mid = (span - 1) as f64 / 2.0;
        assert!(
            (mean - mid).abs() < 0.05 * span as f64,
            "mean {mean} vs {mid}"
        );
    }
}

fn count_zeros(img: &[u8]) -> usize {
    img.iter().filter(|&&v| v == 0).count()
}

#[test]
fn apply_zeroes_exactly_the_region_in_every_channel() {
    let face = generate(4, 2, 128);
    for occ in Occlusion::PAPER {
        for channels in [1, 3] {
            let mut img = vec![200u8; channels * 128 * 128];
            let r = apply(&mut img, channels, 128, occ, &face.landmarks, 77);
            assert!(r.area() > 0);
            assert_eq!(count_zeros(&img), r.area() * channels, "{occ}");
            for c in 0..channels {
                for y in 0..128 {
                    for x in 0..128 {
                        let v = img[c * 128 * 128 + y * 128 + x];
                        assert_eq!(v == 0, r.contains(x, y), "{occ} at ({x}, {y})");
                    }
                }
            }
            if let Occlusion::Patch(px) = occ {
                assert_eq!(r.area(), px * px);
            }
        }
    }
}

#[test]
fn same_seed_same_patch_and_seeds_vary_it() {
    let lm = canonical_landmarks(128);
    let a = region(Occlusion::Patch(16), 128, &lm, 5);
    assert_eq!(a, region(Occlusion::Patch(16), 128, &lm, 5));
    let distinct: std::collections::HashSet<(usize, usize)> = (0..50)
        .map(|s| {
            let r = region(Occlusion::Patch(16), 128, &lm, s);
            (r.x0, r.y0)
        })
        .collect();
    assert!(distinct.len() > 45);
    // Landmark boxes do not depend on the seed.
    assert_eq!(
        region(Occlusion::Eyes, 128, &lm, 1),
        region(Occlusion::Eyes, 128, &lm, 2)
    );
}

fn contains_point(r: &Region, p: [f32; 2]) -> bool {
    r.contains(p[0].floor() as usize, p[1].floor() as usize)
}

const EYE_POINTS: [std::ops::Range<usize>; 2] = [17..27, 36..48];
const MOUTH_POINTS: std::ops::Range<usize> = 48..68;

fn eye_points() -> impl Iterator<Item = usize> {
    EYE_POINTS.into_iter().flatten()
}

#[test]
fn eye_and_mouth_boxes_hold_their_landmarks_and_not_the_others() {
    for size in [48, 128] {
        for i in 0..300 {
            let f = generate(6, i, size);
            let l = &f.landmarks;
            let eyes = region(Occlusion::Eyes, size, l, 0);
            let mouth = region(Occlusion::Mouth, size, l, 0);
            for k in eye_points() {
                assert!(
                    contains_point(&eyes, l[k]),
                    "face {i}: point {k} outside {eyes:?}"
                );
                assert!(
                    !contains_point(&mouth, l[k]),
                    "face {i}: point {k} in {mouth:?}"
                );
            }
            for k in MOUTH_POINTS {
                assert!(
                    contains_point(&mouth, l[k]),
                    "face {i}: point {k} outside {mouth:?}"
                );
                assert!(
                    !contains_point(&eyes, l[k]),
                    "face {i}: point {k} in {eyes:?}"
                );
            }
            // The margin: at least 10% of the face width beyond the outermost points, unless
            // the image edge comes first.
            let fw = ((l[16][0] - l[0][0]).powi(2) + (l[16][1] - l[0][1]).powi(2)).sqrt();
            let top = eye_points().map(|k| l[k][1]).fold(f32::MAX, f32::min);
            assert!(eyes.y0 == 0 || (eyes.y0 as f32) <= top - 0.1 * fw + 1e-3);
            let bottom = MOUTH_POINTS.map(|k| l[k][1]).fold(f32::MIN, f32::max);
            assert!(mouth.y1 == size || (mouth.y1 as f32) >= bottom + 0.1 * fw - 1e-3);
        }
    }
}

#[test]
fn eye_occlusion_hides_the_drawn_eyes() {
    // On the drawn face, the darkest pixels (pupils, lashes, brows, mouth opening) of the eye
    // region are all gone after occlusion, and the mouth is untouched.
    for i in 0..50 {
        let f = generate(9, i, 128);
        let mut img = f.pixels.clone();
        let r = apply(&mut img, 1, 128, Occlusion::Eyes, &f.landmarks, 0);
        let m = apply(&mut img.clone(), 1, 128, Occlusion::Mouth, &f.landmarks, 0);
        // Every pixel of the eye openings' bounding boxes is inside the occluded box.
        for k in 36..48 {
            let p = f.landmarks[k];
            assert_eq!(img[p[1] as usize * 128 + p[0] as usize], 0);
        }
        for y in m.y0..m.y1 {
            for x in m.x0..m.x1 {
                if !r.contains(x, y) {
                    assert_eq!(img[y * 128 + x], f.pixels[y * 128 + x]);
                }
            }
        }
    }
}

fn eye_centres_and_mouth(l: &Landmarks) -> ([f32; 2], [f32; 2], [f32; 2]) {
    let mean = |r: std::ops::Range<usize>| {
        let n = r.len() as f32;
        let (x, y) = r.fold((0.0, 0.0), |(x, y), k| (x + l[k][0], y + l[k][1]));
        [x / n, y / n]
    };
    (mean(36..42), mean(42..48), mean(48..68))
}

#[test]
fn templates_put_eyes_and_mouth_where_measured() {
    let close = |a: f32, b: f32| (a - b).abs() < 1e-3;
    let (r, l, m) = eye_centres_and_mouth(&Template::Fer2013.landmarks(1));
    assert!(close(r[0], 0.305) && close(l[0], 0.688) && close(r[1], 0.363) && close(l[1], 0.363));
    assert!(close(m[1], 0.80), "{m:?}");
    let (r, l, m) = eye_centres_and_mouth(&Template::CkPlus48.landmarks(1));
    assert!(close(r[0], 0.324) && close(l[0], 0.676) && close(r[1], 0.387));
    assert!(close(m[1], 0.637), "{m:?}");
    assert_eq!(canonical_landmarks(48), Template::Fer2013.landmarks(48));
    // The boxes of both templates stay apart and inside the image.
    for t in [Template::Fer2013, Template::CkPlus48] {
        for size in [48, 128] {
            let lm = t.landmarks(size);
            let (e, mo) = (
                region(Occlusion::Eyes, size, &lm, 0),
                region(Occlusion::Mouth, size, &lm, 0),
            );
            assert!(e.y1 <= mo.y0, "{t:?} at {size}: {e:?} overlaps {mo:?}");
            assert!(
                e.area() > size * size / 10 && mo.area() > size * size / 20,
                "{e:?} {mo:?}"
            );
        }
    }
}

/// The mean image of a set of files at 48x48, and its darkest rows in the eye columns and the
/// middle columns.
fn mean_image(files: &[&Path]) -> Vec<f32> {
    let mut acc = vec![0f32; 48 * 48];
    for f in files {
        for (a, v) in acc.iter_mut().zip(decode(f, 48, 1).unwrap()) {
            *a += v as f32;
        }
    }
    acc.iter().map(|a| a / files.len() as f32).collect()
}

fn darkest_row(img: &[f32], cols: std::ops::Range<usize>, rows: std::ops::Range<usize>) -> usize {
    rows.min_by(|&a, &b| {
        let s = |y: usize| cols.clone().map(|x| img[y * 48 + x]).sum::<f32>();
        s(a).total_cmp(&s(b))
    })
    .unwrap()
}

/// On the real datasets' mean face, the darkest eye row is inside the template's eye box and the
/// darkest mouth row inside its mouth box (and not the other way round).
fn check_template_on(files: &[&Path], t: Template) {
    let img = mean_image(files);
    let lm = t.landmarks(48);
    let eyes = region(Occlusion::Eyes, 48, &lm, 0);
    let mouth = region(Occlusion::Mouth, 48, &lm, 0);
    let eye_row = darkest_row(&img, 12..20, 10..30);
    let mouth_row = darkest_row(&img, 20..28, 26..46);
    println!("{t:?}: eye row {eye_row} in {eyes:?}, mouth row {mouth_row} in {mouth:?}");
    assert!(
        (eyes.y0..eyes.y1).contains(&eye_row),
        "{t:?}: eye row {eye_row}, {eyes:?}"
    );
    assert!(
        (mouth.y0..mouth.y1).contains(&mouth_row),
        "{t:?}: mouth row {mouth_row}, {mouth:?}"
    );
    assert!(!(mouth.y0..mouth.y1).contains(&eye_row) && !(eyes.y0..eyes.y1).contains(&mouth_row));
}

#[test]
fn ckplus_template_boxes_cover_the_mean_ckplus_eyes_and_mouth() {
    let Some(root) = common::dataset("ckplus") else {
        return;
    };
    let ds = scan(&root).unwrap();
    let files: Vec<&Path> = ds.items.iter().map(|i| i.path.as_path()).collect();
    check_template_on(&files, Template::CkPlus48);
}

#[test]
fn fer2013_template_boxes_cover_the_mean_fer2013_eyes_and_mouth() {
    let Some(root) = common::dataset("fer2013") else {
        return;
    };
    let ds = scan(&root).unwrap();
    // Every 20th training image of the closed-mouth classes (neutral, sad): ~490 files.
    let files: Vec<&Path> = ds
        .items
        .iter()
        .filter(|i| i.label == 4 || i.label == 5)
        .step_by(20)
        .map(|i| i.path.as_path())
        .collect();
    check_template_on(&files, Template::Fer2013);
}

#[test]
fn occlusions_parse_and_print() {
    for (s, o) in [
        ("patch16", Occlusion::Patch(16)),
        ("patch:8", Occlusion::Patch(8)),
        ("Patch-24", Occlusion::Patch(24)),
        ("24x24", Occlusion::Patch(24)),
        ("eyes", Occlusion::Eyes),
        ("eye", Occlusion::Eyes),
        ("MOUTH", Occlusion::Mouth),
    ] {
        assert_eq!(s.parse::<Occlusion>().unwrap(), o, "{s}");
    }
    for o in Occlusion::PAPER {
        assert_eq!(o.to_string().parse::<Occlusion>().unwrap(), o);
    }
    for bad in ["nose", "patch0", "16x8", "patch", ""] {
        let e = bad.parse::<Occlusion>().unwrap_err();
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
    assert_eq!("ck+48".parse::<Template>().unwrap(), Template::CkPlus48);
    assert_eq!("FER2013".parse::<Template>().unwrap(), Template::Fer2013);
    assert!("affectnet".parse::<Template>().is_err());
}

#[test]
#[should_panic(expected = "is not 3 x 48 x 48")]
fn wrong_image_length_is_refused() {
    let mut img = vec![0u8; 48 * 48];
    apply(
        &mut img,
        3,
        48,
        Occlusion::Eyes,
        &canonical_landmarks(48),
        0,
    );
}

/// Pictures to look at: synthetic faces under each occlusion, and real crops with their
/// template boxes. `cargo test --release --test occlusion -- --ignored write_samples`
#[test]
#[ignore]
fn write_samples() {
    let s = 96usize;
    let mut tiles: Vec<Vec<u8>> = Vec::new();
    for i in 0..6 {
        let f = generate(2, i, s);
        for occ in Occlusion::PAPER {
            let mut img = f.pixels.clone();
            apply(&mut img, 1, s, occ, &f.landmarks, i);
            tiles.push(img);
        }
    }
    for (rel, t, step) in [
        ("ckplus", Template::CkPlus48, 97),
        ("fer2013", Template::Fer2013, 3001),
    ] {
        if let Some(ds) = common::dataset(rel).map(|root| scan(root).unwrap()) {
            let lm = t.landmarks(s);
            for it in ds.items.iter().step_by(step).take(5) {
                let img = decode(&it.path, s, 1).unwrap();
                for occ in [Occlusion::Eyes, Occlusion::Mouth] {
                    let mut o = img.clone();
                    apply(&mut o, 1, s, occ, &lm, 0);
                    tiles.push(o);
                }
            }
        }
    }
    let cols = 10;
    let rows = tiles.len().div_ceil(cols);
    let mut out = image::GrayImage::new((cols * s) as u32, (rows * s) as u32);
    for (k, t) in tiles.iter().enumerate() {
        let (ox, oy) = ((k % cols) * s, (k / cols) * s);
        for y in 0..s {
            for x in 0..s {
                out.put_pixel(
                    (ox + x) as u32,
                    (oy + y) as u32,
                    image::Luma([t[y * s + x]]),
                );
            }
        }
    }
    let path = std::env::temp_dir().join("occlusion.png");
    out.save(&path).unwrap();
    println!("wrote {}", path.display());
}
