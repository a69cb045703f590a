//! AffectNet as its CSVs (`training.csv`, `validation.csv`):
//!
//! ```text
//! subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
//! 689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg,134,134,899,899,181.64;530.91;...,1,0.785714,-0.055556
//! ```
//!
//! Images are under `Manually_Annotated_Images/` beside the CSV. Each sample is the face box of
//! its image ([`Pixels::Crop`]); its 68 landmarks (`x0;y0;x1;y1;...` in the image's pixels) are
//! made relative to the box. Expressions: 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear,
//! 5 disgust, 6 anger; 7 contempt, 8 none, 9 uncertain and 10 no-face are left out and counted.
//! `training` is the train side, `validation` the test side (AffectNet's test set is not
//! public). The release's `validation.csv` often lacks the header row; it is then read in the
//! header's column order. AffectNet's class-folder releases are read by
//! [`crate::data::folder`].

use std::path::{Path, PathBuf};

use super::{class, csv_err, csv_kind, csvs_of, data_err, file_name, line_err};
use crate::data::dataset::{Dataset, Format, LandmarkOrigin, Pixels, Sample, SampleLandmarks};
use crate::data::folder::{Split, MAX_IMAGE_SIDE};
use crate::data::landmarks::POINTS;
use crate::Result;

pub const IMAGES: &str = "Manually_Annotated_Images";

/// The release's column order (used when a file has no header).
const COLUMNS: [&str; 9] = [
    "subdirectory_filepath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
];

/// Spec class of expressions 0..=6.
const CODES: [&str; 7] = [
    "neutral", "happy", "sad", "surprise", "fear", "disgust", "angry",
];
/// Expressions 7..=10, left out.
const LEFT_OUT: [&str; 4] = ["contempt", "none", "uncertain", "no-face"];

/// Rows left out, per expression 7..=10.
type LeftOut = [usize; 4];

