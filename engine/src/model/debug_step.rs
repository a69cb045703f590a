//! `fer-cbam debug-step`: one training step with dropout off and batch norm in training mode
//! (batch statistics) on a given batch, writing logits, loss, every gradient, the parameters
//! after one Adam step and, with batch norm, the running statistics after the step, so the
//! engine can be held against another framework (PyTorch) tensor by tensor.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::checkpoint;
use crate::model::network::{Network, TrainOptions};
use crate::ops::adam::AdamConfig;

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A batch file: `images` f32 `[N, C, H, W]` in network input scale, `labels` i64 `[N]`.
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub n: usize,
}

/// Reads and checks a batch file against the model's input shape and class count.
pub fn read_batch(path: &Path, in_channels: usize, size: usize, classes: usize) -> Result<Batch> {
    let bytes = crate::files::read_file(path, checkpoint::MAX_FILE_BYTES)
        .map_err(|e| err(path, format!("cannot read: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let images = st
        .tensor("images")
        .map_err(|_| err(path, "no tensor `images` (f32 [N, C, H, W])"))?;
    let labels = st
        .tensor("labels")
        .map_err(|_| err(path, "no tensor `labels` (i64 [N])"))?;
    let n = images.shape().first().copied().unwrap_or(0);
    let want = [n, in_channels, size, size];
    if images.dtype() != Dtype::F32 || images.shape() != want || n == 0 {
        return Err(err(
            path,
            format!(
                "`images` is {:?} {:?}; the model needs F32 [N, {in_channels}, {size}, {size}] with N > 0",
                images.dtype(),
                images.shape()
            ),
        ));
    }
    if labels.dtype() != Dtype::I64 || labels.shape() != [n] {
        return Err(err(
            path,
            format!(
                "`labels` is {:?} {:?}; expected I64 [{n}]",
                labels.dtype(),
                labels.shape()
            ),
        ));
    }
    let images: Vec<f32> = images
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let labels = labels
        .data()
        .chunks_exact(8)
        .enumerate()
        .map(|(i, c)| {
            let y = i64::from_le_bytes(c.try_into().unwrap());
            if y < 0 || y as usize >= classes {
                Err(err(
                    path,
                    format!("label {y} at row {i} is not a class index below {classes}"),
                ))
            } else {
                Ok(y as u32)
            }
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(Batch { images, labels, n })
}

/// Runs the step and writes `out` (atomically): `logits` [N, K], `loss` [1], `grad.<name>` and
/// `param.<name>` (after the Adam step) for every parameter, and `param.<name>` for every
/// running statistic (`stages.{i}.bn.running_mean`, `.running_var`) after the step.
pub async fn debug_step(
    gpu: &Gpu,
    checkpoint: &Path,
    batch: &Path,
    adam: AdamConfig,
    out: &Path,
) -> Result<()> {
    crate::files::check_file(out, &[checkpoint, batch])?;
    let ck = checkpoint::load(checkpoint)?;
    let config = ck.config.clone();
    let b = read_batch(
        batch,
        config.in_channels,
        config.image_size,
        config.classes.len(),
    )?;
    let options = TrainOptions {
        adam,
        seed: 0,
        class_weights: None,
    };
    let mut net = Network::new(gpu, &config, b.n, options).await?;
    net.load(gpu, &ck)?;
    net.write_batch(gpu, &b.images, &b.labels)?;
    net.train_step(gpu, false)?;
    let logits = gpu.read(net.logits());
    let loss = gpu.read(net.loss());
    let grads = gpu.read(net.grads());
    let params = gpu.read(net.params());
    let buffers = net.buffers().map(|t| gpu.read(t));
    #[cfg(not(target_arch = "wasm32"))]
    gpu.wait()?;
    let (logits, loss, grads, params) = (logits.await?, loss.await?, grads.await?, params.await?);
    let buffers = match buffers {
        Some(f) => f.await?,
        None => Vec::new(),
    };
    let k = config.classes.len();
    let table = net.table();
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = vec![
        ("logits".into(), vec![b.n, k], &logits),
        ("loss".into(), vec![1], &loss),
    ];
    for e in table.entries() {
        let r = e.offset..e.offset + e.len();
        tensors.push((
            format!("grad.{}", e.name),
            e.shape.clone(),
            &grads[r.clone()],
        ));
        tensors.push((format!("param.{}", e.name), e.shape.clone(), &params[r]));
    }
    for e in table.buffers() {
        let r = e.offset..e.offset + e.len();
        tensors.push((format!("param.{}", e.name), e.shape.clone(), &buffers[r]));
    }
    let mut meta = HashMap::new();
    meta.insert(
        checkpoint::CONFIG_KEY.to_string(),
        serde_json::to_string(&config).unwrap(),
    );
    meta.insert(
        "adam".into(),
        format!(
            "lr={} beta1={} beta2={} eps={} weight_decay={}",
            adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay
        ),
    );
    crate::files::write_atomic(out, &checkpoint::to_bytes(&tensors, meta)?)
}
