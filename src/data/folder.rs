//! Class-per-folder image datasets: `<root>/<class>/*`, or `<root>/train/<class>/*` and
//! `<root>/test/<class>/*` when the dataset comes with its own split (FER2013's image-folder
//! release does; CK+48 does not).
//!
//! Scanning only lists files; images are decoded one at a time by [`decode`], so a 35k-image
//! dataset costs a directory walk until a batch is actually needed.
//!
//! Class folders are matched by name, case-insensitively, against the spec's classes
//! ([`crate::model::CLASSES`]) and the spellings the public releases use (`anger`, `sadness`,
//! `happiness`, `surprised`, `fearful`, `disgusted`). Any other folder (CK+'s `contempt`, a
//! `val/` split) is skipped and listed in [`FolderDataset::skipped`], so the caller can say so
//! instead of silently training on fewer classes than the user expects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::model::CLASSES;
use crate::{Error, Result};

/// Which side of the dataset's own split an item comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Test,
    /// The dataset has no split of its own (`<root>/<class>/`); make one with
    /// [`crate::data::split`].
    Unsplit,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Unsplit => "unsplit",
        }
    }
}

/// One image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub path: PathBuf,
    /// Class index in the spec's order.
    pub label: usize,
    pub split: Split,
    /// The subject, when the file name says (see [`subject_of`]): splits keep a subject's
    /// images on one side so near-identical frames do not leak from train to test.
    pub group: Option<String>,
}

/// A folder that is not one of the seven classes, with the number of entries it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Relative to the dataset root (`contempt`, `train/contempt`, `val`).
    pub path: PathBuf,
    pub entries: usize,
}

/// The result of [`scan`].
#[derive(Clone, Debug)]
pub struct FolderDataset {
    pub root: PathBuf,
    /// Sorted by split, class, then path, so the order never depends on the file system.
    pub items: Vec<Item>,
    /// True for the `train/` + `test/` layout.
    pub has_splits: bool,
    pub skipped: Vec<Skipped>,
    /// Files in class folders that are not images by extension (`.txt`, `.DS_Store`...).
    pub ignored_files: usize,
}

/// Image file extensions read by [`decode`] (the `image` crate's enabled formats).
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "tif", "tiff"];

/// The class index of a folder name, `None` for anything that is not one of the seven classes.
pub fn class_index(name: &str) -> Option<usize> {
    let n = name.to_ascii_lowercase();
    let canonical = match n.as_str() {
        "anger" => "angry",
        "disgusted" => "disgust",
        "fearful" => "fear",
        "happiness" => "happy",
        "sadness" => "sad",
        "surprised" => "surprise",
        other => other,
    };
    CLASSES.iter().position(|c| *c == canonical)
}

/// The subject of a file, from the naming schemes of the lab datasets:
/// CK+ `S005_001_00000009.png` gives `S005`; JAFFE `KA.AN1.39.tiff` gives `KA`.
/// `None` for anything else (FER2013's `Training_123.jpg` has no subject).
pub fn subject_of(file_name: &str) -> Option<String> {
    if let Some((subject, _, _)) = ckplus_parts(file_name) {
        return Some(subject.to_string());
    }
    // JAFFE: two capital letters (the poser), '.', an expression code and a digit, '.', digits.
    let b = file_name.as_bytes();
    let jaffe = b.len() > 8
        && b[0].is_ascii_uppercase()
        && b[1].is_ascii_uppercase()
        && b[2] == b'.'
        && b[3].is_ascii_uppercase()
        && b[4].is_ascii_uppercase()
        && b[5].is_ascii_digit();
    if jaffe {
        let rest = &file_name[5..];
        let num_end = rest.find('.')?;
        let tail = &rest[num_end + 1..];
        let digits = tail.find('.').map(|e| &tail[..e])?;
        if rest[..num_end].bytes().all(|c| c.is_ascii_digit())
            && !digits.is_empty()
            && digits.bytes().all(|c| c.is_ascii_digit())
        {
            return Some(file_name[..2].to_string());
        }
    }
    None
}

