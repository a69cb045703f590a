//! CK+ as its authors distribute it:
//!
//! ```text
//! cohn-kanade-images/S005/001/S005_001_00000011.png
//! Emotion/S005/001/S005_001_00000011_emotion.txt      one number, e.g. `   3.0000000e+00`
//! Landmarks/S005/001/S005_001_00000011_landmarks.txt  68 lines `x y` (optional folder)
//! ```
//!
//! Emotion codes: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness,
//! 7 surprise. Only 327 of the 593 sequences carry an emotion file, and it names the
//! sequence's last (apex) frame: that frame is the sample, with the label. Sequences without
//! one are unlabelled and left out (counted in the notes), as is contempt (not one of the
//! spec's seven), which leaves 309 samples: the paper's CK+ set. The subject (`S005`) is the
//! group. A frame's landmarks are attached, normalised by that frame's size (640x490 or
//! 640x480 depending on the session).

use std::path::Path;

use super::{class, data_err, file_name, line_err, list};
use crate::data::dataset::{Dataset, Format, LandmarkOrigin, Pixels, Sample, SampleLandmarks};
use crate::data::folder::{self, Split};
use crate::data::landmarks;
use crate::Result;

pub const IMAGES: &str = "cohn-kanade-images";
pub const EMOTION: &str = "Emotion";
pub const LANDMARKS: &str = "Landmarks";

/// Spec class of each CK+ emotion code; `None` for contempt.
const CODES: [Option<&str>; 8] = [
    Some("neutral"),
    Some("angry"),
    None,
    Some("disgust"),
    Some("fear"),
    Some("happy"),
    Some("sad"),
    Some("surprise"),
];

/// The code in an `_emotion.txt`: one number on one line.
fn read_code(path: &Path) -> Result<usize> {
    let text = super::read_text(path)?;
    let mut values = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((i, l)) = values.next() else {
        return Err(data_err(path, "is empty: expected one emotion code 0-7"));
    };
    let line = i as u64 + 1;
    if let Some((j, _)) = values.next() {
        return Err(line_err(
            path,
            j as u64 + 1,
            "more than one value: an emotion file holds one code 0-7",
        ));
    }
    let v: f64 = l
        .trim()
        .parse()
        .map_err(|_| line_err(path, line, format!("{:?} is not a number", l.trim())))?;
    if v.fract() != 0.0 || !(0.0..CODES.len() as f64).contains(&v) {
        return Err(line_err(
            path,
            line,
            format!(
                "unknown emotion {v}: CK+'s codes are 0 neutral, 1 anger, 2 contempt, 3 disgust, \
                 4 fear, 5 happy, 6 sadness, 7 surprise"
            ),
        ));
    }
    Ok(v as usize)
}

/// Reads CK+ from the folder holding `cohn-kanade-images/` and `Emotion/`.
pub fn read(root: &Path) -> Result<Dataset> {
    let (images, emotion, lm_dir) = (root.join(IMAGES), root.join(EMOTION), root.join(LANDMARKS));
    for d in [&images, &emotion] {
        if !d.is_dir() {
            return Err(data_err(
                d,
                format!("missing: CK+ as distributed has {IMAGES}/ and {EMOTION}/ side by side"),
            ));
        }
    }
    let has_lm = lm_dir.is_dir();
    let mut samples = Vec::new();
    let (mut contempt, mut no_landmarks) = (0usize, 0usize);
    let mut labelled = std::collections::HashSet::new();
    let (subjects, _) = list(&emotion)?;
    for subject in subjects {
        let (seqs, _) = list(&subject)?;
        for seq in seqs {
            let (_, files) = list(&seq)?;
            for f in files {
                let name = file_name(&f);
                let Some(stem) = name.strip_suffix("_emotion.txt") else {
                    continue;
                };
                let code = read_code(&f)?;
                let rel = seq.strip_prefix(&emotion).unwrap_or(&seq).to_path_buf();
                labelled.insert(rel.clone());
                let Some(class_name) = CODES[code] else {
                    contempt += 1;
                    continue;
                };
                let img = images.join(&rel).join(format!("{stem}.png"));
                if !super::present(&img) {
                    return Err(data_err(
                        &f,
                        format!("labels frame {}, which does not exist", img.display()),
                    ));
                }
                let lm_file = lm_dir.join(&rel).join(format!("{stem}_landmarks.txt"));
                let lm = if lm_file.is_file() {
                    let points = landmarks::read_ckplus(&lm_file)?;
                    // An unreadable frame keeps no landmarks; the frame itself is reported as
                    // unreadable when it is loaded.
                    landmarks::image_size(&img).ok().map(|(w, h)| {
                        SampleLandmarks::from_pixels(&points, w, h, LandmarkOrigin::File(lm_file))
                    })
                } else {
                    no_landmarks += 1;
                    None
                };
                samples.push(Sample {
                    name: img.display().to_string(),
                    label: class(class_name),
                    split: Split::Unsplit,
                    group: folder::ckplus_parts(stem).map(|(s, _, _)| s.to_string()),
                    landmarks: lm,
                    pixels: Pixels::File(img),
                });
            }
        }
    }
    // Sequences with frames but no emotion file.
    let mut unlabelled = 0usize;
    for subject in list(&images)?.0 {
        for seq in list(&subject)?.0 {
            if !labelled.contains(seq.strip_prefix(&images).unwrap_or(&seq)) {
                unlabelled += 1;
            }
        }
    }
    if samples.is_empty() {
        return Err(data_err(
            &emotion,
            "no *_emotion.txt with one of the seven classes under Emotion/<subject>/<sequence>/",
        ));
    }
    let mut notes = vec![
        "one sample per labelled sequence: the frame its emotion file names (the apex)".to_string(),
    ];
    if unlabelled > 0 {
        notes.push(format!(
            "left out {unlabelled} sequences without an emotion file (unlabelled)"
        ));
    }
    if !has_lm {
        notes.push(format!("no {LANDMARKS}/ folder: no landmarks of its own"));
    } else if no_landmarks > 0 {
        notes.push(format!(
            "{no_landmarks} labelled frames have no landmark file"
        ));
    }
    if contempt > 0 {
        notes.push(format!(
            "left out {contempt} sequences labelled contempt (not one of the seven classes)"
        ));
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        format: Format::CkPlus,
        samples,
        has_splits: false,
        skipped: Vec::new(),
        notes,
    })
}
