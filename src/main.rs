//! The `fer-cbam` command line. Every failure ends as one line on stderr and exit status 1.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cli;
use cli::new_gpu;

#[derive(Parser)]
#[command(
    name = "fer-cbam",
    version,
    about = "Train and evaluate the CBAM attention CNN for facial expression recognition under \
             occlusion, on any GPU through wgpu",
    after_help = "Environment: WGPU_BACKEND (vulkan, metal, dx12, gl) narrows the backends; \
                  WGPU_ADAPTER_NAME picks the adapter whose name contains it; FER_CBAM_KERNELS \
                  (auto, cpu, gpu) picks the kernel set unless --kernels does. `fer-cbam info` \
                  says which adapter, backend and kernel set are used; a slow fallback (OpenGL, \
                  or a CPU adapter while a GPU is there) is warned about on every command."
)]
struct Cli {
    /// Kernel variants: auto (from the adapter: cpu for a CPU driver such as lavapipe, gpu for
    /// a GPU), cpu (register-blocked v2 kernels) or gpu (conv2d's workgroup-memory tiles and
    /// split-K gradients sized to fill the device). Overrides FER_CBAM_KERNELS; `info` says
    /// which set runs and why.
    #[arg(long, global = true, value_name = "SET")]
    kernels: Option<fer_cbam::kernels::KernelChoice>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time every kernel of training steps (GPU timestamps where the adapter has them) and
    /// print a table per kernel: calls, time, share of the step, GFLOP/s, GB/s; plus images/s,
    /// the gap between the step and its kernels, and the time to the first finished step.
    Profile(cli::profile::ProfileArgs),
    /// Print the adapter, backend, driver and the device limits in use; with --model, the
    /// model's parameter table.
    Info(cli::info::Args),
    /// Write a freshly initialised checkpoint (seeded; PyTorch's default init unless --init).
    Init(cli::init::Args),
    /// Run one training step (dropout off) on a batch file and write logits, loss, every
    /// gradient (`grad.<name>`) and the parameters after one Adam step (`param.<name>`) to one
    /// safetensors file: the hook for holding the engine against another framework.
    DebugStep(cli::debug_step::Args),
    /// Train a model (on the embedded synthetic faces unless --data is given), write the
    /// checkpoint and its optimizer state, and evaluate it on the held-out test side.
    Train(cli::train::Args),
    /// Evaluate a checkpoint: accuracy, macro F1, per-class precision/recall/F1, confusion.
    Eval(cli::eval::Args),
    /// The main job on the embedded synthetic faces: train with and without attention, evaluate
    /// both on clean faces and the paper's five occlusions, print the table, write a report
    /// folder (Markdown, JSON, checkpoints). Sized for a 2-core CPU; --full for a GPU.
    Demo {
        /// Report folder.
        #[arg(long, default_value = "demo-report")]
        out: PathBuf,
        /// The paper's configuration (128x128, widths 32-256, batch 64): for machines with a GPU.
        #[arg(long)]
        full: bool,
        /// Override the number of epochs.
        #[arg(long, value_parser = crate::cli::epochs)]
        epochs: Option<usize>,
        /// Override the number of synthetic faces (80% train, 20% test).
        #[arg(long, value_parser = crate::cli::synthetic_count)]
        synthetic: Option<usize>,
        /// Seed of the initialisation, shuffling, dropout and occlusion draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        recipe: cli::recipe::RecipeArgs,
        /// No progress output, only the final table.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        network: cli::recipe::NetworkArgs,
    },
    /// k-fold cross-validation (the paper's Table 3): stratified, subject-grouped with
    /// --group-by subject; for every k in --folds and every attention variant, k models each
    /// tested on its held-out fold, clean and per occlusion; mean and spread over folds.
    Kfold(cli::kfold::Args),
    /// Hold-out (the paper's Table 5): the dataset's own train/test split or a stratified 80:20
    /// split, one model per attention variant, tested clean and per occlusion.
    Holdout(cli::holdout::Args),
    /// Cross-dataset (the paper's Table 6): train on all images of one or more datasets, test
    /// on all images of another, clean and per occlusion.
    Cross(cli::cross::Args),
    /// Draw what the attention gates did to images, clean and occluded side by side: each
    /// stage's spatial map over the face, each channel gate as a strip, the class
    /// probabilities, and with --sensitivity where hiding the face lowers the prediction.
    Explain(cli::explain::ExplainArgs),
    /// Write a PNG grid of test faces, one row per occlusion type (clean, patch8, patch16,
    /// patch24, eyes, mouth), like the paper's Figure 5.
    Occlude(cli::explain::OccludeArgs),
    /// Export a checkpoint for other runtimes: an ONNX graph of the inference network (no GPU
    /// needed).
    Export(cli::export::ExportArgs),
    /// Print the top-3 classes with probabilities for images (files or folders of images).
    Predict(cli::predict::Args),
}

