//! Inference on one image, written once for both targets: the browser build (`web/`) awaits it
//! on the page's event loop, native code through [`infer_blocking`]. Same kernels, same
//! preprocessing, so the two give the same logits.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::network::Network;

/// What one forward pass shows: the logits, their softmax and each stage's spatial attention
/// map (stages without a spatial gate have none).
#[derive(Clone, Debug, PartialEq)]
pub struct Inference {
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
    /// Per stage: the map's side and its `side * side` values in 0..1, row-major.
    pub spatial_maps: Vec<Option<(usize, Vec<f32>)>>,
}

/// The network input for a gray image: resized to `size` x `size` with the same filter as
/// [`crate::data::folder::decode`] (a triangle filter, widened when shrinking; no resampling
/// at the right size) and replicated to `channels` planes, `[C, S, S]` in 0..255.
pub fn input_from_gray(gray: image::GrayImage, size: usize, channels: usize) -> Vec<u8> {
    let n = size as u32;
    let gray = if gray.dimensions() == (n, n) {
        gray
    } else {
        image::imageops::resize(&gray, n, n, image::imageops::FilterType::Triangle)
    };
    gray.into_raw().repeat(channels)
}

/// [`input_from_gray`] for RGBA pixels (a canvas's `getImageData`), converted to luma with the
/// weights `decode` uses (Rec. 709, integer: a gray pixel keeps its exact value).
pub fn input_from_rgba(
    rgba: &[u8],
    width: usize,
    height: usize,
    size: usize,
    channels: usize,
) -> Result<Vec<u8>> {
    let bad = |message: String| Error::InvalidConfig {
        op: "image".into(),
        message,
    };
    if width == 0 || height == 0 {
        return Err(bad(format!("empty image ({width}x{height})")));
    }
    if rgba.len() != width * height * 4 {
        return Err(bad(format!(
            "{} bytes of RGBA for a {width}x{height} image (expected {})",
            rgba.len(),
            width * height * 4
        )));
    }
    let img = image::RgbaImage::from_raw(width as u32, height as u32, rgba.to_vec())
        .ok_or_else(|| bad("image too large".into()))?;
    let gray = image::DynamicImage::ImageRgba8(img).to_luma8();
    Ok(input_from_gray(gray, size, channels))
}

/// Queues one image (`[C, S, S]` pixels 0..255, mapped to /255 as in training) through the
/// network in evaluation mode and queues the readbacks; nothing waits here.
fn submit(
    gpu: &Gpu,
    net: &Network,
    pixels: &[u8],
) -> Result<impl std::future::Future<Output = Result<Inference>> + use<>> {
    let c = net.config();
    let want = c.in_channels * c.image_size * c.image_size;
    if pixels.len() != want {
        return Err(Error::Shape {
            op: "infer".into(),
            tensor: "image".into(),
            expected: vec![c.in_channels, c.image_size, c.image_size],
            got: vec![pixels.len()],
        });
    }
    let batch = net.batch();
    // The network's batch may be larger than one: the other rows stay zero and are ignored.
    let mut images = vec![0.0f32; batch * want];
    for (d, &p) in images.iter_mut().zip(pixels) {
        *d = p as f32 / 255.0;
    }
    net.write_batch(gpu, &images, &vec![0; batch])?;
    net.forward_eval(gpu)?;
    let k = c.classes.len();
    let logits = gpu.read(net.logits());
    let probs = gpu.read(net.probs());
    let maps: Vec<_> = (0..c.widths.len())
        .map(|i| {
            net.spatial_map(i)
                .map(|t| (c.stage_size(i) / 2, gpu.read(t)))
        })
        .collect();
    Ok(async move {
        let logits = logits.await?[..k].to_vec();
        let probs = probs.await?[..k].to_vec();
        let mut spatial_maps = Vec::with_capacity(maps.len());
        for m in maps {
            spatial_maps.push(match m {
                Some((side, fut)) => Some((side, fut.await?[..side * side].to_vec())),
                None => None,
            });
        }
        Ok(Inference {
            logits,
            probs,
            spatial_maps,
        })
    })
}

/// Runs one image; resolves as the device finishes. In a browser the event loop drives the
/// buffer mapping; native callers use [`infer_blocking`] (or poll the device themselves).
pub async fn infer(gpu: &Gpu, net: &Network, pixels: &[u8]) -> Result<Inference> {
    submit(gpu, net, pixels)?.await
}

/// [`infer`], waiting for the device (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn infer_blocking(gpu: &Gpu, net: &Network, pixels: &[u8]) -> Result<Inference> {
    let fut = submit(gpu, net, pixels)?;
    gpu.wait()?;
    pollster::block_on(fut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgba_of_a_gray_image_gives_the_gray_values_back() {
        let (w, h) = (5, 3);
        let gray: Vec<u8> = (0..w * h).map(|i| (i * 17 % 256) as u8).collect();
        let rgba: Vec<u8> = gray.iter().flat_map(|&v| [v, v, v, 255]).collect();
        let g = image::GrayImage::from_raw(w as u32, h as u32, gray).unwrap();
        assert_eq!(
            input_from_rgba(&rgba, w, h, 4, 3).unwrap(),
            input_from_gray(g, 4, 3)
        );
        // Every 8-bit value survives the luma conversion exactly.
        let all: Vec<u8> = (0..=255u8).flat_map(|v| [v, v, v, 255]).collect();
        let out = input_from_rgba(&all, 16, 16, 16, 1).unwrap();
        assert_eq!(out, (0..=255u8).collect::<Vec<_>>());
    }

    #[test]
    fn rgba_of_the_wrong_length_is_an_error() {
        assert!(input_from_rgba(&[0; 15], 2, 2, 4, 3).is_err());
        assert!(input_from_rgba(&[], 0, 0, 4, 3).is_err());
    }
}
