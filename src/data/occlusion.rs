//! The paper's synthetic occlusions (section 3.2): a black square patch at a random place, or a
//! black rectangle over the eye region or the mouth region found from 68 facial landmarks.
//!
//! Occlusions are written into the u8 image as 0 before the `p / 255` input mapping, so an
//! occluded pixel is exactly 0.0 for the network (spec, "Input").
//!
//! Real crops come without landmarks here (the CK+48 and FER2013 releases have none), so
//! [`Template`] places a fixed 68-point shape where the eyes and mouth are on average in each
//! dataset's aligned crops.

use std::fmt;
use std::str::FromStr;

use super::synthetic::{mean_shape, Landmarks};
use crate::rng::SplitMix64;

/// Margin around the landmark boxes, as a fraction of the face width (the distance between jaw
/// points 0 and 16): enough to cover the lids, lashes and lip outline that the points only
/// trace.
pub const MARGIN: f32 = 0.1;

/// One of the paper's occlusions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occlusion {
    /// A black square of this many pixels at 128x128 (the paper's 8, 16, 24), scaled by
    /// `size / 128` at other sizes, placed uniformly at random fully inside the image.
    Patch(usize),
    /// Brows and eyes: the box of points 17-26 and 36-47, plus [`MARGIN`].
    Eyes,
    /// Lips: the box of points 48-67, plus [`MARGIN`].
    Mouth,
}

impl Occlusion {
    /// The paper's five occlusions, in its table order.
    pub const PAPER: [Occlusion; 5] = [
        Occlusion::Patch(8),
        Occlusion::Patch(16),
        Occlusion::Patch(24),
        Occlusion::Eyes,
        Occlusion::Mouth,
    ];
}

impl fmt::Display for Occlusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Occlusion::Patch(px) => write!(f, "patch{px}"),
            Occlusion::Eyes => write!(f, "eyes"),
            Occlusion::Mouth => write!(f, "mouth"),
        }
    }
}

/// Parses `eyes`, `mouth`, and a patch as `patch16`, `patch:16`, `patch-16` or `16x16`.
impl FromStr for Occlusion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "eyes" | "eye" => return Ok(Occlusion::Eyes),
            "mouth" => return Ok(Occlusion::Mouth),
            _ => {}
        }
        let num = if let Some(r) = t.strip_prefix("patch") {
            r.trim_start_matches([':', '-', '_', ' '])
        } else if let Some((a, b)) = t.split_once('x') {
            if a != b {
                return Err(format!("{s:?}: patches are square (e.g. 16x16)"));
            }
            a
        } else {
            ""
        };
        match num.parse::<usize>() {
            Ok(px) if px > 0 => Ok(Occlusion::Patch(px)),
            _ => Err(format!(
                "{s:?} is not an occlusion: use eyes, mouth, or a patch such as patch16 or 16x16"
            )),
        }
    }
}

/// A pixel rectangle `[x0, x1) x [y0, y1)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Region {
    pub fn area(&self) -> usize {
        (self.x1 - self.x0) * (self.y1 - self.y0)
    }
    pub fn contains(&self, x: usize, y: usize) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }
}

/// Side of a patch at `size`: `px * size / 128` rounded, at least 1, at most `size`.
pub fn patch_side(px: usize, size: usize) -> usize {
    ((px as f64 * size as f64 / 128.0).round() as usize).clamp(1, size)
}

/// The pixels `occlusion` covers in a `size` x `size` image. Landmarks are continuous pixel
/// coordinates (pixel `(i, j)` covers `[i, i+1) x [j, j+1)`); a box takes every pixel it
/// touches, clipped to the image. `seed` places a patch (one seed per image and epoch makes the
/// patches vary without breaking reproducibility); the landmark boxes do not use it.
pub fn region(occlusion: Occlusion, size: usize, landmarks: &Landmarks, seed: u64) -> Region {
    match occlusion {
        Occlusion::Patch(px) => {
            let side = patch_side(px, size);
            let mut rng = SplitMix64(seed);
            let span = (size - side + 1) as u64;
            let x0 = (rng.next_u64() % span) as usize;
            let y0 = (rng.next_u64() % span) as usize;
            Region {
                x0,
                y0,
                x1: x0 + side,
                y1: y0 + side,
            }
        }
        Occlusion::Eyes => landmark_box((17..27).chain(36..48), size, landmarks),
        Occlusion::Mouth => landmark_box(48..68, size, landmarks),
    }
}

