//! Data: the embedded synthetic face set, class-per-folder datasets, splits and occlusions.

pub mod augment;
pub mod crop;
pub mod dataset;
pub mod face;
pub mod folder;
pub mod formats;
pub mod landmarks;
pub mod occlusion;
pub mod raster;
pub mod split;
pub mod synthetic;
