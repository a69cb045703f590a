//! CBAM channel gate (Woo et al., ECCV 2018): `M = sigmoid(mlp(avg_hw F) + mlp(max_hw F))`,
//! `F' = M * F`, with the shared `mlp(v) = fc2(relu(fc1(v)))` of hidden width `max(1, C / 16)`.
//! Shader: `shaders/cbam_channel.wgsl`; reference: `reference/src/cbam_channel.rs`;
//! tests: `tests/cbam_channel.rs`.
//!
//! The wrapper owns the small tensors the forward saves for the backward and the backward's
//! scratch (all `[2, N, C]` or smaller), so one `CbamChannel` serves one gate of one network:
//! - saved: `pooled [2, N, C]` (avg then max), `argmax [N, C]` (u32, first row-major index of each
//!   plane's maximum), `hidden [2, N, HID]` (relu(fc1(v)) per branch), `gate [N, C]` (M);
//! - scratch: `dz [N, C]`, `dhidden [2, N, HID]`, `dpooled [2, N, C]`.
//!
//! The backward reads what the last forward of this instance saved, so record it after that
//! forward, with the same input `x` and parameters.
//!
//! [`CbamChannel::with_residual`] builds the `--gate residual` form, `F' = F + M * F`: the
//! factor in `scale` and `backward_input` is 1 + M (a flag in the uniform); the gate's own
//! gradient is the same.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{backward_part, blocked_levels, built, Levels, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// The sizes one channel gate is built for: input `[n, c, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CbamChannelShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl CbamChannelShape {
    /// Hidden width of the shared MLP: reduction 16, at least 1.
    pub fn hidden(&self) -> usize {
        (self.c / 16).max(1)
    }
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    pub fn fc1_weight_shape(&self) -> [usize; 2] {
        [self.hidden(), self.c]
    }
    pub fn fc1_bias_shape(&self) -> [usize; 1] {
        [self.hidden()]
    }
    pub fn fc2_weight_shape(&self) -> [usize; 2] {
        [self.c, self.hidden()]
    }
    pub fn fc2_bias_shape(&self) -> [usize; 1] {
        [self.c]
    }
    /// The gate M: `[n, c]`.
    pub fn gate_shape(&self) -> [usize; 2] {
        [self.n, self.c]
    }
    /// Bytes the forward moves through its big tensors (F read twice, F' written once).
    pub fn forward_bytes(&self) -> u64 {
        3 * 4 * (self.n * self.c * self.h * self.w) as u64
    }
    /// Bytes the backward moves through its big tensors (F and dF' read, dF' again, dF written).
    pub fn backward_bytes(&self) -> u64 {
        4 * 4 * (self.n * self.c * self.h * self.w) as u64
    }
}

/// The shared MLP's four tensors: the parameters, or (in [`CbamChannel::backward`]) their
/// gradients. Shapes: fc1_weight `[HID, C]`, fc1_bias `[HID]`, fc2_weight `[C, HID]`,
/// fc2_bias `[C]`.
#[derive(Clone, Copy, Debug)]
pub struct ChannelMlp<'a> {
    pub fc1_weight: &'a Tensor,
    pub fc1_bias: &'a Tensor,
    pub fc2_weight: &'a Tensor,
    pub fc2_bias: &'a Tensor,
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        n: u32,
        c: u32,
        hid: u32,
        hw: u32,
        residual: u32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const FC1_WEIGHT: (u32, Binding) = (2, Binding::Read);
