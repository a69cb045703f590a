//! The `fer-cbam` command line. Every failure ends as one line on stderr and exit status 1.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod cli;
use cli::config::ConfigArgs;
use cli::data::DataArgs;
use cli::new_gpu;
use cli::report;
use cli::run::{self, Output};
use fer_cbam::model::checkpoint;

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
    Train {
        /// Output checkpoint (.safetensors); the optimizer state goes beside it
        /// (.optim.safetensors) for --resume. Both are checked writable before training starts.
        #[arg(long)]
        out: PathBuf,
        /// Continue from this checkpoint and its optimizer state (its config is used); the two
        /// must be a pair saved together (same step, matching parameters). A run stopped
        /// mid-epoch continues that epoch, which counts as the first of --epochs. It may be the
        /// same path as --out (the run continues in place).
        #[arg(long)]
        resume: Option<PathBuf>,
        /// Epochs to train (at least 1; `init` writes an untrained checkpoint).
        #[arg(long, value_parser = crate::cli::epochs, default_value_t = 10)]
        epochs: usize,
        /// Also save --out (and its optimizer state) every N epochs during training, not only
        /// at the end. Ctrl-C always saves the step reached, then stops.
        #[arg(long, value_name = "N", value_parser = crate::cli::every)]
        checkpoint_every: Option<usize>,
        /// Training batch size.
        #[arg(long, value_parser = crate::cli::batch_size, default_value_t = 64)]
        batch_size: usize,
        /// Adam's learning rate.
        #[arg(long, value_parser = crate::cli::positive, default_value_t = 1e-3)]
        lr: f64,
        /// Decoupled (AdamW) weight decay.
        #[arg(long, value_parser = crate::cli::non_negative, default_value_t = 0.0)]
        weight_decay: f64,
        /// Seed of the initialisation, the shuffling and the dropout masks.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Dropout probability of the head.
        #[arg(long, value_parser = crate::cli::dropout, default_value_t = 0.2)]
        dropout: f32,
        /// Fraction of training images that get one of the paper's five occlusions (random
        /// 8/16/24 px patch, eyes, mouth), redrawn every epoch.
        #[arg(long, value_parser = crate::cli::fraction, default_value_t = 0.0)]
        occlusion_mix: f64,
        #[command(flatten)]
        recipe: cli::recipe::RecipeArgs,
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
        /// Checkpoint to evaluate.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Which side of the data: test (default) or train.
        #[arg(long, value_parser = ["test", "train"], default_value = "test")]
        split: String,
        /// Evaluation batch size.
        #[arg(long, value_parser = crate::cli::batch_size, default_value_t = 64)]
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
    /// Export a checkpoint for other runtimes: an ONNX graph of the inference network (no GPU
    /// needed).
    Export(cli::export::ExportArgs),
    /// Print the top-3 classes with probabilities for images (files or folders of images).
    Predict {
        /// Checkpoint to predict with.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Image files or folders. An image that cannot be read is reported and the others are
        /// still predicted; the exit status is then 1.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Crop each image to a square around its face first: the box of the `.pts` landmarks
        /// beside the image if there is one, else the largest face the embedded SeetaFace
        /// detector finds; an image without a face is used whole, and the output says so.
        /// `none` uses images whole [default: what the checkpoint was trained with].
        #[arg(long, value_name = "none|face")]
        crop: Option<fer_cbam::data::crop::CropMode>,
        /// The same as --crop face: for photos that are not already aligned face crops.
        #[arg(long, conflicts_with = "crop")]
        detect_face: bool,
        /// Margin added around the face box on every side, as a fraction of its size
        /// [default: 0.25, or the checkpoint's].
        #[arg(long, value_name = "M", value_parser = crate::cli::margin)]
        face_margin: Option<f32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
        Command::Train {
            out,
            resume,
            epochs,
            checkpoint_every,
            batch_size,
            lr,
            weight_decay,
            seed,
            dropout,
            occlusion_mix,
            recipe,
            data,
            config,
            quiet,
            json,
        } => (|| {
            // Everything that can fail before training is checked before training: where the
            // results go first (a run must not end on a missing folder), then what is resumed.
            let mut inputs = data.input_files();
            // The pair being resumed is an input too, unless the run continues it in place.
            if let Some(r) = resume
                .as_ref()
                .filter(|r| !fer_cbam::files::same_file(r, &out))
            {
                inputs.extend([r.clone(), checkpoint::optimizer_path(r)]);
            }
            let inputs: Vec<&std::path::Path> = inputs.iter().map(PathBuf::as_path).collect();
            checkpoint::check_pair_outputs(&out, &inputs)?;
            // A resumed run takes its config from the checkpoint it continues, once the
            // checkpoint and its optimizer state are known to be a pair, and its face crop
            // unless --crop says otherwise.
            let (c, trained_crop) = match &resume {
                Some(path) => {
                    let st = checkpoint::load_training(path)?;
                    (st.checkpoint.config, st.meta.and_then(|t| t.crop))
                }
                None => {
                    let mut c = config.config(recipe.default_norm())?;
                    c.dropout = dropout;
                    c.validate()?;
                    (c, None)
                }
            };
            recipe.check(c.image_size)?;
            let crop = data.crop_for(trained_crop)?;
            let gpu = new_gpu()?;
            let d = data.load_with(crop, quiet || json)?;
            let adam = fer_cbam::ops::adam::AdamConfig {
                lr,
                weight_decay,
                ..Default::default()
            };
            let o = Output { quiet, json };
            o.say(format!("device: {}", gpu.summary()));
            let classes = c.classes.clone();
            run::install_interrupt_handler();
            let job = run::TrainJob {
                out_path: &out,
                resume: resume.as_deref(),
                epochs,
                batch: batch_size,
                adam,
                seed,
                strict: data.strict,
                occlusion_mix,
                recipe: &recipe,
                split_seed: data.split_seed,
                grouped: data.group_by == "subject",
                crop,
                saving: run::Saving {
                    every: checkpoint_every,
                },
            };
            let t = run::train_command(&gpu, c, &d, &job, &o)?;
            if json {
                let mut v = report::json(&t.eval, &classes);
                v["train_seconds"] = serde_json::json!(t.seconds);
                v["checkpoint"] = serde_json::json!(out);
                v["lr_schedule"] = serde_json::json!(t.schedule);
                v["augmentation"] = serde_json::json!(recipe.augmentation());
                v["epochs"] = serde_json::json!(t.epochs);
                v["validation"] = serde_json::json!({
                    "images": t.val_images,
                    "best": t.best,
                    "kept_epoch": t.kept,
                });
                v["crop"] = serde_json::json!(d.crop());
                v["unreadable"] = serde_json::json!(report::all_unreadable(&t.eval, &t.unreadable));
                v["train_unreadable"] = serde_json::json!(t.unreadable);
                cli::print_line(v);
            } else {
                cli::print_line(format!("test: {}", report::text(&t.eval, &classes)));
                if !t.unreadable.is_empty() {
                    cli::print_text(report::unreadable_lines(
                        "training images could not be read; each time, its row of the batch \
                         was filled with a copy of a readable image of the same batch",
                        &t.unreadable,
                    ));
                }
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
            let config = fer_cbam::model::checkpoint::load(&checkpoint)?.config;
            // The checkpoint's face crop unless --crop says otherwise.
            let trained = fer_cbam::model::checkpoint::load_training_meta(&checkpoint)?;
            let crop = data.crop_for(trained.and_then(|t| t.crop))?;
            let gpu = new_gpu()?;
            let d = data.load_with(crop, json)?;
            let lm = d.landmarks_of(split == "test");
            let f = occ.map(|o| {
                fer_cbam::data::augment::occluded(o, config.in_channels, config.image_size, lm)
            });
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
            let source = d.landmark_source(split == "test");
            if json {
                let mut v = report::json(&e, &classes);
                v["occlusion"] = serde_json::json!(occlusion);
                v["landmarks"] = serde_json::json!(source);
                v["crop"] = serde_json::json!(d.crop());
                cli::print_line(v);
            } else {
                cli::print_line(format!(
                    "{}; occlusion {occlusion} (landmarks: {source})\n{}",
                    d.describe(),
                    report::text(&e, &classes)
                ));
            }
            Ok(())
        })(),
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
        Command::Kfold(a) => {
            let inputs = a.data.input_files();
            protocol_folder(&a.common.out, &inputs)
                .and_then(|()| cli::protocol::kfold(new_gpu, &a))
                .map(|r| protocol_done(&r, &a.common.out))
        }
        Command::Holdout(a) => {
            let inputs = a.data.input_files();
            protocol_folder(&a.common.out, &inputs)
                .and_then(|()| cli::protocol::holdout(new_gpu, &a))
                .map(|r| protocol_done(&r, &a.common.out))
        }
        Command::Cross(a) => {
            let mut inputs: Vec<PathBuf> = a.train.iter().chain([&a.test]).cloned().collect();
            inputs.extend(
                a.train_landmarks_csv
                    .iter()
                    .chain(&a.test_landmarks_csv)
                    .cloned(),
            );
            protocol_folder(&a.common.out, &inputs)
                .and_then(|()| cli::protocol::cross(new_gpu, &a))
                .map(|r| protocol_done(&r, &a.common.out))
        }
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
        Command::Predict {
            checkpoint,
            inputs,
            crop,
            detect_face,
            face_margin,
            json,
        } => (|| {
            let crop = if detect_face {
                Some(fer_cbam::data::crop::CropMode::Face)
            } else {
                crop
            };
            let trained = fer_cbam::model::checkpoint::load_training_meta(&checkpoint)?;
            let crop = cli::data::resolve_crop(crop, face_margin, trained.and_then(|t| t.crop))?;
            let gpu = new_gpu()?;
            let rows = run::predict_command(&gpu, &checkpoint, &inputs, crop)?;
            let mut failed = 0;
            for r in &rows {
                let face_json = |f: &Option<fer_cbam::data::crop::FoundFace>| match f {
                    Some(f) => serde_json::json!([f.crop.x, f.crop.y, f.crop.width, f.crop.height]),
                    None => serde_json::Value::Null,
                };
                if let Some(e) = &r.error {
                    // The other images are still predicted; the exit status says one was not.
                    failed += 1;
                    if json {
                        cli::print_line(serde_json::json!({"image": r.path, "error": e}));
                    } else {
                        cli::warn_line(format!("error: {e}"));
                    }
                } else if json {
                    let t: Vec<_> = r
                        .top
                        .iter()
                        .map(|(c, p)| serde_json::json!({"class": c, "probability": p}))
                        .collect();
                    let mut v = serde_json::json!({"image": r.path, "top3": t});
                    if let Some(f) = &r.face {
                        v["face"] = face_json(f);
                        v["face_from"] = serde_json::json!(f.map(|f| f.from));
                    }
                    cli::print_line(v);
                } else {
                    let t: Vec<String> = r.top.iter().map(|(c, p)| format!("{c} {p:.3}")).collect();
                    let face = match &r.face {
                        None => String::new(),
                        Some(Some(f)) => {
                            let from = match f.from {
                                fer_cbam::data::crop::FaceSource::Landmarks => "landmarks",
                                fer_cbam::data::crop::FaceSource::Detector => "detector",
                            };
                            let b = f.crop;
                            format!(
                                " (face {}x{} at {},{}, from the {from})",
                                b.width, b.height, b.x, b.y
                            )
                        }
                        Some(None) => " (no face found: whole image)".into(),
                    };
                    cli::print_line(format!("{}: {}{face}", r.path.display(), t.join(", ")));
                }
            }
            if failed > 0 {
                return Err(fer_cbam::Error::Data {
                    path: "predict".into(),
                    message: format!(
                        "predicted {} of {} images; {failed} could not be read (named above)",
                        rows.len() - failed,
                        rows.len()
                    ),
                });
            }
            Ok(())
        })(),
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

/// Creates a protocol's report folder before the data is read or a model trained.
fn protocol_folder(out: &std::path::Path, inputs: &[PathBuf]) -> fer_cbam::Result<()> {
    let inputs: Vec<&std::path::Path> = inputs.iter().map(PathBuf::as_path).collect();
    fer_cbam::files::check_folder(out, &inputs)
}

/// Prints a finished protocol's summary table and where its report is.
fn protocol_done(report: &fer_cbam::protocol::Report, out: &std::path::Path) {
    let md = report.markdown();
    let table = md.split("\n## Models").next().unwrap_or(&md);
    cli::print_line(table);
    cli::print_line(format!("report written to {}", out.display()));
}
