//! `fer-cbam profile`: per-kernel times of training steps (see `fer_cbam::profile`).

use std::path::PathBuf;
use std::time::Instant;

use fer_cbam::profile::{self, Method, ProfileOptions};
use fer_cbam::{Error, Result};

/// `fer-cbam profile`.
#[derive(clap::Args)]
pub struct Args {
    /// Training batch size.
    #[arg(long, value_parser = super::batch_size, default_value_t = 64)]
    batch_size: usize,
    /// Profiled training steps (as many unprofiled steps follow, for images/s).
    #[arg(long, value_parser = super::steps, default_value_t = 1)]
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
    config: super::config::ConfigArgs,
}

/// Runs the profile; `start` is when the command started (for the time to the first step).
pub fn run(args: &Args, start: Instant) -> Result<()> {
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
    let config = args.config.config(fer_cbam::model::Norm::None)?;
    if let Some(trace) = &args.trace {
        fer_cbam::files::check_file(trace, &[])?;
    }
    let gpu = super::new_gpu()?;
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
        fer_cbam::files::write_atomic(path, text.as_bytes())?;
    }
    if args.json {
        super::print_line(p.to_json());
    } else {
        super::print_text(p.render());
        if let Some(path) = &args.trace {
            super::print_line(format!("trace written to {}", path.display()));
        }
    }
    Ok(())
}
