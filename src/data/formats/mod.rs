//! Readers for datasets in the form they are distributed, each into a
//! [`Dataset`](crate::data::dataset::Dataset), and [`detect`], which tells them apart.
//!
//! | format | what is read | split | subject |
//! |---|---|---|---|
//! | [`fer2013`] | `emotion,pixels,Usage` CSV, pixels kept in memory | Training / PublicTest+PrivateTest | - |
//! | [`jaffe`] | `KA.AN1.39.tiff` file names | none | `KA` |
//! | [`ckplus`] | `cohn-kanade-images/`, `Emotion/`, `Landmarks/` | none | `S005` |
//! | [`rafdb`] | `EmoLabel/list_patition_label.txt`, `Image/aligned/` | `train_` / `test_` | - |
//! | [`affectnet`] | `training.csv` / `validation.csv`, face boxes and landmarks | training / validation | - |
//!
//! Class-per-folder releases (CK+48, FER2013's image folders, AffectNet's and FED-RO's class
//! folders) are read by [`crate::data::folder`].

pub mod affectnet;
pub mod ckplus;
pub mod fer2013;
pub mod jaffe;
pub mod rafdb;

use std::path::{Path, PathBuf};

use crate::data::dataset::Format;
use crate::data::folder;
use crate::{Error, Result};

pub(crate) fn data_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Opens a file the readers stream (a CSV, a list): it must be a regular file, so that a
/// device or a pipe given by mistake is an error rather than an endless read.
pub(crate) fn open_regular(path: &Path) -> Result<std::fs::File> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(data_err(path, "cannot open: not a regular file")),
        _ => std::fs::File::open(path).map_err(|e| data_err(path, format!("cannot open: {e}"))),
    }
}

/// Reads a small text file (landmarks, an emotion code) of at most 16 MiB.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = crate::files::read_file(path, 16 << 20)
        .map_err(|e| data_err(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|_| data_err(path, "cannot read: not UTF-8 text"))
}

/// An error in a text file, at a 1-based line.
pub(crate) fn line_err(path: &Path, line: u64, message: impl Into<String>) -> Error {
    Error::Data {
        path: format!("{} line {line}", path.display()),
        message: message.into(),
    }
}

/// A `csv` crate error as the file and line it happened at.
pub(crate) fn csv_err(path: &Path, e: csv::Error) -> Error {
    match e.position() {
        Some(p) => line_err(path, p.line(), format!("malformed CSV: {e}")),
        None => data_err(path, format!("cannot read CSV: {e}")),
    }
}

/// The class index of one of the spec's class names; the readers' label tables are written
/// with names, not indices, so a table cannot silently point at the wrong class.
pub(crate) fn class(name: &str) -> usize {
    folder::class_index(name).unwrap_or_else(|| panic!("{name:?} is not one of the spec's classes"))
}

