//! 2-D convolution, stride 1, zero padding, square kernel, optional bias.
//! Shader: `shaders/conv2d.wgsl`; reference: `reference/src/conv2d.rs`; tests: `tests/conv2d.rs`.
//!
//! Three versions of the kernels live side by side in the shader (see [`Conv2dVersion`]): v1,
//! one output per invocation (the readable one); v2, register-blocked (the cpu kernel set: about
//! 20-25 GFLOP/s on lavapipe at the stage shapes where v1 runs at 2-2.5); v4, workgroup-memory
//! tiles (the gpu set). Which one [`Conv2d::new`] builds follows the device's
//! [`crate::kernels::KernelSet`]. Every sum runs in a fixed order with no atomics
//! (bit-identical reruns).
//!
//! Dispatches per pass: forward (y), backward_input (dx), backward_weight (dweight: one
//! dispatch, or with v2 and v4 a split pass into this convolution's partials buffer and a
//! reduce pass), backward_bias (dbias: likewise for v4), each independent of the others;
//! nothing is saved between passes beyond the caller's x, weight and dy.
//!
//! How each pass adds up one output is in [`Conv2d::sums`]: the lengths of its nested serial
//! loops, which is what its rounding error depends on (see `docs/numerics.md`).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::conv2d_winograd::{self, Winograd};
pub use crate::ops::Levels;
use crate::ops::{built, check_optional, optional, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
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

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
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
        /// Split-K of the weight and bias gradients (v2, v4): chunk c covers the output rows
        /// r = n * h_out + oy in [c * chunk_rows, (c + 1) * chunk_rows); `chunks` of them.
        chunk_rows: u32,
        chunks: u32,
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
const PARTIALS: (u32, Binding) = (9, Binding::Read);

pub use crate::kernels::Conv2dVersion;

impl Conv2dVersion {
    /// The version the device runs: the one `--conv` or `FER_CBAM_CONV` names
    /// ([`crate::kernels::conv_choice`]), else its kernel set's.
    pub fn for_gpu(gpu: &Gpu) -> Conv2dVersion {
        gpu.kernels.conv
    }

    /// The version a convolution of `s` built by [`Conv2d::new`] runs when the device runs
    /// `self`: Winograd (v3, v3f4) only from [`WINOGRAD_MIN_C_IN`] input channels, v2 below
    /// ([`Conv2d::with_version`] runs what it is asked for wherever it can).
    pub fn for_shape(self, s: &Conv2dShape) -> Conv2dVersion {
        match self.winograd_tile() {
            Some(_) if s.c_in < WINOGRAD_MIN_C_IN => Conv2dVersion::V2,
            _ => self,
        }
    }
}

/// Below this many input channels [`Conv2d::new`] runs v2 where v3 was chosen. Winograd's product
/// then has a reduction of a few terms per transformed value while its transforms still touch
/// every pixel (4x the image, twice), and the weight gradient's rows are padded to 8: the first
/// stage's 3 -> 32 at 128x128, batch 64, measured 271 ms forward against v2's 99 and 303 ms
/// for the weight gradient against 240 (`cargo bench --bench conv2d -- b64/stage0`), while from
/// 32 input channels up v3 is the faster.
pub const WINOGRAD_MIN_C_IN: usize = 16;

/// Channels per invocation of the v2 kernels (the `BLOCK_C` override): output channels x 8 columns
/// (forward), input channels x 8 columns (backward_input), input channels x 8 output channels
/// (backward_weight). 16 measured fastest on lavapipe at every stage shape for each pass (about
/// 25, 24, 20 GFLOP/s at stage 1; 8 gave 12-22 and 32 collapsed to ~6, past what Mesa keeps in
/// registers). A pass over fewer channels uses the next power of two.
const FWD_BLOCK_C: u32 = 16;
const BWD_INPUT_BLOCK_C: u32 = 16;
const BWD_WEIGHT_BLOCK_C: u32 = 16;
/// `MAX_C` in the shader: the capacity of the per-invocation sums.
const MAX_BLOCK_C: u32 = 32;
/// `BLOCK_X` in the shader.
const BLOCK_X: usize = 8;
/// `TN` and `TK` of the v4 tiles (columns of a tile, reduction step).
const V4_TN: usize = 64;
const V4_TK: usize = 16;
/// `REDUCE_GROUP` in the shaders (conv2d.wgsl; conv2d_winograd.wgsl takes it as an override):
/// chunks summed in order before their group sum is added.
pub(crate) const REDUCE_GROUP: usize = 32;

/// Terms one chunk of a v2 split gradient sums, about: whole output rows, at least this many
/// positions. Short enough that one accumulator's rounding stays small (the error of a serial
/// f32 sum of same-sign terms grows as the square root of its length, see docs/numerics.md),
/// long enough that writing 8 x 16 partial sums per chunk costs nothing against its 8 x 16 x 256
/// multiply-adds (the reduce pass then reads the partials once: about 1% of a batch-64 step on
/// lavapipe).
const V2_CHUNK_TERMS: usize = 256;
/// The least positions one v4 chunk sums (16 reduction steps of 16): below that a workgroup
/// spends more on staging its tiles than on multiply-adds.
const V4_MIN_CHUNK_TERMS: usize = 256;
/// The most floats one convolution's partials buffer holds (16 MiB): at batch 64 the chunk count
/// of a large weight gradient is lowered (longer chunks) rather than the buffer grown.
pub(crate) const MAX_PARTIALS: usize = 4 << 20;

/// [`Levels`] of each pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conv2dSums {
    /// Over (ci, ky, kx), then the bias.
    pub forward: Levels,
    /// Over (co, ky, kx).
    pub backward_input: Levels,
    /// Over the batch's positions.
    pub backward_weight: Levels,
    pub backward_bias: Levels,
    /// `Some(m)` where forward, backward_input and backward_weight run Winograd's
    /// F(m x m, 3 x 3) (v3): their terms are then those of the transformed domain, whose
    /// magnitudes `fer_cbam_reference::conv2d_winograd::*_abs` gives.
    pub winograd: Option<usize>,
}

