//! Softmax + categorical cross-entropy over K classes (PyTorch's `CrossEntropyLoss(weight=...)`).
//! Shader: `shaders/softmax_xent.wgsl`; reference: `reference/src/softmax_xent.rs`;
//! tests: `tests/softmax_xent.rs`.
//!
//! `loss = sum_n w[y_n] * (-log softmax(z_n)[y_n]) / sum_n w[y_n]`, the plain batch mean without
//! weights. Buffers: logits `[N, K]` f32; labels `[N]` **u32** (allocate with `gpu.zeros`, fill
//! with [`SoftmaxXent::write_labels`]); weights `[K]` f32 (optional); probs `[N, K]` f32;
//! loss `[1]` f32; correct `[1]` **f32**: the number of rows whose argmax (ties to the lowest
//! class index) equals the label, as a float so it reads back with `read` like any tensor (exact up
//! to 2^24 rows); dlogits `[N, K]` f32.
//!
//! Dispatch order: `forward` (logits, labels -> probs, loss, correct; one invocation walks the
//! batch in order, fine for N up to a few hundred), then `backward` (probs, labels -> dlogits,
//! one element per invocation). Saved for the backward: probs and labels (and the weights).
//! The backward is of the loss itself (d loss / d loss = 1); nothing is accumulated.
//! A label >= K makes the loss and that row's dlogits NaN (write_labels refuses such labels).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{backward_part, built, check_optional, optional, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// `n` rows of `k` class logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftmaxXentShape {
    pub n: usize,
    pub k: usize,
}

impl SoftmaxXentShape {
    pub fn logits_shape(&self) -> [usize; 2] {
        [self.n, self.k]
    }
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        n: u32,
        k: u32,
        has_weights: u32,
        nan_bits: u32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const LOGITS: (u32, Binding) = (1, Binding::Read);
const LABELS: (u32, Binding) = (2, Binding::Read);
const WEIGHTS: (u32, Binding) = (3, Binding::Read);
const PROBS: (u32, Binding) = (4, Binding::ReadWrite);
const LOSS: (u32, Binding) = (5, Binding::ReadWrite);
const CORRECT: (u32, Binding) = (6, Binding::ReadWrite);
const PROBS_IN: (u32, Binding) = (7, Binding::Read);
const DLOGITS: (u32, Binding) = (8, Binding::ReadWrite);

/// The loss for one batch shape, with or without class weights.
pub struct SoftmaxXent {
    shape: SoftmaxXentShape,
    weighted: bool,
    forward: Arc<Kernel>,
    backward: Option<Arc<Kernel>>,
    params: wgpu::Buffer,
}

impl SoftmaxXent {
    pub async fn new(gpu: &Gpu, shape: SoftmaxXentShape, weighted: bool) -> Result<SoftmaxXent> {
        SoftmaxXent::build(gpu, shape, weighted, Passes::Training).await
    }

    /// [`SoftmaxXent::new`] without the backward pass (an inference network's: the forward
    /// computes the probabilities, its loss and hit count land in scratch).
    pub async fn forward_only(gpu: &Gpu, shape: SoftmaxXentShape) -> Result<SoftmaxXent> {
        SoftmaxXent::build(gpu, shape, false, Passes::Inference).await
    }

