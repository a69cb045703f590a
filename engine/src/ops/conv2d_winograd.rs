//! conv2d v3: Winograd's F(m x m, 3 x 3) for the 3x3 convolutions, m = 2 or 4, forward, input
//! gradient and weight gradient. Shader: `shaders/conv2d_winograd.wgsl`; reference:
//! `reference/src/conv2d_winograd.rs`; tests: `tests/conv2d.rs`; the derivation and the
//! multiply counts: `docs/kernels/conv2d_winograd.md`. [`crate::ops::conv2d::Conv2d`] runs these
//! for [`crate::ops::conv2d::Conv2dVersion::V3`] where the shape is 3x3 with padding <= 2.
//!
//! Each pass is transforms around one batched matrix product (a*a products, a = m + 2):
//! - forward: filter transform (U), then per slice of the batch the input transform (V), the
//!   GEMM U_e V_e and the output transform (+ bias);
//! - backward_input: the same with the filter turned by 180 degrees and transposed (dx is the
//!   convolution of dy with it, padding 2 - pad);
//! - backward_weight: per slice the input transform of x, the output-gradient transform of dy
//!   (A dY A^T) and the GEMM split over chunks of tiles into partials; then one pass adds the
//!   chunks in a fixed order and applies G^T . G.
//!
//! The batch is cut into slices of whole images so that no scratch buffer passes
//! [`SCRATCH_FLOATS`]: the transformed images are (a / m)^2 times the size of the images they
//! come from (4x for F(2x2), 2.25x for F(4x4)). Every buffer, pipeline and uniform is made here,
//! once; a pass only binds the caller's tensors.

use std::sync::Arc;

