//! fer-cbam: a from-scratch wgpu/WGSL engine for the CBAM attention CNN of facial expression
//! recognition under occlusion.
//!
//! - [`gpu::Gpu`]: adapter, device limits, checked allocations, submission, async readback;
//! - [`pipeline`]: WGSL files embedded from `shaders/`, pipelines cached by
//!   (shader, entry point, binding list, override constants);
//! - [`ops`]: one wrapper per op (`shaders/<op>.wgsl`, `reference/src/<op>.rs`, `tests/<op>.rs`).

// Modules marked native-only block on the GPU (pollster), spawn threads or write files; the
// browser build (web/) uses the rest.
pub mod data;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod explain;
pub mod figure_text;
#[cfg(not(target_arch = "wasm32"))]
pub mod figures;
pub mod files;
pub mod gpu;
pub mod kernels;
#[cfg(not(target_arch = "wasm32"))]
pub mod metrics;
pub mod model;
pub mod onnx_proto;
pub mod ops;
pub mod pipeline;
#[cfg(not(target_arch = "wasm32"))]
pub mod profile;
#[cfg(not(target_arch = "wasm32"))]
pub mod protocol;
#[cfg(not(target_arch = "wasm32"))]
pub mod sources;
pub mod tensor;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

pub use error::{Error, Result};
pub use gpu::Gpu;
pub use ops::Dispatch;
pub use tensor::Tensor;
