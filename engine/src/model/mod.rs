//! The network of `../shared/spec/network.md`: its configuration, its parameter table and
//! initialisation, and its checkpoints.

pub mod checkpoint;
pub mod config;
pub mod debug_step;
mod forward;
pub mod infer;
pub mod inference;
pub mod network;
pub mod onnx;
pub mod params;

pub use config::{Attention, Gate, Init, ModelConfig, Norm, CLASSES};
pub use inference::{Evaluate, InferenceNetwork};
pub use network::{Network, Snapshot, TrainOptions, HISTORY};
pub use params::ParamTable;
