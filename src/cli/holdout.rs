//! `fer-cbam holdout`: hold-out evaluation (the paper's Table 5) on the dataset's own train/test
//! split or a stratified 80:20 split, one model per attention variant.

use fer_cbam::protocol::{self, DataInfo, Protocol};
use fer_cbam::sources::{Data, Source};
use fer_cbam::train::ImageSource;
use fer_cbam::Result;

use super::data::DataArgs;
use super::protocol::{data_settings, merge, prepare_folder, print_done, train_all, ProtocolArgs};

/// `fer-cbam holdout`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub common: ProtocolArgs,
}

/// `fer-cbam holdout`: the dataset's own train/test split, or a stratified 80:20 split.
pub fn run(args: &Args) -> Result<()> {
    prepare_folder(&args.common.out, &args.data.input_files())?;
    let c = &args.common;
    c.check()?;
    let d = args.data.load_with(args.data.crop_for(None)?, c.quiet)?;
    let desc = d.describe();
    let crop = d.crop().cloned();
    let (train, test) = match d {
        Data::Synthetic { train, test } => (Source::Synthetic(train), Source::Synthetic(test)),
        Data::Folder { train, test, .. } => (Source::Dataset(train), Source::Dataset(test)),
    };
    let plan = protocol::single_plan(train.len(), test.len(), &c.attention);
    let data = DataInfo {
        train: desc.clone(),
        test: desc,
        train_landmarks: train.landmark_origins(),
        test_landmarks: test.landmark_origins(),
        train_counts: train.counts(None),
        test_counts: test.counts(None),
        samples: test.samples(),
        train_crop: crop.clone(),
        test_crop: crop,
    };
    let settings = merge(c.settings(), data_settings(&args.data));
    let recipe = c.to_recipe(
        args.data.strict,
        args.data.split_seed,
        args.data.group_by == "subject",
    )?;
    let report = train_all(
        &super::new_gpu()?,
        &Protocol {
            name: "holdout",
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
