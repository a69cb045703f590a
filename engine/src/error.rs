//! Typed errors of the engine. The CLI prints `Display` on one line; every variant names the
//! thing that went wrong (a buffer, a WGSL file and entry point, a tensor and both shapes).

/// Everything the engine can report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter at all: the usual cause is a machine without a GPU driver.
    #[error(
        "no GPU adapter found{detail}: install a Vulkan, Metal or DX12 driver (on Linux \
         without a GPU: `sudo bash tools/install-lavapipe.sh` in the fer-cbam repository, or \
         the mesa-vulkan-drivers package, for Mesa's lavapipe)"
    )]
    NoAdapter { detail: String },

    /// `WGPU_ADAPTER_NAME` was set but no adapter's name contains it.
    #[error("WGPU_ADAPTER_NAME={wanted:?} matches no adapter; adapters found: {found}")]
    AdapterNotFound { wanted: String, found: String },

    /// The adapter refused the device (missing limits or features).
    #[error("could not open a device on adapter {adapter:?}: {message}")]
    RequestDevice { adapter: String, message: String },

    /// A WGSL file failed to compile or a pipeline failed validation.
    #[error("shaders/{file}.wgsl, entry point `{entry}`: {message}")]
    Shader {
        file: String,
        entry: String,
        message: String,
    },

    /// An allocation larger than the device allows.
    #[error(
        "buffer `{name}` needs {size} bytes ({mib:.1} MiB) but the device's {limit_name} is {limit} bytes"
    )]
    BufferTooLarge {
        name: String,
        size: u64,
        mib: f64,
        limit_name: &'static str,
        limit: u64,
    },

    /// A tensor passed to an op does not have the shape the op was built for.
    #[error("{op}: `{tensor}` has shape {got:?}, expected {expected:?}")]
    Shape {
        op: String,
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    /// An op built with an invalid configuration (zero sizes, a kernel larger than the input...).
    #[error("{op}: {message}")]
    InvalidConfig { op: String, message: String },

    /// Validation, out-of-memory or internal errors raised while recording or submitting work.
    #[error("GPU error in {context}: {message}")]
    Gpu { context: String, message: String },

    /// The device went away (driver reset, GPU removed, lost to a timeout).
    #[error("GPU device lost ({reason}): {message}")]
    DeviceLost { reason: String, message: String },

    /// A checkpoint that cannot be read, written, or does not fit its config.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },

    /// A data file or folder that cannot be used (unreadable, undecodable, empty, wrong layout).
    #[error("{path}: {message}")]
    Data { path: String, message: String },

    /// Training produced a non-finite loss or parameter; `kept` says what was kept on disk (filled in by
    /// the caller, which knows what it saved).
    #[error(
        "training diverged at step {step} (epoch {epoch}): {what}; lower the learning rate or \
         the weight decay{kept}"
    )]
    Diverged {
        step: u32,
        epoch: usize,
        /// What was seen: "the loss is NaN", "parameter `x`[3] is inf".
        what: String,
        kept: String,
    },

    /// A stop was requested (Ctrl-C): the loop stopped after finishing step `step`; `saved`
    /// says what was saved (filled in by the caller).
    #[error("interrupted after step {step}{saved}")]
    Interrupted { step: u32, saved: String },

    /// Mapping a buffer for readback failed.
    #[error("reading back `{name}` failed: {message}")]
    Readback { name: String, message: String },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
