//! 68-point facial landmarks (the iBUG / Multi-PIE markup dlib predicts) from the files they
//! come in, attached to a [`Dataset`]'s samples for landmark-based occlusion (paper 3.2).
//!
//! - CK+ `S005_001_00000011_landmarks.txt`: 68 lines `x y` (pixels, scientific notation).
//! - iBUG `.pts`: `version: 1`, `n_points: 68`, `{`, 68 lines `x y`, `}`. Picked up
//!   automatically beside an image (`face.png` + `face.pts`). The coordinates are taken as
//!   written: 300-W's files count from 1, others (dlib, menpo exports) from 0, and nothing in
//!   the file says which; the difference is one pixel of the original image.
//! - A CSV sidecar `file,x0,y0,...,x67,y67[,flagged]` in the image's pixels (what
//!   `tools/landmarks.py` writes), matched to samples by path relative to the dataset root, or
//!   by the end of exactly one sample's path (a base name); `flagged` = 1 marks a row where no face was found and the predictor was fitted
//!   to the whole image.
//!
//! Points are stored as fractions of the image's width and height
//! ([`SampleLandmarks::from_pixels`]), so they follow any resize.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::dataset::{Dataset, LandmarkOrigin, Pixels, SampleLandmarks};
use crate::data::folder;
use crate::data::formats::{csv_err, data_err, line_err};
use crate::data::synthetic::Landmarks;
use crate::Result;

/// Points per face.
pub const POINTS: usize = 68;

fn read_text(path: &Path) -> Result<String> {
    crate::data::formats::read_text(path)
}

/// One `x y` line.
fn point(path: &Path, line: u64, text: &str) -> Result<[f32; 2]> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 2 {
        return Err(line_err(
            path,
            line,
            format!("expected two numbers `x y`, found {:?}", text.trim()),
        ));
    }
    let mut p = [0f32; 2];
    for (v, f) in p.iter_mut().zip(&fields) {
        *v = f
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| line_err(path, line, format!("{f:?} is not a number")))?;
    }
    Ok(p)
}

/// A CK+ `_landmarks.txt`: 68 lines of `x y` in the frame's pixels.
pub fn read_ckplus(path: &Path) -> Result<Landmarks> {
    let text = read_text(path)?;
    let mut pts = Vec::with_capacity(POINTS);
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let line = i as u64 + 1;
        if pts.len() == POINTS {
            return Err(line_err(path, line, format!("more than {POINTS} points")));
        }
        pts.push(point(path, line, l)?);
    }
    pts.try_into().map_err(|p: Vec<_>| {
        data_err(
            path,
            format!("{} points, a landmark file has {POINTS}", p.len()),
        )
    })
}

/// An iBUG `.pts` file with 68 points.
pub fn read_pts(path: &Path) -> Result<Landmarks> {
    let text = read_text(path)?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let mut next = |what: &str| {
        lines
            .next()
            .ok_or_else(|| data_err(path, format!("ends before {what}")))
    };
    let (n, l) = next("the version line")?;
    if !l.starts_with("version:") {
        return Err(line_err(
            path,
            n,
            format!("expected `version: 1`, found {l:?}"),
        ));
    }
    let (n, l) = next("the n_points line")?;
    let count = l
        .strip_prefix("n_points:")
        .and_then(|c| c.trim().parse::<usize>().ok())
        .ok_or_else(|| line_err(path, n, format!("expected `n_points: 68`, found {l:?}")))?;
    if count != POINTS {
        return Err(line_err(
            path,
            n,
            format!("{count} points; only the 68-point markup is used"),
        ));
    }
    let (n, l) = next("`{`")?;
    if l != "{" {
        return Err(line_err(path, n, format!("expected `{{`, found {l:?}")));
    }
    let mut pts = [[0f32; 2]; POINTS];
    for (k, p) in pts.iter_mut().enumerate() {
        let (n, l) = next(&format!("point {k} of {POINTS}"))?;
        if l == "}" {
            return Err(line_err(
                path,
                n,
                format!("`}}` after {k} of {POINTS} points"),
            ));
        }
        *p = point(path, n, l)?;
    }
    let (n, l) = next("the closing `}`")?;
    if l != "}" {
        return Err(line_err(
            path,
            n,
            format!("expected `}}` after {POINTS} points, found {l:?}"),
        ));
    }
    Ok(pts)
}

