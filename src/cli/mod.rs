//! The commands, one module each (its `Args` and its `run`), and what they share: the flag
//! groups (`config`, `data`, `recipe`, `protocol`), the evaluation report, the device, output
//! that survives a closed pipe, and the range of every numeric flag.

pub mod config;
pub mod cross;
pub mod data;
pub mod debug_step;
pub mod demo;
pub mod eval;
pub mod explain;
pub mod export;
pub mod holdout;
pub mod info;
pub mod init;
pub mod kfold;
pub mod occlude;
pub mod predict;
pub mod profile;
pub mod protocol;
pub mod recipe;
pub mod report;
pub mod train;

use std::fmt::Display;
use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout. A reader that went away (`fer-cbam predict ... | head -1`) is not
/// an error: what follows is not printed, and the work (a checkpoint being written) finishes.
pub fn print_line(line: impl Display) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// [`print_line`] without the newline (text that ends in one already).
pub fn print_text(text: impl Display) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if write!(out, "{text}").and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes one line to stderr; a closed stderr is ignored (there is nobody left to tell).
pub fn warn_line(line: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Opens the device, and warns on stderr when it is a slow fallback (OpenGL, or a CPU adapter
/// while a GPU is there), whatever the command and however quiet.
pub fn new_gpu() -> fer_cbam::Result<fer_cbam::Gpu> {
    let gpu = fer_cbam::Gpu::new_blocking()?;
    if let Some(w) = &gpu.warning {
        warn_line(format!("warning: {w}"));
    }
    Ok(gpu)
}

/// A value parsed and checked against an inclusive range, for clap.
fn in_range<T: FromStr + PartialOrd + Display + Copy>(s: &str, lo: T, hi: T) -> Result<T, String>
where
    T::Err: Display,
{
    let v: T = s.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    // `!(a <= v)` rather than `v < a`: NaN fails both comparisons and must fail here.
    if !(lo <= v && v <= hi) {
        return Err(format!("{v} is outside {lo}..={hi}"));
    }
    Ok(v)
}

/// Largest batch a flag accepts (the network checks the device's limits too).
pub const MAX_BATCH: usize = fer_cbam::model::network::MAX_BATCH;

pub fn batch_size(s: &str) -> Result<usize, String> {
    in_range(s, 1, MAX_BATCH)
}
pub fn image_size(s: &str) -> Result<usize, String> {
    in_range(s, 2, fer_cbam::model::config::MAX_IMAGE_SIZE)
}
pub fn width(s: &str) -> Result<usize, String> {
    in_range(s, 1, fer_cbam::model::config::MAX_WIDTH)
}
pub fn in_channels(s: &str) -> Result<usize, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!(
            "{s:?}: the network takes 1 (gray) or 3 (gray replicated) input channels"
        )),
    }
}
pub fn epochs(s: &str) -> Result<usize, String> {
    in_range(s, 1, 1_000_000).map_err(|e| {
        if s.trim() == "0" {
            "0 epochs would train nothing (`fer-cbam init` writes an untrained checkpoint)".into()
        } else {
            e
        }
    })
}
/// Learning rates, Adam's eps: finite and above zero.
pub fn positive(s: &str) -> Result<f64, String> {
    let v = in_range(s, 0.0, 1e6)?;
    if v == 0.0 {
        return Err("must be above 0".into());
    }
    Ok(v)
}
/// Weight decay: finite, zero or more.
pub fn non_negative(s: &str) -> Result<f64, String> {
    in_range(s, 0.0, 1e6)
}
/// A fraction of images (occlusion mix): 0..=1.
pub fn fraction(s: &str) -> Result<f64, String> {
    in_range(s, 0.0, 1.0)
}
/// Dropout, Adam's betas: 0 or more and below 1.
pub fn below_one(s: &str) -> Result<f64, String> {
    let v = in_range(s, 0.0, 1.0)?;
    if v == 1.0 {
        return Err("must be below 1".into());
    }
    Ok(v)
}
pub fn dropout(s: &str) -> Result<f32, String> {
    below_one(s).map(|v| v as f32)
}
/// Synthetic face counts: enough to split, not more than fit in memory as indices.
pub fn synthetic_count(s: &str) -> Result<usize, String> {
    in_range(s, 10, 10_000_000)
}
/// Synthetic face indices (the first one explained).
pub fn synthetic_index(s: &str) -> Result<u64, String> {
    in_range(s, 0, 1 << 48)
}
/// Face crop margin: 0..=2 of the face's size on each side.
pub fn margin(s: &str) -> Result<f32, String> {
    in_range(s, 0.0, 2.0)
}
/// Fold counts of k-fold cross-validation.
pub fn folds(s: &str) -> Result<usize, String> {
    in_range(s, 2, 1000)
}
/// Profiled steps.
pub fn steps(s: &str) -> Result<usize, String> {
    in_range(s, 1, 100_000)
}
/// Small counts (faces per row of a figure, synthetic faces explained).
pub fn count(s: &str) -> Result<usize, String> {
    in_range(s, 1, 10_000)
}
/// Sizes in pixels at the input (a sensitivity patch, its stride).
pub fn pixels(s: &str) -> Result<usize, String> {
    in_range(s, 1, fer_cbam::model::config::MAX_IMAGE_SIZE)
}
/// `--checkpoint-every N` epochs.
pub fn every(s: &str) -> Result<usize, String> {
    in_range(s, 1, 1_000_000)
}