/// `S005_001_00000009.png` -> ("S005", "S005_001", 9).
/// CK+ frame names `S005_001_00000009...`: (subject, sequence `S005_001`, frame number).
pub fn ckplus_parts(file_name: &str) -> Option<(&str, &str, u64)> {
    let mut parts = file_name.splitn(3, '_');
    let (s, q, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    if !(s.len() >= 2 && s.starts_with('S') && digits(&s[1..]) && digits(q)) {
        return None;
    }
    let frame_txt = rest.split(['.', '_']).next()?;
    if !digits(frame_txt) {
        return None;
    }
    let frame = frame_txt.parse().ok()?;
    Some((s, &file_name[..s.len() + 1 + q.len()], frame))
}

fn data_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Sub-folders (name, path) and files of a folder.
type Listing = (Vec<(String, PathBuf)>, Vec<PathBuf>);

/// Sub-folders and files of `dir`, hidden entries left out, each sorted by name.
fn list(dir: &Path) -> Result<Listing> {
    let rd = std::fs::read_dir(dir).map_err(|e| data_err(dir, format!("cannot list: {e}")))?;
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in rd {
        let entry = entry.map_err(|e| data_err(dir, format!("cannot list: {e}")))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // metadata() follows symbolic links, so linked class folders work. An entry it cannot
        // follow (a dangling or looping link, no permission) is listed as a file: as an image it
        // is then unreadable like any broken image (reported and counted, or fatal with
        // --strict), instead of stopping the whole listing.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => dirs.push((name, path)),
            _ => files.push(path),
        }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        .unwrap_or(false)
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// Lists a class-per-folder dataset. Errors: `root` missing or not a folder; no class folder
/// at all, or class folders without a single image ("empty class set").
pub fn scan(root: impl AsRef<Path>) -> Result<FolderDataset> {
    let root = root.as_ref();
    match std::fs::metadata(root) {
        Err(_) => return Err(data_err(root, "dataset folder does not exist")),
        Ok(m) if !m.is_dir() => return Err(data_err(root, "is not a folder")),
        Ok(_) => {}
    }
    let (dirs, _) = list(root)?;
    let split_of = |name: &str| match name.to_ascii_lowercase().as_str() {
        "train" => Some(Split::Train),
        "test" => Some(Split::Test),
        _ => None,
    };
    let has_splits = dirs.iter().any(|(n, _)| split_of(n).is_some());
    let mut ds = FolderDataset {
        root: root.to_path_buf(),
        items: Vec::new(),
        has_splits,
        skipped: Vec::new(),
        ignored_files: 0,
    };
    let mut class_dirs = 0;
    let mut seen_names = Vec::new();
    let parents: Vec<(Split, PathBuf, PathBuf)> = if has_splits {
        let mut p = Vec::new();
        for (name, path) in &dirs {
            match split_of(name) {
                Some(s) => p.push((s, path.clone(), PathBuf::from(name))),
                None => ds.skipped.push(Skipped {
                    path: PathBuf::from(name),
                    entries: count_entries(path),
                }),
            }
        }
        p
    } else {
        vec![(Split::Unsplit, root.to_path_buf(), PathBuf::new())]
    };
    for (split, parent, rel) in parents {
        let (sub, _) = list(&parent)?;
        for (name, path) in sub {
            let Some(label) = class_index(&name) else {
                ds.skipped.push(Skipped {
                    path: rel.join(&name),
                    entries: count_entries(&path),
                });
                seen_names.push(rel.join(&name).display().to_string());
                continue;
            };
            class_dirs += 1;
            let (_, files) = list(&path)?;
            for f in files {
                if !is_image(&f) {
                    ds.ignored_files += 1;
                    continue;
                }
                let group = f.file_name().and_then(|n| n.to_str()).and_then(subject_of);
                ds.items.push(Item {
                    path: f,
                    label,
                    split,
                    group,
                });
            }
        }
    }
    if class_dirs == 0 {
        let found = if seen_names.is_empty() {
            "no sub-folders".to_string()
        } else {
            format!("found only {}", seen_names.join(", "))
        };
        let layout = if has_splits {
            "train/<class>/ or test/<class>/"
        } else {
            "<class>/ (or train/<class>/ and test/<class>/)"
        };
        return Err(data_err(
            root,
            format!(
                "empty class set: expected {layout} folders named {} ({found})",
                CLASSES.join(", ")
            ),
        ));
    }
    if ds.items.is_empty() {
        return Err(data_err(
            root,
            format!(
                "empty class set: the class folders hold no images (.{})",
                IMAGE_EXTENSIONS.join(", .")
            ),
        ));
    }
    ds.items
        .sort_by(|a, b| (a.split, a.label, &a.path).cmp(&(b.split, b.label, &b.path)));
    Ok(ds)
}

impl FolderDataset {
    /// Images per class, for one split or (`None`) all of them.
    pub fn counts(&self, split: Option<Split>) -> [usize; CLASSES.len()] {
        let mut c = [0; CLASSES.len()];
        for it in &self.items {
            if split.is_none_or(|s| s == it.split) {
                c[it.label] += 1;
            }
        }
        c
    }

    /// The items of one split.
    pub fn split(&self, split: Split) -> Vec<&Item> {
        self.items.iter().filter(|i| i.split == split).collect()
    }

    /// Keeps only the last frame of each CK+ sequence (`SXXX_YYY_<frame>`), i.e. the apex of
    /// the expression: the CK+48 release has the last three frames of each sequence, and the
    /// paper's Table 1 counts one image per sequence. Files without a CK+ name are kept.
    /// Returns how many items were dropped.
    pub fn keep_last_frame_per_sequence(&mut self) -> usize {
        let mut best: HashMap<(Split, usize, String), u64> = HashMap::new();
        let parts = |it: &Item| {
            it.path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(ckplus_parts)
                .map(|(_, seq, frame)| (seq.to_string(), frame))
        };
        for it in &self.items {
            if let Some((seq, frame)) = parts(it) {
                let e = best.entry((it.split, it.label, seq)).or_insert(frame);
                *e = (*e).max(frame);
            }
        }
        let before = self.items.len();
        self.items.retain(|it| match parts(it) {
            Some((seq, frame)) => best[&(it.split, it.label, seq)] == frame,
            None => true,
        });
        before - self.items.len()
    }

    /// A per-class table of the scan, and a note on what was skipped, for the CLI to print.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let total = self.items.len();
        let present = self.counts(None).iter().filter(|&&c| c > 0).count();
        s += &format!(
            "{}: {total} images, {present} of {} classes{}\n",
            self.root.display(),
            CLASSES.len(),
            if self.has_splits {
                " (train/test split given)"
            } else {
                " (no split given)"
            }
        );
        let (tr, te, all) = (
            self.counts(Some(Split::Train)),
            self.counts(Some(Split::Test)),
            self.counts(None),
        );
        if self.has_splits {
            s += &format!(
                "  {:<10}{:>7}{:>7}{:>7}\n",
                "class", "train", "test", "total"
            );
            for (k, name) in CLASSES.iter().enumerate() {
                s += &format!("  {name:<10}{:>7}{:>7}{:>7}\n", tr[k], te[k], all[k]);
            }
        } else {
            for (k, name) in CLASSES.iter().enumerate() {
                s += &format!("  {name:<10}{:>7}\n", all[k]);
            }
        }
        for k in &self.skipped {
            s += &format!(
                "  note: skipped folder {} ({} entries): not one of the classes {}\n",
                k.path.display(),
                k.entries,
                CLASSES.join(", ")
            );
        }
        if self.ignored_files > 0 {
            s += &format!(
                "  note: ignored {} non-image files in class folders\n",
                self.ignored_files
            );
        }
        s
    }
}

/// Reads one image as `size` x `size` grayscale, replicated to `channels` planes
/// (`[C, H, W]`, the spec's 3-channel input is three copies of the gray plane).
///
/// Any format the `image` crate reads (PNG, JPEG, TIFF), plus 8-bit palette TIFFs (which it
/// refuses, so they are read through a relabelled copy), is converted to luma (the `image`
/// crate's sRGB weights), then resized with a bilinear (triangle) filter, widened when shrinking
/// so downscaling averages instead of aliasing ([`crate::preprocess::resize`], the browser's
/// too). An image already `size` x `size` is not resampled.
pub fn decode(path: impl AsRef<Path>, size: usize, channels: usize) -> Result<Vec<u8>> {
    let path = path.as_ref();
    if size == 0 || channels == 0 || size > MAX_IMAGE_SIDE as usize || channels > 4 {
        return Err(data_err(
            path,
            format!("cannot decode to size {size} with {channels} channels"),
        ));
    }
    let gray = decode_original(path)?;
    let (w, h) = gray.dimensions();
    Ok(crate::preprocess::input_from_gray(
        gray.as_raw(),
        w as usize,
        h as usize,
        size,
        channels,
    ))
}

/// Largest width or height of an image that is decoded: a camera's 200-megapixel photo fits,
/// a small file that claims 20000x20000 (and would take gigabytes decoded) does not.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// Largest image file that is read.
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// The decoder limits every image is read with: [`MAX_IMAGE_SIDE`] on each side, and the
/// `image` crate's own cap on what one decode may allocate (512 MiB).
pub fn image_limits() -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_IMAGE_SIDE);
    l.max_image_height = Some(MAX_IMAGE_SIDE);
    l
}