/// Width and height of an image file, from its header. The `image` crate refuses palette TIFFs
/// (JAFFE) even for their size, so those are measured from the TIFF's first directory.
pub fn image_size(path: &Path) -> Result<(usize, usize)> {
    match image::image_dimensions(path) {
        Ok((w, h)) => Ok((w as usize, h as usize)),
        Err(e) => tiff_size(path)
            .ok_or_else(|| data_err(path, format!("cannot read the image's size: {e}"))),
    }
}

/// ImageWidth and ImageLength of a classic TIFF's first directory.
fn tiff_size(path: &Path) -> Option<(usize, usize)> {
    let b = crate::files::read_file(path, folder::MAX_IMAGE_FILE_BYTES).ok()?;
    let le = match b.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u32> {
        let v: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        } as u32)
    };
    let u32_at = |o: usize| -> Option<u32> {
        let v: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        })
    };
    let ifd = u32_at(4)? as usize;
    let (mut w, mut h) = (None, None);
    for k in 0..u16_at(ifd)? as usize {
        let e = ifd + 2 + 12 * k;
        let value = match u16_at(e + 2)? {
            3 => u16_at(e + 8)?,
            4 => u32_at(e + 8)?,
            _ => continue,
        };
        match u16_at(e)? {
            256 => w = Some(value as usize),
            257 => h = Some(value as usize),
            _ => {}
        }
    }
    Some((w?, h?))
}

/// Attaches an iBUG `.pts` found beside each image file (`face.png` + `face.pts`) to samples
/// that have no landmarks of their own. Returns how many were attached.
pub fn attach_pts(ds: &mut Dataset) -> Result<usize> {
    let mut n = 0;
    for s in &mut ds.samples {
        let Pixels::File(img) = &s.pixels else {
            continue;
        };
        if s.landmarks.is_some() {
            continue;
        }
        if let Some(l) = pts_beside(img)? {
            s.landmarks = Some(l);
            n += 1;
        }
    }
    Ok(n)
}

/// The iBUG `.pts` beside image `img` (`face.png` + `face.pts`), if there is one.
pub fn pts_beside(img: &Path) -> Result<Option<SampleLandmarks>> {
    let pts = img.with_extension("pts");
    if !pts.is_file() {
        return Ok(None);
    }
    let points = read_pts(&pts)?;
    // An unreadable image gets no landmarks; it is reported as unreadable when loaded.
    let Ok((w, h)) = image_size(img) else {
        return Ok(None);
    };
    Ok(Some(SampleLandmarks::from_pixels(
        &points,
        w,
        h,
        LandmarkOrigin::File(pts),
    )))
}

/// One row of a sidecar CSV.
#[derive(Clone, Debug, PartialEq)]
pub struct SidecarRow {
    /// As written: a path relative to the dataset root, or a base name.
    pub file: String,
    /// 1-based line in the CSV, for messages.
    pub line: u64,
    /// In the image's pixels.
    pub points: Landmarks,
    pub flagged: bool,
}

/// Reads a `file,x0,y0,...,x67,y67[,flagged]` sidecar. A header row (first field `file`) is
/// optional. Every malformed row is an error naming the file and line.
pub fn read_sidecar(path: &Path) -> Result<Vec<SidecarRow>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(crate::data::formats::open_regular(path)?);
    let mut rows = Vec::new();
    let mut rec = csv::StringRecord::new();
    let mut first = true;
    loop {
        match r.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(path, e)),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if std::mem::take(&mut first) && rec.get(0).map(str::trim) == Some("file") {
            continue;
        }
        let err = |m: String| line_err(path, line, m);
        let n = rec.len();
        if n != 1 + 2 * POINTS && n != 2 + 2 * POINTS {
            return Err(err(format!(
                "{n} columns: expected file, x0, y0, ..., x67, y67 ({}), optionally flagged ({})",
                1 + 2 * POINTS,
                2 + 2 * POINTS
            )));
        }
        let file = rec[0].trim().to_string();
        if file.is_empty() {
            return Err(err("the file column is empty".into()));
        }
        let mut points = [[0f32; 2]; POINTS];
        for (k, p) in points.iter_mut().enumerate() {
            for (a, v) in p.iter_mut().enumerate() {
                let f = rec[1 + 2 * k + a].trim();
                *v = f
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        err(format!(
                            "{}{k} is {f:?}, not a number",
                            if a == 0 { "x" } else { "y" }
                        ))
                    })?;
            }
        }
        let flagged = match rec.get(1 + 2 * POINTS).map(str::trim) {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(err(format!("flagged is {other:?}, expected 0 or 1"))),
        };
        rows.push(SidecarRow {
            file,
            line,
            points,
            flagged,
        });
    }
    Ok(rows)
}

