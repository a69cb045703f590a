//! `fer-cbam profile`: per-kernel times of training steps (see `fer_cbam::profile`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use fer_cbam::profile::{self, Method, ProfileOptions};
use fer_cbam::{Error, Result};

#[derive(Args)]
pub struct ProfileArgs {
    /// Training batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Profiled training steps (as many unprofiled steps follow, for images/s).
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// How dispatches are timed: auto (the best the adapter has), inside-passes (timestamps
    /// between dispatches of one pass), per-pass (one pass per dispatch), wall-clock.
    #[arg(long, default_value = "auto")]
    method: String,
    /// Seed of the parameters and of the synthetic batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the profile (every dispatch, the table, the summary) as JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a Chrome trace (chrome://tracing, ui.perfetto.dev) of the profiled steps.
    #[arg(long, value_name = "OUT.json")]
    trace: Option<PathBuf>,
    #[command(flatten)]
    config: crate::ConfigArgs,
}

/// Runs the profile; `start` is when the command started (for the time to the first step).
pub fn profile(args: &ProfileArgs, start: Instant) -> Result<()> {
    let method = match args.method.as_str() {
        "auto" => None,
        m => Some(
            m.parse::<Method>()
                .map_err(|message| Error::InvalidConfig {
                    op: "profile --method".into(),
                    message,
                })?,
        ),
    };
    let config = args.config.config()?;
    let gpu = fer_cbam::Gpu::new_blocking()?;
    let device_s = start.elapsed().as_secs_f64();
    let mut p = profile::run(
        &gpu,
        &ProfileOptions {
            config,
            batch: args.batch_size,
            steps: args.steps,
            method,
            seed: args.seed,
        },
    )?;
    p.startup.device_s = Some(device_s);
    if let Some(path) = &args.trace {
        let text = serde_json::to_string(&p.chrome_trace()).expect("JSON values serialize");
        write_atomic(path, text.as_bytes())?;
    }
    if args.json {
        println!("{}", p.to_json());
    } else {
        print!("{}", p.render());
        if let Some(path) = &args.trace {
            println!("trace written to {}", path.display());
        }
    }
    Ok(())
}

/// Writes through a temporary file renamed into place, so a failed write leaves nothing behind.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |e: std::io::Error| Error::Data {
        path: path.display().to_string(),
        message: format!("cannot write the trace: {e}"),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| Error::Data {
        path: path.display().to_string(),
        message: "not a file path".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}