/// The command line, or one line saying what is wrong with it (clap's own messages, folded
/// onto one line without the usage block) and exit status 2; help and version print as usual.
fn parse_args() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            cli::warn_line(line.join(" "));
            std::process::exit(2);
        }
    }
}

fn main() {
    let start = std::time::Instant::now();
    let cli = parse_args();
    if let Some(choice) = cli.kernels {
        fer_cbam::kernels::set_choice(choice, "--kernels");
    }
    let result = match cli.command {
        Command::Profile(args) => cli::profile::profile(&args, start),
        Command::Info(a) => cli::info::run(&a),
        Command::Init(a) => cli::init::run(&a),
        Command::DebugStep(a) => cli::debug_step::run(&a),
        Command::Train(a) => cli::train::run(&a),
        Command::Eval(a) => cli::eval::run(&a),
        Command::Demo {
            out,
            full,
            epochs,
            synthetic,
            seed,
            recipe,
            quiet,
            network,
        } => (|| {
            fer_cbam::files::check_folder(&out, &[])?;
            let mut plan = if full {
                cli::demo::Plan::full()
            } else {
                cli::demo::Plan::quick()
            };
            plan.norm = network.norm.unwrap_or(recipe.default_norm());
            plan.init = network.init;
            plan.gate = network.gate;
            if let Some(e) = epochs {
                plan.epochs = e;
            }
            if let Some(n) = synthetic {
                plan.test = n / 5;
                plan.train = n - plan.test;
            }
            let gpu = new_gpu()?;
            let md = cli::demo::demo(&gpu, &plan, &recipe, &out, seed, quiet)?;
            cli::print_line(md);
            cli::print_line(format!("report written to {}", out.display()));
            Ok(())
        })(),
        Command::Kfold(a) => cli::kfold::run(&a),
        Command::Holdout(a) => cli::holdout::run(&a),
        Command::Cross(a) => cli::cross::run(&a),
        Command::Explain(args) => fer_cbam::files::check_folder(&args.out, &[&args.checkpoint])
            .and_then(|()| new_gpu())
            .and_then(|gpu| {
                let w = cli::explain::explain_command(&gpu, &args)?;
                for f in &w.figures {
                    cli::print_line(format!("wrote {}", f.display()));
                }
                cli::print_line(format!("wrote {}", args.out.join("explain.json").display()));
                Ok(())
            }),
        Command::Occlude(args) => {
            let inputs = args.data.input_files();
            let inputs: Vec<&std::path::Path> = inputs.iter().map(PathBuf::as_path).collect();
            fer_cbam::files::check_file(&args.out, &inputs)
                .and_then(|()| cli::explain::occlude_command(&args))
                .map(|(w, h)| {
                    cli::print_line(format!("wrote {} ({w}x{h})", args.out.display()));
                })
        }
        Command::Export(args) => cli::export::export(&args),
        Command::Predict(a) => cli::predict::run(&a),
    };
    if let Err(e) = result {
        cli::warn_line(format!("error: {e}"));
        // 130 = 128 + SIGINT, what a shell reports for a program stopped by Ctrl-C.
        let code = if matches!(e, fer_cbam::Error::Interrupted { .. }) {
            130
        } else {
            1
        };
        std::process::exit(code);
    }
}
