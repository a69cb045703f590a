//! Plain-loop CPU reference implementations of every fer-cbam kernel.
//!
//! Written to be read, not to be fast: NCHW activations, OIHW conv weights, `[out, in]` linear
//! weights, every buffer's shape in a comment, every sum accumulated in f64. The GPU kernels are
//! tested against these, and these are tested against central finite differences ([`check`]).

pub mod activation;
pub mod adam;
pub mod batchnorm2d;
pub mod cbam_channel;
pub mod cbam_spatial;
pub mod check;
pub mod conv2d;
pub mod conv2d_winograd;
pub mod dropout;
pub mod global_avgpool;
pub mod linear;
pub mod maxpool2d;
pub mod network;
pub mod softmax_xent;
