//! One description of a labelled image set, whatever form it was distributed in.
//!
//! Every loader (class folders, FER2013's CSV, JAFFE's file names, CK+ as distributed, RAF-DB,
//! AffectNet, FED-RO) produces a [`Dataset`]: a list of [`Sample`]s, each with its pixels (a file
//! decoded on demand, or grayscale bytes held in memory), its label in the spec's class order,
//! the side of the dataset's own split it belongs to, its subject when known, and its 68
//! landmarks when the dataset (or a sidecar) has them. Training, evaluation and the protocols
//! only ever see this type, so a new format is one loader and nothing else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::folder::{self, FolderDataset, Skipped, Split};
use crate::data::synthetic::Landmarks;
use crate::data::{formats, landmarks};
use crate::model::CLASSES;
use crate::{Error, Result};

/// The forms a dataset is read in. `Folder` covers every class-per-folder release (CK+48,
/// FER2013's image folders, AffectNet's and FED-RO's class folders).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Folder,
    Fer2013Csv,
    Jaffe,
    CkPlus,
    RafDb,
    AffectNetCsv,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Folder,
        Format::Fer2013Csv,
        Format::Jaffe,
        Format::CkPlus,
        Format::RafDb,
        Format::AffectNetCsv,
    ];
    /// The name used by `--format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Folder => "folder",
            Format::Fer2013Csv => "fer2013-csv",
            Format::Jaffe => "jaffe",
            Format::CkPlus => "ckplus",
            Format::RafDb => "rafdb",
            Format::AffectNetCsv => "affectnet-csv",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let want = s.to_ascii_lowercase();
        Format::ALL
            .into_iter()
            .find(|f| f.name() == want)
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "{s:?} is not a dataset format: use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Where a sample's pixels are.
#[derive(Clone, Debug, PartialEq)]
pub enum Pixels {
    /// An image file, decoded (and resized) when the sample is loaded.
    File(PathBuf),
    /// 8-bit grayscale held in memory, row-major (FER2013's CSV rows).
    Gray {
        width: usize,
        height: usize,
        data: Arc<[u8]>,
    },
    /// A box of an image file (AffectNet's face boxes): `width` x `height` pixels from
    /// (`x`, `y`) of the decoded image. Parts of the box outside the image are black, so the
    /// box's geometry (and landmarks measured in it) never shifts when it overhangs an edge.
    Crop {
        path: PathBuf,
        x: i64,
        y: i64,
        width: usize,
        height: usize,
    },
}

/// Where a sample's landmarks came from; every report says which, per image.
#[derive(Clone, Debug, PartialEq)]
pub enum LandmarkOrigin {
    /// The dataset's own landmark file (CK+ `_landmarks.txt`, an iBUG `.pts`, AffectNet's CSV).
    File(PathBuf),
    /// A `file,x0,y0,...,x67,y67` CSV sidecar (for example from `tools/landmarks.py`);
    /// `flagged` when the tool found no face and fitted the whole image.
    Sidecar { csv: PathBuf, flagged: bool },
}

/// 68 points as fractions of the source image's width and height (so they follow any resize),
/// and where they came from.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleLandmarks {
    pub points: Landmarks,
    pub origin: LandmarkOrigin,
}

impl SampleLandmarks {
    /// From pixel coordinates in an image `width` x `height`.
    pub fn from_pixels(
        points: &Landmarks,
        width: usize,
        height: usize,
        origin: LandmarkOrigin,
    ) -> Self {
        let (w, h) = (width.max(1) as f32, height.max(1) as f32);
        SampleLandmarks {
            points: points.map(|p| [p[0] / w, p[1] / h]),
            origin,
        }
    }
    /// In pixel coordinates of the `size` x `size` image the network sees.
    pub fn at(&self, size: usize) -> Landmarks {
        let s = size as f32;
        self.points.map(|p| [p[0] * s, p[1] * s])
    }
}

/// One labelled image.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// For messages and reports: the path, or `file.csv line N`.
    pub name: String,
    pub pixels: Pixels,
    /// Class index in the spec's order ([`CLASSES`]).
    pub label: usize,
    pub split: Split,
    /// The subject, when the dataset says: grouped splits keep a subject on one side.
    pub group: Option<String>,
    pub landmarks: Option<SampleLandmarks>,
}

