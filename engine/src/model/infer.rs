//! Inference on one image, written once for both targets: the browser build (`web/`) awaits it
//! on the page's event loop, native code through [`infer_blocking`]. Same kernels, same
//! preprocessing ([`crate::preprocess`]), so the two give the same logits.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::inference::Evaluate;

/// What one forward pass shows: the logits, their softmax and each stage's spatial attention
/// map (stages without a spatial gate have none).
#[derive(Clone, Debug, PartialEq)]
pub struct Inference {
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
    /// Per stage: the map's side and its `side * side` values in 0..1, row-major.
    pub spatial_maps: Vec<Option<(usize, Vec<f32>)>>,
}

/// Queues one image (`[C, S, S]` pixels 0..255, mapped to /255 as in training) through the
/// network in evaluation mode and queues the readbacks; nothing waits here.
fn submit(
    gpu: &Gpu,
    net: &dyn Evaluate,
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
pub async fn infer(gpu: &Gpu, net: &dyn Evaluate, pixels: &[u8]) -> Result<Inference> {
    submit(gpu, net, pixels)?.await
}

/// [`infer`], waiting for the device (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn infer_blocking(gpu: &Gpu, net: &dyn Evaluate, pixels: &[u8]) -> Result<Inference> {
    let fut = submit(gpu, net, pixels)?;
    gpu.wait()?;
    pollster::block_on(fut)
}
