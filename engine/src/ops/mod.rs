//! Op wrappers: each builds its pipelines once, checks tensor shapes, and returns
//! [`Dispatch`](crate::pipeline::Dispatch)es (pipeline + bind group + grid) that a training step
//! records in order, with no allocation.

pub mod activation;
pub mod adam;
pub mod batchnorm2d;
pub mod cbam_channel;
pub mod cbam_spatial;
pub mod conv2d;
pub mod conv2d_winograd;
pub mod dropout;
pub mod global_avgpool;
pub mod linear;
pub mod maxpool2d;
pub mod softmax_xent;

use crate::gpu::Gpu;
use crate::tensor::Tensor;
use crate::uniform::UniformLayout;

/// The uniform of each shader (`shaders/<name>.wgsl`), declared in its op's module (whose
/// pipelines pass it in their `KernelDesc`): for the layout test and [`assembled_source`].
pub const UNIFORMS: &[(&str, UniformLayout)] = &[
    ("activation", activation::Params::LAYOUT),
    ("adam", adam::Params::LAYOUT),
    ("batchnorm2d", batchnorm2d::Params::LAYOUT),
    ("cbam_channel", cbam_channel::Params::LAYOUT),
    ("cbam_spatial", cbam_spatial::Params::LAYOUT),
    ("conv2d", conv2d::Params::LAYOUT),
    ("conv2d_winograd", conv2d_winograd::Params::LAYOUT),
    ("conv2d_winograd_subgroup", conv2d_winograd::Params::LAYOUT),
    ("dropout", dropout::Params::LAYOUT),
    ("global_avgpool", global_avgpool::Params::LAYOUT),
    ("linear", linear::Params::LAYOUT),
    ("maxpool2d", maxpool2d::Params::LAYOUT),
    ("softmax_xent", softmax_xent::Params::LAYOUT),
];

/// The uniform layout of `shaders/<shader>.wgsl`, if it has one.
pub fn uniform_layout(shader: &str) -> Option<&'static UniformLayout> {
    UNIFORMS.iter().find(|(n, _)| *n == shader).map(|(_, l)| l)
}

/// What the pipelines of the embedded `shaders/<shader>.wgsl` compile: the file, its op's
/// generated `Params` and `shaders/common.wgsl` ([`crate::pipeline::assemble`]).
pub fn assembled_source(shader: &str) -> Option<String> {
    let body = crate::pipeline::shader_source(shader)?;
    Some(crate::pipeline::assemble(
        shader,
        body,
        uniform_layout(shader),
    ))
}

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

/// Which of an op's passes are built: all of them (training), or the forward alone (inference:
/// no backward pipeline is compiled and no backward scratch is allocated, and a backward
/// method fails naming the op).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Passes {
    #[default]
    Training,
    Inference,
}

/// What an op built with `passes` keeps of a backward piece: `Some(build)` in training.
pub(crate) async fn backward_part<T, F: std::future::Future<Output = crate::error::Result<T>>>(
    passes: Passes,
    build: impl FnOnce() -> F,
) -> crate::error::Result<Option<T>> {
    match passes {
        Passes::Training => Ok(Some(build().await?)),
        Passes::Inference => Ok(None),
    }
}

/// A backward piece of an op, or the error of an op built for inference.
pub(crate) fn built<'a, T>(part: &'a Option<T>, op: &str) -> crate::error::Result<&'a T> {
    part.as_ref()
        .ok_or_else(|| crate::error::Error::InvalidConfig {
            op: op.into(),
            message: "the op was built for inference: it has no backward pipelines".into(),
        })
}

/// Default workgroup size for element-wise kernels: a multiple of every subgroup size in use
/// (8 on lavapipe, 32 on NVIDIA, 64 on AMD).
pub const WG: u32 = 64;

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