/// One pass: its pipeline and the grid it is launched on.
struct Pass {
    kernel: Arc<Kernel>,
    grid: [u32; 3],
}

/// A split-K gradient: the pass that writes each chunk's sums, and, with more than one chunk,
/// the partials buffer it writes and the pass that adds the chunks into the gradient.
struct Split {
    first: Pass,
    reduce: Option<(Pass, Tensor)>,
}

impl Split {
    fn direct(first: Pass) -> Split {
        Split {
            first,
            reduce: None,
        }
    }
}

/// A convolution of one shape, with its pipelines, shape uniform and partials buffers.
pub struct Conv2d {
    shape: Conv2dShape,
    with_bias: bool,
    version: Conv2dVersion,
    passes: Impl,
    sums: Conv2dSums,
    params: wgpu::Buffer,
}

/// The direct kernels (v1, v2, v4), or Winograd's (v3) with v2's bias gradient.
enum Impl {
    Direct {
        forward: Pass,
        /// `None` for a convolution built for inference.
        backward: Option<Backward>,
    },
    Winograd {
        op: Box<Winograd>,
        bias: Option<Split>,
    },
}

/// The three backward passes.
struct Backward {
    input: Pass,
    weight: Split,
    bias: Split,
}

impl Conv2d {
    /// The convolution with the kernels the device runs ([`Conv2dVersion::for_gpu`]) for this
    /// shape ([`Conv2dVersion::for_shape`]).
    pub async fn new(gpu: &Gpu, shape: Conv2dShape, with_bias: bool) -> Result<Conv2d> {
        let version = Conv2dVersion::for_gpu(gpu).for_shape(&shape);
        Conv2d::with_version(gpu, shape, with_bias, version).await
    }

    /// [`Conv2d::new`] without the backward passes (an inference network's).
    pub async fn forward_only(gpu: &Gpu, shape: Conv2dShape, with_bias: bool) -> Result<Conv2d> {
        Conv2d::build(
            gpu,
            shape,
            with_bias,
            Conv2dVersion::for_gpu(gpu).for_shape(&shape),
            Passes::Inference,
        )
        .await
    }

    /// The convolution running `version`'s kernels where they handle the shape; passes that
    /// v2 or v4 cannot run fall back to v1 (see [`Conv2d::version`]).
    pub async fn with_version(
        gpu: &Gpu,
        shape: Conv2dShape,
        with_bias: bool,
        version: Conv2dVersion,
    ) -> Result<Conv2d> {
        Conv2d::build(gpu, shape, with_bias, version, Passes::Training).await
    }

