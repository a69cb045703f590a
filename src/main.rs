//! The `fer-cbam` command line. Every failure ends as one line on stderr and exit status 1.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod cli;
use cli::run::{self, DataArgs, Output};
use fer_cbam::model::{checkpoint, Attention, ModelConfig, ParamTable};

#[derive(Parser)]
#[command(
    name = "fer-cbam",
    version,
    about = "Train and evaluate the CBAM attention CNN for facial expression recognition under \
             occlusion, on any GPU through wgpu",
    after_help = "Environment: WGPU_BACKEND (vulkan, metal, dx12, gl) narrows the backends; \
                  WGPU_ADAPTER_NAME picks the adapter whose name contains it; FER_CBAM_KERNELS \
                  (auto, cpu, gpu) picks the kernel set unless --kernels does."
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
    /// Train a model (on the embedded synthetic faces unless --data is given), write the
    /// checkpoint and its optimizer state, and evaluate it on the held-out test side.
    Train {
        /// Output checkpoint (.safetensors); the optimizer state goes beside it
        /// (.optim.safetensors) for --resume.
        #[arg(long)]
        out: PathBuf,
        /// Continue from this checkpoint and its optimizer state (its config is used).
        #[arg(long)]
        resume: Option<PathBuf>,
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Adam's learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Decoupled (AdamW) weight decay.
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f64,
        /// Seed of the initialisation, the shuffling and the dropout masks.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Dropout probability of the head.
        #[arg(long, default_value_t = 0.2)]
        dropout: f32,
        /// Fraction of training images that get one of the paper's five occlusions (random
        /// 8/16/24 px patch, eyes, mouth), redrawn every epoch.
        #[arg(long, default_value_t = 0.0)]
        occlusion_mix: f64,
        #[command(flatten)]
        data: DataArgs,
        #[command(flatten)]
        config: ConfigArgs,
        /// No progress bar, only the final report.
        #[arg(long)]
        quiet: bool,
        /// Print the final report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a checkpoint: accuracy, macro F1, per-class precision/recall/F1, confusion.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Which side of the data: test (default) or train.
        #[arg(long, value_parser = ["test", "train"], default_value = "test")]
        split: String,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Occlude every test image: none, patch8, patch16, patch24, eyes or mouth.
        #[arg(long, default_value = "none")]
        occlusion: String,
        #[command(flatten)]
        data: DataArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
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
        #[arg(long)]
        epochs: Option<usize>,
        /// Override the number of synthetic faces (80% train, 20% test).
        #[arg(long)]
        synthetic: Option<usize>,
        /// Seed of the initialisation, shuffling, dropout and occlusion draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// No progress output, only the final table.
        #[arg(long)]
        quiet: bool,
    },
    /// k-fold cross-validation (the paper's Table 3): stratified, subject-grouped with
    /// --group-by subject; for every k in --folds and every attention variant, k models each
    /// tested on its held-out fold, clean and per occlusion; mean and spread over folds.
    Kfold(cli::protocol::KfoldArgs),
    /// Hold-out (the paper's Table 5): the dataset's own train/test split or a stratified 80:20
    /// split, one model per attention variant, tested clean and per occlusion.
    Holdout(cli::protocol::HoldoutArgs),
    /// Cross-dataset (the paper's Table 6): train on all images of one or more datasets, test
    /// on all images of another, clean and per occlusion.
    Cross(cli::protocol::CrossArgs),
    /// Draw what the attention gates did to images, clean and occluded side by side: each
    /// stage's spatial map over the face, each channel gate as a strip, the class
    /// probabilities, and with --sensitivity where hiding the face lowers the prediction.
    Explain(cli::explain::ExplainArgs),
    /// Write a PNG grid of test faces, one row per occlusion type (clean, patch8, patch16,
    /// patch24, eyes, mouth), like the paper's Figure 5.
    Occlude(cli::explain::OccludeArgs),
    /// Print the top-3 classes with probabilities for images (files or folders of images).
    Predict {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Image files or folders.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Crop each image to its largest face first (SeetaFace detector, embedded): for photos
        /// that are not already aligned face crops. Images without a face are used whole, and
        /// the output says so.
        #[arg(long)]
        detect_face: bool,
        /// Margin added around the detected face on every side, as a fraction of its size.
        #[arg(long, default_value_t = 0.25)]
        face_margin: f32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    let start = std::time::Instant::now();
    let cli = Cli::parse();
    if let Some(choice) = cli.kernels {
        fer_cbam::kernels::set_choice(choice, "--kernels");
    }
    let result = match cli.command {
        Command::Profile(args) => cli::profile::profile(&args, start),
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
        Command::Train {
            out,
            resume,
            epochs,
            batch_size,
            lr,
            weight_decay,
            seed,
            dropout,
            occlusion_mix,
            data,
            config,
            quiet,
            json,
        } => (|| {
            // A resumed run takes its config from the checkpoint it continues.
            let c = match &resume {
                Some(path) => fer_cbam::model::checkpoint::load(path)?.config,
                None => {
                    let mut c = config.config()?;
                    c.dropout = dropout;
                    c.validate()?;
                    c
                }
            };
            let gpu = fer_cbam::Gpu::new_blocking()?;
            let d = data.load()?;
            let adam = fer_cbam::ops::adam::AdamConfig {
                lr,
                weight_decay,
                ..Default::default()
            };
            let o = Output { quiet, json };
            let classes = c.classes.clone();
            let lm = cli::occlude::landmarks_of(&d, false);
            let mix = cli::occlude::mix(occlusion_mix, seed, c.in_channels, c.image_size, lm);
            let augment: Option<fer_cbam::train::Augment> =
                (occlusion_mix > 0.0).then_some(&mix as fer_cbam::train::Augment);
            let (e, seconds) = run::train_command(
                &gpu,
                c,
                &d,
                &out,
                resume.as_deref(),
                epochs,
                batch_size,
                adam,
                seed,
                data.strict,
                augment,
                &o,
            )?;
            if json {
                let mut v = run::report_json(&e, &classes);
                v["train_seconds"] = serde_json::json!(seconds);
                v["checkpoint"] = serde_json::json!(out);
                println!("{v}");
            } else {
                println!("test: {}", run::report(&e, &classes));
            }
            Ok(())
        })(),
        Command::Eval {
            checkpoint,
            split,
            batch_size,
            occlusion,
            data,
            json,
        } => (|| {
            let occ: Option<fer_cbam::data::occlusion::Occlusion> = match occlusion.as_str() {
                "none" => None,
                o => Some(
                    o.parse()
                        .map_err(|e: String| fer_cbam::Error::InvalidConfig {
                            op: "--occlusion".into(),
                            message: e,
                        })?,
                ),
            };
            let gpu = fer_cbam::Gpu::new_blocking()?;
            let d = data.load()?;
            let config = fer_cbam::model::checkpoint::load(&checkpoint)?.config;
            let lm = cli::occlude::landmarks_of(&d, split == "test");
            let f = occ.map(|o| cli::occlude::fixed(o, config.in_channels, config.image_size, lm));
            let augment = f.as_ref().map(|f| f as fer_cbam::train::Augment);
            let e = run::eval_command(
                &gpu,
                &checkpoint,
                &d,
                &split,
                batch_size,
                data.strict,
                augment,
            )?;
            let classes = config.classes;
            let source = cli::occlude::landmark_source(&d, split == "test");
            if json {
                let mut v = run::report_json(&e, &classes);
                v["occlusion"] = serde_json::json!(occlusion);
                v["landmarks"] = serde_json::json!(source);
                println!("{v}");
            } else {
                println!(
                    "{}; occlusion {occlusion} (landmarks: {source})\n{}",
                    d.describe(),
                    run::report(&e, &classes)
                );
            }
            Ok(())
        })(),
        Command::Demo {
            out,
            full,
            epochs,
            synthetic,
            seed,
            quiet,
        } => (|| {
            let mut plan = if full {
                cli::demo::Plan::full()
            } else {
                cli::demo::Plan::quick()
            };
            if let Some(e) = epochs {
                plan.epochs = e;
            }
            if let Some(n) = synthetic {
                plan.test = n / 5;
                plan.train = n - plan.test;
            }
            let gpu = fer_cbam::Gpu::new_blocking()?;
            let md = cli::demo::demo(&gpu, &plan, &out, seed, quiet)?;
            println!("{md}");
            println!("report written to {}", out.display());
            Ok(())
        })(),
        Command::Kfold(a) => cli::protocol::kfold(fer_cbam::Gpu::new_blocking, &a)
            .map(|r| protocol_done(&r, &a.common.out)),
        Command::Holdout(a) => cli::protocol::holdout(fer_cbam::Gpu::new_blocking, &a)
            .map(|r| protocol_done(&r, &a.common.out)),
        Command::Cross(a) => cli::protocol::cross(fer_cbam::Gpu::new_blocking, &a)
            .map(|r| protocol_done(&r, &a.common.out)),
        Command::Explain(args) => fer_cbam::Gpu::new_blocking().and_then(|gpu| {
            let w = cli::explain::explain_command(&gpu, &args)?;
            for f in &w.figures {
                println!("wrote {}", f.display());
            }
            println!("wrote {}", args.out.join("explain.json").display());
            Ok(())
        }),
        Command::Occlude(args) => cli::explain::occlude_command(&args).map(|(w, h)| {
            println!("wrote {} ({w}x{h})", args.out.display());
        }),
        Command::Predict {
            checkpoint,
            inputs,
            detect_face,
            face_margin,
            json,
        } => (|| {
            if !(0.0..=2.0).contains(&face_margin) {
                return Err(fer_cbam::Error::InvalidConfig {
                    op: "--face-margin".into(),
                    message: format!("{face_margin} is outside 0..2"),
                });
            }
            let gpu = fer_cbam::Gpu::new_blocking()?;
            let rows = run::predict_command(
                &gpu,
                &checkpoint,
                &inputs,
                detect_face.then_some(face_margin),
            )?;
            for r in rows {
                let face_json = |f: &Option<fer_cbam::data::face::FaceBox>| match f {
                    Some(b) => serde_json::json!([b.x, b.y, b.width, b.height]),
                    None => serde_json::Value::Null,
                };
                if json {
                    let t: Vec<_> = r
                        .top
                        .iter()
                        .map(|(c, p)| serde_json::json!({"class": c, "probability": p}))
                        .collect();
                    let mut v = serde_json::json!({"image": r.path, "top3": t});
                    if let Some(f) = &r.face {
                        v["face"] = face_json(f);
                    }
                    println!("{v}");
                } else {
                    let t: Vec<String> = r.top.iter().map(|(c, p)| format!("{c} {p:.3}")).collect();
                    let face = match &r.face {
                        None => String::new(),
                        Some(Some(b)) => {
                            format!(" (face {}x{} at {},{})", b.width, b.height, b.x, b.y)
                        }
                        Some(None) => " (no face found: whole image)".into(),
                    };
                    println!("{}: {}{face}", r.path.display(), t.join(", "));
                }
            }
            Ok(())
        })(),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Prints a finished protocol's summary table and where its report is.
fn protocol_done(report: &fer_cbam::protocol::Report, out: &std::path::Path) {
    let md = report.markdown();
    let table = md.split("\n## Models").next().unwrap_or(&md);
    println!("{table}");
    println!("report written to {}", out.display());
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