/// Decodes an image file's bytes, its size checked from the header before any pixel is.
fn decode_checked(
    path: &Path,
    bytes: &[u8],
    format: Option<image::ImageFormat>,
) -> Result<image::DynamicImage> {
    let undecodable = |e: image::ImageError| data_err(path, format!("cannot decode image: {e}"));
    let reader = || -> Result<image::ImageReader<std::io::Cursor<&[u8]>>> {
        let cursor = std::io::Cursor::new(bytes);
        Ok(match format {
            Some(f) => image::ImageReader::with_format(cursor, f),
            None => image::ImageReader::new(cursor)
                .with_guessed_format()
                .map_err(|e| data_err(path, format!("cannot read image: {e}")))?,
        })
    };
    // The header alone, to say how large the image is when it is too large.
    let (w, h) = reader()?.into_dimensions().map_err(undecodable)?;
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(data_err(
            path,
            format!(
                "image is {w}x{h} pixels; images up to {MAX_IMAGE_SIDE} pixels on a side are read"
            ),
        ));
    }
    let mut r = reader()?;
    r.limits(image_limits());
    r.decode().map_err(undecodable)
}

/// The image at `path` as 8-bit luma at its own size (see [`decode`] for the formats).
pub fn decode_original(path: impl AsRef<Path>) -> Result<image::GrayImage> {
    let path = path.as_ref();
    let bytes = crate::files::read_file(path, MAX_IMAGE_FILE_BYTES)
        .map_err(|e| data_err(path, format!("cannot read image: {e}")))?;
    Ok(match palette_tiff(&bytes) {
        Some((as_gray, lut)) => {
            let mut g =
                decode_checked(path, &as_gray, Some(image::ImageFormat::Tiff))?.into_luma8();
            for v in g.iter_mut() {
                *v = lut[*v as usize];
            }
            g
        }
        None => decode_checked(path, &bytes, None)?.into_luma8(),
    })
}