    async fn build(
        gpu: &Gpu,
        shape: Conv2dShape,
        with_bias: bool,
        version: Conv2dVersion,
        passes: Passes,
    ) -> Result<Conv2d> {
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
        let version = match version {
            Conv2dVersion::V1 => Conv2dVersion::V1,
            _ if !v2_fits(gpu, &s) => Conv2dVersion::V1,
            Conv2dVersion::V3 | Conv2dVersion::V3F4 if !conv2d_winograd::supports(&s) => {
                Conv2dVersion::V2
            }
            Conv2dVersion::V4 if !v4_fits(gpu, &s) => Conv2dVersion::V2,
            v => v,
        };
        let chunking = match version {
            Conv2dVersion::V1 => Chunking::one(&s),
            Conv2dVersion::V2 | Conv2dVersion::V3 | Conv2dVersion::V3F4 => Chunking::v2(&s),
            Conv2dVersion::V4 => Chunking::v4(&s, gpu.kernels.target_workgroups as usize),
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
            chunk_rows: chunking.rows as u32,
            chunks: chunking.chunks as u32,
        };
        let (passes_built, sums) = if let Some(tile) = version.winograd_tile() {
            let op = Winograd::new(gpu, s, with_bias, tile, passes).await?;
            let bias = crate::ops::backward_part(passes, || async {
                Ok::<_, Error>(Split::direct(v2_bias(gpu, &s).await?))
            })
            .await?;
            let w = op.sums().clone();
            let sums = Conv2dSums {
                forward: w.forward,
                backward_input: w.backward_input,
                backward_weight: w.backward_weight,
                backward_bias: bias.as_ref().map_or(vec![], |_| v2_bias_levels(&s)),
                winograd: Some(tile),
            };
            (
                Impl::Winograd {
                    op: Box::new(op),
                    bias,
                },
                sums,
            )
        } else {
            match passes {
                Passes::Training => {
                    let built = match version {
                        Conv2dVersion::V1 => v1_passes(gpu, &s).await?,
                        Conv2dVersion::V4 => v4_passes(gpu, &s, &chunking).await?,
                        _ => v2_passes(gpu, &s, &chunking).await?,
                    };
                    let backward = Backward {
                        input: built.backward_input,
                        weight: built.backward_weight,
                        bias: built.backward_bias,
                    };
                    let forward = built.forward;
                    (
                        Impl::Direct {
                            forward,
                            backward: Some(backward),
                        },
                        built.sums,
                    )
                }
                // Only the forward pass and its order of summation: no backward pipelines, no
                // partials buffers.
                Passes::Inference => {
                    let (forward, levels) = match version {
                        Conv2dVersion::V1 => v1_forward(gpu, &s).await?,
                        Conv2dVersion::V4 => v4_forward(gpu, &s).await?,
                        _ => (v2_forward(gpu, &s).await?, v2_forward_levels(&s)),
                    };
                    let sums = Conv2dSums {
                        forward: levels,
                        backward_input: Vec::new(),
                        backward_weight: Vec::new(),
                        backward_bias: Vec::new(),
                        winograd: None,
                    };
                    (
                        Impl::Direct {
                            forward,
                            backward: None,
                        },
                        sums,
                    )
                }
            }
        };
        Ok(Conv2d {
            shape,
            with_bias,
            version,
            passes: passes_built,
            sums,
            params: gpu.uniform_buffer("conv2d.params", &params),
        })
    }

    /// The version whose kernels this convolution runs: v1 where v2 or v4 was asked for but
    /// does not fit the shape (`v2_fits` in the source), v2 where v4 does not (`v4_fits`); and
    /// v2 or v4 also where single passes run another version's kernel (see the variants).
    pub fn version(&self) -> Conv2dVersion {
        self.version
    }

    pub fn shape(&self) -> &Conv2dShape {
        &self.shape
    }

    /// How each pass sums one output (see [`Levels`]).
    pub fn sums(&self) -> &Conv2dSums {
        &self.sums
    }

    /// Chunks of the split weight gradient (1: summed in one pass, no partials).
    pub fn weight_chunks(&self) -> usize {
        let backward = match &self.passes {
            Impl::Winograd { op, .. } => return op.weight_chunks(),
            Impl::Direct {
                backward: Some(b), ..
            } => b,
            Impl::Direct { backward: None, .. } => return 1,
        };
        backward.weight.reduce.as_ref().map_or(1, |(_, t)| {
            t.len() / self.shape.weight_shape().iter().product::<usize>()
        })
    }

    /// The Winograd passes, for v3.
    pub fn winograd(&self) -> Option<&Winograd> {
        match &self.passes {
            Impl::Winograd { op, .. } => Some(op),
            Impl::Direct { .. } => None,
        }
    }

    /// The direct kernels' backward passes (v1, v2, v4).
    fn direct_backward(&self, op: &str) -> Result<&Backward> {
        match &self.passes {
            Impl::Direct { backward, .. } => built(backward, op),
            Impl::Winograd { .. } => unreachable!("{op}: v3 runs its own passes"),
        }
    }