fn landmark_box(points: impl Iterator<Item = usize>, size: usize, l: &Landmarks) -> Region {
    let (dx, dy) = (l[16][0] - l[0][0], l[16][1] - l[0][1]);
    let margin = MARGIN * (dx * dx + dy * dy).sqrt();
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for k in points {
        x0 = x0.min(l[k][0]);
        y0 = y0.min(l[k][1]);
        x1 = x1.max(l[k][0]);
        y1 = y1.max(l[k][1]);
    }
    let lo = |v: f32| ((v - margin).floor().max(0.0) as usize).min(size);
    let hi = |v: f32| ((v + margin).floor() + 1.0).clamp(0.0, size as f32) as usize;
    let (x0, y0) = (lo(x0), lo(y0));
    Region {
        x0,
        y0,
        x1: hi(x1).max(x0),
        y1: hi(y1).max(y0),
    }
}

/// Blacks out `occlusion` in a `[channels, size, size]` image (every channel) and returns the
/// region it covered. See [`region`] for the landmark convention and the seed.
pub fn apply(
    image: &mut [u8],
    channels: usize,
    size: usize,
    occlusion: Occlusion,
    landmarks: &Landmarks,
    seed: u64,
) -> Region {
    assert_eq!(
        image.len(),
        channels * size * size,
        "occlusion: image of {} bytes is not {channels} x {size} x {size}",
        image.len()
    );
    let r = region(occlusion, size, landmarks, seed);
    for c in 0..channels {
        for y in r.y0..r.y1 {
            let row = c * size * size + y * size;
            image[row + r.x0..row + r.x1].fill(0);
        }
    }
    r
}

/// Fixed landmarks for aligned face crops that come without any.
///
/// The shape is the synthetic generator's average neutral face ([`mean_shape`]: every identity
/// parameter at the middle of its range). It is stretched (separately along x and y) so that its
/// eye centres (means of points 36-41 and 42-47) and its mouth centre (mean of 48-67) fall where
/// the eyes and the mouth are in the mean image of the dataset's own crops, resized to 128x128:
/// the darkest columns and rows of the eye and mouth regions of that mean.
///
/// | template | measured on | eye centres (x, y) / size | mouth y / size |
/// |----------|-------------|---------------------------|----------------|
/// | `Fer2013` | FER2013 train, 28,709 images (neutral + sad: same) | (0.305, 0.363), (0.688, 0.363) | 0.80 |
/// | `CkPlus48` | CK+48, the 927 images of the 7 classes | (0.324, 0.387), (0.676, 0.387) | 0.637 |
///
/// CK+48's crops are squashed vertically (eye-to-mouth distance 0.71 of the eye distance, against
/// about 1.1 in FER2013 and in real faces), so CK+ needs its own template: the FER2013 one
/// would put the mouth box on the chin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Template {
    Fer2013,
    CkPlus48,
}

impl Template {
    /// The template's 68 points for a `size` x `size` crop.
    pub fn landmarks(self, size: usize) -> Landmarks {
        let (eye_r, eye_l, mouth_y) = match self {
            Template::Fer2013 => ([0.305, 0.363], [0.688, 0.363], 0.80),
            Template::CkPlus48 => ([0.324, 0.387], [0.676, 0.387], 0.637),
        };
        let m = mean_shape();
        let mean = |r: std::ops::Range<usize>| {
            let n = r.len() as f32;
            let (x, y) = r.fold((0.0, 0.0), |(x, y), k| (x + m[k][0], y + m[k][1]));
            [x / n, y / n]
        };
        let (er, el, mo) = (mean(36..42), mean(42..48), mean(48..68));
        let ax = (eye_l[0] - eye_r[0]) / (el[0] - er[0]);
        let bx = eye_r[0] - ax * er[0];
        let ey = (er[1] + el[1]) / 2.0;
        let ay = (mouth_y - eye_r[1]) / (mo[1] - ey);
        let by = eye_r[1] - ay * ey;
        let s = size as f32;
        m.map(|p| [(ax * p[0] + bx) * s, (ay * p[1] + by) * s])
    }
}

impl FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace(['+', '-', '_'], "").as_str() {
            "fer2013" | "fer" => Ok(Template::Fer2013),
            "ckplus48" | "ckplus" | "ck48" | "ck" => Ok(Template::CkPlus48),
            _ => Err(format!(
                "{s:?} is not a landmark template: use fer2013 or ckplus48"
            )),
        }
    }
}

/// The default template for aligned crops without landmarks: FER2013's framing
/// ([`Template::Fer2013`]), which has natural face proportions. Use [`Template::CkPlus48`] for
/// CK+48.
pub fn canonical_landmarks(size: usize) -> Landmarks {
    Template::Fer2013.landmarks(size)
}
