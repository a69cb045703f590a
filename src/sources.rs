//! [`ImageSource`]s over the data layer: the embedded synthetic faces and folder datasets, one
//! side of a protocol ([`Source`]), and the two sides of a run ([`Data`]).

use crate::data::crop::CropReport;
use crate::data::dataset::{Dataset, LandmarkOrigin, Sample, SampleLandmarks};
use crate::data::occlusion::Template;
use crate::data::synthetic::{self, Landmarks};
use crate::error::Result;
use crate::model::CLASSES;
use crate::train::ImageSource;
use serde::{Deserialize, Serialize};

/// Faces `first .. first + len` of the synthetic set `seed`, drawn at the model's size.
pub struct SyntheticSource {
    pub seed: u64,
    pub first: u64,
    pub len: usize,
}

impl ImageSource for SyntheticSource {
    fn len(&self) -> usize {
        self.len
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        let face = synthetic::generate(self.seed, self.first + i as u64, size);
        Ok((face.image(channels), face.label as u32))
    }
    fn describe(&self, i: usize) -> String {
        format!(
            "synthetic face #{} (seed {})",
            self.first + i as u64,
            self.seed
        )
    }
}

impl SyntheticSource {
    /// The exact 68 landmarks of face `i` at `size` (for occlusion).
    pub fn landmarks(&self, i: usize, size: usize) -> synthetic::Landmarks {
        synthetic::generate(self.seed, self.first + i as u64, size).landmarks
    }
    pub fn labels(&self) -> Vec<usize> {
        (0..self.len)
            .map(|i| synthetic::label_of(self.seed, self.first + i as u64))
            .collect()
    }
}

/// Samples of a [`Dataset`](crate::data::dataset::Dataset), decoded (and resized) on demand.
pub struct DatasetSource {
    pub samples: Vec<Sample>,
    /// Landmarks for samples that have none of their own.
    pub template: Template,
}

