//! fer-cbam: trains and evaluates the CBAM attention CNN for facial expression recognition under
//! occlusion, on the engine of `fer-cbam-engine` (whose modules it re-exports, so
//! `fer_cbam::model::Network` is the engine's): datasets and their readers, the training loop,
//! the paper's protocols, metrics, figures, attention maps and the profiler's front end.

pub use fer_cbam_engine::{
    error, files, gpu, model, ops, pipeline, preprocess, rng, tensor, timing, Dispatch, Error, Gpu,
    Result, Tensor,
};

// Modules marked native-only block on the GPU (pollster), spawn threads or write files; the
// browser build (web/) uses the rest.
pub mod data;
#[cfg(not(target_arch = "wasm32"))]
pub mod explain;
pub mod figure_text;
#[cfg(not(target_arch = "wasm32"))]
pub mod figures;
#[cfg(not(target_arch = "wasm32"))]
pub mod metrics;
#[cfg(not(target_arch = "wasm32"))]
pub mod profile;
#[cfg(not(target_arch = "wasm32"))]
pub mod protocol;
#[cfg(not(target_arch = "wasm32"))]
pub mod sources;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
