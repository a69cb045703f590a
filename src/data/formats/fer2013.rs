//! FER2013 as its CSV (`fer2013.csv`: `emotion,pixels,Usage`, one 48x48 grayscale face per
//! row as space-separated integers).
//!
//! Codes: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral. `Training` is the
//! train side; `PublicTest` and `PrivateTest` both go to the test side, like the common
//! image-folder release (its `test/` holds 7,178 = 3,589 + 3,589 images), so results on either
//! form are comparable. Columns are found by name, so `emotion,Usage,pixels` (the Kaggle
//! `icml_face_data.csv`) reads too; a file without `Usage` (Kaggle's `train.csv`) has no split.
//!
//! Pixels stay in memory ([`Pixels::Gray`]): 35,887 faces are 83 MB, and a 300 MB CSV re-read
//! per batch would be far slower.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{class, csv_err, csvs_of, data_err, line_err};
use crate::data::dataset::{Dataset, Format, Pixels, Sample};
use crate::data::folder::Split;
use crate::Result;

/// Spec class of each FER2013 code.
const CODES: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

/// The CSV to read: `root` itself, or in a folder `fer2013.csv`, or its only CSV with
/// FER2013's header.
fn find(root: &Path) -> Result<PathBuf> {
    if root.is_file() {
        return Ok(root.to_path_buf());
    }
    let named = root.join("fer2013.csv");
    if named.is_file() {
        return Ok(named);
    }
    let mut found = csvs_of(root, Format::Fer2013Csv)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(data_err(
            root,
            "no fer2013.csv and no .csv with an emotion,pixels header",
        )),
        _ => Err(data_err(
            root,
            format!(
                "several CSVs have FER2013's header ({}); give the one to read as --data",
                found
                    .iter()
                    .map(|f| super::file_name(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Reads FER2013's CSV (the file, or a folder holding it). Every malformed row is an error
/// naming the file and line.
pub fn read(root: &Path) -> Result<Dataset> {
    let path = find(root)?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(crate::data::formats::open_regular(&path)?);
    let header: Vec<String> = r
        .headers()
        .map_err(|e| csv_err(&path, e))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(emotion_col), Some(pixels_col)) = (col("emotion"), col("pixels")) else {
        return Err(line_err(
            &path,
            1,
            format!(
                "header {:?} lacks FER2013's emotion and pixels columns",
                header.join(",")
            ),
        ));
    };
    let usage_col = col("usage");
    let mut samples = Vec::new();
    let (mut public, mut private) = (0usize, 0usize);
    let mut rec = csv::StringRecord::new();
    loop {
        match r.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(&path, e)),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let err = |m: String| line_err(&path, line, m);
        if rec.len() != header.len() {
            return Err(err(format!(
                "{} columns, the header has {} ({})",
                rec.len(),
                header.len(),
                header.join(",")
            )));
        }
        let code = rec[emotion_col].trim();
        let label = match code.parse::<usize>().ok().and_then(|c| CODES.get(c)) {
            Some(name) => class(name),
            None => {
                return Err(err(format!(
                    "unknown emotion {code:?}: FER2013's codes are 0 angry, 1 disgust, 2 fear, \
                     3 happy, 4 sad, 5 surprise, 6 neutral"
                )))
            }
        };
        let mut data = Vec::with_capacity(48 * 48);
        for (k, tok) in rec[pixels_col].split_ascii_whitespace().enumerate() {
            let v = tok
                .parse::<u8>()
                .map_err(|_| err(format!("pixel {k} is {tok:?}, not an integer 0-255")))?;
            data.push(v);
        }
        let side = (data.len() as f64).sqrt().round() as usize;
        if data.is_empty() || side * side != data.len() {
            return Err(err(format!(
                "{} pixels do not make a square image (FER2013 rows have 48x48 = 2304)",
                data.len()
            )));
        }
        let split = match usage_col.map(|c| rec[c].trim()) {
            None => Split::Unsplit,
            Some("Training") => Split::Train,
            Some("PublicTest") => {
                public += 1;
                Split::Test
            }
            Some("PrivateTest") => {
                private += 1;
                Split::Test
            }
            Some(other) => {
                return Err(err(format!(
                    "unknown Usage {other:?}: expected Training, PublicTest or PrivateTest"
                )))
            }
        };
        samples.push(Sample {
            name: format!("{} line {line}", path.display()),
            pixels: Pixels::Gray {
                width: side,
                height: side,
                data: Arc::from(data),
            },
            label,
            split,
            group: None,
            landmarks: None,
        });
    }
    if samples.is_empty() {
        return Err(data_err(&path, "has a header but no rows"));
    }
    let mut notes = Vec::new();
    let both = |s: &[Sample]| {
        s.iter().any(|x| x.split == Split::Train) && s.iter().any(|x| x.split == Split::Test)
    };
    let has_splits = both(&samples);
    if usage_col.is_some() && !has_splits {
        // One side alone is no split: the caller makes its own over everything.
        for s in &mut samples {
            s.split = Split::Unsplit;
        }
        notes.push("the Usage column names only one side: no split of its own".into());
    }
    if public + private > 0 {
        notes.push(format!(
            "test = PublicTest ({public}) + PrivateTest ({private}), as in the image-folder release"
        ));
    }
    if usage_col.is_none() {
        notes.push("no Usage column: no split of its own".into());
    }
    Ok(Dataset {
        root: path,
        format: Format::Fer2013Csv,
        samples,
        has_splits,
        skipped: Vec::new(),
        notes,
    })
}
