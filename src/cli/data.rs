//! The data flags shared by every command that reads images (`train`, `eval`, `kfold`,
//! `holdout`, `occlude`), and how they become a train and a test side: the form, the split,
//! landmarks and face crops (docs/datasets.md).

use std::path::PathBuf;

use clap::Args;
use fer_cbam::data::crop::{self, CropMode, CropReport, FoundFace};
use fer_cbam::data::dataset::{self, Format, Pixels, Sample};
use fer_cbam::data::occlusion::Template;
use fer_cbam::data::{folder, landmarks, split};
use fer_cbam::model::checkpoint::FaceCrop;
use fer_cbam::sources::{Data, DatasetSource, SyntheticSource};
use fer_cbam::{Error, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// Where the images come from.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Dataset folder or file: class folders (`<root>/<class>/*`, or
    /// `<root>/train|test/<class>/*`) or a distributed form (see --format).
    /// Without it: the embedded synthetic face set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Form of --data; detected from its files when not given.
    #[arg(long)]
    pub format: Option<Format>,
    /// Number of synthetic faces when --data is not given (80% train, 20% test).
    #[arg(long, value_parser = crate::cli::synthetic_count, default_value_t = 3500)]
    pub synthetic: usize,
    /// Seed of the synthetic face set.
    #[arg(long, default_value_t = 2026)]
    pub synthetic_seed: u64,
    /// Seed of the stratified 80:20 split of a folder without train/ and test/.
    #[arg(long, default_value_t = 0)]
    pub split_seed: u64,
    /// Keep every subject's images on one side of the split (CK+ `S005_...`, JAFFE `KA.`).
    #[arg(long, value_parser = ["subject", "none"], default_value = "none")]
    pub group_by: String,
    /// CK+: keep only the last (apex) frame of each sequence (the paper's 309 images).
    #[arg(long)]
    pub ckplus_apex: bool,
    /// Stop at the first unreadable image instead of reporting, counting and going on.
    #[arg(long)]
    pub strict: bool,
    /// Landmark template for images without landmarks of their own: fer2013 or ckplus48.
    #[arg(long, default_value = "fer2013")]
    pub landmarks: Template,
    /// Landmarks for --data's images from a CSV sidecar `file,x0,y0,...,x67,y67[,flagged]` in
    /// image pixels (tools/landmarks.py writes one); rows match images by path relative to
    /// --data, or by the end of one image's path (a base name). Replaces the dataset's own
    /// landmarks where both exist.
    #[arg(long, value_name = "PATH")]
    pub landmarks_csv: Option<PathBuf>,
    /// Crop each image to a square around its face before resizing: `face` takes the box of
    /// the image's own landmarks (CK+ as distributed, .pts, AffectNet, --landmarks-csv) or else
    /// the built-in face detector's, grown by --face-margin; an image without a face is used
    /// whole and listed. `none` uses images whole [default: none for training; what the
    /// checkpoint was trained with for eval and a resumed train].
    #[arg(long, value_name = "none|face")]
    pub crop: Option<CropMode>,
    /// With --crop face: the margin added on every side of the face box, as a fraction of its
    /// side [default: 0.25, or the checkpoint's].
    #[arg(long, value_name = "M")]
    pub face_margin: Option<f32>,
}

/// The crop that `--crop` and `--face-margin` ask for, given the crop a checkpoint was trained
/// with (`trained`; `None` for a fresh run or a checkpoint trained on whole images).
pub fn resolve_crop(
    mode: Option<CropMode>,
    margin: Option<f32>,
    trained: Option<FaceCrop>,
) -> Result<Option<FaceCrop>> {
    let crop = match (mode, trained) {
        (Some(CropMode::None), _) | (None, None) => None,
        (Some(CropMode::Face), t) | (None, t @ Some(_)) => Some(FaceCrop::new(
            margin
                .or(t.map(|t| t.margin))
                .unwrap_or(crop::DEFAULT_MARGIN),
        )?),
    };
    if crop.is_none() && margin.is_some() {
        return Err(Error::InvalidConfig {
            op: "--face-margin".into(),
            message: "only applies with --crop face".into(),
        });
    }
    Ok(crop)
}

/// Crops `ds` to its faces with a progress bar on stderr (unless `quiet`): the detector takes
/// about 17 ms of CPU per 640x490 frame (docs/training.md), a minute or more for a large set.
pub fn crop_dataset(ds: &mut dataset::Dataset, crop: FaceCrop, quiet: bool) -> Result<CropReport> {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(ds.samples.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images  finding faces  [{eta}]")
            .unwrap(),
    );
    let r = crop::crop_samples(&mut ds.samples, crop, &|done, _| {
        bar.set_position(done as u64)
    });
    bar.finish_and_clear();
    Ok(r?.0)
}

impl DataArgs {
    /// The files the flags name (a CSV dataset, a landmark sidecar): a command's outputs must
    /// not be one of them.
    pub fn input_files(&self) -> Vec<PathBuf> {
        self.data
            .iter()
            .filter(|p| p.is_file())
            .chain(self.landmarks_csv.iter())
            .cloned()
            .collect()
    }

