//! ELU, ReLU and sigmoid, forward and backward.
//! Shader: `shaders/activation.wgsl`; reference: `reference/src/activation.rs`; tests:
//! `tests/activation.rs`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{backward_part, built, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
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

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        len: u32,
        alpha: f32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const Y: (u32, Binding) = (2, Binding::ReadWrite);
const DY: (u32, Binding) = (3, Binding::Read);
const DX: (u32, Binding) = (4, Binding::ReadWrite);
const Y_SAVED: (u32, Binding) = (5, Binding::Read);

/// One activation over tensors of one shape.
/// Which kernels an [`Activation`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ActivationVersion {
    /// One element per invocation (every kind).
    V1,
    /// ELU only (`elu_*_v2`): four consecutive elements per invocation, same formula and bits;
    /// ReLU and sigmoid run v1.
    #[default]
    V2,
}

pub struct Activation {
    kind: ActivationKind,
    version: ActivationVersion,
    shape: Vec<usize>,
    forward: Arc<Kernel>,
    backward: Option<Arc<Kernel>>,
    params: wgpu::Buffer,
}

impl Activation {
    /// The activation with the default (fastest) kernels, [`ActivationVersion::V2`].
    pub async fn new(gpu: &Gpu, kind: ActivationKind, shape: &[usize]) -> Result<Activation> {
        Activation::with_version(gpu, kind, shape, ActivationVersion::default()).await
    }

    /// [`Activation::new`] without the backward pass (an inference network's).
    pub async fn forward_only(
        gpu: &Gpu,
        kind: ActivationKind,
        shape: &[usize],
    ) -> Result<Activation> {
        Activation::build(
            gpu,
            kind,
            shape,
            ActivationVersion::default(),
            Passes::Inference,
        )
        .await
    }

    /// `version`'s kernels where it has them for `kind` (see [`Activation::version`]).
    pub async fn with_version(
        gpu: &Gpu,
        kind: ActivationKind,
        shape: &[usize],
        version: ActivationVersion,
    ) -> Result<Activation> {
        Activation::build(gpu, kind, shape, version, Passes::Training).await
    }

    async fn build(
        gpu: &Gpu,
        kind: ActivationKind,
        shape: &[usize],
        version: ActivationVersion,
        passes: Passes,
    ) -> Result<Activation> {
        let len: usize = shape.iter().product();
        if len == 0 {
            return Err(Error::InvalidConfig {
                op: kind.name().into(),
                message: format!("empty shape {shape:?}"),
            });
        }
        let name = kind.name();
        let version = match kind {
            ActivationKind::Elu { .. } => version,
            _ => ActivationVersion::V1,
        };
        let (fwd, bwd): (&'static str, &'static str) = match kind {
            ActivationKind::Elu { .. } if version == ActivationVersion::V2 => {
                ("elu_forward_v2", "elu_backward_v2")
            }
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
                    uniform: Some(&Params::LAYOUT),
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
            version,
            shape: shape.to_vec(),
            forward: kernel(fwd, &[UNIFORM, X, Y]).await?,
            backward: backward_part(passes, || kernel(bwd, &[UNIFORM, saved, DY, DX])).await?,
            params: gpu.uniform_buffer(
                &format!("{name}.params"),
                &Params {
                    len: len as u32,
                    alpha,
                },
            ),
        })
    }

    pub fn kind(&self) -> ActivationKind {
        self.kind
    }

    /// The version whose kernels run: v1 for ReLU and sigmoid whatever was asked.
    pub fn version(&self) -> ActivationVersion {
        self.version
    }

    /// Invocations for `len` elements.
    fn invocations(&self, len: usize) -> usize {
        match self.version {
            ActivationVersion::V1 => len,
            ActivationVersion::V2 => len.div_ceil(4),
        }
    }

    /// y = f(x).
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
        let op = format!("{}.forward", self.kind.name());
        x.expect_shape(&op, &self.shape)?;
        y.expect_shape(&op, &self.shape)?;
        self.forward.dispatch(
            gpu,
            &[self.params.as_entire_binding(), x.binding(), y.binding()],
            gpu.grid(self.invocations(x.len()), WG),
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
        built(&self.backward, &op)?.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                saved.binding(),
                dy.binding(),
                dx.binding(),
            ],
            gpu.grid(self.invocations(dx.len()), WG),
        )
    }
}
