//! The engine's preprocessing (no image library, so it runs in the browser) against the `image`
//! crate that the native decoder was built on: the same bytes, bit for bit, so that a checkpoint
//! sees the same input from a canvas as from a file, and every figure and table measured before
//! the engine had its own resize stays reproducible.

use fer_cbam::preprocess::{gray_from_rgba, input_from_rgba, resize};
use rand::{Rng, SeedableRng};

fn image_resize(gray: &[u8], w: usize, h: usize, size: usize) -> Vec<u8> {
    let img = image::GrayImage::from_raw(w as u32, h as u32, gray.to_vec()).unwrap();
    let n = size as u32;
    image::imageops::resize(&img, n, n, image::imageops::FilterType::Triangle).into_raw()
}

#[test]
fn resize_is_the_image_crates_triangle_filter_bit_for_bit() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // Shrinking (the usual case: photos and CK+'s 640x490 frames to 128 or 48), growing
    // (FER2013's 48x48 to 128), odd ratios, lines, single pixels, and the spec's sizes.
    let mut shapes: Vec<(usize, usize, usize)> = vec![
        (640, 490, 128),
        (48, 48, 128),
        (48, 48, 48),
        (1, 1, 5),
        (1, 9, 4),
        (9, 1, 4),
        (3, 2, 1),
        (256, 256, 255),
        (100, 37, 48),
    ];
    for _ in 0..40 {
        shapes.push((
            rng.random_range(1..200),
            rng.random_range(1..200),
            rng.random_range(1..160),
        ));
    }
    for (w, h, size) in shapes {
        // Noise exercises every weight; flat areas and hard edges exercise the rounding.
        let gray: Vec<u8> = (0..w * h)
            .map(|i| match i % 3 {
                0 => rng.random(),
                1 => 255,
                _ => (i / w * 7 % 256) as u8,
            })
            .collect();
        assert_eq!(
            resize(&gray, w, h, size),
            image_resize(&gray, w, h, size),
            "{w}x{h} -> {size}x{size}"
        );
    }
}

#[test]
fn gray_from_rgba_is_the_image_crates_luma_bit_for_bit() {
    // Every gray value, the primaries' extremes, and random colours (all 2^24 triples were
    // compared once, with no difference; this keeps the suite fast and still fails at once on
    // weights that are off by an ulp, which change thousands of triples).
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut px: Vec<[u8; 3]> = (0..=255u8).map(|v| [v, v, v]).collect();
    for r in [0u8, 1, 127, 128, 254, 255] {
        for g in [0u8, 1, 127, 128, 254, 255] {
            for b in [0u8, 1, 127, 128, 254, 255] {
                px.push([r, g, b]);
            }
        }
    }
    while px.len() < 256 * 256 {
        px.push([rng.random(), rng.random(), rng.random()]);
    }
    let (w, h) = (256, px.len() / 256);
    let rgba: Vec<u8> = px
        .iter()
        .flat_map(|p| [p[0], p[1], p[2], rng.random()])
        .collect();
    let img = image::RgbaImage::from_raw(w as u32, h as u32, rgba.clone()).unwrap();
    let want = image::DynamicImage::ImageRgba8(img).to_luma8().into_raw();
    let got = gray_from_rgba(&rgba, w, h).unwrap();
    let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} of {} pixels differ", got.len());
    // A gray pixel keeps its value exactly.
    assert_eq!(&got[..256], &(0..=255u8).collect::<Vec<_>>()[..]);
}

#[test]
fn the_network_input_is_gray_resized_and_replicated() {
    let (w, h) = (5, 3);
    let gray: Vec<u8> = (0..w * h).map(|i| (i * 17 % 256) as u8).collect();
    let rgba: Vec<u8> = gray.iter().flat_map(|&v| [v, v, v, 255]).collect();
    let one = resize(&gray, w, h, 4);
    assert_eq!(input_from_rgba(&rgba, w, h, 4, 3).unwrap(), one.repeat(3));
    assert_eq!(input_from_rgba(&rgba, w, h, 4, 1).unwrap(), one);
}

#[test]
fn rgba_of_the_wrong_length_or_an_empty_image_is_an_error() {
    let e = input_from_rgba(&[0; 15], 2, 2, 4, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("15 bytes") && e.contains("expected 16"), "{e}");
    let e = input_from_rgba(&[], 0, 0, 4, 3).unwrap_err().to_string();
    assert!(e.contains("empty image"), "{e}");
}