    /// y = conv(x, weight) + bias: one dispatch (v1, v2, v4), or v3's transforms and products.
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let s = &self.shape;
        x.expect_shape("conv2d.forward", &s.input_shape())?;
        weight.expect_shape("conv2d.forward", &s.weight_shape())?;
        self.check_bias("conv2d.forward", bias)?;
        y.expect_shape("conv2d.forward", &s.output_shape())?;
        let forward = match &self.passes {
            Impl::Winograd { op, .. } => return op.forward(gpu, x, weight, bias, y),
            Impl::Direct { forward, .. } => forward,
        };
        let d = forward.kernel.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                x.binding(),
                weight.binding(),
                optional(gpu, bias),
                y.binding(),
            ],
            forward.grid,
        )?;
        Ok(vec![d.with_flops(s.flops())])
    }

    /// dx = conv_transpose(dy, weight).
    pub fn backward_input(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        weight: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let s = &self.shape;
        dy.expect_shape("conv2d.backward_input", &s.output_shape())?;
        weight.expect_shape("conv2d.backward_input", &s.weight_shape())?;
        dx.expect_shape("conv2d.backward_input", &s.input_shape())?;
        if let Impl::Winograd { op, .. } = &self.passes {
            return op.backward_input(gpu, dy, weight, dx);
        }
        let pass = &self.direct_backward("conv2d.backward_input")?.input;
        let d = pass.kernel.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                weight.binding(),
                dx.binding(),
            ],
            pass.grid,
        )?;
        Ok(vec![d.with_flops(s.flops())])
    }

    /// dweight = sum over the batch and positions of dy x shifted x (overwrites, does not add):
    /// the split pass and, where there is more than one chunk, the reduce pass, in order.
    pub fn backward_weight(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        x: &Tensor,
        dweight: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let s = &self.shape;
        dy.expect_shape("conv2d.backward_weight", &s.output_shape())?;
        x.expect_shape("conv2d.backward_weight", &s.input_shape())?;
        dweight.expect_shape("conv2d.backward_weight", &s.weight_shape())?;
        if let Impl::Winograd { op, .. } = &self.passes {
            return op.backward_weight(gpu, dy, x, dweight);
        }
        let u = || self.params.as_entire_binding();
        let split = &self.direct_backward("conv2d.backward_weight")?.weight;
        let out = split.reduce.as_ref().map_or(dweight, |(_, t)| t);
        let first = split.first.kernel.dispatch(
            gpu,
            &[u(), dy.binding(), x.binding(), out.binding()],
            split.first.grid,
        )?;
        let mut ds = vec![first.with_flops(s.flops())];
        if let Some((pass, partials)) = &split.reduce {
            // One addition per partial sum.
            ds.push(
                pass.kernel
                    .dispatch(
                        gpu,
                        &[u(), partials.binding(), dweight.binding()],
                        pass.grid,
                    )?
                    .with_flops(partials.len() as u64),
            );
        }
        Ok(ds)
    }

    /// dbias = sum of dy over the batch and positions (overwrites): one pass, or with v4's
    /// split a split pass and a reduce pass.
    pub fn backward_bias(&self, gpu: &Gpu, dy: &Tensor, dbias: &Tensor) -> Result<Vec<Dispatch>> {
        let s = &self.shape;
        dy.expect_shape("conv2d.backward_bias", &s.output_shape())?;
        self.check_bias("conv2d.backward_bias", Some(dbias))?;
        let u = || self.params.as_entire_binding();
        let split = match &self.passes {
            Impl::Winograd { bias, .. } => built(bias, "conv2d.backward_bias")?,
            Impl::Direct { .. } => &self.direct_backward("conv2d.backward_bias")?.bias,
        };
        let out = split.reduce.as_ref().map_or(dbias, |(_, t)| t);
        let first = split.first.kernel.dispatch(
            gpu,
            &[u(), dy.binding(), out.binding()],
            split.first.grid,
        )?;
        let mut ds = vec![first.with_flops(s.output_shape().iter().product::<usize>() as u64)];
        if let Some((pass, partials)) = &split.reduce {
            ds.push(
                pass.kernel
                    .dispatch(gpu, &[u(), partials.binding(), dbias.binding()], pass.grid)?
                    .with_flops(partials.len() as u64),
            );
        }
        Ok(ds)
    }

    fn check_bias(&self, op: &str, bias: Option<&Tensor>) -> Result<()> {
        let shape = [self.shape.c_out];
        check_optional(op, "a bias", bias, self.with_bias.then_some(&shape[..]))
    }
}

/// The split of the weight and bias gradients: `chunks` chunks of `rows` output rows each (the
/// last one shorter) out of the N * H_out rows.
#[derive(Clone, Copy, Debug)]
struct Chunking {
    rows: usize,
    chunks: usize,
}

impl Chunking {
    fn total_rows(s: &Conv2dShape) -> usize {
        s.n * s.h_out()
    }

    /// All rows in one chunk (v1: no split).
    fn one(s: &Conv2dShape) -> Chunking {
        Chunking {
            rows: Chunking::total_rows(s),
            chunks: 1,
        }
    }

    /// `rows` rows per chunk, then fewer chunks if the partials would pass [`MAX_PARTIALS`].
    fn with_rows(s: &Conv2dShape, rows: usize) -> Chunking {
        let total = Chunking::total_rows(s);
        let weights: usize = s.weight_shape().iter().product();
        let mut rows = rows.clamp(1, total);
        let most = (MAX_PARTIALS / weights).clamp(1, 65_535);
        if total.div_ceil(rows) > most {
            rows = total.div_ceil(most);
        }
        Chunking {
            rows,
            chunks: total.div_ceil(rows),
        }
    }

