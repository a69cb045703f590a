//! The network's input from pixels: gray, resized to the network's square size, replicated to
//! its input channels. Written without an image library, because the engine also runs in the
//! browser, where a canvas hands over RGBA bytes; the application's image decoder resizes
//! through the same [`resize`], so a face gives the same input in both places.
//!
//! Both functions reproduce the `image` crate (0.25) bit for bit, which the application's tests
//! hold them to: [`resize`] is `image::imageops::resize` with `FilterType::Triangle`, and
//! [`gray_from_rgba`] is `DynamicImage::to_luma8` of an RGBA8 image.

use crate::error::{Error, Result};

/// The Y row of sRGB's RGB-to-XYZ matrix (D65), as the `image` crate derives it (through
/// moxcms) and rounds it to f32: the luma weights of its RGB-to-gray conversion. Close to
/// Rec. 709's 0.2126, 0.7152, 0.0722, but these are the exact f32 values it multiplies by.
const LUMA: [f32; 3] = [
    f32::from_bits(0x3e59_c05b),
    f32::from_bits(0x3f37_15fc),
    f32::from_bits(0x3d93_cf75),
];

/// `acc + a * b`, fused exactly where the `image` crate fuses it (x86 with FMA compiled in,
/// aarch64), so the conversion rounds as its does on every target.
#[inline(always)]
fn multiply_accumulate(acc: f32, a: f32, b: f32) -> f32 {
    #[cfg(any(
        all(
            any(target_arch = "x86", target_arch = "x86_64"),
            target_feature = "fma"
        ),
        all(target_arch = "aarch64", target_feature = "neon")
    ))]
    {
        a.mul_add(b, acc)
    }
    #[cfg(not(any(
        all(
            any(target_arch = "x86", target_arch = "x86_64"),
            target_feature = "fma"
        ),
        all(target_arch = "aarch64", target_feature = "neon")
    )))]
    {
        acc + a * b
    }
}

fn bad(message: String) -> Error {
    Error::InvalidConfig {
        op: "image".into(),
        message,
    }
}

/// Gray bytes of an RGBA8 image `width` x `height` (alpha ignored): each channel as `v / 255`,
/// weighted by [`LUMA`] and scaled back to 0..255 with rounding. A gray pixel (r = g = b) keeps
/// its value.
pub fn gray_from_rgba(rgba: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    if width == 0 || height == 0 {
        return Err(bad(format!("empty image ({width}x{height})")));
    }
    let want = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| bad(format!("a {width}x{height} image is too large")))?;
    if rgba.len() != want {
        return Err(bad(format!(
            "{} bytes of RGBA for a {width}x{height} image (expected {want})",
            rgba.len()
        )));
    }
    const INV: f32 = 1.0 / u8::MAX as f32;
    Ok(rgba
        .chunks_exact(4)
        .map(|px| {
            let mut luma = 0.0f32;
            for (&c, k) in px[..3].iter().zip(LUMA) {
                luma = multiply_accumulate(luma, c as f32 * INV, k);
            }
            // Saturating, as `as` is.
            (luma * u8::MAX as f32).round() as u8
        })
        .collect())
}

/// The triangle (bilinear) kernel.
fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 {
        1.0 - x.abs()
    } else {
        0.0
    }
}

/// The input pixels `[left, left + weights.len())` and their normalised weights for each of
/// `out` samples of a line of `len` pixels, the kernel widened by the ratio when shrinking.
fn taps(len: usize, out: usize) -> Vec<(usize, Vec<f32>)> {
    let ratio = len as f32 / out as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio;
    (0..out)
        .map(|o| {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, len as i64 - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, len as i64);
            // The kernel treats a pixel's centre as 0.
            let centre = centre - 0.5;
            let mut w: Vec<f32> = (left..right)
                .map(|i| triangle((i as f32 - centre) / sratio))
                .collect();
            let sum = w.iter().fold(0.0f32, |s, &v| s + v);
            w.iter_mut().for_each(|v| *v /= sum);
            (left as usize, w)
        })
        .collect()
}

/// `gray` (`width` x `height`, row-major) resized to `size` x `size` with the triangle filter,
/// widened when shrinking: columns first into f32 rows, then rows, rounded and clamped to
/// 0..255 once at the end. An image already of that size is returned as it is.
pub fn resize(gray: &[u8], width: usize, height: usize, size: usize) -> Vec<u8> {
    if width == 0 || height == 0 || size == 0 {
        return vec![0; size * size];
    }
    if (width, height) == (size, size) {
        return gray.to_vec();
    }
    // Vertical pass: height -> size, one f32 per pixel.
    let mut tall = vec![0.0f32; width * size];
    for (y, (top, w)) in taps(height, size).into_iter().enumerate() {
        for x in 0..width {
            let mut t = 0.0f32;
            for (i, &wi) in w.iter().enumerate() {
                t += gray[(top + i) * width + x] as f32 * wi;
            }
            tall[y * width + x] = t;
        }
    }
    // Horizontal pass: width -> size, rounded to u8.
    let mut out = vec![0u8; size * size];
    for (x, (left, w)) in taps(width, size).into_iter().enumerate() {
        for y in 0..size {
            let mut t = 0.0f32;
            for (i, &wi) in w.iter().enumerate() {
                t += tall[y * width + left + i] * wi;
            }
            out[y * size + x] = t.clamp(0.0, 255.0).round() as u8;
        }
    }
    out
}

/// The network input for a gray image: [`resize`]d to `size` x `size` and replicated to
/// `channels` planes, `[C, S, S]` in 0..255.
pub fn input_from_gray(
    gray: &[u8],
    width: usize,
    height: usize,
    size: usize,
    channels: usize,
) -> Vec<u8> {
    resize(gray, width, height, size).repeat(channels)
}

/// [`input_from_gray`] for RGBA pixels (a canvas's `getImageData`), through [`gray_from_rgba`].
pub fn input_from_rgba(
    rgba: &[u8],
    width: usize,
    height: usize,
    size: usize,
    channels: usize,
) -> Result<Vec<u8>> {
    let gray = gray_from_rgba(rgba, width, height)?;
    Ok(input_from_gray(&gray, width, height, size, channels))
}
