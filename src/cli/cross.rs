//! `fer-cbam cross`: cross-dataset evaluation (the paper's Table 6): train on all images of one
//! or more datasets, test on all images of another.

use std::path::PathBuf;

use fer_cbam::data::crop::{CropMode, CropReport};
use fer_cbam::data::dataset::Format;
use fer_cbam::data::occlusion::Template;
use fer_cbam::protocol::{self, DataInfo, Protocol};
use fer_cbam::sources::{DatasetSource, Source};
use fer_cbam::train::ImageSource;
use fer_cbam::Result;

use super::protocol::{merge, open, prepare_folder, print_done, train_all, ProtocolArgs};

/// `fer-cbam cross`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Training datasets, comma-separated: all their images (both sides of any split).
    #[arg(long, value_delimiter = ',', required = true)]
    pub train: Vec<PathBuf>,
    /// Test dataset: all its images.
    #[arg(long)]
    pub test: PathBuf,
    /// Form of every --train dataset; detected from its files when not given.
    #[arg(long)]
    pub train_format: Option<Format>,
    /// Form of --test; detected from its files when not given.
    #[arg(long)]
    pub test_format: Option<Format>,
    /// Landmark template for training images without landmarks: fer2013 or ckplus48.
    #[arg(long, default_value = "fer2013")]
    pub train_landmarks: Template,
    /// Landmark template for test images without landmarks: fer2013 or ckplus48 (for CK+48).
    #[arg(long, default_value = "fer2013")]
    pub test_landmarks: Template,
    /// Landmark sidecar CSV (`file,x0,y0,...,x67,y67`, e.g. from tools/landmarks.py) for the
    /// --train datasets; rows match images by path or path ending.
    #[arg(long, value_name = "PATH")]
    pub train_landmarks_csv: Option<PathBuf>,
    /// Landmark sidecar CSV for --test.
    #[arg(long, value_name = "PATH")]
    pub test_landmarks_csv: Option<PathBuf>,
    /// CK+: keep only the last (apex) frame of each sequence, on either side.
    #[arg(long)]
    pub ckplus_apex: bool,
    /// Stop at the first unreadable image instead of reporting, counting and going on.
    #[arg(long)]
    pub strict: bool,
    /// Keep every subject's images on one side of the validation split (--val-fraction).
    #[arg(long, value_parser = ["subject", "none"], default_value = "none")]
    pub group_by: String,
    /// Seed of the validation split.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Crop every image of both sides to a square around its face before resizing (its own
    /// landmarks' box, else the built-in detector's, grown by --face-margin); `none` uses
    /// images whole.
    #[arg(long, value_name = "none|face", default_value = "none")]
    pub crop: CropMode,
    /// With --crop face: the margin on every side of the face box, as a fraction of its side
    /// [default: 0.25].
    #[arg(long, value_name = "M")]
    pub face_margin: Option<f32>,
    #[command(flatten)]
    pub common: ProtocolArgs,
}

/// `fer-cbam cross`: train on the union of datasets, test on all of another.
pub fn run(args: &Args) -> Result<()> {
    // The report folder must not be in the way of any file the run reads.
    let mut inputs: Vec<PathBuf> = args.train.iter().chain([&args.test]).cloned().collect();
    inputs.extend(
        args.train_landmarks_csv
            .iter()
            .chain(&args.test_landmarks_csv)
            .cloned(),
    );
    prepare_folder(&args.common.out, &inputs)?;
    let c = &args.common;
    c.check()?;
    let crop = super::data::resolve_crop(Some(args.crop), args.face_margin, None)?;
    let mut samples = Vec::new();
    let mut notes = Vec::new();
    let mut train_crop: Option<CropReport> = None;
    for root in &args.train {
        let (ds, note, found) = open(
            root,
            args.train_format,
            args.ckplus_apex,
            args.train_landmarks_csv.as_deref(),
            crop,
            c.quiet,
        )?;
        samples.extend(ds.samples);
        notes.push(note);
        if let Some(f) = found {
            let t = train_crop.get_or_insert(CropReport {
                margin: f.margin,
                ..CropReport::default()
            });
            t.from_landmarks += f.from_landmarks;
            t.from_detector += f.from_detector;
            t.no_face.extend(f.no_face);
            t.unreadable.extend(f.unreadable);
        }
    }
    let train = Source::Dataset(DatasetSource {
        samples,
        template: args.train_landmarks,
    });
    let (ds, test_note, test_crop) = open(
        &args.test,
        args.test_format,
        args.ckplus_apex,
        args.test_landmarks_csv.as_deref(),
        crop,
        c.quiet,
    )?;
    let test = Source::Dataset(DatasetSource::new(&ds, args.test_landmarks, |_| true));
    let plan = protocol::single_plan(train.len(), test.len(), &c.attention);
    let data = DataInfo {
        train: format!("{}: {} images", notes.join(" + "), train.len()),
        test: format!("{test_note}: {} images", test.len()),
        train_landmarks: train.landmark_origins(),
        test_landmarks: test.landmark_origins(),
        train_counts: train.counts(None),
        test_counts: test.counts(None),
        samples: test.samples(),
        train_crop,
        test_crop,
    };
    let settings = merge(
        c.settings(),
        serde_json::json!({
            "group_by": args.group_by,
            "split_seed": args.split_seed,
            "crop": crop,
            "train": args.train,
            "test": args.test,
            "train_format": args.train_format.map(|f| f.name()),
            "test_format": args.test_format.map(|f| f.name()),
            "train_landmarks": format!("{:?}", args.train_landmarks),
            "test_landmarks": format!("{:?}", args.test_landmarks),
            "train_landmarks_csv": args.train_landmarks_csv,
            "test_landmarks_csv": args.test_landmarks_csv,
            "ckplus_apex": args.ckplus_apex,
        }),
    );
    let recipe = c.to_recipe(args.strict, args.split_seed, args.group_by == "subject")?;
    let report = train_all(
        &super::new_gpu()?,
        &Protocol {
            name: "cross",
            recipe: &recipe,
            test_sets: protocol::test_sets(&c.occlusions)?,
            train: &train,
            test: &test,
            folds: Vec::new(),
            plan,
            data,
            settings,
            out: &c.out,
        },
        c.quiet,
    )?;
    print_done(&report, &c.out);
    Ok(())
}
