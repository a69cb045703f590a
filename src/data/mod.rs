//! Data: the embedded synthetic face set, class-per-folder datasets, splits and occlusions.

pub mod raster;
pub mod synthetic;
pub mod folder;
pub mod split;
pub mod occlusion;
