//! fer-cbam: trains and evaluates the CBAM attention CNN for facial expression recognition under
//! occlusion, on the engine of `fer-cbam-engine` (whose modules it re-exports, so
//! `fer_cbam::model::Network` is the engine's): datasets and their readers, the training loop,
//! the paper's protocols, metrics, figures, attention maps and the profiler's front end.

pub use fer_cbam_engine::{
    error, files, gpu, kernels, model, onnx_proto, ops, pipeline, preprocess, rng, tensor, timing,
    uniform, Dispatch, Error, Gpu, Result, Tensor,
};

// The application is native only (it blocks on the device, spawns threads, reads files); the
// browser build (web/) uses the engine alone.
pub mod data;
pub mod explain;
pub mod figures;
pub mod metrics;
pub mod profile;
pub mod protocol;
pub mod sources;
pub mod train;
