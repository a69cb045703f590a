//! Occlusion as a per-example transform: test sets of one occlusion type, and a training mix.

use fer_cbam::data::occlusion::{self, Occlusion};
use fer_cbam::data::synthetic::Landmarks;
use fer_cbam::rng::SplitMix64;

use super::run::Data;

/// Where an image's 68 landmarks come from: exact (synthetic faces), the dataset's own or a
/// sidecar's, or a template for aligned crops.
pub fn landmarks_of(data: &Data, test: bool) -> impl Fn(usize, usize) -> Landmarks + Sync + '_ {
    move |i, size| match data {
        Data::Synthetic { train, test: t } => {
            if test {
                t.landmarks(i, size)
            } else {
                train.landmarks(i, size)
            }
        }
        Data::Folder { train, test: t, .. } => {
            if test {
                t.landmarks(i, size)
            } else {
                train.landmarks(i, size)
            }
        }
    }
}

/// Which sources one side's landmarks came from, with counts, for reports.
pub fn landmark_source(data: &Data, test: bool) -> String {
    match data {
        Data::Synthetic { .. } => "exact (the generator's own geometry)".into(),
        Data::Folder { train, test: t, .. } => {
            if test {
                t.landmark_summary()
            } else {
                train.landmark_summary()
            }
        }
    }
}

/// Applies `occ` to every test image, seeded by the image index (the same patch every run).
pub fn fixed<'a>(
    occ: Occlusion,
    channels: usize,
    size: usize,
    landmarks: impl Fn(usize, usize) -> Landmarks + Sync + 'a,
) -> impl Fn(&mut [u8], usize, usize) + Sync + 'a {
    move |px, i, _| {
        occlusion::apply(
            px,
            channels,
            size,
            occ,
            &landmarks(i, size),
            0x0cc1 ^ i as u64,
        );
    }
}

/// Training augmentation: with probability `p` an example gets one of the paper's five
/// occlusions, drawn (with the patch position) from a hash of (seed, index, epoch).
pub fn mix<'a>(
    p: f64,
    seed: u64,
    channels: usize,
    size: usize,
    landmarks: impl Fn(usize, usize) -> Landmarks + Sync + 'a,
) -> impl Fn(&mut [u8], usize, usize) + Sync + 'a {
    move |px, i, epoch| {
        let mut r =
            SplitMix64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9) ^ ((epoch as u64) << 40));
        if r.next_unit() < p {
            let occ = Occlusion::PAPER[(r.next_u64() % 5) as usize];
            occlusion::apply(px, channels, size, occ, &landmarks(i, size), r.next_u64());
        }
    }
}