    /// Chunks of whole rows holding about [`V2_CHUNK_TERMS`] positions.
    fn v2(s: &Conv2dShape) -> Chunking {
        Chunking::with_rows(s, V2_CHUNK_TERMS.div_ceil(s.w_out()))
    }

    /// As many chunks as make the weight gradient's tiles times chunks reach `target`
    /// workgroups, each chunk at least [`V4_MIN_CHUNK_TERMS`] positions.
    fn v4(s: &Conv2dShape, target: usize) -> Chunking {
        let tiles = s.c_out.div_ceil(v4_rows(s.c_out)) * (s.c_in * s.k * s.k).div_ceil(V4_TN);
        let want = target.div_ceil(tiles).max(1);
        let rows = Chunking::total_rows(s)
            .div_ceil(want)
            .max(V4_MIN_CHUNK_TERMS.div_ceil(s.w_out()));
        Chunking::with_rows(s, rows)
    }

    fn reduce_levels(&self) -> Levels {
        reduce_levels(self.chunks)
    }
}

/// The levels of a reduce pass over `chunks` partial sums: the chunks in groups of
/// [`REDUCE_GROUP`], then the groups (none for one chunk).
pub(crate) fn reduce_levels(chunks: usize) -> Levels {
    if chunks <= 1 {
        vec![]
    } else if chunks <= REDUCE_GROUP {
        vec![chunks]
    } else {
        vec![REDUCE_GROUP, chunks.div_ceil(REDUCE_GROUP)]
    }
}

/// Rows of a v4 tile (`TM`) for a row dimension of `rows` channels: 32 when they fit, else 64.
fn v4_rows(rows: usize) -> usize {
    if rows <= 32 {
        32
    } else {
        64
    }
}

/// Every pass of one version, as built.
struct Built {
    forward: Pass,
    backward_input: Pass,
    backward_weight: Split,
    backward_bias: Split,
    sums: Conv2dSums,
}

