//! 2-D convolution, stride 1, zero padding, square kernel, optional bias.
//! Shader: `shaders/conv2d.wgsl`; reference: `reference/src/conv2d.rs`; tests: `tests/conv2d.rs`.
//!
//! Two versions of the kernels live side by side in the shader (see [`Conv2dVersion`]): v1, one
//! output per invocation (the readable one), and v2, register-blocked (the fast one, default:
//! about 20-25 GFLOP/s on lavapipe at the stage shapes where v1 runs at 2-2.5). Both are one
//! dispatch per pass, with no atomics and a fixed summation order (bit-identical reruns); they
//! differ only in that order where v2 splits a weight or bias reduction.
//!
//! Dispatches per pass: forward (y), backward_input (dx), backward_weight (dweight),
//! backward_bias (dbias), each independent of the others; nothing is saved between passes
//! beyond the caller's x, weight and dy.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{backward_part, built, check_optional, optional, Passes, WG};
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

/// Which kernels a [`Conv2d`] runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Conv2dVersion {
    /// `forward`, `backward_input`, `backward_weight`, `backward_bias`: one output per
    /// invocation, the reduction as plain loops (about 2 GFLOP/s on lavapipe).
    V1,
    /// `forward_v2`, `backward_input_v2`, `backward_weight_v2`, `backward_bias_v2`: a block of
    /// outputs per invocation held in registers (see the notes in conv2d.wgsl); where a weight
    /// or bias gradient has few blocks, several invocations of a workgroup split its reduction
    /// and add their partial sums in a fixed order. With fewer than 4 output channels the weight
    /// gradient runs v1's kernel (see `BWD_WEIGHT_V2_MIN_C_OUT` in the source).
    #[default]
    V2,
}

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

/// One pass: its pipeline and the grid it is launched on.
struct Pass {
    kernel: Arc<Kernel>,
    grid: [u32; 3],
}

/// A convolution of one shape, with its four pipelines and shape uniforms.
pub struct Conv2d {
    shape: Conv2dShape,
    with_bias: bool,
    version: Conv2dVersion,
    forward: Pass,
    /// `None` for a convolution built for inference.
    backward: Option<Backward>,
    params: wgpu::Buffer,
}

/// The three backward passes.
struct Backward {
    input: Pass,
    weight: Pass,
    bias: Pass,
}

impl Conv2d {
    /// The convolution with the default (fastest) kernels, [`Conv2dVersion::V2`].
    pub async fn new(gpu: &Gpu, shape: Conv2dShape, with_bias: bool) -> Result<Conv2d> {
        Conv2d::with_version(gpu, shape, with_bias, Conv2dVersion::default()).await
    }

    /// [`Conv2d::new`] without the backward passes (an inference network's).
    pub async fn forward_only(gpu: &Gpu, shape: Conv2dShape, with_bias: bool) -> Result<Conv2d> {
        Conv2d::build(
            gpu,
            shape,
            with_bias,
            Conv2dVersion::default(),
            Passes::Inference,
        )
        .await
    }

