//! `--crop face`: each image cut down to a square around its face before it is resized, for
//! datasets that are not distributed as face crops (JAFFE's 256x256 frames with hair and
//! background, CK+'s 640x490 frames, RAF-DB's original images, photos).
//!
//! The face box comes from the image's own 68 landmarks where it has them (CK+'s landmark
//! files, an iBUG `.pts`, AffectNet's points, a `--landmarks-csv` sidecar row not flagged as a
//! miss), otherwise from the embedded face detector ([`FaceDetector`], the one
//! `predict --detect-face` uses). Either box is made square around its centre and grown by the
//! margin on every side ([`square_crop`]). One margin serves both: on the same faces the
//! landmarks' box is 0.81 (CK+48) and 0.94 (FER2013) of the detector's side on average, faces
//! pasted into larger pictures with each set's landmark template
//! (`tests/crop.rs`, `the_landmark_box_is_about_the_size_of_the_detectors`), about as close as
//! the detector's own box is from one face to the next.
//!
//! Cropping rewrites the sample, not its file: a file becomes a box of it
//! ([`Pixels::Crop`]), in-memory pixels are cut, a box is narrowed, and the landmarks (stored
//! as fractions of the image) are re-expressed as fractions of the crop, so the eye and mouth
//! occlusions land on the same eyes and mouth. An image where no face is found is used whole,
//! counted and named in the [`CropReport`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::dataset::{LandmarkOrigin, Pixels, Sample};
use crate::data::face::{square_crop, FaceBox, FaceDetector};
use crate::model::checkpoint::FaceCrop;
use crate::{Error, Result};

/// `predict --detect-face`'s margin: a quarter of the face's size on every side.
pub const DEFAULT_MARGIN: f32 = 0.25;

/// `--crop none|face`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    None,
    Face,
}

impl FromStr for CropMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(CropMode::None),
            "face" => Ok(CropMode::Face),
            _ => Err(format!("{s:?} is not a crop: use none or face")),
        }
    }
}

impl fmt::Display for CropMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CropMode::None => "none",
            CropMode::Face => "face",
        })
    }
}

/// Where a face box came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaceSource {
    Landmarks,
    Detector,
}

/// The square an image was cropped to, in pixels of the image before cropping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundFace {
    pub crop: FaceBox,
    pub from: FaceSource,
}

/// What cropping a set of samples did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CropReport {
    pub margin: f32,
    pub from_landmarks: usize,
    pub from_detector: usize,
    /// Samples where the detector found no face: used whole.
    pub no_face: Vec<String>,
    /// Samples whose image could not be read to find the face: left as they were, for the
    /// loader to report (or stop a strict run) when they are used.
    pub unreadable: Vec<String>,
}

impl CropReport {
    /// One line: `face crop (margin 0.25): 300 from landmarks, 7 by the detector, 2 without a
    /// face (used whole: a.png, b.png)`, naming at most `names` images.
    pub fn summary(&self, names: usize) -> String {
        let list = |v: &[String]| {
            let mut s = v.iter().take(names).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > names {
                s += &format!(" and {} more", v.len() - names);
            }
            s
        };
        let mut s = format!(
            "face crop (margin {}): {} from landmarks, {} by the detector, {} without a face",
            self.margin,
            self.from_landmarks,
            self.from_detector,
            self.no_face.len()
        );
        if !self.no_face.is_empty() {
            s += &format!(" (used whole: {})", list(&self.no_face));
        }
        if !self.unreadable.is_empty() {
            s += &format!(
                ", {} unreadable (left for the loader: {})",
                self.unreadable.len(),
                list(&self.unreadable)
            );
        }
        s
    }
}

/// The pixel box of 68 landmarks given as fractions of a `width` x `height` image: the
/// smallest box of whole pixels that holds every point, clipped to the image; `None` when it
/// is empty.
pub fn landmark_box(points: &[[f32; 2]], width: usize, height: usize) -> Option<FaceBox> {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in points {
        x0 = x0.min(p[0] * width as f32);
        y0 = y0.min(p[1] * height as f32);
        x1 = x1.max(p[0] * width as f32);
        y1 = y1.max(p[1] * height as f32);
    }
    let clip = |v: f32, limit: usize| (v.max(0.0) as usize).min(limit);
    let (x0, y0) = (clip(x0.floor(), width), clip(y0.floor(), height));
    let (x1, y1) = (clip(x1.ceil(), width), clip(y1.ceil(), height));
    (x1 > x0 && y1 > y0).then(|| FaceBox {
        x: x0 as u32,
        y: y0 as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    })
}

/// The sample's landmarks, when they can place a face (a sidecar row flagged as a miss was
/// fitted to the whole image and cannot).
fn usable_landmarks(s: &Sample) -> Option<&[[f32; 2]]> {
    let l = s.landmarks.as_ref()?;
    match l.origin {
        LandmarkOrigin::Sidecar { flagged: true, .. } => None,
        _ => Some(&l.points[..]),
    }
}

