//! The `fer-cbam` command line. Every failure ends as one line on stderr and exit status 1.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use fer_cbam::model::{checkpoint, Attention, ModelConfig, ParamTable};

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
    /// Print the adapter, backend, driver and the device limits in use; with --model, the
    /// model's parameter table.
    Info {
        /// Also print the parameter table (names, shapes, counts) of the model config below and
        /// the memory plan at --batch-size (every device tensor, allocated for real).
        #[arg(long)]
        model: bool,
        /// Batch size of the memory plan.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write a freshly initialised checkpoint (PyTorch's default init, seeded).
    Init {
        /// Seed of the initialisation: the same seed gives the same weights everywhere.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output checkpoint (.safetensors); written atomically.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run one training step (dropout off) on a batch file and write logits, loss, every
    /// gradient (`grad.<name>`) and the parameters after one Adam step (`param.<name>`) to one
    /// safetensors file: the hook for holding the engine against another framework.
    DebugStep {
        /// Checkpoint to start from.
        #[arg(long)]
        checkpoint: PathBuf,
        /// safetensors file with `images` (f32 [N, C, H, W], network input scale) and
        /// `labels` (i64 [N]).
        #[arg(long)]
        batch: PathBuf,
        /// Output safetensors file (written atomically).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0.9)]
        beta1: f64,
        #[arg(long, default_value_t = 0.999)]
        beta2: f64,
        #[arg(long, default_value_t = 1e-8)]
        eps: f64,
        /// Decoupled (AdamW) weight decay.
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f64,
    },
}

/// The model config flags; defaults are the spec's network.
#[derive(Args)]
struct ConfigArgs {
    /// Square input size in pixels.
    #[arg(long, default_value_t = 128)]
    image_size: usize,
    /// Input channels: 3 (grayscale replicated) or 1.
    #[arg(long, default_value_t = 3)]
    in_channels: usize,
    /// Attention variant: full, none, channel or spatial.
    #[arg(long, default_value = "full")]
    attention: Attention,
    /// Conv widths of the stages, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128,256")]
    widths: Vec<usize>,
}

impl ConfigArgs {
    fn config(&self) -> fer_cbam::Result<ModelConfig> {
        let config = ModelConfig {
            image_size: self.image_size,
            in_channels: self.in_channels,
            attention: self.attention,
            widths: self.widths.clone(),
            ..ModelConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info {
            model,
            batch_size,
            config,
        } => info(model, batch_size, &config),
        Command::Init { seed, out, config } => init(seed, &out, &config),
        Command::DebugStep {
            checkpoint,
            batch,
            out,
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let adam = fer_cbam::ops::adam::AdamConfig {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            };
            fer_cbam::Gpu::new_blocking().and_then(|gpu| {
                pollster::block_on(fer_cbam::model::debug_step::debug_step(
                    &gpu,
                    &checkpoint,
                    &batch,
                    adam,
                    &out,
                ))
                .map(|()| println!("wrote {}", out.display()))
            })
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn info(model: bool, batch_size: usize, config: &ConfigArgs) -> fer_cbam::Result<()> {
    let gpu = fer_cbam::Gpu::new_blocking()?;
    println!("{}", gpu.describe());
    if model {
        let config = config.config()?;
        let table = ParamTable::new(&config);
        println!("\nmodel: {}", serde_json::to_string(&config).unwrap());
        println!("{:<40} {:<18} {:>10}", "parameter", "shape", "count");
        for e in table.entries() {
            println!(
                "{:<40} {:<18} {:>10}",
                e.name,
                format!("{:?}", e.shape),
                e.len()
            );
        }
        println!("{:<40} {:<18} {:>10}", "total", "", table.count());
        let net = pollster::block_on(fer_cbam::model::Network::new(
            &gpu,
            &config,
            batch_size,
            Default::default(),
        ))?;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "\nmemory plan at batch {batch_size} (the network's device tensors, f32; each gate's small saved tensors come on top):"
        );
        let mut total = 0;
        for e in net.plan() {
            total += e.bytes;
            println!(
                "{:<40} {:<22} {:>10.2} MiB",
                e.name,
                format!("{:?}", e.shape),
                mib(e.bytes)
            );
        }
        println!("{:<40} {:<22} {:>10.2} MiB", "total", "", mib(total));
    }
    Ok(())
}

fn init(seed: u64, out: &std::path::Path, config: &ConfigArgs) -> fer_cbam::Result<()> {
    let config = config.config()?;
    let table = ParamTable::new(&config);
    checkpoint::save(out, &config, &table.init(seed))?;
    println!(
        "wrote {} ({} parameters, seed {seed})",
        out.display(),
        table.count()
    );
    Ok(())
}