    async fn build(
        gpu: &Gpu,
        shape: SoftmaxXentShape,
        weighted: bool,
        passes: Passes,
    ) -> Result<SoftmaxXent> {
        if shape.n == 0 || shape.k == 0 {
            return Err(Error::InvalidConfig {
                op: "softmax_xent".into(),
                message: format!("every size must be positive, got {shape:?}"),
            });
        }
        let kernel = |entry, bindings: &'static [(u32, Binding)]| {
            gpu.kernel(KernelDesc {
                shader: "softmax_xent",
                uniform: Some(&Params::LAYOUT),
                entry,
                bindings,
                constants: &[("WG", WG as f64)],
            })
        };
        let params = Params {
            n: shape.n as u32,
            k: shape.k as u32,
            has_weights: weighted as u32,
            nan_bits: f32::NAN.to_bits(),
        };
        Ok(SoftmaxXent {
            shape,
            weighted,
            forward: kernel(
                "forward",
                &[UNIFORM, LOGITS, LABELS, WEIGHTS, PROBS, LOSS, CORRECT],
            )
            .await?,
            backward: backward_part(passes, || {
                kernel("backward", &[UNIFORM, LABELS, WEIGHTS, PROBS_IN, DLOGITS])
            })
            .await?,
            params: gpu.uniform_buffer("softmax_xent.params", &params),
        })
    }

    pub fn shape(&self) -> &SoftmaxXentShape {
        &self.shape
    }

    /// Uploads labels (queued until the next submit), refusing any label >= K.
    pub fn write_labels(&self, gpu: &Gpu, t: &Tensor, labels: &[u32]) -> Result<()> {
        t.expect_shape("softmax_xent.write_labels", &[self.shape.n])?;
        if labels.len() != self.shape.n {
            return Err(Error::Shape {
                op: "softmax_xent.write_labels".into(),
                tensor: "labels (host slice)".into(),
                expected: vec![self.shape.n],
                got: vec![labels.len()],
            });
        }
        if let Some((i, y)) = labels
            .iter()
            .enumerate()
            .find(|(_, &y)| y as usize >= self.shape.k)
        {
            return Err(Error::InvalidConfig {
                op: "softmax_xent.write_labels".into(),
                message: format!(
                    "label {y} at row {i} is not below the {} classes",
                    self.shape.k
                ),
            });
        }
        gpu.queue
            .write_buffer(t.buffer(), t.offset(), bytemuck::cast_slice(labels));
        Ok(())
    }

    /// probs = softmax(logits); loss = the (weighted) mean cross-entropy; correct = argmax hits.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        gpu: &Gpu,
        logits: &Tensor,
        labels: &Tensor,
        weights: Option<&Tensor>,
        probs: &Tensor,
        loss: &Tensor,
        correct: &Tensor,
    ) -> Result<Dispatch> {
        let op = "softmax_xent.forward";
        logits.expect_shape(op, &self.shape.logits_shape())?;
        labels.expect_shape(op, &[self.shape.n])?;
        self.check_weights(op, weights)?;
        probs.expect_shape(op, &self.shape.logits_shape())?;
        loss.expect_shape(op, &[1])?;
        correct.expect_shape(op, &[1])?;
        self.forward.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                logits.binding(),
                labels.binding(),
                optional(gpu, weights),
                probs.binding(),
                loss.binding(),
                correct.binding(),
            ],
            [1, 1, 1],
        )
    }

    /// dlogits = w[y_n] (probs - onehot(y_n)) / sum_n w[y_n] (overwrites).
    pub fn backward(
        &self,
        gpu: &Gpu,
        probs: &Tensor,
        labels: &Tensor,
        weights: Option<&Tensor>,
        dlogits: &Tensor,
    ) -> Result<Dispatch> {
        let op = "softmax_xent.backward";
        probs.expect_shape(op, &self.shape.logits_shape())?;
        labels.expect_shape(op, &[self.shape.n])?;
        self.check_weights(op, weights)?;
        dlogits.expect_shape(op, &self.shape.logits_shape())?;
        built(&self.backward, op)?.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                labels.binding(),
                optional(gpu, weights),
                probs.binding(),
                dlogits.binding(),
            ],
            gpu.grid(dlogits.len(), WG),
        )
    }

    fn check_weights(&self, op: &str, weights: Option<&Tensor>) -> Result<()> {
        let shape = [self.shape.k];
        check_optional(
            op,
            "class weights",
            weights,
            self.weighted.then_some(&shape[..]),
        )
    }
}
