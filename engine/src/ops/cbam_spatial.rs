//! CBAM spatial gate (spec: "CBAM spatial gate") on F' `[N, C, H, W]`:
//! `s = concat([max over C, mean over C])` `[N, 2, H, W]`, `z = conv7x7(s) + bias` (2 -> 1,
//! padding 3), `M_s = sigmoid(z)`, `F'' = M_s * F'`.
//! Shader: `shaders/cbam_spatial.wgsl` (pooling, gating and their backward); the convolution
//! is [`Conv2d`]'s. Reference: `reference/src/cbam_spatial.rs`; tests: `tests/cbam_spatial.rs`.
//!
//! Forward dispatches, in order:
//! 1. `cbam_spatial.wgsl:pool`: reads F' once, writes `pooled` (max, mean) and `argmax`;
//! 2. conv2d's forward (the device's kernel set: `forward_v2`; also with the gpu set, whose
//!    64-row tiles would be 63/64 padding for one output channel): `pooled` -> `z`;
//! 3. `cbam_spatial.wgsl:gate`: sigmoid and scaling in one pass, writes F'' and saves `m_s`.
//!
//! Backward dispatches, in order (every gradient overwrites):
//! 1. `cbam_spatial.wgsl:backward_gate`: `dz = (sum_c dF'' F') M_s (1 - M_s)`;
//! 2. conv2d's backward_input: `dz` -> `ds`;
//! 3. conv2d's weight gradient, `dz`, `pooled` -> dweight `[1, 2, 7, 7]`: with the cpu kernels
//!    `backward_weight_rows_v2` (one output channel: 7/8 of v2's 8-channel block would be
//!    padding), split over chunks of rows, then `backward_weight_reduce`;
//! 4. conv2d's bias gradient: `dz` -> dbias `[1]` (v4: split, then `backward_bias_reduce`);
//! 5. `cbam_spatial.wgsl:backward_input`: `dF' = dF'' M_s + (c == argmax) ds_max + ds_mean / C`.
//!
//! Saved between forward and backward (allocated here, one set per gate): `pooled`, `argmax`,
//! `m_s`, plus the caller's F' (the backward reads it again). `z`, `dz` and `ds` are scratch.
//!
//! [`CbamSpatial::with_residual`] builds the `--gate residual` form, `F'' = F' + M_s * F'`: the
//! factor in `gate` and `backward_input` is 1 + M_s (a flag in the uniform); the gate's own
//! gradient is the same.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::conv2d::{Conv2d, Conv2dShape, Conv2dSums};
use crate::ops::{backward_part, blocked_levels, built, Levels, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// Side of the gate's square convolution kernel.
pub const KERNEL: usize = 7;
/// Zero padding of the gate's convolution (keeps H x W).
pub const PAD: usize = 3;
/// Channels handled by one invocation of `gate` and `backward_input` (the shader's `CH`): on
/// lavapipe one channel per invocation ran those two passes about 10x slower than the pooling
/// pass over the same bytes (index division and exp per element); 16 amortizes them and still
/// leaves N H W C / 16 invocations (16,384 at the last stage) for a larger device.
pub const CHANNEL_BLOCK: usize = 16;

/// The sizes one gate is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbamSpatialShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl CbamSpatialShape {
    /// F', F'' and their gradients.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    /// The pooled map `s` (max first, then mean) and its gradient.
    pub fn pooled_shape(&self) -> [usize; 4] {
        [self.n, 2, self.h, self.w]
    }
    /// `z`, `M_s` and `dz`.
    pub fn map_shape(&self) -> [usize; 4] {
        [self.n, 1, self.h, self.w]
    }
    /// The first maximal channel of each position.
    pub fn argmax_shape(&self) -> [usize; 3] {
        [self.n, self.h, self.w]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [1, 2, KERNEL, KERNEL]
    }
    pub fn bias_shape(&self) -> [usize; 1] {
        [1]
    }
    /// The convolution `s [N, 2, H, W] -> z [N, 1, H, W]`.
    pub fn conv(&self) -> Conv2dShape {
        Conv2dShape {
            n: self.n,
            c_in: 2,
            c_out: 1,
            h: self.h,
            w: self.w,
            k: KERNEL,
            pad: PAD,
        }
    }
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        n: u32,
        c: u32,
        hw: u32,
        residual: u32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const POOLED: (u32, Binding) = (2, Binding::ReadWrite);
const ARGMAX_OUT: (u32, Binding) = (3, Binding::ReadWrite);
const Z: (u32, Binding) = (4, Binding::Read);
const M_OUT: (u32, Binding) = (5, Binding::ReadWrite);
const Y: (u32, Binding) = (6, Binding::ReadWrite);
const DY: (u32, Binding) = (7, Binding::Read);
const M: (u32, Binding) = (8, Binding::Read);
const DZ: (u32, Binding) = (9, Binding::ReadWrite);
const DS: (u32, Binding) = (10, Binding::Read);
const ARGMAX: (u32, Binding) = (11, Binding::Read);
const DX: (u32, Binding) = (12, Binding::ReadWrite);

/// How the gate sums (see [`Levels`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CbamSpatialSums {
    /// The mean over channels (then one division), 16 channels at a time (`CB` in the shader).
    pub pool: Levels,
    /// sum over channels of dy x (then times M_s (1 - M_s)), likewise.
    pub backward_gate: Levels,
    /// The 7x7 convolution's passes.
    pub conv: Conv2dSums,
}

