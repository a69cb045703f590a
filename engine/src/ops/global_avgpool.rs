//! Global average pool over H x W: `[N, C, H, W] -> [N, C]` (the head's row 6).
//! Shader: `shaders/global_avgpool.wgsl`; reference: `reference/src/global_avgpool.rs`;
//! tests: `tests/global_avgpool.rs`.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::{backward_part, blocked_levels, built, Levels, Passes, WG};
use crate::pipeline::{Binding, Dispatch, Kernel, KernelDesc};
use crate::tensor::Tensor;

/// (n, c) planes written by one invocation of the backward (the shader's `ROWS`): one element
/// per invocation ran 3x slower than the forward over the same bytes on lavapipe.
pub const BACKWARD_ROWS: usize = 16;

/// The sizes one pool is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalAvgPoolShape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl GlobalAvgPoolShape {
    pub fn input_shape(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }
    pub fn output_shape(&self) -> [usize; 2] {
        [self.n, self.c]
    }
}

crate::uniform! {
    /// The shader's uniform; its WGSL declaration is generated from this one.
    pub(crate) struct Params {
        n: u32,
        c: u32,
        hw: u32,
    }
}

const UNIFORM: (u32, Binding) = (0, Binding::Uniform);
const X: (u32, Binding) = (1, Binding::Read);
const Y: (u32, Binding) = (2, Binding::ReadWrite);
const DY: (u32, Binding) = (3, Binding::Read);
const DX: (u32, Binding) = (4, Binding::ReadWrite);

/// A global average pool of one shape. It saves nothing: the backward needs only the sizes.
pub struct GlobalAvgPool {
    shape: GlobalAvgPoolShape,
    forward: Arc<Kernel>,
    backward: Option<Arc<Kernel>>,
    params: wgpu::Buffer,
}

impl GlobalAvgPool {
    pub async fn new(gpu: &Gpu, shape: GlobalAvgPoolShape) -> Result<GlobalAvgPool> {
        GlobalAvgPool::build(gpu, shape, Passes::Training).await
    }

    /// [`GlobalAvgPool::new`] without the backward pass (an inference network's).
    pub async fn forward_only(gpu: &Gpu, shape: GlobalAvgPoolShape) -> Result<GlobalAvgPool> {
        GlobalAvgPool::build(gpu, shape, Passes::Inference).await
    }

    async fn build(gpu: &Gpu, shape: GlobalAvgPoolShape, passes: Passes) -> Result<GlobalAvgPool> {
        let s = shape;
        if s.n == 0 || s.c == 0 || s.h == 0 || s.w == 0 {
            return Err(Error::InvalidConfig {
                op: "global_avgpool".into(),
                message: format!("every size must be positive, got {s:?}"),
            });
        }
        let kernel = |entry, bindings: &'static [(u32, Binding)], constants| {
            gpu.kernel(KernelDesc {
                shader: "global_avgpool",
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
        };
        Ok(GlobalAvgPool {
            shape,
            forward: kernel("forward", &[UNIFORM, X, Y], &[("WG", WG as f64)]).await?,
            backward: backward_part(passes, || {
                kernel(
                    "backward",
                    &[UNIFORM, DY, DX],
                    &[("WG", WG as f64), ("ROWS", BACKWARD_ROWS as f64)],
                )
            })
            .await?,
            params: gpu.uniform_buffer("global_avgpool.params", &params),
        })
    }

    pub fn shape(&self) -> &GlobalAvgPoolShape {
        &self.shape
    }

    /// How the forward sums a plane (blocks of 256, `BLOCK` in global_avgpool.wgsl), before its
    /// division by H W (see [`Levels`]).
    pub fn sums(&self) -> Levels {
        blocked_levels(self.shape.h * self.shape.w, 256)
    }

    /// y[n, c] = mean over (h, w) of x[n, c, h, w].
    pub fn forward(&self, gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
        let s = &self.shape;
        x.expect_shape("global_avgpool.forward", &s.input_shape())?;
        y.expect_shape("global_avgpool.forward", &s.output_shape())?;
        let grid = gpu.grid(y.len(), WG);
        self.forward.dispatch(
            gpu,
            &[self.params.as_entire_binding(), x.binding(), y.binding()],
            grid,
        )
    }

    /// dx[n, c, h, w] = dy[n, c] / (h w) (overwrites).
    pub fn backward(&self, gpu: &Gpu, dy: &Tensor, dx: &Tensor) -> Result<Dispatch> {
        let s = &self.shape;
        dy.expect_shape("global_avgpool.backward", &s.output_shape())?;
        dx.expect_shape("global_avgpool.backward", &s.input_shape())?;
        let threads = (s.n * s.c).div_ceil(BACKWARD_ROWS) * s.h * s.w;
        let grid = gpu.grid(threads, WG);
        built(&self.backward, "global_avgpool.backward")?.dispatch(
            gpu,
            &[self.params.as_entire_binding(), dy.binding(), dx.binding()],
            grid,
        )
    }
}
