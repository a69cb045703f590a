//! Op wrappers: each builds its pipelines once, checks tensor shapes, and returns [`Dispatch`]es
//! (pipeline + bind group + grid) that a training step records in order, with no allocation.

pub mod activation;
pub mod adam;
pub mod batchnorm2d;
pub mod cbam_channel;
pub mod cbam_spatial;
pub mod conv2d;
pub mod dropout;
pub mod global_avgpool;
pub mod linear;
pub mod maxpool2d;
pub mod softmax_xent;

use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// How a kernel sums one output: the lengths of its nested serial loops, innermost first (a
/// plain loop over K terms is `[K]`; K terms in chunks of 256 whose sums are then added in
/// order, `[256, K / 256]`; a binary tree over 64 values, six `2`s). A term passes through at
/// most `sum(levels)` additions, and the rounding error model of docs/numerics.md
/// (`fer_cbam_reference::check::sum_rms`) is a function of these lengths. Ops report theirs
/// (`Conv2d::sums`, `CbamChannel::sums`, ...) so that the tests hold each kernel to the error
/// its own summation order allows.
pub type Levels = Vec<usize>;

/// The levels of a sum of `len` values in blocks of `block` consecutive ones, each block summed
/// in order and the block sums added in order.
pub fn blocked_levels(len: usize, block: usize) -> Levels {
    if len <= block {
        vec![len]
    } else {
        vec![block, len.div_ceil(block)]
    }
}

/// Default workgroup size for element-wise kernels: a multiple of every subgroup size in use
/// (8 on lavapipe, 32 on NVIDIA, 64 on AMD).
pub const WG: u32 = 64;

/// One recorded-later kernel launch. Built once (the bind group is created at build time).
pub struct Dispatch {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) workgroups: [u32; 3],
    pub(crate) label: String,
    pub(crate) shader: &'static str,
    pub(crate) entry: &'static str,
    /// Invocations per workgroup (x, y, z) of the entry point.
    pub(crate) workgroup_size: [u32; 3],
    /// Floating-point operations (a multiply-add counts 2), where the op wrapper counts them;
    /// 0 for memory-bound element-wise kernels. For the profiler's GFLOP/s.
    pub(crate) flops: u64,
    /// Bytes of every storage buffer bound, each counted once (read or written): the least
    /// memory traffic the kernel can have. For the profiler's GB/s.
    pub(crate) bytes: u64,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatch({} {:?})", self.label, self.workgroups)
    }
}

impl Dispatch {
    /// Records the launch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
    /// `<shader>.wgsl:<entry point>`.
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
    /// Workgroups launched in all.
    pub fn workgroup_count(&self) -> u64 {
        self.workgroups.iter().map(|&v| v as u64).product()
    }
    /// Invocations per workgroup.
    pub fn workgroup_size(&self) -> [u32; 3] {
        self.workgroup_size
    }
    /// Invocations launched (workgroups times their size; some return at once where a grid is
    /// rounded up).
    pub fn invocations(&self) -> u64 {
        self.workgroup_count()
            * self
                .workgroup_size
                .iter()
                .map(|&v| v as u64)
                .product::<u64>()
    }
    /// The WGSL file (without `.wgsl`) and entry point: what the profiler groups by.
    pub fn kernel(&self) -> (&'static str, &'static str) {
        (self.shader, self.entry)
    }
    /// Counted FLOPs (0 where the wrapper does not count them).
    pub fn flops(&self) -> u64 {
        self.flops
    }
    /// Bytes of the storage buffers bound, each once.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Sets the counted FLOPs (op wrappers that know their shapes).
    pub(crate) fn with_flops(mut self, flops: u64) -> Dispatch {
        self.flops = flops;
        self
    }
}

/// Checks an optional input (a bias, class weights) against how the op was built: present with
/// `shape` when the op was built with it (`shape` is `Some`), absent otherwise. Errors name the
/// op, what the input is, and the tensor.
pub(crate) fn check_optional(
    op: &str,
    what: &str,
    given: Option<&Tensor>,
    shape: Option<&[usize]>,
) -> crate::error::Result<()> {
    let err = |message: String| {
        Err(crate::error::Error::InvalidConfig {
            op: op.into(),
            message,
        })
    };
    match (given, shape) {
        (Some(t), Some(shape)) => t.expect_shape(op, shape),
        (None, None) => Ok(()),
        (Some(t), None) => err(format!(
            "{what} `{}` given to an op built without {what}",
            t.name()
        )),
        (None, Some(_)) => err(format!("the op was built with {what} but none was given")),
    }
}

/// The binding for an optional tensor: the tensor, or the device's small zeroed dummy buffer.
pub(crate) fn optional<'a>(gpu: &'a Gpu, t: Option<&'a Tensor>) -> wgpu::BindingResource<'a> {
    match t {
        Some(t) => t.binding(),
        None => gpu.dummy.as_entire_binding(),
    }
}