use crate::error::Result;
use crate::gpu::Gpu;
use crate::ops::conv2d::{reduce_levels, Conv2dShape, MAX_PARTIALS, REDUCE_GROUP};
use crate::ops::{optional, Levels, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

crate::uniform! {
    /// One dispatch's sizes (each dispatch of a pass has its own buffer; a kernel reads the
    /// members its comment in the shader names).
    pub(crate) struct Params {
        /// Channels, height and width of the image read (input transforms) or written (output
        /// transform); channels = output channels of weight_reduce.
        channels: u32,
        h: u32,
        w: u32,
        pad: u32,
        tiles_h: u32,
        tiles_w: u32,
        /// The slice: its first image and its tiles (images x tiles_h x tiles_w).
        image0: u32,
        tiles: u32,
        /// Tiles rounded up to 8: the row length of V and of the products.
        cols: u32,
        /// Channels rounded up to 8: the rows of V (or of Z) per element.
        c_pad: u32,
        /// Rows of the filter transform and of weight_reduce's gradient, and rows rounded up
        /// to 8 (the products' rows per element).
        rows: u32,
        rows_pad: u32,
        gemm_m: u32,
        gemm_n: u32,
        gemm_k: u32,
        lda: u32,
        b_rows: u32,
        /// Reduction terms per chunk, the slice's first chunk, and (weight_reduce) all chunks.
        k_chunk: u32,
        chunk0: u32,
        chunks: u32,
        has_bias: u32,
    }
}

/// The most floats one scratch buffer holds (64 MiB): a batch whose transformed images need
/// more runs in slices of fewer images.
pub const SCRATCH_FLOATS: usize = 16 << 20;
/// Tiles one chunk of the weight gradient sums, at least (as conv2d's 256-position chunks).
const MIN_CHUNK_TILES: usize = 256;

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const SRC: (u32, Binding) = (1, Binding::Read);
const WEIGHT: (u32, Binding) = (2, Binding::Read);
const BIAS: (u32, Binding) = (3, Binding::Read);
const DST: (u32, Binding) = (4, Binding::ReadWrite);
const TV: (u32, Binding) = (5, Binding::ReadWrite);
const GA: (u32, Binding) = (6, Binding::Read);
const GB: (u32, Binding) = (7, Binding::Read);
const GC: (u32, Binding) = (8, Binding::ReadWrite);
const PROD: (u32, Binding) = (9, Binding::Read);

/// Whether F(m x m, 3 x 3) computes `s`: a 3x3 kernel, padding at most 2 (the input gradient's
/// convolution has padding 2 - pad).
pub fn supports(s: &Conv2dShape) -> bool {
    s.k == 3 && s.pad <= 2
}

fn pad8(v: usize) -> usize {
    v.next_multiple_of(8)
}

/// One kernel launch: pipeline, grid and its own uniform.
struct Launch {
    kernel: Arc<Kernel>,
    grid: [u32; 3],
    params: wgpu::Buffer,
    /// Direct-equivalent FLOPs credited to it (the GEMMs carry the convolution's).
    flops: u64,
}

impl Launch {
    fn dispatch(&self, gpu: &Gpu, rest: &[wgpu::BindingResource<'_>]) -> Result<Dispatch> {
        let mut resources = vec![self.params.as_entire_binding()];
        resources.extend(rest.iter().cloned());
        Ok(self
            .kernel
            .dispatch(gpu, &resources, self.grid)?
            .with_flops(self.flops))
    }
}

/// One slice's three launches.
struct Slice {
    transform: Launch,
    /// The weight gradient's output-gradient transform (none in forward / backward_input).
    grad_transform: Option<Launch>,
    gemm: Launch,
    /// The output transform (none in backward_weight).
    output: Option<Launch>,
}

/// A pass: what runs once (the filter transform, or the weight gradient's reduce) and the
/// slices.
struct Pass {
    filter: Option<Launch>,
    slices: Vec<Slice>,
    reduce: Option<Launch>,
}

/// The v3 passes of one convolution, with their scratch buffers.
pub struct Winograd {
    shape: Conv2dShape,
    tile: usize,
    forward: Pass,
    backward: Option<(Pass, Pass)>,
    /// V (of x, or of dy for the input gradient).
    transformed: Tensor,
    /// The products (forward, input gradient) or Z (weight gradient).
    products: Tensor,
    u_forward: Tensor,
    u_backward: Option<Tensor>,
    partials: Option<Tensor>,
    sums: WinogradSums,
}

/// How each pass adds up one output ([`Levels`], innermost first), the terms being those of the
/// reference's `conv2d_winograd::*_abs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WinogradSums {
    pub forward: Levels,
    pub backward_input: Levels,
    pub backward_weight: Levels,
}

/// The geometry of one image-to-tiles transform: the image read, the tiles, the slices.
#[derive(Clone, Copy, Debug)]
struct Tiling {
    /// Tiles per image.
    th: usize,
    tw: usize,
    /// Images per slice and the slices.
    per_slice: usize,
    slices: usize,
}

impl Tiling {
    /// Tiles of side `m` over an `out_h x out_w` output, in as few slices as keep
    /// `floats_per_tile` (the largest scratch per tile) under the cap, of equal sizes (64 images
    /// that fit 56 at a time run as 32 + 32, not 56 + 8: each slice's passes cover its own
    /// tiles only, so the split costs nothing but a few launches).
    fn new(
        n: usize,
        out_h: usize,
        out_w: usize,
        m: usize,
        floats_per_tile: usize,
        cap: usize,
    ) -> Tiling {
        let (th, tw) = (out_h.div_ceil(m), out_w.div_ceil(m));
        // cols rounds the tiles up to 8: leave room for it.
        let per_image = floats_per_tile * (th * tw + 8);
        let most = (cap / per_image).clamp(1, n);
        let slices = n.div_ceil(most);
        Tiling {
            th,
            tw,
            per_slice: n.div_ceil(slices),
            slices,
        }
    }
    /// The longest slice's tiles rounded up to 8: what the scratch buffers hold.
    fn cols(&self) -> usize {
        pad8(self.per_slice * self.th * self.tw)
    }
    /// Slice `i`'s tiles rounded up to 8: the row length of its V and products.
    fn slice_cols(&self, n: usize, i: usize) -> usize {
        pad8(self.slice(n, i).1 * self.th * self.tw)
    }
    /// (first image, images) of slice `i`.
    fn slice(&self, n: usize, i: usize) -> (usize, usize) {
        let first = i * self.per_slice;
        (first, self.per_slice.min(n - first))
    }
}

impl Winograd {
    /// The passes of `s` with F(tile x tile, 3 x 3) (`tile` 2 or 4).
    pub async fn new(
        gpu: &Gpu,
        s: Conv2dShape,
        with_bias: bool,
        tile: usize,
        passes: Passes,
    ) -> Result<Winograd> {
        assert!(supports(&s) && (tile == 2 || tile == 4), "{s:?} F({tile})");
        let a = tile + 2;
        let e = a * a;
        let (ci_pad, co_pad) = (pad8(s.c_in), pad8(s.c_out));
        let cap = SCRATCH_FLOATS.min(gpu.limits.max_storage_buffer_binding_size as usize / 4);
        let k = Kernels::new(gpu, tile, passes).await?;
        let flops_per_image = s.flops() / s.n as u64;
        let training = passes == Passes::Training;

        // Forward: V is e x ci_pad per tile, the products e x co_pad.
        let fwd = Tiling::new(s.n, s.h_out(), s.w_out(), tile, e * ci_pad.max(co_pad), cap);
        let bwd = Tiling::new(s.n, s.h, s.w, tile, e * ci_pad.max(co_pad), cap);
        let mut transformed_len = e * ci_pad * fwd.cols();
        let mut products_len = e * co_pad * fwd.cols();
        if training {
            transformed_len = transformed_len.max(e * co_pad * bwd.cols());
            products_len = products_len.max(e * ci_pad * bwd.cols());
        }

        let zero = <Params as bytemuck::Zeroable>::zeroed();
        let filter = |rows: usize, cols: usize, flip: bool| {
            let params = Params {
                rows: rows as u32,
                rows_pad: pad8(rows) as u32,
                gemm_k: cols as u32,
                ..zero
            };
            let kernel = match flip {
                true => &k.backward.as_ref().expect("built for training").filter_flip,
                false => &k.filter,
            };
            Launch {
                kernel: kernel.clone(),
                grid: gpu.grid(pad8(rows) * cols, WG),
                params: gpu.uniform_buffer("conv2d_winograd.params", &params),
                flops: 0,
            }
        };
        // An image-to-tiles transform of slice `i`: `channels` x h x w images, c_pad rows.
        let image_params =
            |t: &Tiling, i: usize, channels: usize, h: usize, w: usize, pad: usize| {
                let (first, images) = t.slice(s.n, i);
                Params {
                    channels: channels as u32,
                    h: h as u32,
                    w: w as u32,
                    pad: pad as u32,
                    tiles_h: t.th as u32,
                    tiles_w: t.tw as u32,
                    image0: first as u32,
                    tiles: (images * t.th * t.tw) as u32,
                    cols: t.slice_cols(s.n, i) as u32,
                    c_pad: pad8(channels) as u32,
                    ..zero
                }
            };
        let launch = |kernel: &Arc<Kernel>, grid: [u32; 3], params: &Params, flops: u64| Launch {
            kernel: kernel.clone(),
            grid,
            params: gpu.uniform_buffer("conv2d_winograd.params", params),
            flops,
        };
        let gemm_grid = |m: usize, n: usize, z: usize, wg: [usize; 2]| {
            [
                (n / 8).div_ceil(wg[0]) as u32,
                (m / 8).div_ceil(wg[1]) as u32,
                z as u32,
            ]
        };
        // A transform-GEMM-transform pass of an image with `c_src` channels (h x w, padding
        // `pad`) into one with `c_dst` channels (out_h x out_w), U being c_dst x c_src per
        // element.
        let conv_pass = |t: &Tiling,
                         c_src: usize,
                         c_dst: usize,
                         hw: (usize, usize),
                         pad: usize,
                         out: (usize, usize),
                         bias: bool| {
            (0..t.slices)
                .map(|i| {
                    let src = image_params(t, i, c_src, hw.0, hw.1, pad);
                    let cols = t.slice_cols(s.n, i);
                    let gemm = Params {
                        gemm_m: pad8(c_dst) as u32,
                        gemm_n: cols as u32,
                        gemm_k: c_src as u32,
                        lda: c_src as u32,
                        b_rows: pad8(c_src) as u32,
                        k_chunk: c_src as u32,
                        ..zero
                    };
                    let dst = Params {
                        rows_pad: pad8(c_dst) as u32,
                        has_bias: bias as u32,
                        ..image_params(t, i, c_dst, out.0, out.1, 0)
                    };
                    let images = t.slice(s.n, i).1 as u64;
                    Slice {
                        transform: launch(&k.input, gpu.grid(pad8(c_src) * cols, WG), &src, 0),
                        grad_transform: None,
                        gemm: launch(
                            &k.gemm,
                            gemm_grid(pad8(c_dst), cols, e, [16, 4]),
                            &gemm,
                            flops_per_image * images,
                        ),
                        output: Some(launch(
                            &k.output,
                            gpu.grid(c_dst * src.tiles as usize, WG),
                            &dst,
                            0,
                        )),
                    }
                })
                .collect::<Vec<_>>()
        };

        let forward = Pass {
            filter: Some(filter(s.c_out, s.c_in, false)),
            slices: conv_pass(
                &fwd,
                s.c_in,
                s.c_out,
                (s.h, s.w),
                s.pad,
                (s.h_out(), s.w_out()),
                with_bias,
            ),
            reduce: None,
        };
        let mut sums = WinogradSums {
            forward: vec![s.c_in, a, a + with_bias as usize],
            backward_input: vec![],
            backward_weight: vec![],
        };
        let (mut backward, mut u_backward, mut partials) = (None, None, None);
        if training {
            let input = Pass {
                filter: Some(filter(s.c_in, s.c_out, true)),
                slices: conv_pass(
                    &bwd,
                    s.c_out,
                    s.c_in,
                    (s.h_out(), s.w_out()),
                    2 - s.pad,
                    (s.h, s.w),
                    false,
                ),
                reduce: None,
            };
            // Weight gradient: V of x and Z of dy over the forward's tiles, each e x c_pad per
            // tile; the GEMM C[chunk][e] = V_e (ci_pad x tiles) Z_e (tiles x co_pad).
            let kb = k.backward.as_ref().expect("built for training");
            let wt = Tiling::new(s.n, s.h_out(), s.w_out(), tile, e * ci_pad.max(co_pad), cap);
            transformed_len = transformed_len.max(e * ci_pad * wt.cols());
            products_len = products_len.max(e * co_pad * wt.cols());
            let cols = wt.cols();
            let per_chunk_out = e * ci_pad * co_pad;
            let mut k_chunk = MIN_CHUNK_TILES.min(cols);
            while wt.slices * cols.div_ceil(k_chunk) * per_chunk_out > MAX_PARTIALS
                && k_chunk < cols
            {
                k_chunk *= 2;
            }
            let k_chunk = k_chunk.min(cols);
            let per_slice_chunks = cols.div_ceil(k_chunk);
            let chunks = wt.slices * per_slice_chunks;
            let slices = (0..wt.slices)
                .map(|i| {
                    let src = image_params(&wt, i, s.c_in, s.h, s.w, s.pad);
                    let grad = image_params(&wt, i, s.c_out, s.h_out(), s.w_out(), 0);
                    // A shorter last slice launches the same chunks: those past its tiles sum
                    // nothing and write zeros, so the reduce reads no stale partials.
                    let cols = wt.slice_cols(s.n, i);
                    let gemm = Params {
                        gemm_m: ci_pad as u32,
                        gemm_n: co_pad as u32,
                        gemm_k: cols as u32,
                        lda: cols as u32,
                        b_rows: cols as u32,
                        k_chunk: k_chunk as u32,
                        chunk0: (i * per_slice_chunks) as u32,
                        ..zero
                    };
                    let images = wt.slice(s.n, i).1 as u64;
                    Slice {
                        transform: launch(&k.input, gpu.grid(ci_pad * cols, WG), &src, 0),
                        grad_transform: Some(launch(
                            &kb.output_grad,
                            gpu.grid(co_pad * cols, WG),
                            &grad,
                            0,
                        )),
                        gemm: launch(
                            &kb.gemm_small,
                            gemm_grid(ci_pad, co_pad, e * per_slice_chunks, [8, 8]),
                            &gemm,
                            flops_per_image * images,
                        ),
                        output: None,
                    }
                })
                .collect();
            let reduce = Params {
                channels: s.c_out as u32,
                rows: s.c_in as u32,
                gemm_m: ci_pad as u32,
                gemm_n: co_pad as u32,
                chunks: chunks as u32,
                ..zero
            };
            let weight = Pass {
                filter: None,
                slices,
                reduce: Some(launch(
                    &kb.reduce,
                    gpu.grid(s.c_out * s.c_in, WG),
                    &reduce,
                    0,
                )),
            };
            backward = Some((input, weight));
            u_backward = Some(gpu.zeros("conv2d_winograd.u_backward", &[e, ci_pad, s.c_out])?);
            partials = Some(gpu.zeros("conv2d_winograd.partials", &[chunks, per_chunk_out])?);
            sums.backward_input = vec![s.c_out, a, a];
            sums.backward_weight = [vec![k_chunk], reduce_levels(chunks), vec![a, a]].concat();
        }
        Ok(Winograd {
            shape: s,
            tile,
            forward,
            backward,
            transformed: gpu.zeros("conv2d_winograd.transformed", &[transformed_len])?,
            products: gpu.zeros("conv2d_winograd.products", &[products_len])?,
            u_forward: gpu.zeros("conv2d_winograd.u_forward", &[e, co_pad, s.c_in])?,
            u_backward,
            partials,
            sums,
        })
    }

    /// m of F(m x m, 3 x 3).
    pub fn tile(&self) -> usize {
        self.tile
    }

    pub fn sums(&self) -> &WinogradSums {
        &self.sums
    }

    /// Slices of the batch each pass runs in (forward, backward_input, backward_weight).
    pub fn slices(&self) -> [usize; 3] {
        let b = self.backward.as_ref();
        [
            self.forward.slices.len(),
            b.map_or(0, |(i, _)| i.slices.len()),
            b.map_or(0, |(_, w)| w.slices.len()),
        ]
    }

    /// Chunks of the weight gradient's split sum.
    pub fn weight_chunks(&self) -> usize {
        self.partials.as_ref().map_or(1, |p| {
            p.len() / (self.tile + 2).pow(2) / pad8(self.shape.c_in) / pad8(self.shape.c_out)
        })
    }

    /// A transform-product-transform pass: `src` convolved with `weight` (through `u`, its
    /// transform) into `dst`.
    fn conv_pass(
        &self,
        gpu: &Gpu,
        (pass, u): (&Pass, &Tensor),
        [src, weight, dst]: [&Tensor; 3],
        bias: Option<&Tensor>,
    ) -> Result<Vec<Dispatch>> {
        let mut ds = Vec::with_capacity(1 + 3 * pass.slices.len());
        if let Some(f) = &pass.filter {
            ds.push(f.dispatch(gpu, &[weight.binding(), u.binding()])?);
        }
        for sl in &pass.slices {
            ds.push(
                sl.transform
                    .dispatch(gpu, &[src.binding(), self.transformed.binding()])?,
            );
            ds.push(sl.gemm.dispatch(
                gpu,
                &[
                    u.binding(),
                    self.transformed.binding(),
                    self.products.binding(),
                ],
            )?);
            let out = sl
                .output
                .as_ref()
                .expect("a convolution pass has an output transform");
            ds.push(out.dispatch(
                gpu,
                &[optional(gpu, bias), self.products.binding(), dst.binding()],
            )?);
        }
        Ok(ds)
    }

    /// y = conv(x, weight) + bias (shapes checked by the caller).
    pub fn forward(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        self.conv_pass(gpu, (&self.forward, &self.u_forward), [x, weight, y], bias)
    }

    /// dx = the convolution of dy with the flipped, transposed filter.
    pub fn backward_input(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        weight: &Tensor,
        dx: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (input, _) = crate::ops::built(&self.backward, "conv2d.backward_input")?;
        let u = self
            .u_backward
            .as_ref()
            .expect("built with the backward passes");
        self.conv_pass(gpu, (input, u), [dy, weight, dx], None)
    }

    /// dweight (overwritten): per slice the two transforms and the chunked GEMM, then the
    /// reduce with G^T . G.
    pub fn backward_weight(
        &self,
        gpu: &Gpu,
        dy: &Tensor,
        x: &Tensor,
        dweight: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (_, weight) = crate::ops::built(&self.backward, "conv2d.backward_weight")?;
        let partials = self
            .partials
            .as_ref()
            .expect("built with the backward passes");
        let mut ds = Vec::with_capacity(1 + 3 * weight.slices.len());
        for sl in &weight.slices {
            ds.push(
                sl.transform
                    .dispatch(gpu, &[x.binding(), self.transformed.binding()])?,
            );
            let grad = sl.grad_transform.as_ref().expect("a weight-gradient slice");
            ds.push(grad.dispatch(gpu, &[dy.binding(), self.products.binding()])?);
            ds.push(sl.gemm.dispatch(
                gpu,
                &[
                    self.transformed.binding(),
                    self.products.binding(),
                    partials.binding(),
                ],
            )?);
        }
        let reduce = weight.reduce.as_ref().expect("a weight-gradient pass");
        ds.push(reduce.dispatch(gpu, &[partials.binding(), dweight.binding()])?);
        Ok(ds)
    }
}

/// The pipelines of one tile size: the forward's, and the backward passes' when built for
/// training.
struct Kernels {
    filter: Arc<Kernel>,
    input: Arc<Kernel>,
    gemm: Arc<Kernel>,
    output: Arc<Kernel>,
    backward: Option<BackwardKernels>,
}

struct BackwardKernels {
    filter_flip: Arc<Kernel>,
    output_grad: Arc<Kernel>,
    gemm_small: Arc<Kernel>,
    reduce: Arc<Kernel>,
}

impl Kernels {
    async fn new(gpu: &Gpu, tile: usize, passes: Passes) -> Result<Kernels> {
        let t = tile as f64;
        let one = |entry: &'static str, bindings: &'static [(u32, Binding)], flip: bool| {
            let constants = [
                ("WG", WG as f64),
                ("TILE", t),
                ("FLIP", flip as u32 as f64),
                ("REDUCE_GROUP", REDUCE_GROUP as f64),
            ];
            async move {
                gpu.kernel(KernelDesc {
                    shader: "conv2d_winograd",
                    uniform: Some(&Params::LAYOUT),
                    entry,
                    bindings,
                    constants: &constants,
                })
                .await
            }
        };
        // The subgroup GEMM where the device allows it (see conv2d_winograd_subgroup.wgsl).
        let gemm_shader = match gpu.kernels.subgroups {
            true => "conv2d_winograd_subgroup",
            false => "conv2d_winograd",
        };
        let gemm = |wx: usize, wy: usize| {
            let mut constants = vec![("TILE", t), ("GEMM_WX", wx as f64), ("GEMM_WY", wy as f64)];
            if gpu.kernels.subgroups {
                constants.push(("GEMM_WG", (wx * wy) as f64));
            }
            async move {
                gpu.kernel(KernelDesc {
                    shader: gemm_shader,
                    uniform: Some(&Params::LAYOUT),
                    entry: "gemm",
                    bindings: GEMM_BINDINGS,
                    constants: &constants,
                })
                .await
            }
        };
        let backward = crate::ops::backward_part(passes, || async {
            Ok::<_, crate::error::Error>(BackwardKernels {
                filter_flip: one("filter_transform", FILTER_BINDINGS, true).await?,
                output_grad: one("output_grad_transform", TRANSFORM_BINDINGS, false).await?,
                gemm_small: gemm(8, 8).await?,
                reduce: one("weight_reduce", REDUCE_BINDINGS, false).await?,
            })
        })
        .await?;
        Ok(Kernels {
            filter: one("filter_transform", FILTER_BINDINGS, false).await?,
            input: one("input_transform", TRANSFORM_BINDINGS, false).await?,
            gemm: gemm(16, 4).await?,
            output: one("output_transform", OUTPUT_BINDINGS, false).await?,
            backward,
        })
    }
}

const FILTER_BINDINGS: &[(u32, Binding)] = &[UNIFORM, WEIGHT, TV];
const TRANSFORM_BINDINGS: &[(u32, Binding)] = &[UNIFORM, SRC, TV];
const GEMM_BINDINGS: &[(u32, Binding)] = &[UNIFORM, GA, GB, GC];
const OUTPUT_BINDINGS: &[(u32, Binding)] = &[UNIFORM, BIAS, PROD, DST];
const REDUCE_BINDINGS: &[(u32, Binding)] = &[UNIFORM, PROD, DST];