/// Sub-folders and files of `dir`, hidden entries left out, each sorted by name (never the
/// file system's order, so datasets and seeded splits are reproducible).
pub(crate) fn list(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let rd = std::fs::read_dir(dir).map_err(|e| data_err(dir, format!("cannot list: {e}")))?;
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in rd {
        let entry = entry.map_err(|e| data_err(dir, format!("cannot list: {e}")))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        // An entry that cannot be followed (a dangling or looping link) is listed as a file:
        // reading it then fails like any unreadable file, named, without stopping the listing.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => dirs.push(path),
            _ => files.push(path),
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

/// `dir` joined with `rel`, a path written in an annotation file: it must stay inside `dir`.
/// Absolute paths, drive prefixes and `..` are refused, so a list entry cannot make the reader
/// open a file outside the dataset. (Links inside the dataset are the dataset's own layout and
/// are followed.)
pub(crate) fn inside(dir: &Path, rel: &str) -> std::result::Result<PathBuf, String> {
    use std::path::Component;
    let p = Path::new(rel);
    let escapes = rel.starts_with(['/', '\\'])
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        || rel.split(['/', '\\']).any(|part| part == "..");
    if escapes {
        return Err(format!(
            "{rel:?} is not a relative path inside {}: absolute paths and `..` are refused",
            dir.display()
        ));
    }
    Ok(dir.join(p))
}

/// True when `path` is a file, or a link that cannot be followed (dangling, looping): such an
/// entry is kept as a sample whose image is unreadable (reported and counted when it is
/// loaded, or fatal with --strict), not an error that stops reading the whole dataset.
pub(crate) fn present(path: &Path) -> bool {
    path.is_file()
        || std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink() && !path.is_dir())
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| folder::IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The trimmed, lower-cased column names of a CSV file's first row.
pub(crate) fn csv_header(path: &Path) -> Result<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(crate::data::formats::open_regular(path)?);
    let mut rec = csv::StringRecord::new();
    match r.read_record(&mut rec) {
        Ok(true) => Ok(rec.iter().map(|f| f.trim().to_ascii_lowercase()).collect()),
        Ok(false) => Err(data_err(path, "is empty")),
        Err(e) => Err(csv_err(path, e)),
    }
}

/// What a CSV's header says it is.
pub(crate) fn csv_kind(header: &[String]) -> Option<Format> {
    let has = |c: &str| header.iter().any(|h| h == c);
    if has("subdirectory_filepath") && has("expression") {
        Some(Format::AffectNetCsv)
    } else if has("emotion") && has("pixels") {
        Some(Format::Fer2013Csv)
    } else if header.len() == 9 && header[0].contains('/') && header[6].parse::<u8>().is_ok() {
        // AffectNet's validation.csv circulates without its header row.
        Some(Format::AffectNetCsv)
    } else {
        None
    }
}

/// The CSV files directly in `dir` whose header says they are `format`.
pub(crate) fn csvs_of(dir: &Path, format: Format) -> Result<Vec<PathBuf>> {
    let (_, files) = list(dir)?;
    let mut out = Vec::new();
    for f in files {
        let csv = f.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if csv && csv_header(&f).ok().and_then(|h| csv_kind(&h)) == Some(format) {
            out.push(f);
        }
    }
    Ok(out)
}

/// CK+ as distributed: the folder holding `cohn-kanade-images/` and `Emotion/`.
pub(crate) fn is_ckplus(root: &Path) -> bool {
    root.join(ckplus::IMAGES).is_dir() && root.join(ckplus::EMOTION).is_dir()
}

/// See [`crate::data::dataset::detect`].
pub fn detect(root: &Path) -> Result<Format> {
    let meta = std::fs::metadata(root).map_err(|_| data_err(root, "does not exist"))?;
    if meta.is_file() {
        if !root
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            return Err(data_err(
                root,
                "a dataset file must be a .csv (FER2013's emotion,pixels,Usage or AffectNet's \
                 training.csv / validation.csv); otherwise give a folder",
            ));
        }
        let header = csv_header(root)?;
        return csv_kind(&header).ok_or_else(|| {
            line_err(
                root,
                1,
                format!(
                    "header {:?} is neither FER2013's (emotion,pixels,Usage) nor AffectNet's \
                     (subDirectory_filePath,face_x,...,expression,...); use --format",
                    header.join(",")
                ),
            )
        });
    }
    if is_ckplus(root) {
        return Ok(Format::CkPlus);
    }
    if root.join(rafdb::LIST).is_file() {
        return Ok(Format::RafDb);
    }
    if !csvs_of(root, Format::AffectNetCsv)?.is_empty() {
        return Ok(Format::AffectNetCsv);
    }
    if !csvs_of(root, Format::Fer2013Csv)?.is_empty() {
        return Ok(Format::Fer2013Csv);
    }
    let (dirs, files) = list(root)?;
    if files
        .iter()
        .any(|f| jaffe::parse_name(&file_name(f)).is_some())
    {
        return Ok(Format::Jaffe);
    }
    let class_like = |d: &PathBuf| {
        let n = file_name(d);
        folder::class_index(&n).is_some()
            || n.eq_ignore_ascii_case("train")
            || n.eq_ignore_ascii_case("test")
    };
    if dirs.iter().any(class_like) {
        return Ok(Format::Folder);
    }
    Err(data_err(
        root,
        format!(
            "cannot tell the dataset's format: looked for a .csv with FER2013's or AffectNet's \
             header, CK+'s {}/ and {}/, RAF-DB's {}, image files named like JAFFE's \
             (KA.AN1.39.tiff), and class folders ({} or train/ and test/); found none (use --format)",
            ckplus::IMAGES,
            ckplus::EMOTION,
            rafdb::LIST,
            crate::model::CLASSES.join(", ")
        ),
    ))
}