const FC1_BIAS: (u32, Binding) = (3, Binding::Read);
const FC2_WEIGHT: (u32, Binding) = (4, Binding::Read);
const FC2_BIAS: (u32, Binding) = (5, Binding::Read);
const Y: (u32, Binding) = (6, Binding::ReadWrite);
const POOLED_OUT: (u32, Binding) = (7, Binding::ReadWrite);
const ARGMAX_OUT: (u32, Binding) = (8, Binding::ReadWrite);
const POOLED: (u32, Binding) = (9, Binding::Read);
const ARGMAX: (u32, Binding) = (10, Binding::Read);
const HIDDEN_OUT: (u32, Binding) = (11, Binding::ReadWrite);
const HIDDEN: (u32, Binding) = (12, Binding::Read);
const GATE_OUT: (u32, Binding) = (13, Binding::ReadWrite);
const GATE: (u32, Binding) = (14, Binding::Read);
const DY: (u32, Binding) = (15, Binding::Read);
const DZ_OUT: (u32, Binding) = (16, Binding::ReadWrite);
const DZ: (u32, Binding) = (17, Binding::Read);
const DHIDDEN_OUT: (u32, Binding) = (18, Binding::ReadWrite);
const DHIDDEN: (u32, Binding) = (19, Binding::Read);
const DPOOLED_OUT: (u32, Binding) = (20, Binding::ReadWrite);
const DPOOLED: (u32, Binding) = (21, Binding::Read);
const DX: (u32, Binding) = (22, Binding::ReadWrite);
const DFC1_WEIGHT: (u32, Binding) = (23, Binding::ReadWrite);
const DFC1_BIAS: (u32, Binding) = (24, Binding::ReadWrite);
const DFC2_WEIGHT: (u32, Binding) = (25, Binding::ReadWrite);
const DFC2_BIAS: (u32, Binding) = (26, Binding::ReadWrite);
const X4: (u32, Binding) = (27, Binding::Read);
const Y4: (u32, Binding) = (28, Binding::ReadWrite);
const DY4: (u32, Binding) = (29, Binding::Read);
const DX4: (u32, Binding) = (30, Binding::ReadWrite);

/// How the gate sums its two plane-long reductions (see [`Levels`]); every other sum is over at
/// most C + 1 or 2 N terms, in plain order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CbamChannelSums {
    /// The mean of each plane (then one division).
    pub pool: Levels,
    /// dL/dM = sum over the plane of dy x (then times M (1 - M)).
    pub backward_gate: Levels,
}

/// `BLOCK` of cbam_channel.wgsl: elements per partial sum of the plane sums.
const PLANE_BLOCK: usize = 256;

/// Which kernels a [`CbamChannel`] runs, chosen by its shape ([`CbamChannelVersion::for_shape`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CbamChannelVersion {
    /// One element per step of every loop (any shape).
    V1,
    /// `pool_v2`, `scale_v2`, `backward_gate_v2`, `backward_input_v2`: the four plane-sized
    /// passes read and write the big tensors as vec4, for planes (H*W) that are a multiple of 4;
    /// the MLP's passes are v1's.
    V2,
}

impl CbamChannelVersion {
    /// V2 where every plane starts on a vec4 (H*W a multiple of 4), V1 otherwise.
    pub fn for_shape(shape: &CbamChannelShape) -> CbamChannelVersion {
        if (shape.h * shape.w).is_multiple_of(4) {
            CbamChannelVersion::V2
        } else {
            CbamChannelVersion::V1
        }
    }
}

/// A channel gate of one shape: pipelines, shape uniform, saved tensors and backward scratch.
pub struct CbamChannel {
    shape: CbamChannelShape,
    residual: bool,
    version: CbamChannelVersion,
    pool: Arc<Kernel>,
    hidden_layer: Arc<Kernel>,
    gate_layer: Arc<Kernel>,
    scale: Arc<Kernel>,
    /// `None` for a gate built for inference.
    backward: Option<Backward>,
    params: wgpu::Buffer,
    pooled: Tensor,
    argmax: Tensor,
    hidden: Tensor,
    gate: Tensor,
}

/// The backward's pipelines and scratch.
struct Backward {
    gate: Arc<Kernel>,
    hidden: Arc<Kernel>,
    pooled: Arc<Kernel>,
    fc2: Arc<Kernel>,
    fc1: Arc<Kernel>,
    input: Arc<Kernel>,
    dz: Tensor,
    dhidden: Tensor,
    dpooled: Tensor,
}

impl CbamChannel {
    /// The gate of equation 1, `F' = M * F`.
    pub async fn new(gpu: &Gpu, shape: CbamChannelShape) -> Result<CbamChannel> {
        CbamChannel::with_residual(gpu, shape, false).await
    }