impl Sample {
    /// Pixels `[channels, size, size]` (grayscale replicated), resized like [`folder::decode`].
    pub fn load(&self, size: usize, channels: usize) -> Result<Vec<u8>> {
        if size == 0 || channels == 0 || size > folder::MAX_IMAGE_SIDE as usize || channels > 4 {
            return Err(Error::Data {
                path: self.name.clone(),
                message: format!("cannot make a {size}x{size}x{channels} image"),
            });
        }
        let img = self.load_original()?;
        let (w, h) = img.dimensions();
        Ok(crate::preprocess::input_from_gray(
            img.as_raw(),
            w as usize,
            h as usize,
            size,
            channels,
        ))
    }

    /// The sample's 8-bit gray pixels at their own size (a box is cut out of its image).
    pub fn load_original(&self) -> Result<image::GrayImage> {
        match &self.pixels {
            Pixels::File(path) => folder::decode_original(path),
            Pixels::Gray {
                width,
                height,
                data,
            } => {
                if width.checked_mul(*height) != Some(data.len()) || data.is_empty() {
                    return Err(Error::Data {
                        path: self.name.clone(),
                        message: format!(
                            "cannot make an image from {} bytes said to be {width}x{height}",
                            data.len()
                        ),
                    });
                }
                Ok(
                    image::GrayImage::from_raw(*width as u32, *height as u32, data.to_vec())
                        .expect("length checked above"),
                )
            }
            Pixels::Crop {
                path,
                x,
                y,
                width,
                height,
            } => {
                // The sample's name says which annotation row gave the box.
                let fail = |message: String| Error::Data {
                    path: self.name.clone(),
                    message,
                };
                let side = folder::MAX_IMAGE_SIDE as usize;
                if *width == 0 || *height == 0 || *width > side || *height > side {
                    return Err(fail(format!(
                        "cannot cut an image from a {width}x{height} box (boxes up to {side} \
                         pixels on a side)"
                    )));
                }
                // Through the folder decoder, which also reads JAFFE's palette TIFFs (a face
                // crop of a JAFFE image is a box of one).
                let full = folder::decode_original(path)?;
                let (fw, fh) = (full.width() as i64, full.height() as i64);
                if *x >= fw || *y >= fh || x + *width as i64 <= 0 || y + *height as i64 <= 0 {
                    return Err(fail(format!(
                        "the {width}x{height} box at ({x}, {y}) lies outside the {fw}x{fh} image"
                    )));
                }
                let mut img = image::GrayImage::new(*width as u32, *height as u32);
                // Only the overlap of the box and the image is copied; the rest stays black.
                image::imageops::replace(&mut img, &full, -*x, -*y);
                Ok(img)
            }
        }
    }

    /// Width and height of [`Sample::load_original`]'s image, from the file's header where the
    /// pixels are a file (no decoding).
    pub fn original_size(&self) -> Result<(usize, usize)> {
        match &self.pixels {
            Pixels::File(path) => landmarks::image_size(path),
            Pixels::Gray { width, height, .. } | Pixels::Crop { width, height, .. } => {
                Ok((*width, *height))
            }
        }
    }
}

/// The result of a loader.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub format: Format,
    /// In a fixed order (never the file system's), so seeded splits are reproducible.
    pub samples: Vec<Sample>,
    /// True when the dataset carries its own train/test split.
    pub has_splits: bool,
    /// Folders of classes outside the spec's seven (CK+'s `contempt`), with their sizes.
    pub skipped: Vec<Skipped>,
    /// Anything else the user should hear about (rows with unknown labels left out, a
    /// `PrivateTest` set folded into test...), one line each.
    pub notes: Vec<String>,
}

impl Dataset {
    /// A class-per-folder dataset from [`folder::scan`].
    pub fn from_folder(ds: FolderDataset) -> Dataset {
        let mut notes = Vec::new();
        if ds.ignored_files > 0 {
            notes.push(format!(
                "ignored {} files that are not images by extension",
                ds.ignored_files
            ));
        }
        Dataset {
            root: ds.root,
            format: Format::Folder,
            samples: ds
                .items
                .into_iter()
                .map(|i| Sample {
                    name: i.path.display().to_string(),
                    pixels: Pixels::File(i.path),
                    label: i.label,
                    split: i.split,
                    group: i.group,
                    landmarks: None,
                })
                .collect(),
            has_splits: ds.has_splits,
            skipped: ds.skipped,
            notes,
        }
    }