    /// The convolution running `version`'s kernels where they handle the shape; passes that
    /// v2 cannot run fall back to v1 (see [`Conv2d::version`]).
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
        let v2 = version == Conv2dVersion::V2 && v2_fits(gpu, &s);
        let (forward, backward) = if v2 {
            v2_passes(gpu, &s, passes).await?
        } else {
            v1_passes(gpu, &s, passes).await?
        };
        Ok(Conv2d {
            shape,
            with_bias,
            version: if v2 {
                Conv2dVersion::V2
            } else {
                Conv2dVersion::V1
            },
            forward,
            backward,
            params: gpu.uniform_buffer("conv2d.params", &params),
        })
    }

    /// The version whose kernels this convolution runs: v1 where v2 was asked for but does not
    /// fit the shape (`v2_fits` in the source), and v2 also when its weight gradient uses v1's
    /// kernel.
    pub fn version(&self) -> Conv2dVersion {
        self.version
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
        let d = self.forward.kernel.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                x.binding(),
                weight.binding(),
                optional(gpu, bias),
                y.binding(),
            ],
            self.forward.grid,
        )?;
        Ok(d.with_flops(s.flops()))
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
        let pass = &built(&self.backward, "conv2d.backward_input")?.input;
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
        Ok(d.with_flops(s.flops()))
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
        let pass = &built(&self.backward, "conv2d.backward_weight")?.weight;
        let d = pass.kernel.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                x.binding(),
                dweight.binding(),
            ],
            pass.grid,
        )?;
        Ok(d.with_flops(s.flops()))
    }

    /// dbias = sum of dy over the batch and positions (overwrites).
    pub fn backward_bias(&self, gpu: &Gpu, dy: &Tensor, dbias: &Tensor) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("conv2d.backward_bias", &s.output_shape())?;
        self.check_bias("conv2d.backward_bias", Some(dbias))?;
        let pass = &built(&self.backward, "conv2d.backward_bias")?.bias;
        let d = pass.kernel.dispatch(
            gpu,
            &[
                self.params.as_entire_binding(),
                dy.binding(),
                dbias.binding(),
            ],
            pass.grid,
        )?;
        Ok(d.with_flops(s.output_shape().iter().product::<usize>() as u64))
    }

    fn check_bias(&self, op: &str, bias: Option<&Tensor>) -> Result<()> {
        let shape = [self.shape.c_out];
        check_optional(op, "a bias", bias, self.with_bias.then_some(&shape[..]))
    }
}

