//! BatchNorm2d with PyTorch's semantics (eps 1e-5, momentum 0.1) on `[N, C, H, W]`, per channel
//! over its `M = N H W` values: training normalises with the batch's mean and biased variance and
//! moves the running statistics (with the unbiased variance); evaluation normalises with the
//! running statistics. Between each stage's conv and its ELU under `--norm batch`.
//! Shader: `shaders/batchnorm2d.wgsl`; reference: `reference/src/batchnorm2d.rs`;
//! tests: `tests/batchnorm2d.rs`; derivation: `docs/kernels/batchnorm2d.md`.
//!
//! Dispatches, in order:
//! - training forward (5): `partial_sum`, `finish_mean`, `partial_dev`, `finish_var` (also moves
//!   the running statistics), `normalize`;
//! - evaluation forward (2): `eval_stats` (the running statistics into the op's eval stats),
//!   `normalize`;
//! - backward (3): `backward_partial`, `backward_finish` (writes dgamma, dbeta), `backward_input`.
//!
//! Every per-channel sum is a fixed-order two-pass blocked reduction through the `part_a` /
//! `part_b` partials, allocated here once: no atomics, the same bits on every run. The
//! `*_v2` entry points (vec4 views) serve shapes whose planes are a multiple of 4 values.
//!
//! Saved by the training forward for the backward: `stats [4, C]` (the mean's f32 part hi,
//! biased variance, 1 / sqrt(var + eps), the mean's remainder lo: the mean is hi + lo, see the
//! shader). The backward reads what the last training forward of this instance
//! saved, so record it after that forward, with the same `x` and `gamma`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{backward_part, built, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// PyTorch's default `eps`.
pub const EPS: f64 = 1e-5;
/// PyTorch's default `momentum`: the weight of the new batch in the running statistics.
pub const MOMENTUM: f64 = 0.1;
/// Values one invocation of a partial pass sums (the shader's `RUN_LEN`): runs lie inside one
/// (n, c) plane, so no invocation divides per element to find its channel; 1024 gives 32,768
/// invocations at the first stage's 64 x 32 x 128 x 128 and keeps the second pass short
/// (N * ceil(H W / 1024) partials per channel).
pub const RUN_LEN: usize = 1024;
/// Values per block of the blocked summation (the shader's `BLOCK`): a run's error passes
/// through at most BLOCK + RUN_LEN / BLOCK additions (64), a channel's partials' through
/// BLOCK + partials / BLOCK.
pub const BLOCK: usize = 32;

/// The sizes one batch norm is built for: input `[n, c, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNorm2dShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl BatchNorm2dShape {
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    /// gamma, beta, the running statistics and their gradients: `[c]`.
    pub fn channel_shape(&self) -> [usize; 1] {
        [self.c]
    }
    /// Values per channel, `n h w`.
    pub fn count(&self) -> usize {
        self.n * self.h * self.w
    }
    /// Runs of at most [`RUN_LEN`] values per plane.
    pub fn runs(&self) -> usize {
        (self.h * self.w).div_ceil(RUN_LEN)
    }
    /// Partial sums per channel (the second pass's length).
    pub fn partials(&self) -> usize {
        self.n * self.runs()
    }
    /// Additions an f32 rounding error passes through on its way into a channel's sum, at
    /// most: inside a block, the blocks of a run, inside a block of partials, the blocks of
    /// partials (v2's vec4 blocks: BLOCK / 4 lane additions and 2 pairwise ones). The depth that
    /// error bounds of the sums scale with.
    pub fn sum_depth(&self) -> usize {
        let plane = self.h * self.w;
        let run = plane.min(RUN_LEN);
        let inner = if BatchNorm2dVersion::for_shape(self) == BatchNorm2dVersion::V2 {
            BLOCK / 4 + 2
        } else {
            BLOCK
        };
        inner.min(run)
            + run.div_ceil(BLOCK)
            + BLOCK.min(self.partials())
            + self.partials().div_ceil(BLOCK)
    }
    /// Bytes the training forward moves through its big tensors (x read three times, y written).
    pub fn forward_bytes(&self) -> u64 {
        4 * 4 * (self.n * self.c * self.h * self.w) as u64
    }
    /// Bytes the backward moves through its big tensors (x and dy read twice, dx written).
    pub fn backward_bytes(&self) -> u64 {
        5 * 4 * (self.n * self.c * self.h * self.w) as u64
    }
}