fn read_csv(
    path: &Path,
    samples: &mut Vec<Sample>,
    left_out: &mut LeftOut,
    no_landmarks: &mut usize,
) -> Result<()> {
    let split = match path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .as_deref()
    {
        Some("training") => Split::Train,
        Some("validation") => Split::Test,
        _ => Split::Unsplit,
    };
    let images = path.parent().unwrap_or(Path::new(".")).join(IMAGES);
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(crate::data::formats::open_regular(path)?);
    let mut rec = csv::StringRecord::new();
    let mut columns: Option<Vec<String>> = None;
    let mut idx = [0usize; 7];
    loop {
        match r.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(path, e)),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let err = |m: String| line_err(path, line, m);
        if columns.is_none() {
            let first: Vec<String> = rec.iter().map(|f| f.trim().to_ascii_lowercase()).collect();
            let is_header = first.iter().any(|h| h == "subdirectory_filepath");
            let cols = if is_header {
                first
            } else if csv_kind(&first) == Some(Format::AffectNetCsv) {
                COLUMNS.iter().map(|c| c.to_string()).collect()
            } else {
                return Err(err(format!(
                    "neither AffectNet's header nor a row in its column order ({})",
                    COLUMNS.join(",")
                )));
            };
            for (k, want) in [
                "subdirectory_filepath",
                "face_x",
                "face_y",
                "face_width",
                "face_height",
                "facial_landmarks",
                "expression",
            ]
            .iter()
            .enumerate()
            {
                idx[k] = cols
                    .iter()
                    .position(|c| c == want)
                    .ok_or_else(|| err(format!("the header has no {want} column")))?;
            }
            columns = Some(cols);
            if is_header {
                continue;
            }
        }
        let n_cols = columns.as_ref().map_or(0, Vec::len);
        if rec.len() != n_cols {
            return Err(err(format!(
                "{} columns, expected {n_cols} ({})",
                rec.len(),
                COLUMNS.join(",")
            )));
        }
        let field = |k: usize| rec[idx[k]].trim();
        let code = field(6);
        let label = match code.parse::<usize>() {
            Ok(c) if c < CODES.len() => class(CODES[c]),
            Ok(c) if c < CODES.len() + LEFT_OUT.len() => {
                left_out[c - CODES.len()] += 1;
                continue;
            }
            _ => {
                return Err(err(format!(
                    "unknown expression {code:?}: AffectNet's are 0 neutral, 1 happy, 2 sad, \
                     3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt, 8 none, 9 uncertain, \
                     10 no-face"
                )))
            }
        };
        let mut bx = [0i64; 4];
        for (k, v) in bx.iter_mut().enumerate() {
            let f = field(1 + k);
            *v = f
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| v.round() as i64)
                .ok_or_else(|| err(format!("{} is {f:?}, not a number", COLUMNS[1 + k])))?;
        }
        let [x, y, w, h] = bx;
        if w <= 0 || h <= 0 {
            return Err(err(format!("face box {w}x{h} is empty")));
        }
        // Boxes are cut out of images of at most MAX_IMAGE_SIDE pixels a side: a larger one
        // (or one that far away) is a corrupt row, and would be gigabytes of black pixels.
        let side = MAX_IMAGE_SIDE as i64;
        if w > side || h > side || x.abs() > side || y.abs() > side {
            return Err(err(format!(
                "face box {w}x{h} at ({x}, {y}) is outside any image this reads (at most \
                 {side} pixels a side)"
            )));
        }
        let rel = field(0);
        if rel.is_empty() {
            return Err(err("subDirectory_filePath is empty".into()));
        }
        let img: PathBuf = super::inside(&images, rel).map_err(&err)?;
        if !super::present(&img) {
            return Err(err(format!("image {} is missing", img.display())));
        }
        let lm_text = field(5);
        let landmarks = if lm_text.is_empty() {
            *no_landmarks += 1;
            None
        } else {
            let vals: Vec<&str> = lm_text
                .split(';')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            if vals.len() != 2 * POINTS {
                return Err(err(format!(
                    "facial_landmarks has {} numbers, expected {} (x0;y0;...;x67;y67)",
                    vals.len(),
                    2 * POINTS
                )));
            }
            let mut pts = [[0f32; 2]; POINTS];
            for (k, v) in vals.iter().enumerate() {
                let n: f32 = v
                    .parse()
                    .ok()
                    .filter(|n: &f32| n.is_finite())
                    .ok_or_else(|| {
                        err(format!("facial_landmarks value {k} is {v:?}, not a number"))
                    })?;
                // Relative to the face box: the sample's image is the box.
                pts[k / 2][k % 2] = n - if k % 2 == 0 { x } else { y } as f32;
            }
            Some(SampleLandmarks::from_pixels(
                &pts,
                w as usize,
                h as usize,
                LandmarkOrigin::File(path.to_path_buf()),
            ))
        };
        samples.push(Sample {
            name: format!("{} ({} line {line})", img.display(), file_name(path)),
            pixels: Pixels::Crop {
                path: img,
                x,
                y,
                width: w as usize,
                height: h as usize,
            },
            label,
            split,
            group: None,
            landmarks,
        });
    }
    Ok(())
}

/// Reads AffectNet's `training.csv` and `validation.csv` (a folder holding them, or one CSV).
pub fn read(root: &Path) -> Result<Dataset> {
    let files = if root.is_file() {
        vec![root.to_path_buf()]
    } else {
        let f = csvs_of(root, Format::AffectNetCsv)?;
        if f.is_empty() {
            return Err(data_err(
                root,
                "no .csv with AffectNet's header (training.csv, validation.csv)",
            ));
        }
        f
    };
    let (mut samples, mut left_out, mut no_landmarks) = (Vec::new(), [0; 4], 0);
    for f in &files {
        read_csv(f, &mut samples, &mut left_out, &mut no_landmarks)?;
    }
    if samples.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(data_err(
            root,
            format!(
                "no row with one of the seven expressions (0-6) in {}",
                names.join(", ")
            ),
        ));
    }
    let mut notes = Vec::new();
    let has_splits = samples.iter().any(|s| s.split == Split::Train)
        && samples.iter().any(|s| s.split == Split::Test);
    if !has_splits {
        for s in &mut samples {
            s.split = Split::Unsplit;
        }
        notes.push("not both training.csv and validation.csv: no split of its own".to_string());
    }
    let dropped: Vec<String> = LEFT_OUT
        .iter()
        .zip(left_out)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    if !dropped.is_empty() {
        notes.push(format!(
            "left out rows outside the seven classes: {}",
            dropped.join(", ")
        ));
    }
    if no_landmarks > 0 {
        notes.push(format!("{no_landmarks} rows have no facial_landmarks"));
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        format: Format::AffectNetCsv,
        samples,
        has_splits,
        skipped: Vec::new(),
        notes,
    })
}
