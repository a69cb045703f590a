//! 2-D convolution, stride 1, zero padding, square kernel, optional bias.
//! Shader: `shaders/conv2d.wgsl`; reference: `reference/src/conv2d.rs`; tests: `tests/conv2d.rs`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{optional, Dispatch, WG};
use crate::pipeline::{Binding, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// The sizes one convolution is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub h: usize,
    pub w: usize,
    /// Kernel size (k x k).
    pub k: usize,
    /// Zero padding on each side.
    pub pad: usize,
}

impl Conv2dShape {
    /// Output height (stride 1).
    pub fn h_out(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }
    pub fn w_out(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c_in, self.h, self.w]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.k, self.k]
    }
    pub fn output_shape(&self) -> [usize; 4] {
        [self.n, self.c_out, self.h_out(), self.w_out()]
    }
    /// Multiply-adds counted as 2 FLOPs, for one forward pass (backward-input and
    /// backward-weight cost the same).
    pub fn flops(&self) -> u64 {
        2 * (self.n * self.c_out * self.h_out() * self.w_out() * self.c_in * self.k * self.k) as u64
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    c_out: u32,
    h: u32,
    w: u32,
    k: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    has_bias: u32,
    _pad: [u32; 2],
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const WEIGHT: (u32, Binding) = (2, Binding::Read);
const BIAS: (u32, Binding) = (3, Binding::Read);
const Y: (u32, Binding) = (4, Binding::ReadWrite);
const DY: (u32, Binding) = (5, Binding::Read);
const DX: (u32, Binding) = (6, Binding::ReadWrite);
const DWEIGHT: (u32, Binding) = (7, Binding::ReadWrite);
const DBIAS: (u32, Binding) = (8, Binding::ReadWrite);

/// A convolution of one shape, with its four pipelines and shape uniforms.
pub struct Conv2d {
    shape: Conv2dShape,
    with_bias: bool,
    forward: Arc<Kernel>,
    backward_input: Arc<Kernel>,
    backward_weight: Arc<Kernel>,
    backward_bias: Arc<Kernel>,
    params: wgpu::Buffer,
}

impl Conv2d {
    pub async fn new(gpu: &Gpu, shape: Conv2dShape, with_bias: bool) -> Result<Conv2d> {
        let s = shape;
        if s.n == 0 || s.c_in == 0 || s.c_out == 0 || s.h == 0 || s.w == 0 || s.k == 0 {
            return Err(Error::InvalidConfig {
                op: "conv2d".into(),
                message: format!("every size must be positive, got {s:?}"),
            });
        }
        if s.k > s.h + 2 * s.pad || s.k > s.w + 2 * s.pad {
            return Err(Error::InvalidConfig {
                op: "conv2d".into(),
                message: format!(
                    "a {k}x{k} kernel does not fit a {h}x{w} input with padding {pad}",
                    k = s.k,
                    h = s.h,
                    w = s.w,
                    pad = s.pad
                ),
            });
        }
        let kernel = |entry, bindings: &'static [(u32, Binding)]| {
            gpu.kernel(KernelDesc {
                shader: "conv2d",
                entry,
                bindings,
                constants: &[("WG", WG as f64)],
            })
        };
        let params = Params {
            n: s.n as u32,
            c_in: s.c_in as u32,
            c_out: s.c_out as u32,
            h: s.h as u32,
            w: s.w as u32,
            k: s.k as u32,
            pad: s.pad as u32,
            h_out: s.h_out() as u32,
            w_out: s.w_out() as u32,
            has_bias: with_bias as u32,
            _pad: [0; 2],
        };
        Ok(Conv2d {
            shape,
            with_bias,
            forward: kernel("forward", &[UNIFORM, X, WEIGHT, BIAS, Y]).await?,
            backward_input: kernel("backward_input", &[UNIFORM, DY, WEIGHT, DX]).await?,
            backward_weight: kernel("backward_weight", &[UNIFORM, DY, X, DWEIGHT]).await?,
            backward_bias: kernel("backward_bias", &[UNIFORM, DY, DBIAS]).await?,
            params: gpu.uniform_buffer("conv2d.params", &params),
        })
    }

    pub fn shape(&self) -> &Conv2dShape {
        &self.shape
    }

    /// y = conv(x, weight) + bias.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<Dispatch> {
        let s = &self.shape;
        x.expect_shape("conv2d.forward", &s.input_shape())?;
        weight.expect_shape("conv2d.forward", &s.weight_shape())?;
        self.check_bias("conv2d.forward", bias)?;
        y.expect_shape("conv2d.forward", &s.output_shape())?;
        let grid = gpu.grid(y.len(), WG);
        self.forward.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                x.binding(),
                weight.binding(),
                optional(gpu, bias),
                y.binding(),
            ],
            grid,
        )
    }

    /// dx = conv_transpose(dy, weight).
    pub fn backward_input(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        weight: &Tensor,
        dx: &Tensor,
    ) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("conv2d.backward_input", &s.output_shape())?;
        weight.expect_shape("conv2d.backward_input", &s.weight_shape())?;
        dx.expect_shape("conv2d.backward_input", &s.input_shape())?;
        let grid = gpu.grid(dx.len(), WG);
        self.backward_input.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                weight.binding(),
                dx.binding(),
            ],
            grid,
        )
    }

    /// dweight = sum over the batch and positions of dy x shifted x (overwrites, does not add).
    pub fn backward_weight(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        x: &Tensor,
        dweight: &Tensor,
    ) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("conv2d.backward_weight", &s.output_shape())?;
        x.expect_shape("conv2d.backward_weight", &s.input_shape())?;
        dweight.expect_shape("conv2d.backward_weight", &s.weight_shape())?;
        let grid = gpu.grid(dweight.len(), WG);
        self.backward_weight.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                x.binding(),
                dweight.binding(),
            ],
            grid,
        )
    }

    /// dbias = sum of dy over the batch and positions (overwrites).
    pub fn backward_bias(&self, gpu: &Gpu, dy: &Tensor, dbias: &Tensor) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("conv2d.backward_bias", &s.output_shape())?;
        self.check_bias("conv2d.backward_bias", Some(dbias))?;
        let grid = gpu.grid(s.c_out, WG);
        self.backward_bias.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                dbias.binding(),
            ],
            grid,
        )
    }

    fn check_bias(&self, op: &str, bias: Option<&Tensor>) -> Result<()> {
        match (bias, self.with_bias) {
            (Some(b), true) => b.expect_shape(op, &[self.shape.c_out]),
            (None, false) => Ok(()),
            (Some(b), false) => Err(Error::InvalidConfig {
                op: op.into(),
                message: format!(
                    "bias `{}` given to a convolution built without bias",
                    b.name()
                ),
            }),
            (None, true) => Err(Error::InvalidConfig {
                op: op.into(),
                message: "the convolution was built with a bias but none was given".into(),
            }),
        }
    }
}
