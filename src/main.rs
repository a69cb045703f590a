//! The `fer-cbam` command line. Every failure ends as one line on stderr and a non-zero exit.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fer-cbam",
    version,
    about = "Train and evaluate the CBAM attention CNN for facial expression recognition under \
             occlusion, on any GPU through wgpu",
    after_help = "Environment: WGPU_BACKEND (vulkan, metal, dx12, gl) narrows the backends; \
                  WGPU_ADAPTER_NAME picks the adapter whose name contains it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the adapter, backend, driver and the device limits in use.
    Info,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn info() -> fer_cbam::Result<()> {
    let gpu = fer_cbam::Gpu::new_blocking()?;
    println!("{}", gpu.describe());
    Ok(())
}
