//! Geometric augmentation of training images: a random horizontal flip and a random shift.
//!
//! Each example's transform is drawn from a hash of (seed, epoch, example index) alone, never
//! from a generator that runs through the epoch: the same example gets the same transform in
//! every run, in whatever order the prefetch thread meets it, and a run resumed at epoch `e`
//! draws exactly what the uninterrupted run drew there.
//!
//! The shift translates the image by `(dx, dy)`, each uniform in `-shift..=shift` at the
//! network's input size, and fills the uncovered border with 0. That is the same as padding by
//! `shift` pixels of 0 and cropping a random `size` x `size` window (torchvision's
//! `RandomCrop(size, padding=shift)`), done in place without the padded copy. Zero fill rather
//! than edge replication: a replicated edge smears the hair or the chin into a stripe that no
//! real face has, while a black border is what the network already sees from the paper's
//! occlusions and carries no texture to learn.
//!
//! Occlusions are drawn in the untransformed image (their boxes come from landmarks in its
//! coordinates) and the transform is applied after, so an eye box moves with the eyes.

use serde::{Deserialize, Serialize};

use crate::data::occlusion::{self, Occlusion};
use crate::data::synthetic::Landmarks;
use crate::rng::SplitMix64;

/// Which geometric augmentations a training run applies; the default applies none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Largest translation in pixels (at the network's input size), along x and along y.
    pub shift: usize,
}

/// One example's drawn transform: first the flip, then the translation by `(dx, dy)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transform {
    pub flip: bool,
    pub dx: i32,
    pub dy: i32,
}

impl Transform {
    pub const IDENTITY: Transform = Transform {
        flip: false,
        dx: 0,
        dy: 0,
    };

    /// Applies the transform to a `[channels, size, size]` image in place: output pixel
    /// `(x, y)` is input pixel `(x', y - dy)` with `x' = size - 1 - (x - dx)` flipped, `x - dx`
    /// otherwise, and 0 where that falls outside the image.
    pub fn apply(&self, image: &mut [u8], channels: usize, size: usize) {
        assert_eq!(
            image.len(),
            channels * size * size,
            "augmentation: image of {} bytes is not {channels} x {size} x {size}",
            image.len()
        );
        if *self == Transform::IDENTITY {
            return;
        }
        let mut row = vec![0u8; size];
        let plane = size * size;
        let (dx, dy) = (self.dx as isize, self.dy as isize);
        let n = size as isize;
        for c in 0..channels {
            let p = &mut image[c * plane..(c + 1) * plane];
            if self.flip {
                for y in 0..size {
                    p[y * size..(y + 1) * size].reverse();
                }
            }
            // Rows move by dy: walk away from the side they move towards, so a row is read
            // before it is overwritten.
            let ys: Box<dyn Iterator<Item = isize>> = if dy > 0 {
                Box::new((0..n).rev())
            } else {
                Box::new(0..n)
            };
            for y in ys {
                let src = y - dy;
                if !(0..n).contains(&src) {
                    p[y as usize * size..(y as usize + 1) * size].fill(0);
                    continue;
                }
                let s = &p[src as usize * size..(src as usize + 1) * size];
                for (x, out) in row.iter_mut().enumerate() {
                    let sx = x as isize - dx;
                    *out = if (0..n).contains(&sx) {
                        s[sx as usize]
                    } else {
                        0
                    };
                }
                p[y as usize * size..(y as usize + 1) * size].copy_from_slice(&row);
            }
        }
    }

    /// Where a point of the input image lands, in continuous pixel coordinates (pixel `(i, j)`
    /// covers `[i, i+1) x [j, j+1)`, as landmarks are given): for transforming landmarks with
    /// the image.
    pub fn map_point(&self, p: [f32; 2], size: usize) -> [f32; 2] {
        let x = if self.flip { size as f32 - p[0] } else { p[0] };
        [x + self.dx as f32, p[1] + self.dy as f32]
    }
}