/// gamma and beta (`stages.{i}.bn.weight`, `.bias`), or their gradients, each `[C]`.
#[derive(Clone, Copy, Debug)]
pub struct BnAffine<'a> {
    pub weight: &'a Tensor,
    pub bias: &'a Tensor,
}

/// The running statistics (`stages.{i}.bn.running_mean`, `.running_var`), each `[C]`.
#[derive(Clone, Copy, Debug)]
pub struct BnRunning<'a> {
    pub mean: &'a Tensor,
    pub var: &'a Tensor,
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        n: u32,
        c: u32,
        hw: u32,
        runs: u32,
        count: f32,
        eps: f32,
        momentum: f32,
        unbias: f32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const X4: (u32, Binding) = (2, Binding::Read);
const PART_A_OUT: (u32, Binding) = (3, Binding::ReadWrite);
const PART_B_OUT: (u32, Binding) = (4, Binding::ReadWrite);
const PART_A: (u32, Binding) = (5, Binding::Read);
const PART_B: (u32, Binding) = (6, Binding::Read);
const STATS_OUT: (u32, Binding) = (7, Binding::ReadWrite);
const STATS: (u32, Binding) = (8, Binding::Read);
const RUNNING_MEAN: (u32, Binding) = (9, Binding::ReadWrite);
const RUNNING_VAR: (u32, Binding) = (10, Binding::ReadWrite);
const GAMMA: (u32, Binding) = (11, Binding::Read);
const BETA: (u32, Binding) = (12, Binding::Read);
const Y: (u32, Binding) = (13, Binding::ReadWrite);
const Y4: (u32, Binding) = (14, Binding::ReadWrite);
const DY: (u32, Binding) = (15, Binding::Read);
const DY4: (u32, Binding) = (16, Binding::Read);
const DGAMMA: (u32, Binding) = (17, Binding::ReadWrite);
const DBETA: (u32, Binding) = (18, Binding::ReadWrite);
const COEF_OUT: (u32, Binding) = (19, Binding::ReadWrite);
const COEF: (u32, Binding) = (20, Binding::Read);
const DX: (u32, Binding) = (21, Binding::ReadWrite);
const DX4: (u32, Binding) = (22, Binding::ReadWrite);

/// Which kernels a [`BatchNorm2d`] runs, chosen by its shape ([`BatchNorm2dVersion::for_shape`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchNorm2dVersion {
    /// One value per step of every loop (any shape).
    V1,
    /// `partial_sum_v2`, `partial_dev_v2`, `normalize_v2`, `backward_partial_v2`,
    /// `backward_input_v2`: the five passes over the big tensors read and write them as vec4,
    /// for planes (H*W) that are a multiple of 4; the other passes are v1's.
    V2,
}

impl BatchNorm2dVersion {
    /// V2 where every plane starts on a vec4 (H*W a multiple of 4), V1 otherwise.
    pub fn for_shape(shape: &BatchNorm2dShape) -> BatchNorm2dVersion {
        if (shape.h * shape.w).is_multiple_of(4) {
            BatchNorm2dVersion::V2
        } else {
            BatchNorm2dVersion::V1
        }
    }
}

/// A batch norm of one shape: pipelines, shape uniform, saved statistics and scratch.
pub struct BatchNorm2d {
    shape: BatchNorm2dShape,
    version: BatchNorm2dVersion,
    normalize: Arc<Kernel>,
    eval_stats: Arc<Kernel>,
    /// `None` for a batch norm built for inference.
    train: Option<Training>,
    params: wgpu::Buffer,
    eval_stats_t: Tensor,
}

