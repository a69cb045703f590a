//! Fully connected layer, PyTorch's layout: weight `[out, in]`, bias `[out]`, `y = x W^T + b`.
//! Shader: `shaders/linear.wgsl`; reference: `reference/src/linear.rs`; tests: `tests/linear.rs`.
//!
//! Forward: `forward` (reads x, weight, bias; writes y).
//! Backward, in any order (each reads only dy and a forward input; none depends on another):
//! `backward_input` (dx = dy W), `backward_weight` (dW = dy^T x), `backward_bias` (db = sum_n dy).
//! Saved for the backward: the forward input x (for dW) and the weight (for dx).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{
    backward_part, blocked_levels, built, check_optional, optional, Levels, Passes, WG,
};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// The sizes one linear layer is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    /// Batch size.
    pub n: usize,
    pub in_features: usize,
    pub out_features: usize,
}

impl LinearShape {
    pub fn input_shape(&self) -> [usize; 2] {
        [self.n, self.in_features]
    }
    pub fn weight_shape(&self) -> [usize; 2] {
        [self.out_features, self.in_features]
    }
    pub fn output_shape(&self) -> [usize; 2] {
        [self.n, self.out_features]
    }
    /// Multiply-adds counted as 2 FLOPs, for one forward pass (backward-input and
    /// backward-weight cost the same).
    pub fn flops(&self) -> u64 {
        2 * (self.n * self.in_features * self.out_features) as u64
    }
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        n: u32,
        in_f: u32,
        out_f: u32,
        has_bias: u32,
    }
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

/// How each pass sums one output (see [`Levels`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinearSums {
    /// Over the inputs, then the bias.
    pub forward: Levels,
    /// Over the outputs.
    pub backward_input: Levels,
    /// Over the batch, 16 rows at a time (`NB` in linear.wgsl).
    pub backward_weight: Levels,
    pub backward_bias: Levels,
}

/// A linear layer of one shape, with its four pipelines and shape uniform.
pub struct Linear {
    shape: LinearShape,
    with_bias: bool,
    forward: Arc<Kernel>,
    backward_input: Option<Arc<Kernel>>,
    backward_weight: Option<Arc<Kernel>>,
    backward_bias: Option<Arc<Kernel>>,
    params: wgpu::Buffer,
}

impl Linear {
    pub async fn new(gpu: &Gpu, shape: LinearShape, with_bias: bool) -> Result<Linear> {
        Linear::build(gpu, shape, with_bias, Passes::Training).await
    }

    /// [`Linear::new`] without the backward passes (an inference network's).
    pub async fn forward_only(gpu: &Gpu, shape: LinearShape, with_bias: bool) -> Result<Linear> {
        Linear::build(gpu, shape, with_bias, Passes::Inference).await
    }

    async fn build(
        gpu: &Gpu,
        shape: LinearShape,
        with_bias: bool,
        passes: Passes,
    ) -> Result<Linear> {
        let s = shape;
        if s.n == 0 || s.in_features == 0 || s.out_features == 0 {
            return Err(Error::InvalidConfig {
                op: "linear".into(),
                message: format!("every size must be positive, got {s:?}"),
            });
        }
        let kernel = |entry, bindings: &'static [(u32, Binding)]| {
            gpu.kernel(KernelDesc {
                shader: "linear",
                uniform: Some(&Params::LAYOUT),
                entry,
                bindings,
                constants: &[("WG", WG as f64)],
            })
        };
        let params = Params {
            n: s.n as u32,
            in_f: s.in_features as u32,
            out_f: s.out_features as u32,
            has_bias: with_bias as u32,
        };
        Ok(Linear {
            shape,
            with_bias,
            forward: kernel("forward", &[UNIFORM, X, WEIGHT, BIAS, Y]).await?,
            backward_input: backward_part(passes, || {
                kernel("backward_input", &[UNIFORM, DY, WEIGHT, DX])
            })
            .await?,
            backward_weight: backward_part(passes, || {
                kernel("backward_weight", &[UNIFORM, DY, X, DWEIGHT])
            })
            .await?,
            backward_bias: backward_part(passes, || kernel("backward_bias", &[UNIFORM, DY, DBIAS]))
                .await?,
            params: gpu.uniform_buffer("linear.params", &params),
        })
    }

    pub fn shape(&self) -> &LinearShape {
        &self.shape
    }

    /// How each pass sums one output.
    pub fn sums(&self) -> LinearSums {
        let s = &self.shape;
        LinearSums {
            forward: vec![s.in_features + 1],
            backward_input: vec![s.out_features],
            backward_weight: blocked_levels(s.n, 16),
            backward_bias: blocked_levels(s.n, 16),
        }
    }

    /// y = x weight^T + bias.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<Dispatch> {
        let s = &self.shape;
        x.expect_shape("linear.forward", &s.input_shape())?;
        weight.expect_shape("linear.forward", &s.weight_shape())?;
        self.check_bias("linear.forward", bias)?;
        y.expect_shape("linear.forward", &s.output_shape())?;
        let d = self.forward.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                x.binding(),
                weight.binding(),
                optional(gpu, bias),
                y.binding(),
            ],
            gpu.grid(y.len(), WG),
        )?;
        Ok(d.with_flops(s.flops()))
    }

    /// dx = dy weight (overwrites).
    pub fn backward_input(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        weight: &Tensor,
        dx: &Tensor,
    ) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("linear.backward_input", &s.output_shape())?;
        weight.expect_shape("linear.backward_input", &s.weight_shape())?;
        dx.expect_shape("linear.backward_input", &s.input_shape())?;
        let d = built(&self.backward_input, "linear.backward_input")?.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                weight.binding(),
                dx.binding(),
            ],
            gpu.grid(dx.len(), WG),
        )?;
        Ok(d.with_flops(s.flops()))
    }

    /// dweight = dy^T x, summed over the batch in ascending order (overwrites).
    pub fn backward_weight(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        x: &Tensor,
        dweight: &Tensor,
    ) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("linear.backward_weight", &s.output_shape())?;
        x.expect_shape("linear.backward_weight", &s.input_shape())?;
        dweight.expect_shape("linear.backward_weight", &s.weight_shape())?;
        let d = built(&self.backward_weight, "linear.backward_weight")?.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                x.binding(),
                dweight.binding(),
            ],
            gpu.grid(dweight.len(), WG),
        )?;
        Ok(d.with_flops(s.flops()))
    }

    /// dbias = sum over the batch of dy (overwrites).
    pub fn backward_bias(&self, gpu: &Gpu, dy: &Tensor, dbias: &Tensor) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("linear.backward_bias", &s.output_shape())?;
        self.check_bias("linear.backward_bias", Some(dbias))?;
        let d = built(&self.backward_bias, "linear.backward_bias")?.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                dbias.binding(),
            ],
            gpu.grid(s.out_features, WG),
        )?;
        Ok(d.with_flops((s.n * s.out_features) as u64))
    }

    fn check_bias(&self, op: &str, bias: Option<&Tensor>) -> Result<()> {
        let shape = [self.shape.out_features];
        check_optional(op, "a bias", bias, self.with_bias.then_some(&shape[..]))
    }
}