impl Augmentation {
    pub fn is_identity(&self) -> bool {
        !self.flip && self.shift == 0
    }

    /// The transform of example `index` in epoch `epoch` of a run seeded `seed`.
    pub fn draw(&self, seed: u64, epoch: usize, index: usize) -> Transform {
        if self.is_identity() {
            return Transform::IDENTITY;
        }
        // Chained SplitMix64 steps hash the three keys without the collisions of a plain xor
        // (seed 1, epoch 0 would otherwise draw what seed 0, epoch 1 draws); the salt keeps
        // this stream apart from the occlusion mix's, which hashes the same keys.
        let mut r = SplitMix64(seed ^ 0x666c_6970_7368_6674);
        let mut r = SplitMix64(r.next_u64() ^ epoch as u64);
        let mut r = SplitMix64(r.next_u64() ^ index as u64);
        let flip = self.flip && r.next_u64() >> 63 == 1;
        let span = 2 * self.shift as u64 + 1;
        let mut offset = || (r.next_u64() % span) as i32 - self.shift as i32;
        let (dx, dy) = if self.shift > 0 {
            (offset(), offset())
        } else {
            (0, 0)
        };
        Transform { flip, dx, dy }
    }

    /// Draws example `index`'s transform for `epoch` and applies it to its image.
    pub fn apply(
        &self,
        image: &mut [u8],
        channels: usize,
        size: usize,
        seed: u64,
        epoch: usize,
        index: usize,
    ) {
        self.draw(seed, epoch, index).apply(image, channels, size);
    }

    /// `flip`, `shift 4`, `flip, shift 4`, or `none`: for reports.
    pub fn describe(&self) -> String {
        match (self.flip, self.shift) {
            (false, 0) => "none".into(),
            (true, 0) => "flip".into(),
            (false, s) => format!("shift {s} px"),
            (true, s) => format!("flip, shift {s} px"),
        }
    }
}

/// A per-example transform of an image (`[C, S, S]` pixels, the example's index, the epoch), as
/// the training and evaluation loops take it, owned by its caller.
pub type Boxed<'a> = Box<dyn Fn(&mut [u8], usize, usize) + Sync + 'a>;

/// A borrowed transform, the form the loops take (`train::Augment`).
pub type Borrowed<'a> = &'a (dyn Fn(&mut [u8], usize, usize) + Sync);

/// A boxed transform as the loops take it (`train::Augment`).
pub fn as_augment<'a>(f: &'a Option<Boxed<'a>>) -> Option<Borrowed<'a>> {
    f.as_deref()
        .map(|f| f as &(dyn Fn(&mut [u8], usize, usize) + Sync))
}

/// A test set of one occlusion type: `occ` applied to every image, the patch seeded by the
/// image's index (the same patch on every run and for every model).
pub fn occluded<'a>(
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

/// Training's occlusion mix: with probability `p` an example gets one of the paper's five
/// occlusions, drawn (with the patch position) from a hash of (seed, index, epoch).
pub fn occlusion_mix<'a>(
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

/// The training transform of every example: with `occlusion_mix`, one of the paper's
/// occlusions on that fraction of images (drawn in the untransformed image, where its
/// landmarks are), then the flip and shift; `None` when there is nothing to do.
pub fn training<'a>(
    occlusion_mix: f64,
    augmentation: Augmentation,
    seed: u64,
    channels: usize,
    size: usize,
    landmarks: impl Fn(usize, usize) -> Landmarks + Sync + 'a,
) -> Option<Boxed<'a>> {
    if occlusion_mix <= 0.0 && augmentation.is_identity() {
        return None;
    }
    let mix = (occlusion_mix > 0.0)
        .then(|| self::occlusion_mix(occlusion_mix, seed, channels, size, landmarks));
    Some(Box::new(move |px: &mut [u8], i: usize, epoch: usize| {
        if let Some(m) = &mix {
            m(px, i, epoch);
        }
        augmentation.apply(px, channels, size, seed, epoch, i);
    }))
}