/// The `image` crate (0.25) refuses TIFFs with a colour map (PhotometricInterpretation 3),
/// which is how JAFFE is distributed. Rather than decode TIFF ourselves, relabel the file as
/// 8-bit grayscale (so the `image` crate's TIFF decoder, with all its compressions, returns the
/// palette indices) and map each index through the colour map's luma.
///
/// Returns the relabelled file and the index -> luma table, or `None` when `bytes` is not a
/// classic 8-bit palette TIFF (then the `image` crate decodes it, or reports why not).
fn palette_tiff(bytes: &[u8]) -> Option<(Vec<u8>, [u8; 256])> {
    let le = match bytes.get(0..2)? {
        b"II" => true,
        b"MM" => false,
        _ => return None,
    };
    let u16_at = |o: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |o: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    if u16_at(2)? != 42 {
        return None; // BigTIFF or not a TIFF
    }
    let ifd = u32_at(4)? as usize;
    let (mut photometric_at, mut bits, mut cmap) = (None, 1u16, None);
    for k in 0..u16_at(ifd)? as usize {
        let e = ifd + 2 + 12 * k;
        let (tag, ty, count) = (u16_at(e)?, u16_at(e + 2)?, u32_at(e + 4)?);
        match tag {
            262 if ty == 3 && count == 1 && u16_at(e + 8)? == 3 => photometric_at = Some(e + 8),
            258 if ty == 3 && count == 1 => bits = u16_at(e + 8)?,
            320 if ty == 3 && count == 3 * 256 => cmap = Some(u32_at(e + 8)? as usize),
            _ => {}
        }
    }
    let (photometric_at, cmap) = (photometric_at?, cmap?);
    if bits != 8 {
        return None;
    }
    let mut lut = [0u8; 256];
    for (i, v) in lut.iter_mut().enumerate() {
        // 16-bit colour map entries to 8 bits, then the `image` crate's own luma weights.
        let c = |plane: usize| -> Option<u32> {
            Some((u16_at(cmap + 2 * (plane * 256 + i))? as u32 + 128) / 257)
        };
        *v = ((2126 * c(0)? + 7152 * c(1)? + 722 * c(2)?) / 10000) as u8;
    }
    let mut as_gray = bytes.to_vec();
    let one = if le {
        1u16.to_le_bytes()
    } else {
        1u16.to_be_bytes()
    };
    as_gray[photometric_at..photometric_at + 2].copy_from_slice(&one);
    Some((as_gray, lut))
}