    /// With `residual`, the residual form `F' = F + M * F`; otherwise [`CbamChannel::new`]'s.
    pub async fn with_residual(
        gpu: &Gpu,
        shape: CbamChannelShape,
        residual: bool,
    ) -> Result<CbamChannel> {
        CbamChannel::build(gpu, shape, residual, Passes::Training).await
    }

    /// [`CbamChannel::with_residual`] without the backward passes or their scratch (an
    /// inference network's).
    pub async fn forward_only(
        gpu: &Gpu,
        shape: CbamChannelShape,
        residual: bool,
    ) -> Result<CbamChannel> {
        CbamChannel::build(gpu, shape, residual, Passes::Inference).await
    }

    async fn build(
        gpu: &Gpu,
        shape: CbamChannelShape,
        residual: bool,
        passes: Passes,
    ) -> Result<CbamChannel> {
        let s = shape;
        if s.n == 0 || s.c == 0 || s.h == 0 || s.w == 0 {
            return Err(Error::InvalidConfig {
                op: "cbam_channel".into(),
                message: format!("every size must be positive, got {s:?}"),
            });
        }
        let kernel = |entry, bindings: &'static [(u32, Binding)]| {
            gpu.kernel(KernelDesc {
                shader: "cbam_channel",
                uniform: Some(&Params::LAYOUT),
                entry,
                bindings,
                constants: &[("WG", WG as f64)],
            })
        };
        let version = CbamChannelVersion::for_shape(&s);
        let v2 = version == CbamChannelVersion::V2;
        let (pool, scale) = if v2 {
            (
                kernel("pool_v2", &[UNIFORM, X4, POOLED_OUT, ARGMAX_OUT]).await?,
                kernel("scale_v2", &[UNIFORM, X4, GATE, Y4]).await?,
            )
        } else {
            (
                kernel("pool", &[UNIFORM, X, POOLED_OUT, ARGMAX_OUT]).await?,
                kernel("scale", &[UNIFORM, X, GATE, Y]).await?,
            )
        };
        let hid = s.hidden();
        let backward = backward_part(passes, || async {
            let (gate, input) = if v2 {
                (
                    kernel("backward_gate_v2", &[UNIFORM, DY4, X4, GATE, DZ_OUT]).await?,
                    kernel(
                        "backward_input_v2",
                        &[UNIFORM, DY4, GATE, DPOOLED, ARGMAX, DX4],
                    )
                    .await?,
                )
            } else {
                (
                    kernel("backward_gate", &[UNIFORM, DY, X, GATE, DZ_OUT]).await?,
                    kernel("backward_input", &[UNIFORM, DY, GATE, DPOOLED, ARGMAX, DX]).await?,
                )
            };
            Ok(Backward {
                gate,
                hidden: kernel(
                    "backward_hidden",
                    &[UNIFORM, DZ, FC2_WEIGHT, HIDDEN, DHIDDEN_OUT],
                )
                .await?,
                pooled: kernel(
                    "backward_pooled",
                    &[UNIFORM, DHIDDEN, FC1_WEIGHT, DPOOLED_OUT],
                )
                .await?,
                fc2: kernel(
                    "backward_fc2",
                    &[UNIFORM, DZ, HIDDEN, DFC2_WEIGHT, DFC2_BIAS],
                )
                .await?,
                fc1: kernel(
                    "backward_fc1",
                    &[UNIFORM, DHIDDEN, POOLED, DFC1_WEIGHT, DFC1_BIAS],
                )
                .await?,
                input,
                dz: gpu.zeros("cbam_channel.dz", &[s.n, s.c])?,
                dhidden: gpu.zeros("cbam_channel.dhidden", &[2, s.n, hid])?,
                dpooled: gpu.zeros("cbam_channel.dpooled", &[2, s.n, s.c])?,
            })
        })
        .await?;
        let params = Params {
            n: s.n as u32,
            c: s.c as u32,
            hid: hid as u32,
            hw: (s.h * s.w) as u32,
            residual: residual as u32,
        };
        Ok(CbamChannel {
            shape,
            residual,
            version,
            pool,
            hidden_layer: kernel(
                "hidden_layer",
                &[UNIFORM, POOLED, FC1_WEIGHT, FC1_BIAS, HIDDEN_OUT],
            )
            .await?,
            gate_layer: kernel(
                "gate_layer",
                &[UNIFORM, HIDDEN, FC2_WEIGHT, FC2_BIAS, GATE_OUT],
            )
            .await?,
            scale,
            backward,
            params: gpu.uniform_buffer("cbam_channel.params", &params),
            pooled: gpu.zeros("cbam_channel.pooled", &[2, s.n, s.c])?,
            // u32 data in an f32-sized tensor (4 bytes per element); the shader reads array<u32>.
            argmax: gpu.zeros("cbam_channel.argmax", &[s.n, s.c])?,
            hidden: gpu.zeros("cbam_channel.hidden", &[2, s.n, hid])?,
            gate: gpu.zeros("cbam_channel.gate", &[s.n, s.c])?,
        })
    }

    pub fn shape(&self) -> &CbamChannelShape {
        &self.shape
    }

    /// The version whose kernels run, chosen by the shape.
    pub fn version(&self) -> CbamChannelVersion {
        self.version
    }

    /// Invocations of the plane-sized passes over `len` elements (v2: one per vec4).
    fn big(&self, len: usize) -> usize {
        match self.version {
            CbamChannelVersion::V1 => len,
            CbamChannelVersion::V2 => len / 4,
        }
    }

    /// Whether this is the residual form `F' = F + M * F`.
    pub fn residual(&self) -> bool {
        self.residual
    }

    /// How the plane sums are added up: in blocks of 256 elements (v2: each lane
    /// in blocks of 64, the four lanes added as (x + y) + (z + w) at the end).
    pub fn sums(&self) -> CbamChannelSums {
        let hw = self.shape.h * self.shape.w;
        let levels = if self.version == CbamChannelVersion::V2 {
            let mut l = blocked_levels(hw / 4, PLANE_BLOCK / 4);
            l.extend([2, 2]);
            l
        } else {
            blocked_levels(hw, PLANE_BLOCK)
        };
        CbamChannelSums {
            pool: levels.clone(),
            backward_gate: levels,
        }
    }

    /// Scratch `[N, C]`: dL/dz at the gate's pre-activation z = mlp(a) + mlp(m), from the last
    /// backward (for inspection and tests); `None` for a gate built for inference.
    pub fn dz(&self) -> Option<&Tensor> {
        self.backward.as_ref().map(|b| &b.dz)
    }

    /// The gate M `[N, C]` written by the forward (for inspection and attention maps).
    pub fn gate(&self) -> &Tensor {
        &self.gate
    }
    /// `[2, N, C]`: the plane means (branch 0), then the plane maxima (branch 1).
    pub fn pooled(&self) -> &Tensor {
        &self.pooled
    }
    /// `[N, C]` of u32 (read back as f32 bits): the first row-major index of each plane's maximum.
    pub fn argmax(&self) -> &Tensor {
        &self.argmax
    }
    /// `[2, N, HID]`: relu(fc1(v)) for the avg (0) and max (1) branches.
    pub fn hidden(&self) -> &Tensor {
        &self.hidden
    }

    /// `y = M * x`, in order: pool (means, maxima, argmax in one read of x), hidden layer of both
    /// branches, gate M, scale. Fills this instance's saved tensors.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        mlp: &ChannelMlp<'_>,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        const OP: &str = "cbam_channel.forward";
        let s = &self.shape;
        x.expect_shape(OP, &s.input_shape())?;
        self.check_mlp(OP, mlp)?;
        y.expect_shape(OP, &s.input_shape())?;
        let u = || self.params.as_entire_binding();
        let planes = s.n * s.c;
        let big = self.big(x.len());
        Ok(vec![
            self.pool.dispatch(
                gpu,
                &[
                    u(),
                    x.binding(),
                    self.pooled.binding(),
                    self.argmax.binding(),
                ],
                gpu.grid(planes, WG),
            )?,
            self.hidden_layer.dispatch(
                gpu,
                &[
                    u(),
                    self.pooled.binding(),
                    mlp.fc1_weight.binding(),
                    mlp.fc1_bias.binding(),
                    self.hidden.binding(),
                ],
                gpu.grid(self.hidden.len(), WG),
            )?,
            self.gate_layer.dispatch(
                gpu,
                &[
                    u(),
                    self.hidden.binding(),
                    mlp.fc2_weight.binding(),
                    mlp.fc2_bias.binding(),
                    self.gate.binding(),
                ],
                gpu.grid(planes, WG),
            )?,
            self.scale.dispatch(
                gpu,
                &[u(), x.binding(), self.gate.binding(), y.binding()],
                gpu.grid(big, WG),
            )?,
        ])
    }

    /// Gradients of `y = M * x` given `dy`, overwriting `dx` and the four tensors of `grads`
    /// (which must not alias `dy`). In order: dz (gate), dhidden (both branches), dpooled,
    /// fc2 gradients, fc1 gradients, dx. Reads the tensors saved by this instance's forward,
    /// which must have run on the same `x` and `mlp`.
    pub fn backward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        mlp: &ChannelMlp<'_>,
        dy: &Tensor,
        dx: &Tensor,
        grads: &ChannelMlp<'_>,
    ) -> Result<Vec<Dispatch>> {
        const OP: &str = "cbam_channel.backward";
        let s = &self.shape;
        x.expect_shape(OP, &s.input_shape())?;
        self.check_mlp(OP, mlp)?;
        dy.expect_shape(OP, &s.input_shape())?;
        dx.expect_shape(OP, &s.input_shape())?;
        self.check_mlp(OP, grads)?;
        let u = || self.params.as_entire_binding();
        let planes = s.n * s.c;
        let hid = s.hidden();
        let big = self.big(x.len());
        let b = built(&self.backward, OP)?;
        Ok(vec![
            b.gate.dispatch(
                gpu,
                &[
                    u(),
                    dy.binding(),
                    x.binding(),
                    self.gate.binding(),
                    b.dz.binding(),
                ],
                gpu.grid(planes, WG),
            )?,
            b.hidden.dispatch(
                gpu,
                &[
                    u(),
                    b.dz.binding(),
                    mlp.fc2_weight.binding(),
                    self.hidden.binding(),
                    b.dhidden.binding(),
                ],
                gpu.grid(b.dhidden.len(), WG),
            )?,
            b.pooled.dispatch(
                gpu,
                &[
                    u(),
                    b.dhidden.binding(),
                    mlp.fc1_weight.binding(),
                    b.dpooled.binding(),
                ],
                gpu.grid(b.dpooled.len(), WG),
            )?,
            b.fc2.dispatch(
                gpu,
                &[
                    u(),
                    b.dz.binding(),
                    self.hidden.binding(),
                    grads.fc2_weight.binding(),
                    grads.fc2_bias.binding(),
                ],
                gpu.grid(s.c * (hid + 1), WG),
            )?,
            b.fc1.dispatch(
                gpu,
                &[
                    u(),
                    b.dhidden.binding(),
                    self.pooled.binding(),
                    grads.fc1_weight.binding(),
                    grads.fc1_bias.binding(),
                ],
                gpu.grid(hid * (s.c + 1), WG),
            )?,
            b.input.dispatch(
                gpu,
                &[
                    u(),
                    dy.binding(),
                    self.gate.binding(),
                    b.dpooled.binding(),
                    self.argmax.binding(),
                    dx.binding(),
                ],
                gpu.grid(big, WG),
            )?,
        ])
    }

    fn check_mlp(&self, op: &str, mlp: &ChannelMlp<'_>) -> Result<()> {
        let s = &self.shape;
        mlp.fc1_weight.expect_shape(op, &s.fc1_weight_shape())?;
        mlp.fc1_bias.expect_shape(op, &s.fc1_bias_shape())?;
        mlp.fc2_weight.expect_shape(op, &s.fc2_weight_shape())?;
        mlp.fc2_bias.expect_shape(op, &s.fc2_bias_shape())
    }
}