    /// Images per class, on one side of the split or in all.
    pub fn counts(&self, split: Option<Split>) -> [usize; CLASSES.len()] {
        let mut c = [0; CLASSES.len()];
        for s in &self.samples {
            if split.is_none_or(|want| s.split == want) {
                c[s.label] += 1;
            }
        }
        c
    }

    /// CK+: keeps the last (apex) frame of each `Sxxx_yyy` sequence, like
    /// [`FolderDataset::keep_last_frame_per_sequence`]; returns how many were dropped.
    /// Samples whose names are not CK+ frames are kept.
    pub fn keep_last_frame_per_sequence(&mut self) -> usize {
        use std::collections::HashMap;
        let parts = |s: &Sample| {
            let file = file_name(&s.name);
            folder::ckplus_parts(&file).map(|(_, seq, frame)| (seq.to_string(), frame))
        };
        let mut best: HashMap<(Split, usize, String), u64> = HashMap::new();
        for s in &self.samples {
            if let Some((seq, frame)) = parts(s) {
                let e = best.entry((s.split, s.label, seq)).or_insert(frame);
                *e = (*e).max(frame);
            }
        }
        let before = self.samples.len();
        self.samples.retain(|s| match parts(s) {
            Some((seq, frame)) => best[&(s.split, s.label, seq)] == frame,
            None => true,
        });
        before - self.samples.len()
    }

    /// How many samples have landmarks, by origin kind, for reports.
    pub fn landmark_summary(&self) -> String {
        let (mut file, mut sidecar, mut flagged, mut none) = (0, 0, 0, 0);
        for s in &self.samples {
            match &s.landmarks {
                Some(SampleLandmarks {
                    origin: LandmarkOrigin::File(_),
                    ..
                }) => file += 1,
                Some(SampleLandmarks {
                    origin: LandmarkOrigin::Sidecar { flagged: f, .. },
                    ..
                }) => {
                    sidecar += 1;
                    flagged += *f as usize;
                }
                None => none += 1,
            }
        }
        format!(
            "landmarks: {file} from the dataset's files, {sidecar} from a sidecar CSV ({flagged} flagged: no face found), {none} from the canonical template"
        )
    }
}

fn file_name(name: &str) -> String {
    Path::new(name)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// Reads the dataset at `root`: in `format` when given, otherwise the form detected from what
/// the folder (or file) holds.
pub fn open(root: impl AsRef<Path>, format: Option<Format>) -> Result<Dataset> {
    let root = root.as_ref();
    if !root.exists() {
        return Err(Error::Data {
            path: root.display().to_string(),
            message: "does not exist".into(),
        });
    }
    let format = match format {
        Some(f) => f,
        None => detect(root)?,
    };
    let mut ds = match format {
        Format::Folder => Dataset::from_folder(folder::scan(root)?),
        Format::Fer2013Csv => formats::fer2013::read(root)?,
        Format::Jaffe => formats::jaffe::read(root)?,
        Format::CkPlus => formats::ckplus::read(root)?,
        Format::RafDb => formats::rafdb::read(root)?,
        Format::AffectNetCsv => formats::affectnet::read(root)?,
    };
    let found = landmarks::attach_pts(&mut ds)?;
    if found > 0 {
        ds.notes.push(format!(
            "{found} images have an iBUG .pts landmark file beside them"
        ));
    }
    Ok(ds)
}

/// The form of the dataset at `root`, from what it holds: a `.csv` file (or a folder with one)
/// whose header names FER2013's or AffectNet's columns; CK+'s `cohn-kanade-images/` and
/// `Emotion/`; RAF-DB's `EmoLabel/list_patition_label.txt`; image files named like JAFFE's
/// (`KA.AN1.39.tiff`); otherwise class folders. Anything else is an error that lists what was
/// looked for.
pub fn detect(root: &Path) -> Result<Format> {
    formats::detect(root)
}