/// A spatial gate of one shape: its pipelines, its convolution, and the tensors it saves.
pub struct CbamSpatial {
    shape: CbamSpatialShape,
    residual: bool,
    conv: Conv2d,
    pool: Arc<Kernel>,
    gate: Arc<Kernel>,
    backward_gate: Option<Arc<Kernel>>,
    backward_input: Option<Arc<Kernel>>,
    params: wgpu::Buffer,
    pooled: Tensor,
    argmax: Tensor,
    z: Tensor,
    m_s: Tensor,
    dz: Option<Tensor>,
    ds: Option<Tensor>,
}

impl CbamSpatial {
    /// The gate of equation 2, `F'' = M_s * F'`.
    pub async fn new(gpu: &Gpu, shape: CbamSpatialShape) -> Result<CbamSpatial> {
        CbamSpatial::with_residual(gpu, shape, false).await
    }

    /// With `residual`, the residual form `F'' = F' + M_s * F'`; otherwise [`CbamSpatial::new`]'s.
    pub async fn with_residual(
        gpu: &Gpu,
        shape: CbamSpatialShape,
        residual: bool,
    ) -> Result<CbamSpatial> {
        CbamSpatial::build(gpu, shape, residual, Passes::Training).await
    }

    /// [`CbamSpatial::with_residual`] without the backward passes or their scratch (an
    /// inference network's).
    pub async fn forward_only(
        gpu: &Gpu,
        shape: CbamSpatialShape,
        residual: bool,
    ) -> Result<CbamSpatial> {
        CbamSpatial::build(gpu, shape, residual, Passes::Inference).await
    }

