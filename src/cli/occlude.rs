//! `fer-cbam occlude`: a PNG grid of test faces, one row per occlusion type (clean, then the
//! paper's five), like the paper's Figure 5.

use std::path::{Path, PathBuf};

use fer_cbam::data::occlusion::Occlusion;
use fer_cbam::explain;
use fer_cbam::sources::Data;
use fer_cbam::{Error, Result};

use super::data::DataArgs;

/// `fer-cbam occlude`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Faces per row (the test side's first face of each class first, then the next ones).
    #[arg(long, value_parser = super::count, default_value_t = 7)]
    pub count: usize,
    /// Image size the occlusions are drawn at (the paper's 128; patches scale with it).
    #[arg(long, value_parser = super::image_size, default_value_t = 128)]
    pub image_size: usize,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
}

/// The six test sets of the paper, in its order: clean, then its five occlusions.
fn occlusion_rows() -> Vec<Option<Occlusion>> {
    std::iter::once(None)
        .chain(Occlusion::PAPER.map(Some))
        .collect()
}

fn labels_of(data: &Data) -> Vec<usize> {
    match data {
        Data::Synthetic { test, .. } => test.labels(),
        Data::Folder { test, .. } => test.labels(),
    }
}

pub fn run(args: &Args) -> Result<()> {
    let inputs = args.data.input_files();
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    fer_cbam::files::check_file(&args.out, &inputs)?;
    let (w, h) = grid(args)?;
    super::print_line(format!("wrote {} ({w}x{h})", args.out.display()));
    Ok(())
}

/// The grid of test faces, one row per occlusion type, saved; returns its width and height.
fn grid(a: &Args) -> Result<(u32, u32)> {
    let size = a.image_size;
    if !(16..=512).contains(&size) || a.count == 0 {
        return Err(Error::InvalidConfig {
            op: "occlude".into(),
            message: format!(
                "--image-size must be in 16..=512 and --count positive (got {size} and {})",
                a.count
            ),
        });
    }
    let data = a.data.load()?;
    let test = data.test();
    if test.is_empty() {
        return Err(Error::Data {
            path: a
                .data
                .data
                .as_ref()
                .map_or("synthetic".into(), |p| p.display().to_string()),
            message: "no test images to show".into(),
        });
    }
    // The first face of each class, in class order, then the next faces in order.
    let labels = labels_of(&data);
    let mut pick: Vec<usize> = (0..fer_cbam::model::CLASSES.len())
        .filter_map(|c| labels.iter().position(|&l| l == c))
        .collect();
    for i in 0..labels.len() {
        if pick.len() >= a.count {
            break;
        }
        if !pick.contains(&i) {
            pick.push(i);
        }
    }
    pick.truncate(a.count);
    let clean: Vec<Vec<u8>> = pick
        .iter()
        .map(|&i| test.load(i, 1, size).map(|(px, _)| px))
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for occ in occlusion_rows() {
        let lm = data.landmarks_of(true);
        let images = match occ {
            None => clean.clone(),
            Some(o) => {
                let f = fer_cbam::data::augment::occluded(o, 1, size, lm);
                pick.iter()
                    .zip(&clean)
                    .map(|(&i, px)| {
                        let mut px = px.clone();
                        f(&mut px, i, 0);
                        px
                    })
                    .collect()
            }
        };
        rows.push((occ.map_or("clean".into(), |o| o.to_string()), images));
    }
    let titles: Vec<String> = pick
        .iter()
        .map(|&i| fer_cbam::model::CLASSES[labels[i]].to_string())
        .collect();
    let title = [
        format!("the paper's occlusions at {size}x{size} (black; patches at random places)"),
        data.describe(),
        format!("landmarks: {}", data.landmark_source(true)),
    ];
    let img = explain::grid(&title, &titles, &rows, size);
    explain::save_png(&a.out, &img)?;
    Ok((img.width(), img.height()))
}
