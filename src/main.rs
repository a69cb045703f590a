//! The `fer-cbam` command line: the parser and the dispatch to one module per command
//! (`src/cli/<command>.rs`, each with its `Args` and its `run`). Every failure ends as one line
//! on stderr and exit status 1 (2 for a bad command line, 130 for Ctrl-C).

use clap::{Parser, Subcommand};

mod cli;
use cli::{
    cross, debug_step, demo, eval, explain, export, holdout, info, init, kfold, occlude, predict,
    profile, train,
};

#[derive(Parser)]
#[command(
    name = "fer-cbam",
    version,
    about = "Train and evaluate the CBAM attention CNN for facial expression recognition under \
             occlusion, on any GPU through wgpu",
    after_help = "Environment: WGPU_BACKEND (vulkan, metal, dx12, gl) narrows the backends; \
                  WGPU_ADAPTER_NAME picks the adapter whose name contains it; FER_CBAM_KERNELS \
                  (auto, cpu, gpu) picks the kernel set unless --kernels does; FER_CBAM_CONV (v1, v2, \
                  v3, v3f4, v4) the convolution kernels unless --conv does. `fer-cbam info` \
                  says which adapter, backend, kernel set and convolution kernels are used; a slow fallback (OpenGL, \
                  or a CPU adapter while a GPU is there) is warned about on every command."
)]
struct Cli {
    /// Kernel variants: auto (from the adapter: cpu for a CPU driver such as lavapipe, gpu for
    /// a GPU), cpu (register-blocked v2 kernels) or gpu (conv2d's workgroup-memory tiles and
    /// split-K gradients sized to fill the device). Overrides FER_CBAM_KERNELS; `info` says
    /// which set runs and why.
    #[arg(long, global = true, value_name = "SET")]
    kernels: Option<fer_cbam::kernels::KernelChoice>,
    /// The convolution kernels: v1 (one output per invocation), v2 (register-blocked), v3
    /// (Winograd F(2x2, 3x3)), v3f4 (Winograd F(4x4, 3x3)) or v4 (workgroup-memory tiles).
    /// Shapes a version does not cover (v3: anything but 3x3 with padding <= 2) run v2. The
    /// default is the kernel set's (cpu: v3, gpu: v4); overrides FER_CBAM_CONV.
    #[arg(long, global = true, value_name = "VERSION")]
    conv: Option<fer_cbam::ops::conv2d::Conv2dVersion>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time every kernel of training steps (GPU timestamps where the adapter has them) and
    /// print a table per kernel: calls, time, share of the step, GFLOP/s, GB/s; plus images/s,
    /// the gap between the step and its kernels, and the time to the first finished step.
    Profile(profile::Args),
    /// Print the adapter, backend, driver and the device limits in use; with --model, the
    /// model's parameter table.
    Info(info::Args),
    /// Write a freshly initialised checkpoint (seeded; PyTorch's default init unless --init).
    Init(init::Args),
    /// Run one training step (dropout off) on a batch file and write logits, loss, every
    /// gradient (`grad.<name>`) and the parameters after one Adam step (`param.<name>`) to one
    /// safetensors file: the hook for holding the engine against another framework.
    DebugStep(debug_step::Args),
    /// Train a model (on the embedded synthetic faces unless --data is given), write the
    /// checkpoint and its optimizer state, and evaluate it on the held-out test side.
    Train(train::Args),
    /// Evaluate a checkpoint: accuracy, macro F1, per-class precision/recall/F1, confusion.
    Eval(eval::Args),
    /// The main job on the embedded synthetic faces: train with and without attention, evaluate
    /// both on clean faces and the paper's five occlusions, print the table, write a report
    /// folder (Markdown, JSON, checkpoints). Sized for a 2-core CPU; --full for a GPU.
    Demo(demo::Args),
    /// k-fold cross-validation (the paper's Table 3): stratified, subject-grouped with
    /// --group-by subject; for every k in --folds and every attention variant, k models each
    /// tested on its held-out fold, clean and per occlusion; mean and spread over folds.
    Kfold(kfold::Args),
    /// Hold-out (the paper's Table 5): the dataset's own train/test split or a stratified 80:20
    /// split, one model per attention variant, tested clean and per occlusion.
    Holdout(holdout::Args),
    /// Cross-dataset (the paper's Table 6): train on all images of one or more datasets, test
    /// on all images of another, clean and per occlusion.
    Cross(cross::Args),
    /// Draw what the attention gates did to images, clean and occluded side by side: each
    /// stage's spatial map over the face, each channel gate as a strip, the class
    /// probabilities, and with --sensitivity where hiding the face lowers the prediction.
    Explain(explain::Args),
    /// Write a PNG grid of test faces, one row per occlusion type (clean, patch8, patch16,
    /// patch24, eyes, mouth), like the paper's Figure 5.
    Occlude(occlude::Args),
    /// Export a checkpoint for other runtimes: an ONNX graph of the inference network (no GPU
    /// needed).
    Export(export::Args),
    /// Print the top-3 classes with probabilities for images (files or folders of images).
    Predict(predict::Args),
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
    if let Some(version) = cli.conv {
        fer_cbam::kernels::set_conv_choice(version, "--conv");
    }
    let result = match &cli.command {
        Command::Profile(a) => profile::run(a, start),
        Command::Info(a) => info::run(a),
        Command::Init(a) => init::run(a),
        Command::DebugStep(a) => debug_step::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Kfold(a) => kfold::run(a),
        Command::Holdout(a) => holdout::run(a),
        Command::Cross(a) => cross::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Occlude(a) => occlude::run(a),
        Command::Export(a) => export::run(a),
        Command::Predict(a) => predict::run(a),
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
