//! Adam / AdamW (PyTorch semantics) over every parameter at once: one dispatch per training step.
//! Shader: `shaders/adam.wgsl`; reference: `reference/src/adam.rs`; tests: `tests/adam.rs`.
//!
//! Buffers: params, grads, m, v, each `[len]` f32 (views: they may sit at offsets inside larger
//! buffers, and may even share one buffer; only their ranges must not overlap). m and v start at
//! zero. Dispatch order: after the whole backward, [`Adam::step`] (params, m, v updated in place).
//! Before each step's submit call [`Adam::set_step`] with the 1-based step number t.
//!
//! Why the bias corrections come from the CPU in f64: `1 - beta2^t` at t = 1 is 0.001, and
//! forming it in f32 on the GPU (`1 - pow(0.999, t)`, pow being exp2(t log2 b) with loose WGSL
//! accuracy) cancels ~3 digits, a 1e-5 relative error in every update of the first steps. They
//! are also the same for every element, so computing them once per step on the CPU (in f64, then
//! rounded to f32 once) is both exact and free. `1 - beta1`, `1 - beta2` and the AdamW factor
//! `1 - lr wd` are passed the same way, so 0.1 arrives as f32(0.1), not as 1 - f32(0.9).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::WG;
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// Hyper-parameters; the default is the spec's (lr 0.001, betas 0.9 / 0.999, eps 1e-8, no decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay (torch.optim.AdamW): `p -= lr * weight_decay * p` before the update.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> AdamConfig {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        len: u32,
        beta1: f32,
        one_minus_beta1: f32,
        beta2: f32,
        one_minus_beta2: f32,
        eps: f32,
        decay: f32,
        step_size: f32,
        bc2_sqrt: f32,
    }
}

impl Params {
    /// The uniform for step `t` (1-based): every scalar in f64, rounded to f32 once.
    fn new(len: usize, c: &AdamConfig, t: u32) -> Params {
        let bc1 = 1.0 - c.beta1.powi(t as i32);
        let bc2 = 1.0 - c.beta2.powi(t as i32);
        Params {
            len: len as u32,
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            eps: c.eps as f32,
            decay: (1.0 - c.lr * c.weight_decay) as f32,
            step_size: (c.lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
        }
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const PARAMS: (u32, Binding) = (1, Binding::ReadWrite);
// Read-write although only read: see shaders/adam.wgsl (lets grads share a buffer with params).
const GRADS: (u32, Binding) = (2, Binding::ReadWrite);
const M: (u32, Binding) = (3, Binding::ReadWrite);
const V: (u32, Binding) = (4, Binding::ReadWrite);

/// The optimizer for `len` packed parameters, with its pipeline and per-step uniform.
pub struct Adam {
    len: usize,
    config: AdamConfig,
    t: u32,
    kernel: Arc<Kernel>,
    params: wgpu::Buffer,
}

impl Adam {
    /// An optimizer whose uniform is set for step t = 1.
    pub async fn new(gpu: &Gpu, len: usize, config: AdamConfig) -> Result<Adam> {
        validate(len, &config)?;
        let kernel = gpu
            .kernel(KernelDesc {
                shader: "adam",
                uniform: Some(&Params::LAYOUT),
                entry: "step",
                bindings: &[UNIFORM, PARAMS, GRADS, M, V],
                constants: &[("WG", WG as f64)],
            })
            .await?;
        Ok(Adam {
            len,
            config,
            t: 1,
            kernel,
            params: gpu.uniform_buffer("adam.params", &Params::new(len, &config, 1)),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// The step number the uniform currently holds.
    pub fn t(&self) -> u32 {
        self.t
    }

    /// Rewrites the uniform for step `t` (1-based) with `queue.write_buffer`; takes effect at the
    /// next submit (so the previous step's dispatch must already have been submitted).
    pub fn set_step(&mut self, gpu: &Gpu, t: u32) -> Result<()> {
        if t == 0 || t > i32::MAX as u32 {
            return Err(Error::InvalidConfig {
                op: "adam".into(),
                message: format!("the step number t is 1-based and below 2^31, got {t}"),
            });
        }
        self.t = t;
        self.write(gpu);
        Ok(())
    }

    /// Changes the learning rate (a schedule) from the next submit on, keeping the step.
    pub fn set_lr(&mut self, gpu: &Gpu, lr: f64) -> Result<()> {
        let config = AdamConfig { lr, ..self.config };
        validate(self.len, &config)?;
        self.config = config;
        self.write(gpu);
        Ok(())
    }

    fn write(&self, gpu: &Gpu) {
        let u = Params::new(self.len, &self.config, self.t);
        gpu.queue
            .write_buffer(&self.params, 0, bytemuck::bytes_of(&u));
    }

    /// One update of every parameter in place (params, m, v written; grads read).
    pub fn step(
        &self,
        gpu: &Gpu,
        params: &Tensor,
        grads: &Tensor,
        m: &Tensor,
        v: &Tensor,
    ) -> Result<Dispatch> {
        for t in [params, grads, m, v] {
            t.expect_shape("adam.step", &[self.len])?;
        }
        self.kernel.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                params.binding(),
                grads.binding(),
                m.binding(),
                v.binding(),
            ],
            gpu.grid(self.len, WG),
        )
    }
}

/// PyTorch's checks (lr >= 0, eps >= 0, 0 <= beta < 1, weight_decay >= 0), plus a u32 length.
fn validate(len: usize, c: &AdamConfig) -> Result<()> {
    let bad = |message: String| {
        Err(Error::InvalidConfig {
            op: "adam".into(),
            message,
        })
    };
    if len == 0 || len > u32::MAX as usize {
        return bad(format!(
            "the parameter count must be 1 to 2^32 - 1, got {len}"
        ));
    }
    let finite = [c.lr, c.beta1, c.beta2, c.eps, c.weight_decay]
        .iter()
        .all(|x| x.is_finite());
    if !finite || c.lr < 0.0 || c.eps < 0.0 || c.weight_decay < 0.0 {
        return bad(format!(
            "lr, eps and weight_decay must be finite and >= 0, got {c:?}"
        ));
    }
    for (name, b) in [("beta1", c.beta1), ("beta2", c.beta2)] {
        if !(0.0..1.0).contains(&b) {
            return bad(format!("{name} must be in [0, 1), got {b}"));
        }
    }
    Ok(())
}
