//! RAF-DB's basic emotion set:
//!
//! ```text
//! EmoLabel/list_patition_label.txt   lines `train_00001.jpg 5` (the file's own spelling)
//! Image/aligned/train_00001_aligned.jpg   100x100 aligned faces
//! Image/original/train_00001.jpg          used when the aligned image is absent
//! ```
//!
//! Labels: 1 surprise, 2 fear, 3 disgust, 4 happy, 5 sad, 6 angry, 7 neutral. The split comes
//! from the name's `train_` / `test_` prefix (12,271 / 3,068 in the release).

use std::path::Path;

use super::{class, csv_err, data_err, line_err};
use crate::data::dataset::{Dataset, Format, Pixels, Sample};
use crate::data::folder::Split;
use crate::Result;

pub const LIST: &str = "EmoLabel/list_patition_label.txt";

/// Spec class of each RAF-DB label 1..=7.
const CODES: [&str; 7] = [
    "surprise", "fear", "disgust", "happy", "sad", "angry", "neutral",
];

/// Reads RAF-DB basic from the folder holding `EmoLabel/` and `Image/`. Every malformed line,
/// unknown label or missing image is an error naming the list file and line.
pub fn read(root: &Path) -> Result<Dataset> {
    let list = root.join(LIST);
    if !list.is_file() {
        return Err(data_err(&list, "missing: RAF-DB's label list"));
    }
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(b' ')
        .flexible(true)
        .from_reader(crate::data::formats::open_regular(&list)?);
    let (aligned, original) = (root.join("Image/aligned"), root.join("Image/original"));
    let (mut samples, mut from_original) = (Vec::new(), 0usize);
    let mut rec = csv::StringRecord::new();
    loop {
        match r.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(&list, e)),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let err = |m: String| line_err(&list, line, m);
        // Runs of spaces give empty fields; a line is its non-empty ones.
        let fields: Vec<&str> = rec
            .iter()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        if fields.is_empty() {
            continue;
        }
        let [name, code] = fields[..] else {
            return Err(err(format!(
                "expected `<image> <label>` (e.g. `train_00001.jpg 5`), found {} fields",
                fields.len()
            )));
        };
        // The name is joined below Image/: one that climbs out of it is refused.
        super::inside(&original, name).map_err(&err)?;
        let label = match code.parse::<usize>().ok().and_then(|c| c.checked_sub(1)) {
            Some(c) if c < CODES.len() => class(CODES[c]),
            _ => {
                return Err(err(format!(
                    "unknown label {code:?}: RAF-DB's are 1 surprise, 2 fear, 3 disgust, 4 happy, \
                     5 sad, 6 angry, 7 neutral"
                )))
            }
        };
        let split = if name.starts_with("train_") {
            Split::Train
        } else if name.starts_with("test_") {
            Split::Test
        } else {
            return Err(err(format!(
                "{name:?} starts with neither train_ nor test_, so its split is unknown"
            )));
        };
        let stem = Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = Path::new(name)
            .extension()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "jpg".into());
        let a = aligned.join(format!("{stem}_aligned.{ext}"));
        let o = original.join(name);
        let path = if super::present(&a) {
            a
        } else if super::present(&o) {
            from_original += 1;
            o
        } else {
            return Err(err(format!(
                "image {name:?} is missing: neither {} nor {} exists",
                a.display(),
                o.display()
            )));
        };
        samples.push(Sample {
            name: path.display().to_string(),
            pixels: Pixels::File(path),
            label,
            split,
            group: None,
            landmarks: None,
        });
    }
    if samples.is_empty() {
        return Err(data_err(&list, "has no lines"));
    }
    let has_splits = samples.iter().any(|s| s.split == Split::Train)
        && samples.iter().any(|s| s.split == Split::Test);
    let mut notes = Vec::new();
    if !has_splits {
        for s in &mut samples {
            s.split = Split::Unsplit;
        }
        notes.push("the list names only one side (train_ or test_): no split of its own".into());
    }
    if from_original > 0 {
        notes.push(format!(
            "{from_original} images read from Image/original/ (no aligned copy)"
        ));
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        format: Format::RafDb,
        samples,
        has_splits,
        skipped: Vec::new(),
        notes,
    })
}
