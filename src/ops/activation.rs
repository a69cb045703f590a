//! ELU, ReLU and sigmoid, forward and backward.
//! Shader: `shaders/activation.wgsl`; reference: `reference/src/activation.rs`; tests:
//! `tests/activation.rs`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Dispatch, WG};
use crate::pipeline::{Binding, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// Which activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActivationKind {
    Elu { alpha: f32 },
    Relu,
    Sigmoid,
}

impl ActivationKind {
    fn name(&self) -> &'static str {
        match self {
            ActivationKind::Elu { .. } => "elu",
            ActivationKind::Relu => "relu",
            ActivationKind::Sigmoid => "sigmoid",
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    alpha: f32,
    _pad: [u32; 2],
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const Y: (u32, Binding) = (2, Binding::ReadWrite);
const DY: (u32, Binding) = (3, Binding::Read);
const DX: (u32, Binding) = (4, Binding::ReadWrite);
const Y_SAVED: (u32, Binding) = (5, Binding::Read);

/// One activation over tensors of one shape.
pub struct Activation {
    kind: ActivationKind,
    shape: Vec<usize>,
    forward: Arc<Kernel>,
    backward: Arc<Kernel>,
    params: wgpu::Buffer,
}

impl Activation {
    pub async fn new(gpu: &Gpu, kind: ActivationKind, shape: &[usize]) -> Result<Activation> {
        let len: usize = shape.iter().product();
        if len == 0 {
            return Err(Error::InvalidConfig {
                op: kind.name().into(),
                message: format!("empty shape {shape:?}"),
            });
        }
        let name = kind.name();
        let (fwd, bwd): (&'static str, &'static str) = match kind {
            ActivationKind::Elu { .. } => ("elu_forward", "elu_backward"),
            ActivationKind::Relu => ("relu_forward", "relu_backward"),
            ActivationKind::Sigmoid => ("sigmoid_forward", "sigmoid_backward"),
        };
        // ELU and ReLU differentiate from the saved input, sigmoid from the saved output.
        let saved = if kind == ActivationKind::Sigmoid {
            Y_SAVED
        } else {
            X
        };
        let kernel = |entry, bindings: &[(u32, Binding)]| {
            let bindings = bindings.to_vec();
            async move {
                gpu.kernel(KernelDesc {
                    shader: "activation",
                    entry,
                    bindings: &bindings,
                    constants: &[("WG", WG as f64)],
                })
                .await
            }
        };
        let alpha = match kind {
            ActivationKind::Elu { alpha } => alpha,
            _ => 0.0,
        };
        Ok(Activation {
            kind,
            shape: shape.to_vec(),
            forward: kernel(fwd, &[UNIFORM, X, Y]).await?,
            backward: kernel(bwd, &[UNIFORM, saved, DY, DX]).await?,
            params: gpu.uniform_buffer(
                &format!("{name}.params"),
                &Params {
                    len: len as u32,
                    alpha,
                    _pad: [0; 2],
                },
            ),
        })
    }

    pub fn kind(&self) -> ActivationKind {
        self.kind
    }

    /// y = f(x).
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
        let op = format!("{}.forward", self.kind.name());
        x.expect_shape(&op, &self.shape)?;
        y.expect_shape(&op, &self.shape)?;
        self.forward.dispatch(
            gpu,
            &[self.params.as_entire_binding(), x.binding(), y.binding()],
            gpu.grid(x.len(), WG),
        )
    }

    /// dx = dy * f'(.): `saved` is the forward input for ELU and ReLU, the forward output for
    /// sigmoid.
    pub fn backward(
        &self,
        gpu: &Gpu,
        saved: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
    ) -> Result<Dispatch> {
        let op = format!("{}.backward", self.kind.name());
        saved.expect_shape(&op, &self.shape)?;
        dy.expect_shape(&op, &self.shape)?;
        dx.expect_shape(&op, &self.shape)?;
        self.backward.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                saved.binding(),
                dy.binding(),
                dx.binding(),
            ],
            gpu.grid(dx.len(), WG),
        )
    }
}