    /// The data with the crop of the flags alone (a run without a checkpoint to follow).
    pub fn load(&self) -> Result<Data> {
        self.load_with(self.crop_for(None)?, true)
    }

    /// The crop the flags ask for, given what a checkpoint was trained with.
    pub fn crop_for(&self, trained: Option<FaceCrop>) -> Result<Option<FaceCrop>> {
        resolve_crop(self.crop, self.face_margin, trained)
    }

    /// The data, each image cropped to its face with `crop`; `quiet` hides the progress bar of
    /// the face search.
    pub fn load_with(&self, crop: Option<FaceCrop>, quiet: bool) -> Result<Data> {
        let Some(root) = &self.data else {
            if crop.is_some() {
                return Err(Error::InvalidConfig {
                    op: "--crop face".into(),
                    message: "needs --data: the synthetic faces are drawn as face crops".into(),
                });
            }
            if let Some(csv) = &self.landmarks_csv {
                return Err(Error::Data {
                    path: csv.display().to_string(),
                    message:
                        "--landmarks-csv needs --data: the synthetic faces have exact landmarks"
                            .into(),
                });
            }
            if self.synthetic < 10 {
                return Err(Error::InvalidConfig {
                    op: "--synthetic".into(),
                    message: format!("{} faces are too few to split", self.synthetic),
                });
            }
            let n_test = self.synthetic / 5;
            let n_train = self.synthetic - n_test;
            return Ok(Data::Synthetic {
                train: SyntheticSource {
                    seed: self.synthetic_seed,
                    first: 0,
                    len: n_train,
                },
                test: SyntheticSource {
                    seed: self.synthetic_seed,
                    first: n_train as u64,
                    len: n_test,
                },
            });
        };
        let mut ds = dataset::open(root, self.format)?;
        if self.ckplus_apex {
            ds.keep_last_frame_per_sequence();
        }
        if let Some(csv) = &self.landmarks_csv {
            fer_cbam::data::landmarks::attach_sidecar(&mut ds, csv)?;
        }
        // After the landmarks are attached (they place the crop) and before the split.
        let crop = match crop {
            Some(c) => Some(crop_dataset(&mut ds, c, quiet)?),
            None => None,
        };
        let mut note = format!("{}", root.display());
        for s in &ds.skipped {
            note += &format!(" (skipped {} with {} entries)", s.path.display(), s.entries);
        }
        for n in &ds.notes {
            note += &format!(" ({n})");
        }
        note += &format!(" ({})", ds.landmark_summary());
        if let Some(c) = &crop {
            note += &format!(" ({})", c.summary(10));
        }
        let template = self.landmarks;
        if ds.has_splits {
            let train = DatasetSource::new(&ds, template, |s| s.split == folder::Split::Train);
            let test = DatasetSource::new(&ds, template, |s| s.split == folder::Split::Test);
            return Ok(Data::Folder {
                train,
                test,
                note,
                crop,
            });
        }
        let all = DatasetSource::new(&ds, template, |_| true);
        let groups = all.groups();
        let grouped = self.group_by == "subject";
        let part = split::stratified(
            &all.labels(),
            grouped.then_some(&groups[..]),
            split::TEST_FRACTION,
            self.split_seed,
        )?;
        note += &format!(
            ", stratified 80:20 split (seed {}{})",
            self.split_seed,
            if grouped { ", by subject" } else { "" }
        );
        Ok(Data::Folder {
            train: all.pick(&part.train),
            test: all.pick(&part.test),
            note,
            crop,
        })
    }
}

/// Per image: `None` without a face crop; with one, the crop found (`None`: used whole).
pub type FaceResult = Option<Option<FoundFace>>;

/// Image files as samples (label unknown), each with the `.pts` beside it if there is one, and
/// cropped to its face with `crop` as training crops (landmarks first, then the detector).
pub fn file_samples(
    files: &[PathBuf],
    crop: Option<FaceCrop>,
) -> Result<(Vec<Sample>, Vec<FaceResult>)> {
    let mut samples = Vec::with_capacity(files.len());
    for f in files {
        samples.push(Sample {
            name: f.display().to_string(),
            pixels: Pixels::File(f.clone()),
            label: 0,
            split: folder::Split::Unsplit,
            group: None,
            landmarks: landmarks::pts_beside(f)?,
        });
    }
    let faces = match crop {
        Some(c) => {
            let (report, faces) = crop::crop_samples(&mut samples, c, &|_, _| {})?;
            if let Some(bad) = report.unreadable.first() {
                // Strict, as predict is: the loader names the file and the problem.
                let i = samples
                    .iter()
                    .position(|s| &s.name == bad)
                    .expect("one of them");
                samples[i].load_original()?;
            }
            faces.into_iter().map(Some).collect()
        }
        None => vec![None; files.len()],
    };
    Ok((samples, faces))
}