/// What [`attach_sidecar`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SidecarReport {
    /// Rows attached to a sample.
    pub attached: usize,
    /// Of those, rows flagged (no face found).
    pub flagged: usize,
    /// Rows naming no image of the dataset (the sidecar may cover a larger folder).
    pub unknown: usize,
    /// Samples whose own landmarks (a dataset file) the sidecar replaced.
    pub replaced: usize,
}

/// Attaches a sidecar's rows to the samples they name: by path relative to the dataset root
/// first, else by the end of exactly one sample's relative path (a base name, or
/// `1/a.jpg` under AffectNet's `Manually_Annotated_Images/`); a name ending several samples'
/// paths is an error (which one is meant cannot be known). The
/// sidecar is what the user asked for, so it replaces landmarks from the dataset's files.
/// Rows naming no sample are counted, not errors; a note goes into `ds.notes`.
pub fn attach_sidecar(ds: &mut Dataset, csv: &Path) -> Result<SidecarReport> {
    let rows = read_sidecar(csv)?;
    let root = if ds.root.is_file() {
        ds.root.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        ds.root.clone()
    };
    let slash = |p: &Path| p.to_string_lossy().replace('\\', "/");
    // Every tail of every sample's relative path (`sad/c.png`, `c.png`), so a sidecar written
    // for a sub-folder (AffectNet's Manually_Annotated_Images/) or naming base names matches.
    let (mut by_rel, mut by_tail): (HashMap<String, usize>, HashMap<String, Vec<usize>>) =
        Default::default();
    for (i, s) in ds.samples.iter().enumerate() {
        let path: &PathBuf = match &s.pixels {
            Pixels::File(p) | Pixels::Crop { path: p, .. } => p,
            Pixels::Gray { .. } => continue,
        };
        let rel = slash(path.strip_prefix(&root).unwrap_or(path));
        let mut tail = rel.as_str();
        loop {
            by_tail.entry(tail.to_string()).or_default().push(i);
            match tail.find('/') {
                Some(k) => tail = &tail[k + 1..],
                None => break,
            }
        }
        by_rel.insert(rel, i);
    }
    let mut report = SidecarReport::default();
    for row in rows {
        let key = row.file.replace('\\', "/");
        let key = key.trim_start_matches("./");
        let i = match by_rel.get(key) {
            Some(&i) => i,
            None => match by_tail.get(key).map(Vec::as_slice) {
                Some(&[i]) => i,
                Some(many) if !many.is_empty() => {
                    return Err(line_err(
                        csv,
                        row.line,
                        format!(
                            "{:?} ends the paths of {} images; write the path relative to {}",
                            row.file,
                            many.len(),
                            root.display()
                        ),
                    ))
                }
                _ => {
                    report.unknown += 1;
                    continue;
                }
            },
        };
        let s = &mut ds.samples[i];
        let origin = LandmarkOrigin::Sidecar {
            csv: csv.to_path_buf(),
            flagged: row.flagged,
        };
        let lm = match &s.pixels {
            Pixels::File(p) => {
                // An unreadable image is reported as such when it is loaded; its row cannot be
                // placed and is counted with the rows that match nothing.
                let Ok((w, h)) = image_size(p) else {
                    report.unknown += 1;
                    continue;
                };
                SampleLandmarks::from_pixels(&row.points, w, h, origin)
            }
            Pixels::Crop {
                x,
                y,
                width,
                height,
                ..
            } => {
                let moved = row.points.map(|p| [p[0] - *x as f32, p[1] - *y as f32]);
                SampleLandmarks::from_pixels(&moved, *width, *height, origin)
            }
            Pixels::Gray { .. } => unreachable!("in-memory samples are not in the maps"),
        };
        if matches!(
            s.landmarks,
            Some(SampleLandmarks {
                origin: LandmarkOrigin::File(_),
                ..
            })
        ) {
            report.replaced += 1;
        }
        s.landmarks = Some(lm);
        report.attached += 1;
        report.flagged += row.flagged as usize;
    }
    let mut note = format!(
        "landmarks from {}: {} images ({} flagged: no face found)",
        csv.display(),
        report.attached,
        report.flagged
    );
    if report.unknown > 0 {
        note += &format!(", {} rows name no image of this dataset", report.unknown);
    }
    if report.replaced > 0 {
        note += &format!(", replacing the dataset's own for {}", report.replaced);
    }
    ds.notes.push(note);
    Ok(report)
}