async fn kernel(
    gpu: &Gpu,
    entry: &'static str,
    bindings: &'static [(u32, Binding)],
    constants: &[(&'static str, f64)],
) -> Result<Arc<Kernel>> {
    gpu.kernel(KernelDesc {
        shader: "conv2d",
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

/// One invocation per output element, flat grid; the backward passes with `passes`.
async fn v1_passes(gpu: &Gpu, s: &Conv2dShape, passes: Passes) -> Result<(Pass, Option<Backward>)> {
    let wg = [("WG", WG as f64)];
    let pass = |threads: usize, kernel| Pass {
        kernel,
        grid: gpu.grid(threads, WG),
    };
    let len = |d: [usize; 4]| d.iter().product::<usize>();
    let forward = pass(
        len(s.output_shape()),
        kernel(gpu, "forward", FORWARD_BINDINGS, &wg).await?,
    );
    let backward = backward_part(passes, || async {
        Ok(Backward {
            input: pass(
                len(s.input_shape()),
                kernel(gpu, "backward_input", BACKWARD_INPUT_BINDINGS, &wg).await?,
            ),
            weight: v1_backward_weight(gpu, s).await?,
            bias: pass(
                s.c_out,
                kernel(gpu, "backward_bias", BACKWARD_BIAS_BINDINGS, &wg).await?,
            ),
        })
    })
    .await?;
    Ok((forward, backward))
}

/// `preferred` channels per invocation, or fewer when the pass has fewer channels (a power of two,
/// so a 3-channel pass computes 4, not 16).
fn block_c(preferred: u32, channels: usize) -> u32 {
    preferred.min(channels.next_power_of_two() as u32)
}

/// Invocations sharing one backward_weight_v2 block (`SPLIT`): only when the pass has few blocks
/// (all taps together), enough for 128 invocations (16 SIMD groups of 8 on lavapipe, to keep
/// both cores busy to the end); at most 16 (the partial sums are added serially); a power of two
/// (so it divides WG). The first stage has 4 blocks x 9 taps, so 4; stage 1 has 144 blocks and
/// does not split: splitting it measured slower at batch 64 (16 against 21 GFLOP/s), the
/// invocations sharing a block each stream the same channels.
fn bwd_weight_split(blocks: usize) -> u32 {
    128usize.div_ceil(blocks).next_power_of_two().clamp(1, 16) as u32
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

async fn v1_backward_weight(gpu: &Gpu, s: &Conv2dShape) -> Result<Pass> {
    let weights: usize = s.weight_shape().iter().product();
    Ok(Pass {
        kernel: kernel(
            gpu,
            "backward_weight",
            BACKWARD_WEIGHT_BINDINGS,
            &[("WG", WG as f64)],
        )
        .await?,
        grid: gpu.grid(weights, WG),
    })
}

/// Below this many output channels the v2 convolution computes its weight gradient with v1's
/// kernel: backward_weight_v2 computes 8 output channels per invocation (two vec4), so with 1
/// (the spatial gate's 7x7 2 -> 1) 7/8 of its loads and multiply-adds are padding, and it
/// measured 0.9-1.2 GFLOP/s against v1's 2.7 there (benches/conv2d.rs, gate128/gate64).
const BWD_WEIGHT_V2_MIN_C_OUT: usize = 4;

/// Register-blocked passes; grids as documented at each v2 entry point in conv2d.wgsl. The
/// backward passes with `passes`.
async fn v2_passes(gpu: &Gpu, s: &Conv2dShape, passes: Passes) -> Result<(Pass, Option<Backward>)> {
    let constants = |bc: u32| {
        assert!(bc <= MAX_BLOCK_C);
        [("WG", WG as f64), ("K", s.k as f64), ("BLOCK_C", bc as f64)]
    };
    // Invocations fold into x/y; the channel block index is z.
    let grid = |invocations: usize, channels: usize, bc: u32| {
        let [gx, gy, _] = gpu.grid(invocations, WG);
        [gx, gy, channels.div_ceil(bc as usize) as u32]
    };
    let fwd = block_c(FWD_BLOCK_C, s.c_out);
    let bwd_in = block_c(BWD_INPUT_BLOCK_C, s.c_in);
    let bwd_w = block_c(BWD_WEIGHT_BLOCK_C, s.c_in);
    let bwd_w_blocks = s.c_in.div_ceil(bwd_w as usize) * s.c_out.div_ceil(8);
    let split = bwd_weight_split(bwd_w_blocks * s.k * s.k);
    let forward = Pass {
        kernel: kernel(gpu, "forward_v2", FORWARD_BINDINGS, &constants(fwd)).await?,
        grid: grid(s.n * s.h_out() * s.w_out().div_ceil(BLOCK_X), s.c_out, fwd),
    };
    let backward = backward_part(passes, || async {
        Ok(Backward {
            input: Pass {
                kernel: kernel(
                    gpu,
                    "backward_input_v2",
                    BACKWARD_INPUT_BINDINGS,
                    &constants(bwd_in),
                )
                .await?,
                grid: grid(s.n * s.h * s.w.div_ceil(BLOCK_X), s.c_in, bwd_in),
            },
            weight: if s.c_out < BWD_WEIGHT_V2_MIN_C_OUT {
                v1_backward_weight(gpu, s).await?
            } else {
                Pass {
                    kernel: kernel(
                        gpu,
                        "backward_weight_v2",
                        BACKWARD_WEIGHT_BINDINGS,
                        &[
                            ("WG", WG as f64),
                            ("K", s.k as f64),
                            ("BLOCK_C", bwd_w as f64),
                            ("SPLIT", split as f64),
                        ],
                    )
                    .await?,
                    // SPLIT invocations per block of 8 output x BLOCK_C input channels; z = tap.
                    grid: {
                        let [gx, gy, _] = gpu.grid(bwd_w_blocks * split as usize, WG);
                        [gx, gy, (s.k * s.k) as u32]
                    },
                }
            },
            bias: Pass {
                // One workgroup per output channel, folded into x/y.
                kernel: kernel(
                    gpu,
                    "backward_bias_v2",
                    BACKWARD_BIAS_BINDINGS,
                    &[("WG", WG as f64)],
                )
                .await?,
                grid: gpu.grid(s.c_out * WG as usize, WG),
            },
        })
    })
    .await?;
    Ok((forward, backward))
}