/// Rewrites `sample` to the square `c` of its `width` x `height` image, landmarks included.
pub fn apply(sample: &mut Sample, c: FaceBox, width: usize, height: usize) {
    let (cx, cy, side_x, side_y) = (c.x as usize, c.y as usize, c.width, c.height);
    sample.pixels = match &sample.pixels {
        Pixels::File(path) => Pixels::Crop {
            path: path.clone(),
            x: cx as i64,
            y: cy as i64,
            width: side_x as usize,
            height: side_y as usize,
        },
        Pixels::Crop { path, x, y, .. } => Pixels::Crop {
            path: path.clone(),
            x: x + cx as i64,
            y: y + cy as i64,
            width: side_x as usize,
            height: side_y as usize,
        },
        Pixels::Gray { width: w, data, .. } => {
            let mut cut = Vec::with_capacity(side_x as usize * side_y as usize);
            for row in cy..cy + side_y as usize {
                cut.extend_from_slice(&data[row * w + cx..row * w + cx + side_x as usize]);
            }
            Pixels::Gray {
                width: side_x as usize,
                height: side_y as usize,
                data: cut.into(),
            }
        }
    };
    if let Some(l) = &mut sample.landmarks {
        let (w, h) = (width as f32, height as f32);
        l.points = l.points.map(|p| {
            [
                (p[0] * w - cx as f32) / side_x as f32,
                (p[1] * h - cy as f32) / side_y as f32,
            ]
        });
    }
}

/// One sample's search: the crop (`None`: no face found) and the image's size before
/// cropping, or the error reading its image.
pub type Found = std::result::Result<(Option<FoundFace>, usize, usize), Error>;

/// Finds the crop of one sample: from its landmarks, else with `detector` (made on first
/// need). The outer error is the detector's own (it failed to load, so nothing can be
/// searched); the inner one is this image's.
pub fn find(sample: &Sample, crop: FaceCrop, detector: &mut Option<FaceDetector>) -> Result<Found> {
    if let Some(points) = usable_landmarks(sample) {
        let (w, h) = match sample.original_size() {
            Ok(wh) => wh,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(b) = landmark_box(points, w, h) {
            let c = square_crop(b, crop.margin, w as u32, h as u32);
            let face = FoundFace {
                crop: c,
                from: FaceSource::Landmarks,
            };
            return Ok(Ok((Some(face), w, h)));
        }
    }
    let gray = match sample.load_original() {
        Ok(g) => g,
        Err(e) => return Ok(Err(e)),
    };
    let (w, h) = gray.dimensions();
    if detector.is_none() {
        *detector = Some(FaceDetector::new()?);
    }
    let d = detector.as_mut().expect("made above");
    let found = d.largest_in(&gray).map(|b| {
        let face = b.map(|b| FoundFace {
            crop: square_crop(b, crop.margin, w, h),
            from: FaceSource::Detector,
        });
        (face, w as usize, h as usize)
    });
    Ok(found)
}

/// Crops every sample to its face (see the module docs) and reports what was done, with each
/// sample's crop (`None`: used whole).
/// `progress(done, total)` is called as images are searched (from several threads on native
/// builds, where the detector runs on up to four cores).
pub fn crop_samples(
    samples: &mut [Sample],
    crop: FaceCrop,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(CropReport, Vec<Option<FoundFace>>)> {
    let total = samples.len();
    let found = find_all(samples, crop, progress)?;
    let mut report = CropReport {
        margin: crop.margin,
        ..CropReport::default()
    };
    let mut faces = Vec::with_capacity(total);
    for (s, f) in samples.iter_mut().zip(found) {
        faces.push(match f {
            Ok((Some(face), w, h)) => {
                match face.from {
                    FaceSource::Landmarks => report.from_landmarks += 1,
                    FaceSource::Detector => report.from_detector += 1,
                }
                apply(s, face.crop, w, h);
                Some(face)
            }
            Ok((None, _, _)) => {
                report.no_face.push(s.name.clone());
                None
            }
            Err(_) => {
                report.unreadable.push(s.name.clone());
                None
            }
        });
    }
    debug_assert_eq!(
        report.from_landmarks
            + report.from_detector
            + report.no_face.len()
            + report.unreadable.len(),
        total
    );
    Ok((report, faces))
}

/// [`find`] for every sample, on up to four threads with a detector each. An error making a
/// detector stops everything; an error reading one image is that image's result.
fn find_all(
    samples: &[Sample],
    crop: FaceCrop,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Found>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let total = samples.len();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(total.max(1));
    let done = AtomicUsize::new(0);
    let chunk = total.div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<Found>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                let done = &done;
                scope.spawn(move || -> Result<Vec<Found>> {
                    let mut detector = None;
                    let mut out = Vec::with_capacity(part.len());
                    for s in part {
                        out.push(find(s, crop, &mut detector)?);
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("face search thread panicked"))
            .collect()
    });
    let mut all = Vec::with_capacity(total);
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}
