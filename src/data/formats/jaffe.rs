//! JAFFE: one flat folder of 8-bit palette TIFFs named `KA.AN1.39.tiff` (poser `KA`,
//! expression `AN` and its take `1`, image number `39`).
//!
//! Codes: AN angry, DI disgust, FE fear, HA happy, NE neutral, SA sad, SU surprise. The poser is
//! the sample's group, so `--group-by subject` keeps each of the ten posers on one side. Palette
//! TIFFs are decoded by [`crate::data::folder::decode`]. Sub-folders are read too (some copies
//! nest the images one level down, `jaffe/jaffedbase/`).

use std::path::Path;

use super::{class, data_err, file_name, is_image, list};
use crate::data::dataset::{Dataset, Format, Pixels, Sample};
use crate::data::folder::Split;
use crate::Result;

/// Expression codes of JAFFE's file names and their spec classes.
pub const CODES: [(&str, &str); 7] = [
    ("AN", "angry"),
    ("DI", "disgust"),
    ("FE", "fear"),
    ("HA", "happy"),
    ("NE", "neutral"),
    ("SA", "sad"),
    ("SU", "surprise"),
];

/// A JAFFE file name's parts: (poser, expression code, take, image number); `None` when the
/// name does not have the shape `XX.YYn.n.ext` (two capitals, two capitals and digits, digits).
pub fn parse_name(name: &str) -> Option<(&str, &str, u32, u32)> {
    let mut p = name.split('.');
    let (poser, expr, number, ext) = (p.next()?, p.next()?, p.next()?, p.next()?);
    if p.next().is_some() || ext.is_empty() {
        return None;
    }
    let upper = |s: &str| s.len() == 2 && s.bytes().all(|c| c.is_ascii_uppercase());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !(upper(poser)
        && expr.len() > 2
        && upper(&expr[..2])
        && digits(&expr[2..])
        && digits(number))
    {
        return None;
    }
    Some((
        poser,
        &expr[..2],
        expr[2..].parse().ok()?,
        number.parse().ok()?,
    ))
}

/// Folders below the root that are read: copies nest the images one or two levels down, and a
/// link that loops back up must not recurse forever.
const MAX_DEPTH: usize = 8;

fn walk(
    dir: &Path,
    depth: usize,
    seen: &mut std::collections::HashSet<std::path::PathBuf>,
    out: &mut Vec<std::path::PathBuf>,
) -> Result<()> {
    // A folder reached twice (through a link) is read once.
    if !seen.insert(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())) {
        return Ok(());
    }
    let (dirs, files) = list(dir)?;
    out.extend(files);
    if depth < MAX_DEPTH {
        for d in dirs {
            walk(&d, depth + 1, seen, out)?;
        }
    }
    Ok(())
}

/// Reads a JAFFE folder. A file named like JAFFE's with an expression code outside the seven
/// is an error naming it; images with other names are left out and counted in the notes.
pub fn read(root: &Path) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(data_err(root, "JAFFE is read from a folder of images"));
    }
    let mut files = Vec::new();
    walk(root, 0, &mut Default::default(), &mut files)?;
    let (mut samples, mut other_images) = (Vec::new(), 0usize);
    for f in files {
        if !is_image(&f) {
            continue;
        }
        let name = file_name(&f);
        let Some((poser, code, _, _)) = parse_name(&name) else {
            other_images += 1;
            continue;
        };
        let Some(&(_, class_name)) = CODES.iter().find(|(c, _)| *c == code) else {
            return Err(data_err(
                &f,
                format!(
                    "unknown expression code {code:?} in a JAFFE file name: expected one of {}",
                    CODES
                        .iter()
                        .map(|(c, n)| format!("{c} {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        samples.push(Sample {
            name: f.display().to_string(),
            label: class(class_name),
            split: Split::Unsplit,
            group: Some(poser.to_string()),
            landmarks: None,
            pixels: Pixels::File(f),
        });
    }
    if samples.is_empty() {
        return Err(data_err(
            root,
            "no image named like JAFFE's (KA.AN1.39.tiff: poser, expression code and take, number)",
        ));
    }
    let mut notes = Vec::new();
    if other_images > 0 {
        notes.push(format!(
            "left out {other_images} images whose names are not JAFFE's (KA.AN1.39.tiff)"
        ));
    }
    Ok(Dataset {
        root: root.to_path_buf(),
        format: Format::Jaffe,
        samples,
        has_splits: false,
        skipped: Vec::new(),
        notes,
    })
}
