//! Max pool 2x2 stride 2 (floor for odd sizes), gradient to the first maximum of each window.
//! Shader: `shaders/maxpool2d.wgsl`; reference: `reference/src/maxpool2d.rs`; tests:
//! `tests/maxpool2d.rs`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{backward_part, built, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// The input sizes a pool is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl MaxPool2dShape {
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h / 2, self.w / 2]
    }
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        n: u32,
        c: u32,
        h: u32,
        w: u32,
        h_out: u32,
        w_out: u32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const Y: (u32, Binding) = (2, Binding::ReadWrite);
const DY: (u32, Binding) = (3, Binding::Read);
const DX: (u32, Binding) = (4, Binding::ReadWrite);

/// Which kernels a [`MaxPool2d`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MaxPool2dVersion {
    /// `forward`, `backward`: the backward has one invocation per input element, each finding
    /// its window's argmax (the readable one).
    V1,
    /// `forward_v2`, `backward_v2`: the window's values named (no array), and the backward has
    /// one invocation per window, its argmax found once and its four gradients written
    /// together: the step's four pool backwards at batch 64 x 48x48 took 1,318 ms with v1 and
    /// 74 ms with v2 on lavapipe (`fer-cbam profile`, README "Performance").
    #[default]
    V2,
}

pub struct MaxPool2d {
    shape: MaxPool2dShape,
    version: MaxPool2dVersion,
    forward: Arc<Kernel>,
    backward: Option<Arc<Kernel>>,
    params: wgpu::Buffer,
}

impl MaxPool2d {
    /// The pool with the default (fastest) kernels, [`MaxPool2dVersion::V2`].
    pub async fn new(gpu: &Gpu, shape: MaxPool2dShape) -> Result<MaxPool2d> {
        MaxPool2d::with_version(gpu, shape, MaxPool2dVersion::default()).await
    }

    /// [`MaxPool2d::new`] without the backward pass (an inference network's).
    pub async fn forward_only(gpu: &Gpu, shape: MaxPool2dShape) -> Result<MaxPool2d> {
        MaxPool2d::build(gpu, shape, MaxPool2dVersion::default(), Passes::Inference).await
    }

    pub async fn with_version(
        gpu: &Gpu,
        shape: MaxPool2dShape,
        version: MaxPool2dVersion,
    ) -> Result<MaxPool2d> {
        MaxPool2d::build(gpu, shape, version, Passes::Training).await
    }

    async fn build(
        gpu: &Gpu,
        shape: MaxPool2dShape,
        version: MaxPool2dVersion,
        passes: Passes,
    ) -> Result<MaxPool2d> {
        let s = shape;
        if s.n == 0 || s.c == 0 || s.h < 2 || s.w < 2 {
            return Err(Error::InvalidConfig {
                op: "maxpool2d".into(),
                message: format!("a 2x2 pool needs a non-empty input of at least 2x2, got {s:?}"),
            });
        }
        let kernel = |entry, bindings: &'static [(u32, Binding)]| {
            gpu.kernel(KernelDesc {
                shader: "maxpool2d",
                uniform: Some(&Params::LAYOUT),
                entry,
                bindings,
                constants: &[("WG", WG as f64)],
            })
        };
        let [_, _, h_out, w_out] = s.output_shape();
        Ok(MaxPool2d {
            shape,
            version,
            forward: match version {
                MaxPool2dVersion::V1 => kernel("forward", &[UNIFORM, X, Y]).await?,
                MaxPool2dVersion::V2 => kernel("forward_v2", &[UNIFORM, X, Y]).await?,
            },
            backward: backward_part(passes, || {
                kernel(
                    match version {
                        MaxPool2dVersion::V1 => "backward",
                        MaxPool2dVersion::V2 => "backward_v2",
                    },
                    &[UNIFORM, X, DY, DX],
                )
            })
            .await?,
            params: gpu.uniform_buffer(
                "maxpool2d.params",
                &Params {
                    n: s.n as u32,
                    c: s.c as u32,
                    h: s.h as u32,
                    w: s.w as u32,
                    h_out: h_out as u32,
                    w_out: w_out as u32,
                },
            ),
        })
    }

    pub fn shape(&self) -> &MaxPool2dShape {
        &self.shape
    }

    pub fn version(&self) -> MaxPool2dVersion {
        self.version
    }

    /// y = the maximum of each 2x2 window of x.
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
        x.expect_shape("maxpool2d.forward", &self.shape.input_shape())?;
        y.expect_shape("maxpool2d.forward", &self.shape.output_shape())?;
        self.forward.dispatch(
            gpu,
            &[self.params.as_entire_binding(), x.binding(), y.binding()],
            gpu.grid(y.len(), WG),
        )
    }

    /// dx = dy routed to each window's first maximum of `x` (the forward input); 0 elsewhere.
    pub fn backward(&self, gpu: &Gpu, x: &Tensor, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
        x.expect_shape("maxpool2d.backward", &self.shape.input_shape())?;
        dy.expect_shape("maxpool2d.backward", &self.shape.output_shape())?;
        dx.expect_shape("maxpool2d.backward", &self.shape.input_shape())?;
        built(&self.backward, "maxpool2d.backward")?.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                x.binding(),
                dy.binding(),
                dx.binding(),
            ],
            match self.version {
                MaxPool2dVersion::V1 => gpu.grid(dx.len(), WG),
                // One invocation per 2x2 cell, the dropped row/column's included.
                MaxPool2dVersion::V2 => {
                    let s = &self.shape;
                    gpu.grid(s.n * s.c * s.h.div_ceil(2) * s.w.div_ceil(2), WG)
                }
            },
        )
    }
}
