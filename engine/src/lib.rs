//! fer-cbam-engine: a from-scratch wgpu/WGSL engine for the CBAM attention CNN of facial
//! expression recognition under occlusion. It knows devices, kernels, tensors, the network and
//! its checkpoints; it reads no image format and draws nothing, and it builds for the browser
//! (wasm32) as well as natively.
//!
//! - [`gpu::Gpu`]: adapter, device limits, checked allocations, submission, async readback;
//! - [`pipeline`]: WGSL files embedded from `shaders/`, pipelines cached by
//!   (shader, entry point, binding list, override constants), and the dispatches built from them;
//! - [`uniform`]: shape uniforms declared once for Rust and WGSL ([`uniform!`]);
//! - [`ops`]: one wrapper per op (`shaders/<op>.wgsl`, `reference/src/<op>.rs`, `tests/<op>.rs`);
//! - [`model`]: the network's config, parameter table, device network and checkpoints.

// Modules marked native-only block on the device to read back; the browser build uses the rest.
pub mod error;
pub mod files;
pub mod gpu;
pub mod kernels;
pub mod model;
pub mod onnx_proto;
pub mod ops;
pub mod pipeline;
pub mod preprocess;
pub mod rng;
pub mod tensor;
#[cfg(not(target_arch = "wasm32"))]
pub mod timing;
pub mod uniform;

pub use error::{Error, Result};
pub use gpu::Gpu;
pub use pipeline::Dispatch;
pub use tensor::Tensor;
