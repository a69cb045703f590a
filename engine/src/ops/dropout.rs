//! Inverted dropout with a counter-based mask.
//! Shader: `shaders/dropout.wgsl`; reference: `reference/src/dropout.rs`; tests: `tests/dropout.rs`.
//!
//! In training, `y = x * keep / (1 - p)`; in evaluation (or with p = 0) `y = x`. The keep decision
//! of element `i` (flat index within the tensor) is a hash of `(seed, step, i)` (three rounds of
//! lowbias32, defined in the shader and bit-identical in the reference) and is kept iff
//! `hash < (1 - p) * 2^32` exactly (the GPU gets `keep_max = ceil((1 - p) * 2^32) - 1` and tests
//! `hash <= keep_max`).
//!
//! No mask buffer: `backward` recomputes the same hash. Three lowbias32 rounds are ~15 integer
//! operations per element, cheaper than writing a mask in the forward and reading it back in the
//! backward on a bandwidth-bound device, and nothing needs saving between the passes. The price is
//! that the uniform's seed, step and mode must not change between a step's forward and backward.
//!
//! Dispatch order: `forward` (x -> y) in the forward pass, `backward` (dy -> dx) in the backward
//! pass; nothing saved. Before each training step call [`Dropout::set_step`] (a `write_buffer` on
//! the uniform, which takes effect at the next submit, before every command in it; so the previous
//! step's backward must already be submitted). Give each dropout layer its own seed: two layers
//! with one seed would drop the same flat indices.

use std::mem::offset_of;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::WG;
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        len: u32,
        keep_max: u32,
        /// 1 / (1 - p), rounded once from f64 on the CPU.
        scale: f32,
        /// 0: evaluation, the identity (no hash evaluated).
        training: u32,
        seed: u32,
        step: u32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const Y: (u32, Binding) = (2, Binding::ReadWrite);
const DY: (u32, Binding) = (3, Binding::Read);
const DX: (u32, Binding) = (4, Binding::ReadWrite);

/// `ceil((1 - p) * 2^32) - 1`: an element is kept iff its hash is at most this. `(1 - p) * 2^32`
/// is exact in f64 for every f32 p >= 2^-30, so the comparison is exactly `hash < (1 - p) 2^32`.
/// For f32 p < 1 the ceiling is at least 2^8, so the subtraction never underflows.
pub fn keep_max(p: f32) -> u32 {
    let t = ((1.0 - p as f64) * 4_294_967_296.0).ceil();
    (t - 1.0) as u32
}

/// A dropout layer for tensors of one shape, with its two pipelines and its uniform.
pub struct Dropout {
    shape: Vec<usize>,
    p: f32,
    forward: Arc<Kernel>,
    backward: Arc<Kernel>,
    params: wgpu::Buffer,
}

impl Dropout {
    /// A layer dropping with probability `p` in `[0, 1)`, in training mode at step 0.
    pub async fn new(gpu: &Gpu, shape: &[usize], p: f32, seed: u32) -> Result<Dropout> {
        let len: usize = shape.iter().product();
        let invalid = |message: String| Error::InvalidConfig {
            op: "dropout".into(),
            message,
        };
        if !(0.0..1.0).contains(&p) {
            return Err(invalid(format!(
                "drop probability must be in [0, 1), got {p}"
            )));
        }
        if len == 0 || len > u32::MAX as usize {
            return Err(invalid(format!(
                "the tensor must have 1 to 2^32 - 1 elements (the hash counter is u32), \
                 got shape {shape:?}"
            )));
        }
        let kernel = |entry, bindings: &'static [(u32, Binding)]| {
            gpu.kernel(KernelDesc {
                shader: "dropout",
                uniform: Some(&Params::LAYOUT),
                entry,
                bindings,
                constants: &[("WG", WG as f64)],
            })
        };
        let params = Params {
            len: len as u32,
            keep_max: keep_max(p),
            // PyTorch's scale, 1 / (1 - p), rounded to f32 once.
            scale: (1.0 / (1.0 - p as f64)) as f32,
            training: 1,
            seed,
            step: 0,
        };
        Ok(Dropout {
            shape: shape.to_vec(),
            p,
            forward: kernel("forward", &[UNIFORM, X, Y]).await?,
            backward: kernel("backward", &[UNIFORM, DY, DX]).await?,
            params: gpu.uniform_buffer("dropout.params", &params),
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn p(&self) -> f32 {
        self.p
    }

    /// Sets the step counter the mask is drawn for (takes effect at the next submit).
    pub fn set_step(&self, gpu: &Gpu, step: u32) {
        self.write_field(gpu, offset_of!(Params, step), step);
    }

    /// Sets the seed (takes effect at the next submit).
    pub fn set_seed(&self, gpu: &Gpu, seed: u32) {
        self.write_field(gpu, offset_of!(Params, seed), seed);
    }

    /// Training (masking) or evaluation (identity) mode (takes effect at the next submit).
    pub fn set_training(&self, gpu: &Gpu, training: bool) {
        self.write_field(gpu, offset_of!(Params, training), training as u32);
    }

    fn write_field(&self, gpu: &Gpu, offset: usize, value: u32) {
        gpu.queue
            .write_buffer(&self.params, offset as u64, bytemuck::bytes_of(&value));
    }

    /// y = x * mask / (1 - p) (training) or y = x (evaluation). `y` must not alias `x`.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
        x.expect_shape("dropout.forward", &self.shape)?;
        y.expect_shape("dropout.forward", &self.shape)?;
        self.forward.dispatch(
            gpu,
            &[self.params.as_entire_binding(), x.binding(), y.binding()],
            gpu.grid(x.len(), WG),
        )
    }

    /// dx = dy * mask / (1 - p) with the forward's mask (training) or dx = dy (evaluation).
    pub fn backward(&self, gpu: &Gpu, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
        dy.expect_shape("dropout.backward", &self.shape)?;
        dx.expect_shape("dropout.backward", &self.shape)?;
        self.backward.dispatch(
            gpu,
            &[self.params.as_entire_binding(), dy.binding(), dx.binding()],
            gpu.grid(dy.len(), WG),
        )
    }
}
