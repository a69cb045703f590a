//! [`ImageSource`]s over the data layer: the embedded synthetic faces and folder datasets.

use crate::data::dataset::{Dataset, LandmarkOrigin, Sample, SampleLandmarks};
use crate::data::occlusion::Template;
use crate::data::synthetic;
use crate::error::Result;
use crate::train::ImageSource;

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
