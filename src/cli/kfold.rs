//! `fer-cbam kfold`: k-fold cross-validation (the paper's Table 3), stratified and optionally
//! subject-grouped, one report folder for every k and attention variant.

use fer_cbam::protocol::{self, DataInfo, Protocol};
use fer_cbam::sources::{DatasetSource, Source, SyntheticSource};
use fer_cbam::train::ImageSource;
use fer_cbam::{Error, Result};

use super::data::DataArgs;
use super::protocol::{
    data_settings, invalid, merge, open, prepare_folder, print_done, train_all, ProtocolArgs,
};

/// `fer-cbam kfold`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Fold counts, comma-separated: each k gives k models per attention variant. The folds
    /// are drawn with --split-seed; without --data the pool is --synthetic faces.
    #[arg(long, value_parser = super::folds, value_delimiter = ',', default_value = "3,5,10")]
    pub folds: Vec<usize>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub common: ProtocolArgs,
}

/// `fer-cbam kfold`: stratified (optionally subject-grouped) k-fold cross-validation.
pub fn run(args: &Args) -> Result<()> {
    prepare_folder(&args.common.out, &args.data.input_files())?;
    let c = &args.common;
    c.check()?;
    let (pool, note, crop) = match &args.data.data {
        None => {
            if args.data.crop_for(None)?.is_some() {
                return Err(invalid(
                    "--crop face",
                    "needs --data: the synthetic faces are drawn as face crops",
                ));
            }
            if let Some(csv) = &args.data.landmarks_csv {
                return Err(Error::Data {
                    path: csv.display().to_string(),
                    message:
                        "--landmarks-csv needs --data: the synthetic faces have exact landmarks"
                            .into(),
                });
            }
            if args.data.synthetic < 10 {
                return Err(invalid(
                    "--synthetic",
                    format!("{} faces are too few for k-fold", args.data.synthetic),
                ));
            }
            let s = SyntheticSource {
                seed: args.data.synthetic_seed,
                first: 0,
                len: args.data.synthetic,
            };
            let note = format!("synthetic faces (seed {}): {}", s.seed, args.data.synthetic);
            (Source::Synthetic(s), note, None)
        }
        Some(root) => {
            let (ds, note, crop) = open(
                root,
                args.data.format,
                args.data.ckplus_apex,
                args.data.landmarks_csv.as_deref(),
                args.data.crop_for(None)?,
                c.quiet,
            )?;
            let src = DatasetSource::new(&ds, args.data.landmarks, |_| true);
            (Source::Dataset(src), note, crop)
        }
    };
    let grouped = args.data.group_by == "subject";
    let groups = pool.groups();
    if grouped && groups.iter().all(|g| g.is_none()) {
        return Err(invalid(
            "--group-by subject",
            format!("no image of {note} names its subject"),
        ));
    }
    let (folds, plan) = protocol::kfold_plan(
        &pool.labels(),
        grouped.then_some(&groups[..]),
        &args.folds,
        &c.attention,
        args.data.split_seed,
    )?;
    let desc = format!(
        "{note}, {} images; stratified k-fold (seed {}{})",
        pool.len(),
        args.data.split_seed,
        if grouped { ", by subject" } else { "" }
    );
    let data = DataInfo {
        train: desc.clone(),
        test: desc,
        train_landmarks: pool.landmark_origins(),
        test_landmarks: pool.landmark_origins(),
        train_counts: pool.counts(None),
        test_counts: pool.counts(None),
        samples: pool.samples(),
        train_crop: crop.clone(),
        test_crop: crop,
    };
    let settings = merge(
        merge(c.settings(), data_settings(&args.data)),
        serde_json::json!({ "folds": args.folds }),
    );
    let recipe = c.to_recipe(args.data.strict, args.data.split_seed, grouped)?;
    let report = train_all(
        &super::new_gpu()?,
        &Protocol {
            name: "kfold",
            recipe: &recipe,
            test_sets: protocol::test_sets(&c.occlusions)?,
            train: &pool,
            test: &pool,
            folds,
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