async fn kernel(
    gpu: &Gpu,
    entry: &'static str,
    bindings: &'static [(u32, Binding)],
    constants: &[(&'static str, f64)],
) -> Result<Arc<Kernel>> {
    gpu.kernel(KernelDesc {
        shader: "conv2d",
        uniform: Some(&Params::LAYOUT),
        entry,
        bindings,
        constants,
    })
    .await
}

const FORWARD_BINDINGS: &[(u32, Binding)] = &[UNIFORM, X, WEIGHT, BIAS, Y];
const BACKWARD_INPUT_BINDINGS: &[(u32, Binding)] = &[UNIFORM, DY, WEIGHT, DX];
const BACKWARD_WEIGHT_BINDINGS: &[(u32, Binding)] = &[UNIFORM, DY, X, DWEIGHT];
const BACKWARD_BIAS_BINDINGS: &[(u32, Binding)] = &[UNIFORM, DY, DBIAS];
const WEIGHT_REDUCE_BINDINGS: &[(u32, Binding)] = &[UNIFORM, PARTIALS, DWEIGHT];
const BIAS_REDUCE_BINDINGS: &[(u32, Binding)] = &[UNIFORM, PARTIALS, DBIAS];

/// The reduce pass of a split gradient of `len` values in `chunks` chunks, with its partials
/// buffer; none with one chunk.
async fn reduce(
    gpu: &Gpu,
    name: &str,
    entry: &'static str,
    bindings: &'static [(u32, Binding)],
    len: usize,
    chunks: usize,
) -> Result<Option<(Pass, Tensor)>> {
    if chunks <= 1 {
        return Ok(None);
    }
    let partials = gpu.zeros(name, &[chunks, len])?;
    let pass = Pass {
        kernel: kernel(gpu, entry, bindings, &[("WG", WG as f64)]).await?,
        grid: gpu.grid(len, WG),
    };
    Ok(Some((pass, partials)))
}

/// v1's forward pass and its levels: one invocation per output element.
async fn v1_forward(gpu: &Gpu, s: &Conv2dShape) -> Result<(Pass, Levels)> {
    let len: usize = s.output_shape().iter().product();
    let pass = Pass {
        kernel: kernel(gpu, "forward", FORWARD_BINDINGS, &[("WG", WG as f64)]).await?,
        grid: gpu.grid(len, WG),
    };
    Ok((pass, vec![s.c_in * s.k * s.k + 1]))
}

/// One invocation per output element, flat grid.
async fn v1_passes(gpu: &Gpu, s: &Conv2dShape) -> Result<Built> {
    let wg = [("WG", WG as f64)];
    let pass = |threads: usize, kernel| Pass {
        kernel,
        grid: gpu.grid(threads, WG),
    };
    let len = |d: [usize; 4]| d.iter().product::<usize>();
    let positions = s.n * s.h_out() * s.w_out();
    let (forward, forward_sums) = v1_forward(gpu, s).await?;
    Ok(Built {
        forward,
        backward_input: pass(
            len(s.input_shape()),
            kernel(gpu, "backward_input", BACKWARD_INPUT_BINDINGS, &wg).await?,
        ),
        backward_weight: Split::direct(pass(
            len(s.weight_shape()),
            kernel(gpu, "backward_weight", BACKWARD_WEIGHT_BINDINGS, &wg).await?,
        )),
        backward_bias: Split::direct(pass(
            s.c_out,
            kernel(gpu, "backward_bias", BACKWARD_BIAS_BINDINGS, &wg).await?,
        )),
        sums: Conv2dSums {
            forward: forward_sums,
            backward_input: vec![s.c_out * s.k * s.k],
            backward_weight: vec![positions],
            backward_bias: vec![positions],
            winograd: None,
        },
    })
}

/// `preferred` channels per invocation, or fewer when the pass has fewer channels (a power of two,
/// so a 3-channel pass computes 4, not 16).
fn block_c(preferred: u32, channels: usize) -> u32 {
    preferred.min(channels.next_power_of_two() as u32)
}

/// Whether the v2 kernels can run `s`. Every kernel size, padding and image size is handled (the
/// 8-column window slides one column per tap; partial blocks are masked). The grid's z dimension,
/// limited per device (65,535 on most), holds forward's and backward_input's channel blocks (16
/// channels each) and backward_weight's taps (k * k): past that (over a million channels, or a
/// kernel over 255 wide) v1 runs, whose flat grid folds into two dimensions.
fn v2_fits(gpu: &Gpu, s: &Conv2dShape) -> bool {
    let max_dim = gpu.limits.max_compute_workgroups_per_dimension as usize;
    s.c_out.div_ceil(block_c(FWD_BLOCK_C, s.c_out) as usize) <= max_dim
        && s.c_in.div_ceil(block_c(BWD_INPUT_BLOCK_C, s.c_in) as usize) <= max_dim
        && s.k * s.k <= max_dim
}

/// Whether the v4 kernels can run `s`: their tiles' workgroup memory and invocations (checked
/// for the device when the kernel set is chosen), and the grid: row tiles in z (forward,
/// backward_input) and y (backward_weight), chunks in z, output channels in x (bias).
fn v4_fits(gpu: &Gpu, s: &Conv2dShape) -> bool {
    let max_dim = gpu.limits.max_compute_workgroups_per_dimension as usize;
    gpu.limits.max_compute_workgroup_storage_size >= crate::kernels::V4_WORKGROUP_BYTES
        && gpu.limits.max_compute_invocations_per_workgroup >= crate::kernels::V4_INVOCATIONS
        && s.c_out <= max_dim
        && (s.c_in * s.k * s.k).div_ceil(V4_TN) <= max_dim
}

/// Below this many output channels the v2 convolution computes its weight gradient with
/// backward_weight_rows_v2: backward_weight_v2 computes 8 output channels per invocation (two
/// vec4), so with 1 (the spatial gate's 7x7 2 -> 1) 7/8 of its loads and multiply-adds are
/// padding, and it measured 0.9-1.2 GFLOP/s against the one-weight kernel's 2.7 there
/// (benches/conv2d.rs, gate128/gate64).
const BWD_WEIGHT_V2_MIN_C_OUT: usize = 4;

/// v2's weight gradient (blocked or one weight per invocation), split as `c` says.
async fn v2_weight(gpu: &Gpu, s: &Conv2dShape, c: &Chunking) -> Result<Split> {
    let weights: usize = s.weight_shape().iter().product();
    let first = if s.c_out < BWD_WEIGHT_V2_MIN_C_OUT {
        Pass {
            kernel: kernel(
                gpu,
                "backward_weight_rows_v2",
                BACKWARD_WEIGHT_BINDINGS,
                &[("WG", WG as f64)],
            )
            .await?,
            grid: gpu.grid(weights * c.chunks, WG),
        }
    } else {
        let bc = block_c(BWD_WEIGHT_BLOCK_C, s.c_in);
        let blocks = s.c_in.div_ceil(bc as usize) * s.c_out.div_ceil(8);
        let [gx, gy, _] = gpu.grid(blocks * c.chunks, WG);
        Pass {
            kernel: kernel(
                gpu,
                "backward_weight_v2",
                BACKWARD_WEIGHT_BINDINGS,
                &[("WG", WG as f64), ("K", s.k as f64), ("BLOCK_C", bc as f64)],
            )
            .await?,
            // Blocks of 8 output x BLOCK_C input channels times chunks; z = tap.
            grid: [gx, gy, (s.k * s.k) as u32],
        }
    };
    Ok(Split {
        first,
        reduce: reduce(
            gpu,
            "conv2d.weight_partials",
            "backward_weight_reduce",
            WEIGHT_REDUCE_BINDINGS,
            weights,
            c.chunks,
        )
        .await?,
    })
}

/// The levels of a split sum whose chunks each add `leaf` terms (as `leaf_levels`).
fn split_levels(leaf_levels: Levels, c: &Chunking) -> Levels {
    let mut l = leaf_levels;
    l.extend(c.reduce_levels());
    l
}

/// v2's `BLOCK_C` constants and grid: invocations fold into x/y, the channel block is z.
fn v2_constants(s: &Conv2dShape, bc: u32) -> [(&'static str, f64); 3] {
    assert!(bc <= MAX_BLOCK_C);
    [("WG", WG as f64), ("K", s.k as f64), ("BLOCK_C", bc as f64)]
}

fn v2_grid(gpu: &Gpu, invocations: usize, channels: usize, bc: u32) -> [u32; 3] {
    let [gx, gy, _] = gpu.grid(invocations, WG);
    [gx, gy, channels.div_ceil(bc as usize) as u32]
}

/// Input channels per partial sum of forward_v2 (`CI_BLOCK`; see the shader).
const FWD_CI_BLOCK: usize = 32;

/// forward_v2's levels: CI_BLOCK channels' taps per partial sum, then the bias and the blocks.
fn v2_forward_levels(s: &Conv2dShape) -> Levels {
    let blocks = s.c_in.div_ceil(FWD_CI_BLOCK);
    vec![s.c_in.min(FWD_CI_BLOCK) * s.k * s.k, blocks + 1]
}

async fn v2_forward(gpu: &Gpu, s: &Conv2dShape) -> Result<Pass> {
    let bc = block_c(FWD_BLOCK_C, s.c_out);
    let mut constants = v2_constants(s, bc).to_vec();
    constants.push(("CI_BLOCK", FWD_CI_BLOCK as f64));
    Ok(Pass {
        kernel: kernel(gpu, "forward_v2", FORWARD_BINDINGS, &constants).await?,
        grid: v2_grid(
            gpu,
            s.n * s.h_out() * s.w_out().div_ceil(BLOCK_X),
            s.c_out,
            bc,
        ),
    })
}

async fn v2_backward_input(gpu: &Gpu, s: &Conv2dShape) -> Result<Pass> {
    let bc = block_c(BWD_INPUT_BLOCK_C, s.c_in);
    Ok(Pass {
        kernel: kernel(
            gpu,
            "backward_input_v2",
            BACKWARD_INPUT_BINDINGS,
            &v2_constants(s, bc),
        )
        .await?,
        grid: v2_grid(gpu, s.n * s.h * s.w.div_ceil(BLOCK_X), s.c_in, bc),
    })
}

/// v2's bias gradient: one workgroup per output channel, folded into x/y.
async fn v2_bias(gpu: &Gpu, s: &Conv2dShape) -> Result<Pass> {
    Ok(Pass {
        kernel: kernel(
            gpu,
            "backward_bias_v2",
            BACKWARD_BIAS_BINDINGS,
            &[("WG", WG as f64)],
        )
        .await?,
        grid: gpu.grid(s.c_out * WG as usize, WG),
    })
}

/// [`v2_bias`]'s levels: per invocation its share of each plane, then the images; then 8
/// groups of 8.
fn v2_bias_levels(s: &Conv2dShape) -> Levels {
    let wg = WG as usize;
    vec![(s.h_out() * s.w_out()).div_ceil(wg), s.n, 8, wg / 8]
}

/// Register-blocked passes; grids as documented at each v2 entry point in conv2d.wgsl.
async fn v2_passes(gpu: &Gpu, s: &Conv2dShape, c: &Chunking) -> Result<Built> {
    Ok(Built {
        forward: v2_forward(gpu, s).await?,
        backward_input: v2_backward_input(gpu, s).await?,
        backward_weight: v2_weight(gpu, s, c).await?,
        backward_bias: Split::direct(v2_bias(gpu, s).await?),
        sums: Conv2dSums {
            forward: v2_forward_levels(s),
            backward_input: vec![s.c_out * s.k * s.k],
            backward_weight: split_levels(vec![c.rows * s.w_out()], c),
            backward_bias: v2_bias_levels(s),
            winograd: None,
        },
    })
}

/// A binary tree over `n` (a power of two) values: log2(n) levels of 2.
fn tree_levels(n: usize) -> Levels {
    vec![2; n.trailing_zeros() as usize]
}

/// v4's tile constants for a pass whose row dimension has `rows` channels: (rows per tile,
/// override constants).
fn v4_tile(s: &Conv2dShape, rows: usize) -> (usize, [(&'static str, f64); 3]) {
    let tm = v4_rows(rows);
    let threads = tm / 4 * 16;
    (
        tm,
        [("WG", threads as f64), ("K", s.k as f64), ("TM", tm as f64)],
    )
}

/// Passes whose row dimension has fewer channels run v2's kernel (see [`Conv2dVersion::V4`]).
const V4_MIN_ROWS: usize = 8;

/// v4's forward pass and its levels (v2's below [`V4_MIN_ROWS`] output channels).
async fn v4_forward(gpu: &Gpu, s: &Conv2dShape) -> Result<(Pass, Levels)> {
    if s.c_out < V4_MIN_ROWS {
        return Ok((v2_forward(gpu, s).await?, v2_forward_levels(s)));
    }
    let (tm, k) = v4_tile(s, s.c_out);
    let r = s.c_in * s.k * s.k;
    let mut sums = vec![V4_TK, r.div_ceil(V4_TK)];
    *sums.last_mut().unwrap() += 1; // the bias, added last
    let [gx, gy, _] = gpu.grid((s.n * s.h_out() * s.w_out()).div_ceil(V4_TN), 1);
    let pass = Pass {
        kernel: kernel(gpu, "forward_v4", FORWARD_BINDINGS, &k).await?,
        grid: [gx, gy, s.c_out.div_ceil(tm) as u32],
    };
    Ok((pass, sums))
}

/// Tiled passes for GPUs; grids as documented at each v4 entry point in conv2d.wgsl. Passes
/// whose row dimension has fewer than 8 channels run v2's kernel.
async fn v4_passes(gpu: &Gpu, s: &Conv2dShape, c: &Chunking) -> Result<Built> {
    const MIN_ROWS: usize = V4_MIN_ROWS;
    let tile = |rows: usize| v4_tile(s, rows);
    let steps = |r: usize| vec![V4_TK, r.div_ceil(V4_TK)];
    let fold = |tiles: usize, z: usize| {
        let [gx, gy, _] = gpu.grid(tiles, 1);
        [gx, gy, z as u32]
    };
    let (forward, forward_sums) = v4_forward(gpu, s).await?;
    let (backward_input, input_sums) = if s.c_in >= MIN_ROWS {
        let (tm, k) = tile(s.c_in);
        (
            Pass {
                kernel: kernel(gpu, "backward_input_v4", BACKWARD_INPUT_BINDINGS, &k).await?,
                grid: fold((s.n * s.h * s.w).div_ceil(V4_TN), s.c_in.div_ceil(tm)),
            },
            steps(s.c_out * s.k * s.k),
        )
    } else {
        (v2_backward_input(gpu, s).await?, vec![s.c_out * s.k * s.k])
    };
    let weights: usize = s.weight_shape().iter().product();
    let chunk_terms = c.rows * s.w_out();
    let (backward_weight, weight_sums) = if s.c_out >= MIN_ROWS {
        let (tm, k) = tile(s.c_out);
        (
            Split {
                first: Pass {
                    kernel: kernel(gpu, "backward_weight_v4", BACKWARD_WEIGHT_BINDINGS, &k).await?,
                    grid: [
                        (s.c_in * s.k * s.k).div_ceil(V4_TN) as u32,
                        s.c_out.div_ceil(tm) as u32,
                        c.chunks as u32,
                    ],
                },
                reduce: reduce(
                    gpu,
                    "conv2d.weight_partials",
                    "backward_weight_reduce",
                    WEIGHT_REDUCE_BINDINGS,
                    weights,
                    c.chunks,
                )
                .await?,
            },
            split_levels(steps(chunk_terms), c),
        )
    } else {
        (
            v2_weight(gpu, s, c).await?,
            split_levels(vec![chunk_terms], c),
        )
    };
    let wg = WG as usize;
    let backward_bias = Split {
        first: Pass {
            kernel: kernel(
                gpu,
                "backward_bias_v4",
                BACKWARD_BIAS_BINDINGS,
                &[("WG", WG as f64)],
            )
            .await?,
            // One workgroup per (output channel, chunk).
            grid: [s.c_out as u32, c.chunks as u32, 1],
        },
        reduce: reduce(
            gpu,
            "conv2d.bias_partials",
            "backward_bias_reduce",
            BIAS_REDUCE_BINDINGS,
            s.c_out,
            c.chunks,
        )
        .await?,
    };
    Ok(Built {
        forward,
        backward_input,
        backward_weight,
        backward_bias,
        sums: Conv2dSums {
            forward: forward_sums,
            backward_input: input_sums,
            backward_weight: weight_sums,
            backward_bias: split_levels(
                [vec![chunk_terms.div_ceil(wg)], tree_levels(wg)].concat(),
                c,
            ),
            winograd: None,
        },
    })
}
