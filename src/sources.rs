//! [`ImageSource`]s over the data layer: the embedded synthetic faces and folder datasets.

use crate::data::folder::{self, FolderDataset, Item};
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

/// Image files of a folder dataset, decoded (and resized) on demand.
pub struct FolderSource {
    pub items: Vec<Item>,
}

impl FolderSource {
    pub fn new(dataset: &FolderDataset, keep: impl Fn(&Item) -> bool) -> FolderSource {
        FolderSource {
            items: dataset.items.iter().filter(|i| keep(i)).cloned().collect(),
        }
    }
    pub fn labels(&self) -> Vec<usize> {
        self.items.iter().map(|i| i.label).collect()
    }
    pub fn groups(&self) -> Vec<Option<String>> {
        self.items.iter().map(|i| i.group.clone()).collect()
    }
}

impl ImageSource for FolderSource {
    fn len(&self) -> usize {
        self.items.len()
    }
    fn load(&self, i: usize, channels: usize, size: usize) -> Result<(Vec<u8>, u32)> {
        let item = &self.items[i];
        Ok((
            folder::decode(&item.path, size, channels)?,
            item.label as u32,
        ))
    }
    fn describe(&self, i: usize) -> String {
        self.items[i].path.display().to_string()
    }
}
