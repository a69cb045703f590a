//! Face detection for `--crop face` (and `predict --detect-face`): photos and uncropped datasets
//! are not aligned crops, and the network is trained on faces that fill the frame, so an
//! uncropped image mostly classifies its background. The crop itself is `data::crop`.
//!
//! The detector is SeetaFace's frontal funnel-structured cascade through the `rustface` crate;
//! its model file (1.2 MB, BSD-2-Clause, `assets/models/`) is embedded in the binary so the
//! program still needs no files beside it.

use crate::{Error, Result};

/// SeetaFace's frontal face detection model, as shipped in the `rustface` 0.1.7 package.
const MODEL: &[u8] = include_bytes!("../../assets/models/seeta_fd_frontal_v1.0.bin");

/// Longest side an image is searched for faces at; larger ones are searched on a copy scaled
/// down to it.
pub const DETECT_MAX_SIDE: u32 = 2048;

/// A face box in pixels of the original image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The SeetaFace cascade, parsed once from the embedded 1.2 MB model, so that a folder of
/// photos shares one instead of parsing the model per image.
pub struct FaceDetector(Box<dyn rustface::Detector>);

impl FaceDetector {
    pub fn new() -> Result<FaceDetector> {
        let model = rustface::read_model(MODEL).map_err(|e| Error::InvalidConfig {
            op: "face detection".into(),
            message: format!("the embedded SeetaFace model does not load: {e}"),
        })?;
        let mut detector = rustface::create_detector_with_model(model);
        // The crate's example settings: a 0.8 pyramid and a 4 px window step find frontal
        // faces reliably without the cost of a denser search.
        detector.set_score_thresh(2.0);
        detector.set_pyramid_scale_factor(0.8);
        detector.set_slide_window_step(4, 4);
        Ok(FaceDetector(detector))
    }

    /// The largest face in an 8-bit grayscale image `width` x `height`, or `None`.
    ///
    /// The smallest face searched for is 20 px (the model's window) or a tenth of the image's
    /// shorter side, whichever is larger: smaller detections in a photo are background noise
    /// for our purpose (one face per image).
    pub fn largest(&mut self, gray: &[u8], width: u32, height: u32) -> Result<Option<FaceBox>> {
        if gray.len() != (width as usize) * (height as usize) {
            return Err(Error::InvalidConfig {
                op: "face detection".into(),
                message: format!(
                    "{} bytes is not a {width}x{height} grayscale image",
                    gray.len()
                ),
            });
        }
        self.0.set_min_face_size((width.min(height) / 10).max(20));
        let faces = self
            .0
            .detect(&rustface::ImageData::new(gray, width, height));
        Ok(faces
            .iter()
            .map(|f| f.bbox())
            .max_by_key(|b| b.width() as u64 * b.height() as u64)
            .map(|b| {
                // The cascade's boxes can reach past the image edges: clip them.
                let x0 = b.x().clamp(0, width as i32) as u32;
                let y0 = b.y().clamp(0, height as i32) as u32;
                let x1 = (b.x() + b.width() as i32).clamp(0, width as i32) as u32;
                let y1 = (b.y() + b.height() as i32).clamp(0, height as i32) as u32;
                FaceBox {
                    x: x0,
                    y: y0,
                    width: x1 - x0,
                    height: y1 - y0,
                }
            })
            .filter(|b| b.width > 0 && b.height > 0))
    }
}

impl FaceDetector {
    /// [`FaceDetector::largest`] of a decoded image. The cascade's pyramid costs about 16 bytes
    /// a pixel (4.3 GB at 16384x16384), so a large photo is searched on a copy scaled down to
    /// [`DETECT_MAX_SIDE`] and the box scaled back. Faces searched for are a tenth of the
    /// shorter side or more, so they keep 100 pixels or more at that size, well above the
    /// model's 20-pixel window.
    pub fn largest_in(&mut self, gray: &image::GrayImage) -> Result<Option<FaceBox>> {
        let (w, h) = gray.dimensions();
        if w.max(h) <= DETECT_MAX_SIDE {
            return self.largest(gray.as_raw(), w, h);
        }
        let scale = DETECT_MAX_SIDE as f64 / w.max(h) as f64;
        let (sw, sh) = (
            ((w as f64 * scale).round() as u32).max(1),
            ((h as f64 * scale).round() as u32).max(1),
        );
        let small = image::imageops::resize(gray, sw, sh, image::imageops::FilterType::Triangle);
        Ok(self.largest(small.as_raw(), sw, sh)?.map(|b| {
            let up = |v: u32, limit: u32| ((v as f64 / scale).round() as u32).min(limit);
            let (x, y) = (up(b.x, w - 1), up(b.y, h - 1));
            FaceBox {
                x,
                y,
                width: up(b.width, w - x).max(1),
                height: up(b.height, h - y).max(1),
            }
        }))
    }
}

/// [`FaceDetector::largest`] with a detector of its own, for a single image.
pub fn detect_largest(gray: &[u8], width: u32, height: u32) -> Result<Option<FaceBox>> {
    FaceDetector::new()?.largest(gray, width, height)
}

/// The square crop around `face`, grown by `margin` of the face's size on every side (the
/// detector's box is tight around eyes and mouth, while the training crops also hold brows and
/// chin), shifted to stay inside the image and shrunk only if the image is too small.
pub fn square_crop(face: FaceBox, margin: f32, width: u32, height: u32) -> FaceBox {
    let side = (face.width.max(face.height) as f32 * (1.0 + 2.0 * margin)).round() as u32;
    let side = side.clamp(1, width.min(height));
    let cx = face.x as f32 + face.width as f32 / 2.0;
    let cy = face.y as f32 + face.height as f32 / 2.0;
    let place = |c: f32, limit: u32| -> u32 {
        let start = (c - side as f32 / 2.0).round().max(0.0) as u32;
        start.min(limit - side)
    };
    FaceBox {
        x: place(cx, width),
        y: place(cy, height),
        width: side,
        height: side,
    }
}