    async fn build(
        gpu: &Gpu,
        shape: CbamSpatialShape,
        residual: bool,
        passes: Passes,
    ) -> Result<CbamSpatial> {
        let s = shape;
        if s.n == 0 || s.c == 0 || s.h == 0 || s.w == 0 {
            return Err(Error::InvalidConfig {
                op: "cbam_spatial".into(),
                message: format!("every size must be positive, got {s:?}"),
            });
        }
        let per_position: &[(&str, f64)] = &[("WG", WG as f64)];
        let per_block: &[(&str, f64)] = &[("WG", WG as f64), ("CH", CHANNEL_BLOCK as f64)];
        let kernel = |entry, bindings: &'static [(u32, Binding)], constants| {
            gpu.kernel(KernelDesc {
                shader: "cbam_spatial",
                uniform: Some(&Params::LAYOUT),
                entry,
                bindings,
                constants,
            })
        };
        let params = Params {
            n: s.n as u32,
            c: s.c as u32,
            hw: (s.h * s.w) as u32,
            residual: residual as u32,
        };
        Ok(CbamSpatial {
            shape,
            residual,
            conv: match passes {
                Passes::Training => Conv2d::new(gpu, s.conv(), true).await?,
                Passes::Inference => Conv2d::forward_only(gpu, s.conv(), true).await?,
            },
            pool: kernel("pool", &[UNIFORM, X, POOLED, ARGMAX_OUT], per_position).await?,
            gate: kernel("gate", &[UNIFORM, Z, X, M_OUT, Y], per_block).await?,
            backward_gate: backward_part(passes, || {
                kernel("backward_gate", &[UNIFORM, DY, X, M, DZ], per_position)
            })
            .await?,
            backward_input: backward_part(passes, || {
                kernel(
                    "backward_input",
                    &[UNIFORM, DY, M, DS, ARGMAX, DX],
                    per_block,
                )
            })
            .await?,
            params: gpu.uniform_buffer("cbam_spatial.params", &params),
            pooled: gpu.zeros("cbam_spatial.pooled", &s.pooled_shape())?,
            // u32 data in a 4-byte-per-element buffer (`array<u32>` in the shader).
            argmax: gpu.zeros("cbam_spatial.argmax", &s.argmax_shape())?,
            z: gpu.zeros("cbam_spatial.z", &s.map_shape())?,
            m_s: gpu.zeros("cbam_spatial.m_s", &s.map_shape())?,
            dz: backward_part(passes, || async {
                gpu.zeros("cbam_spatial.dz", &s.map_shape())
            })
            .await?,
            ds: backward_part(passes, || async {
                gpu.zeros("cbam_spatial.ds", &s.pooled_shape())
            })
            .await?,
        })
    }

    pub fn shape(&self) -> &CbamSpatialShape {
        &self.shape
    }

    /// Whether this is the residual form `F'' = F' + M_s * F'`.
    pub fn residual(&self) -> bool {
        self.residual
    }

    /// How each of the gate's sums is added up.
    pub fn sums(&self) -> CbamSpatialSums {
        CbamSpatialSums {
            pool: blocked_levels(self.shape.c, 16),
            backward_gate: blocked_levels(self.shape.c, 16),
            conv: self.conv.sums().clone(),
        }
    }

    /// The gate's convolution (for its kernel version and chunking).
    pub fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// Invocations of `gate` and `backward_input`: one per position and block of channels.
    fn block_threads(&self) -> usize {
        let s = &self.shape;
        s.n * s.h * s.w * s.c.div_ceil(CHANNEL_BLOCK)
    }

    /// Saved: `[N, 2, H, W]`, max over C then mean over C of the last forward's F'.
    pub fn pooled(&self) -> &Tensor {
        &self.pooled
    }
    /// Saved: `[N, H, W]` of u32 (read back as f32 bits): the first channel holding the max.
    pub fn argmax(&self) -> &Tensor {
        &self.argmax
    }
    /// Saved: `[N, 1, H, W]`, the attention map M_s of the last forward.
    pub fn m_s(&self) -> &Tensor {
        &self.m_s
    }
    /// Scratch: `[N, 1, H, W]`, the convolution's output before the sigmoid.
    pub fn z(&self) -> &Tensor {
        &self.z
    }
    /// Scratch: `[N, 1, H, W]`, the gradient at `z` of the last backward (`None` for a gate
    /// built for inference).
    pub fn dz(&self) -> Option<&Tensor> {
        self.dz.as_ref()
    }
    /// Scratch: `[N, 2, H, W]`, the gradient at `pooled` of the last backward (`None` for a
    /// gate built for inference).
    pub fn ds(&self) -> Option<&Tensor> {
        self.ds.as_ref()
    }

    /// F'' = sigmoid(conv7x7([max_c x, mean_c x]) + bias) * x; the dispatches in order
    /// (pool, conv forward, gate). `y` must not alias `x`.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let s = &self.shape;
        let op = "cbam_spatial.forward";
        x.expect_shape(op, &s.input_shape())?;
        weight.expect_shape(op, &s.weight_shape())?;
        bias.expect_shape(op, &s.bias_shape())?;
        y.expect_shape(op, &s.input_shape())?;
        let u = self.params.as_entire_binding();
        let mut out = vec![self.pool.dispatch(
            gpu,
            &[
                u.clone(),
                x.binding(),
                self.pooled.binding(),
                self.argmax.binding(),
            ],
            gpu.grid(self.argmax.len(), WG),
        )?];
        out.extend(
            self.conv
                .forward(gpu, &self.pooled, weight, Some(bias), &self.z)?,
        );
        out.push(self.gate.dispatch(
            gpu,
            &[
                u,
                self.z.binding(),
                x.binding(),
                self.m_s.binding(),
                y.binding(),
            ],
            gpu.grid(self.block_threads(), WG),
        )?);
        Ok(out)
    }

    /// Given dy = dF'' and the forward's `x` = F', writes dx = dF', dweight and dbias
    /// (overwriting them) using the saved `pooled`, `argmax` and `m_s`; the dispatches in order
    /// (backward_gate, conv backward_input, backward_weight, backward_bias, backward_input).
    /// `dx` must not alias `dy`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        dy: &Tensor,
        weight: &Tensor,
        dx: &Tensor,
        dweight: &Tensor,
        dbias: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let s = &self.shape;
        let op = "cbam_spatial.backward";
        x.expect_shape(op, &s.input_shape())?;
        dy.expect_shape(op, &s.input_shape())?;
        weight.expect_shape(op, &s.weight_shape())?;
        dx.expect_shape(op, &s.input_shape())?;
        dweight.expect_shape(op, &s.weight_shape())?;
        dbias.expect_shape(op, &s.bias_shape())?;
        let u = self.params.as_entire_binding();
        let (dz, ds) = (built(&self.dz, op)?, built(&self.ds, op)?);
        let mut out = vec![built(&self.backward_gate, op)?.dispatch(
            gpu,
            &[
                u.clone(),
                dy.binding(),
                x.binding(),
                self.m_s.binding(),
                dz.binding(),
            ],
            gpu.grid(dz.len(), WG),
        )?];
        out.extend(self.conv.backward_input(gpu, dz, weight, ds)?);
        out.extend(self.conv.backward_weight(gpu, dz, &self.pooled, dweight)?);
        out.extend(self.conv.backward_bias(gpu, dz, dbias)?);
        out.push(built(&self.backward_input, op)?.dispatch(
            gpu,
            &[
                u,
                dy.binding(),
                self.m_s.binding(),
                ds.binding(),
                self.argmax.binding(),
                dx.binding(),
            ],
            gpu.grid(self.block_threads(), WG),
        )?);
        Ok(out)
    }
}