/// The training forward and the backward: their pipelines, saved statistics and scratch.
struct Training {
    partial_sum: Arc<Kernel>,
    finish_mean: Arc<Kernel>,
    partial_dev: Arc<Kernel>,
    finish_var: Arc<Kernel>,
    backward_partial: Arc<Kernel>,
    backward_finish: Arc<Kernel>,
    backward_input: Arc<Kernel>,
    part_a: Tensor,
    part_b: Tensor,
    stats: Tensor,
    coef: Tensor,
}

impl BatchNorm2d {
    /// Builds the op. Training needs at least two values per channel (an unbiased variance of
    /// one value does not exist; PyTorch refuses it too): `n h w >= 2`.
    pub async fn new(gpu: &Gpu, shape: BatchNorm2dShape) -> Result<BatchNorm2d> {
        BatchNorm2d::build(gpu, shape, Passes::Training).await
    }

    /// The evaluation forward alone (an inference network's): no training forward, no
    /// backward, none of their statistics or scratch.
    pub async fn forward_only(gpu: &Gpu, shape: BatchNorm2dShape) -> Result<BatchNorm2d> {
        BatchNorm2d::build(gpu, shape, Passes::Inference).await
    }

    async fn build(gpu: &Gpu, shape: BatchNorm2dShape, passes: Passes) -> Result<BatchNorm2d> {
        let s = shape;
        let invalid = |message: String| Error::InvalidConfig {
            op: "batchnorm2d".into(),
            message,
        };
        if s.n == 0 || s.c == 0 || s.h == 0 || s.w == 0 {
            return Err(invalid(format!("every size must be positive, got {s:?}")));
        }
        if passes == Passes::Training && s.count() < 2 {
            return Err(invalid(format!(
                "{s:?} has one value per channel: batch statistics need at least two"
            )));
        }
        if s.n * s.c * s.h * s.w > u32::MAX as usize {
            return Err(invalid(format!("{s:?} has more than 2^32 - 1 values")));
        }
        let constants: &[(&str, f64)] = &[
            ("WG", WG as f64),
            ("RUN_LEN", RUN_LEN as f64),
            ("BLOCK", BLOCK as f64),
        ];
        let kernel = |entry, bindings: &'static [(u32, Binding)]| {
            gpu.kernel(KernelDesc {
                shader: "batchnorm2d",
                uniform: Some(&Params::LAYOUT),
                entry,
                bindings,
                constants,
            })
        };
        let version = BatchNorm2dVersion::for_shape(&s);
        let v2 = version == BatchNorm2dVersion::V2;
        let normalize = if v2 {
            kernel("normalize_v2", &[UNIFORM, X4, STATS, GAMMA, BETA, Y4]).await?
        } else {
            kernel("normalize", &[UNIFORM, X, STATS, GAMMA, BETA, Y]).await?
        };
        let partials = s.c * s.partials();
        let train = backward_part(passes, || async {
            let (partial_sum, partial_dev, backward_partial, backward_input) = if v2 {
                (
                    kernel("partial_sum_v2", &[UNIFORM, X4, PART_A_OUT]).await?,
                    kernel(
                        "partial_dev_v2",
                        &[UNIFORM, X4, STATS, PART_A_OUT, PART_B_OUT],
                    )
                    .await?,
                    kernel(
                        "backward_partial_v2",
                        &[UNIFORM, X4, DY4, STATS, PART_A_OUT, PART_B_OUT],
                    )
                    .await?,
                    kernel(
                        "backward_input_v2",
                        &[UNIFORM, X4, DY4, STATS, GAMMA, COEF, DX4],
                    )
                    .await?,
                )
            } else {
                (
                    kernel("partial_sum", &[UNIFORM, X, PART_A_OUT]).await?,
                    kernel("partial_dev", &[UNIFORM, X, STATS, PART_A_OUT, PART_B_OUT]).await?,
                    kernel(
                        "backward_partial",
                        &[UNIFORM, X, DY, STATS, PART_A_OUT, PART_B_OUT],
                    )
                    .await?,
                    kernel("backward_input", &[UNIFORM, X, DY, STATS, GAMMA, COEF, DX]).await?,
                )
            };
            Ok(Training {
                partial_sum,
                finish_mean: kernel("finish_mean", &[UNIFORM, PART_A, STATS_OUT]).await?,
                partial_dev,
                finish_var: kernel(
                    "finish_var",
                    &[
                        UNIFORM,
                        PART_A,
                        PART_B,
                        STATS_OUT,
                        RUNNING_MEAN,
                        RUNNING_VAR,
                    ],
                )
                .await?,
                backward_partial,
                backward_finish: kernel(
                    "backward_finish",
                    &[UNIFORM, PART_A, PART_B, DGAMMA, DBETA, COEF_OUT],
                )
                .await?,
                backward_input,
                part_a: gpu.zeros("batchnorm2d.part_a", &[partials])?,
                part_b: gpu.zeros("batchnorm2d.part_b", &[partials])?,
                stats: gpu.zeros("batchnorm2d.stats", &[4, s.c])?,
                coef: gpu.zeros("batchnorm2d.coef", &[2, s.c])?,
            })
        })
        .await?;
        let m = s.count() as f64;
        let params = Params {
            n: s.n as u32,
            c: s.c as u32,
            hw: (s.h * s.w) as u32,
            runs: s.runs() as u32,
            count: m as f32,
            eps: EPS as f32,
            momentum: MOMENTUM as f32,
            unbias: (m / (m - 1.0)) as f32,
        };
        Ok(BatchNorm2d {
            shape,
            version,
            normalize,
            eval_stats: kernel(
                "eval_stats",
                &[UNIFORM, RUNNING_MEAN, RUNNING_VAR, STATS_OUT],
            )
            .await?,
            train,
            params: gpu.uniform_buffer("batchnorm2d.params", &params),
            eval_stats_t: gpu.zeros("batchnorm2d.eval_stats", &[4, s.c])?,
        })
    }

    pub fn shape(&self) -> &BatchNorm2dShape {
        &self.shape
    }

    /// The version whose kernels run, chosen by the shape.
    pub fn version(&self) -> BatchNorm2dVersion {
        self.version
    }

    /// Saved: `[4, C]`, the last training forward's batch mean hi, biased variance,
    /// 1 / sqrt(var + eps) and the mean's remainder lo (the mean is hi + lo); `None` for a
    /// batch norm built for inference.
    pub fn stats(&self) -> Option<&Tensor> {
        self.train.as_ref().map(|t| &t.stats)
    }

    /// `[4, C]`: the running mean, variance, 1 / sqrt(var + eps) and 0 that the last evaluation
    /// forward normalised with.
    pub fn eval_stats(&self) -> &Tensor {
        &self.eval_stats_t
    }

    /// Bytes of the op's own tensors (saved statistics and scratch), for the memory plan.
    pub fn scratch_bytes(&self) -> u64 {
        let train = self.train.as_ref().map_or(0, |t| {
            t.part_a.len() + t.part_b.len() + t.stats.len() + t.coef.len()
        });
        4 * (train + self.eval_stats_t.len()) as u64
    }

    fn check(&self, op: &str, t: &[(&Tensor, &[usize])]) -> Result<()> {
        t.iter().try_for_each(|(t, s)| t.expect_shape(op, s))
    }

    fn big(&self) -> usize {
        let s = &self.shape;
        let len = s.n * s.c * s.h * s.w;
        if self.version == BatchNorm2dVersion::V2 {
            len / 4
        } else {
            len
        }
    }

    /// Training mode: `y` from the batch's statistics, which are saved for the backward; the
    /// running statistics move (they are read and rewritten in place). `y` must not alias `x`.
    pub fn forward_train(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        affine: &BnAffine<'_>,
        running: &BnRunning<'_>,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        const OP: &str = "batchnorm2d.forward_train";
        let s = &self.shape;
        let (full, ch) = (s.input_shape(), s.channel_shape());
        self.check(
            OP,
            &[
                (x, &full),
                (affine.weight, &ch),
                (affine.bias, &ch),
                (running.mean, &ch),
                (running.var, &ch),
                (y, &full),
            ],
        )?;
        let u = || self.params.as_entire_binding();
        let partials = gpu.grid(s.c * s.partials(), WG);
        let channels = gpu.grid(s.c, WG);
        let t = built(&self.train, OP)?;
        Ok(vec![
            t.partial_sum
                .dispatch(gpu, &[u(), x.binding(), t.part_a.binding()], partials)?,
            t.finish_mean
                .dispatch(gpu, &[u(), t.part_a.binding(), t.stats.binding()], channels)?,
            t.partial_dev.dispatch(
                gpu,
                &[
                    u(),
                    x.binding(),
                    t.stats.binding(),
                    t.part_a.binding(),
                    t.part_b.binding(),
                ],
                partials,
            )?,
            t.finish_var.dispatch(
                gpu,
                &[
                    u(),
                    t.part_a.binding(),
                    t.part_b.binding(),
                    t.stats.binding(),
                    running.mean.binding(),
                    running.var.binding(),
                ],
                channels,
            )?,
            self.normalize_dispatch(gpu, x, &t.stats, affine, y)?,
        ])
    }

    /// Evaluation mode: `y` from the running statistics (which stay as they are).
    pub fn forward_eval(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        affine: &BnAffine<'_>,
        running: &BnRunning<'_>,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        const OP: &str = "batchnorm2d.forward_eval";
        let s = &self.shape;
        let (full, ch) = (s.input_shape(), s.channel_shape());
        self.check(
            OP,
            &[
                (x, &full),
                (affine.weight, &ch),
                (affine.bias, &ch),
                (running.mean, &ch),
                (running.var, &ch),
                (y, &full),
            ],
        )?;
        Ok(vec![
            self.eval_stats.dispatch(
                gpu,
                &[
                    self.params.as_entire_binding(),
                    running.mean.binding(),
                    running.var.binding(),
                    self.eval_stats_t.binding(),
                ],
                gpu.grid(s.c, WG),
            )?,
            self.normalize_dispatch(gpu, x, &self.eval_stats_t, affine, y)?,
        ])
    }

    fn normalize_dispatch(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        stats: &Tensor,
        affine: &BnAffine<'_>,
        y: &Tensor,
    ) -> Result<Dispatch> {
        self.normalize.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                x.binding(),
                stats.binding(),
                affine.weight.binding(),
                affine.bias.binding(),
                y.binding(),
            ],
            gpu.grid(self.big(), WG),
        )
    }

    /// Gradients of the training-mode forward given `dy`: overwrites `dx` and `grads` (dgamma,
    /// dbeta). Reads the statistics the last training forward saved; `x` and `gamma` must be
    /// that forward's. `dx` must not alias `dy`.
    pub fn backward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        gamma: &Tensor,
        dy: &Tensor,
        dx: &Tensor,
        grads: &BnAffine<'_>,
    ) -> Result<Vec<Dispatch>> {
        const OP: &str = "batchnorm2d.backward";
        let s = &self.shape;
        let (full, ch) = (s.input_shape(), s.channel_shape());
        self.check(
            OP,
            &[
                (x, &full),
                (gamma, &ch),
                (dy, &full),
                (dx, &full),
                (grads.weight, &ch),
                (grads.bias, &ch),
            ],
        )?;
        let u = || self.params.as_entire_binding();
        let t = built(&self.train, OP)?;
        Ok(vec![
            t.backward_partial.dispatch(
                gpu,
                &[
                    u(),
                    x.binding(),
                    dy.binding(),
                    t.stats.binding(),
                    t.part_a.binding(),
                    t.part_b.binding(),
                ],
                gpu.grid(s.c * s.partials(), WG),
            )?,
            t.backward_finish.dispatch(
                gpu,
                &[
                    u(),
                    t.part_a.binding(),
                    t.part_b.binding(),
                    grads.weight.binding(),
                    grads.bias.binding(),
                    t.coef.binding(),
                ],
                gpu.grid(s.c, WG),
            )?,
            t.backward_input.dispatch(
                gpu,
                &[
                    u(),
                    x.binding(),
                    dy.binding(),
                    t.stats.binding(),
                    gamma.binding(),
                    t.coef.binding(),
                    dx.binding(),
                ],
                gpu.grid(self.big(), WG),
            )?,
        ])
    }
}