impl DatasetSource {
    pub fn new(dataset: &Dataset, template: Template, keep: impl Fn(&Sample) -> bool) -> Self {
        DatasetSource {
            samples: dataset
                .samples
                .iter()
                .filter(|s| keep(s))
                .cloned()
                .collect(),
            template,
        }
    }
    /// The samples at `indices`, in that order.
    pub fn pick(&self, indices: &[usize]) -> DatasetSource {
        DatasetSource {
            samples: indices.iter().map(|&i| self.samples[i].clone()).collect(),
            template: self.template,
        }
    }
    pub fn labels(&self) -> Vec<usize> {
        self.samples.iter().map(|s| s.label).collect()
    }
    pub fn groups(&self) -> Vec<Option<String>> {
        self.samples.iter().map(|s| s.group.clone()).collect()
    }
    /// Sample `i`'s 68 landmarks at `size`: its own, or the template's.
    pub fn landmarks(&self, i: usize, size: usize) -> synthetic::Landmarks {
        match &self.samples[i].landmarks {
            Some(l) => l.at(size),
            None => self.template.landmarks(size),
        }
    }
    /// Where the landmarks came from, per kind of source with counts ("309 from sidecar
    /// x.csv, 12 from canonical template (Fer2013)"), for reports.
    pub fn landmark_summary(&self) -> String {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for i in 0..self.samples.len() {
            let o = self.landmark_origin(i);
            // Per kind of source, not per landmark file.
            let kind = if o.starts_with("dataset file") {
                "the dataset's landmark files".to_string()
            } else {
                o
            };
            *counts.entry(kind).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|(k, n)| format!("{n} from {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// Where sample `i`'s landmarks came from, in words.
    pub fn landmark_origin(&self, i: usize) -> String {
        match &self.samples[i].landmarks {
            Some(SampleLandmarks {
                origin: LandmarkOrigin::File(p),
                ..
            }) => format!("dataset file {}", p.display()),
            Some(SampleLandmarks {
                origin: LandmarkOrigin::Sidecar { csv, flagged },
                ..
            }) => format!(
                "sidecar {}{}",
                csv.display(),
                if *flagged {
                    " (flagged: no face found)"
                } else {
                    ""
                }
            ),
            None => format!("canonical template ({:?})", self.template),
        }
    }
}

impl ImageSource for DatasetSource {
    fn len(&self) -> usize {
        self.samples.len()
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        let s = &self.samples[i];
        Ok((s.load(size, channels)?, s.label as u32))
    }
    fn describe(&self, i: usize) -> String {
        self.samples[i].name.clone()
    }
}

/// The two sides of the data.
pub enum Data {
    Synthetic {
        train: SyntheticSource,
        test: SyntheticSource,
    },
    Folder {
        train: DatasetSource,
        test: DatasetSource,
        note: String,
        /// With `--crop face`: what the crop found, over both sides.
        crop: Option<CropReport>,
    },
}

impl Data {
    pub fn train(&self) -> &dyn ImageSource {
        match self {
            Data::Synthetic { train, .. } => train,
            Data::Folder { train, .. } => train,
        }
    }
    pub fn test(&self) -> &dyn ImageSource {
        match self {
            Data::Synthetic { test, .. } => test,
            Data::Folder { test, .. } => test,
        }
    }
    /// Labels and subjects of the training side, for the validation split.
    pub fn train_labels_groups(&self) -> (Vec<usize>, Vec<Option<String>>) {
        match self {
            Data::Synthetic { train, .. } => (train.labels(), vec![None; train.len]),
            Data::Folder { train, .. } => (train.labels(), train.groups()),
        }
    }
    pub fn crop(&self) -> Option<&CropReport> {
        match self {
            Data::Synthetic { .. } => None,
            Data::Folder { crop, .. } => crop.as_ref(),
        }
    }
    /// Where an image's 68 landmarks come from, on the test side (or the training side):
    /// exact (synthetic faces), the dataset's own or a sidecar's, or a template for aligned crops.
    pub fn landmarks_of(&self, test: bool) -> impl Fn(usize, usize) -> Landmarks + Sync + '_ {
        move |i, size| match self {
            Data::Synthetic { train, test: t } => match test {
                true => t.landmarks(i, size),
                false => train.landmarks(i, size),
            },
            Data::Folder { train, test: t, .. } => match test {
                true => t.landmarks(i, size),
                false => train.landmarks(i, size),
            },
        }
    }

    /// Which sources one side's landmarks came from, with counts, for reports.
    pub fn landmark_source(&self, test: bool) -> String {
        match self {
            Data::Synthetic { .. } => "exact (the generator's own geometry)".into(),
            Data::Folder { train, test: t, .. } => match test {
                true => t.landmark_summary(),
                false => train.landmark_summary(),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Data::Synthetic { train, test } => format!(
                "synthetic faces (seed {}): {} train, {} test",
                train.seed, train.len, test.len
            ),
            Data::Folder {
                train, test, note, ..
            } => {
                format!(
                    "{note}: {} train, {} test",
                    train.samples.len(),
                    test.samples.len()
                )
            }
        }
    }
}

/// The images of one side of a protocol.
pub enum Source {
    Synthetic(SyntheticSource),
    Dataset(DatasetSource),
}

impl ImageSource for Source {
    fn len(&self) -> usize {
        match self {
            Source::Synthetic(s) => s.len(),
            Source::Dataset(s) => s.len(),
        }
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        match self {
            Source::Synthetic(s) => s.load(i, channels, size),
            Source::Dataset(s) => s.load(i, channels, size),
        }
    }
    fn describe(&self, i: usize) -> String {
        match self {
            Source::Synthetic(s) => s.describe(i),
            Source::Dataset(s) => s.describe(i),
        }
    }
}

impl Source {
    pub fn landmarks(&self, i: usize, size: usize) -> Landmarks {
        match self {
            Source::Synthetic(s) => s.landmarks(i, size),
            Source::Dataset(s) => s.landmarks(i, size),
        }
    }
    pub fn labels(&self) -> Vec<usize> {
        match self {
            Source::Synthetic(s) => s.labels(),
            Source::Dataset(s) => s.labels(),
        }
    }
    pub fn groups(&self) -> Vec<Option<String>> {
        match self {
            Source::Synthetic(s) => vec![None; s.len],
            Source::Dataset(s) => s.groups(),
        }
    }
    pub fn samples(&self) -> Vec<SampleInfo> {
        let labels = self.labels();
        let groups = self.groups();
        (0..self.len())
            .map(|i| SampleInfo {
                name: self.describe(i),
                label: labels[i],
                group: groups[i].clone(),
            })
            .collect()
    }
    pub fn counts(&self, indices: Option<&[usize]>) -> Vec<usize> {
        let labels = self.labels();
        let mut c = vec![0; CLASSES.len()];
        match indices {
            Some(idx) => idx.iter().for_each(|&i| c[labels[i]] += 1),
            None => labels.iter().for_each(|&l| c[l] += 1),
        }
        c
    }
    /// Where the landmarks came from, per kind of source, with counts.
    pub fn landmark_origins(&self) -> String {
        match self {
            Source::Synthetic(_) => "exact (the generator's own geometry)".into(),
            Source::Dataset(s) => s.landmark_summary(),
        }
    }
}

/// One example the evaluations' `indices` refer to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleInfo {
    pub name: String,
    pub label: usize,
    pub group: Option<String>,
}
