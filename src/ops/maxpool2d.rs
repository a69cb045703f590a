//! Max pool 2x2 stride 2 (floor for odd sizes), gradient to the first maximum of each window.
//! Shader: `shaders/maxpool2d.wgsl`; reference: `reference/src/maxpool2d.rs`; tests:
//! `tests/maxpool2d.rs`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{Dispatch, WG};
use crate::pipeline::{Binding, Kernel, KernelDesc};
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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    h_out: u32,
    w_out: u32,
    _pad: [u32; 2],
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const Y: (u32, Binding) = (2, Binding::ReadWrite);
const DY: (u32, Binding) = (3, Binding::Read);
const DX: (u32, Binding) = (4, Binding::ReadWrite);

pub struct MaxPool2d {
    shape: MaxPool2dShape,
    forward: Arc<Kernel>,
    backward: Arc<Kernel>,
    params: wgpu::Buffer,
}

impl MaxPool2d {
    pub async fn new(gpu: &Gpu, shape: MaxPool2dShape) -> Result<MaxPool2d> {
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
                entry,
                bindings,
                constants: &[("WG", WG as f64)],
            })
        };
        let [_, _, h_out, w_out] = s.output_shape();
        Ok(MaxPool2d {
            shape,
            forward: kernel("forward", &[UNIFORM, X, Y]).await?,
            backward: kernel("backward", &[UNIFORM, X, DY, DX]).await?,
            params: gpu.uniform_buffer(
                "maxpool2d.params",
                &Params {
                    n: s.n as u32,
                    c: s.c as u32,
                    h: s.h as u32,
                    w: s.w as u32,
                    h_out: h_out as u32,
                    w_out: w_out as u32,
                    _pad: [0; 2],
                },
            ),
        })
    }

    pub fn shape(&self) -> &MaxPool2dShape {
        &self.shape
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
        self.backward.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                x.binding(),
                dy.binding(),
                dx.binding(),
            ],
            gpu.grid(dx.len(), WG),
        )
    }
}
