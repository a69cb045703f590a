//! Seeing inside the network: run a checkpoint on a few images and keep what the CBAM gates did
//! (each stage's spatial map M_s and channel gate M_c), measure occlusion sensitivity (how much
//! the class probability drops when a patch hides each part of the face), and draw both as PNG
//! figures with the `image` crate and the figures' bitmap font ([`crate::figures::text`]).
//!
//! Images are `[C, S, S]` u8 planes exactly as the trainer feeds them (occluders are 0), so the
//! network sees here what it saw in training and evaluation.

use image::{Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::figures::text;
use crate::gpu::Gpu;
use crate::metrics;
use crate::model::checkpoint::Checkpoint;
use crate::model::{Evaluate, InferenceNetwork, ModelConfig};

/// A 2-D map `[h, w]`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Map {
    pub h: usize,
    pub w: usize,
    pub values: Vec<f32>,
}

impl Map {
    pub fn min(&self) -> f32 {
        self.values.iter().copied().fold(f32::INFINITY, f32::min)
    }
    pub fn max(&self) -> f32 {
        self.values
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }
    pub fn mean(&self) -> f32 {
        self.values.iter().sum::<f32>() / self.values.len().max(1) as f32
    }
    /// Bilinear sample at `(u, v)` in `[0, 1]^2` of the map's extent, pixel centres at
    /// `(i + 0.5) / w` (PyTorch's `align_corners=False`), clamped at the border.
    pub fn sample(&self, u: f32, v: f32) -> f32 {
        let sx = (u * self.w as f32 - 0.5).clamp(0.0, (self.w - 1) as f32);
        let sy = (v * self.h as f32 - 0.5).clamp(0.0, (self.h - 1) as f32);
        let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(self.w - 1), (y0 + 1).min(self.h - 1));
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        let at = |x: usize, y: usize| self.values[y * self.w + x];
        let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
        let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    }
}

/// What one stage's gates did to one image (`None` where the stage has no such gate).
#[derive(Clone, Debug)]
pub struct StageGates {
    /// M_s `[S_i/2, S_i/2]`, in [0, 1] (a sigmoid).
    pub spatial: Option<Map>,
    /// M_c `[C_i]`, in [0, 1] (a sigmoid).
    pub channel: Option<Vec<f32>>,
}

/// The network's view of one image: class probabilities and every stage's gates.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub probs: Vec<f32>,
    pub stages: Vec<StageGates>,
}

impl Inspection {
    /// The most probable class.
    pub fn predicted(&self) -> usize {
        metrics::argmax(&self.probs)
    }
}

/// Occlusion sensitivity of one image: a black `patch` x `patch` square slid over it.
#[derive(Clone, Debug)]
pub struct Sensitivity {
    /// The class whose probability is watched.
    pub class: usize,
    pub patch: usize,
    pub stride: usize,
    /// Patch positions evaluated (all in batches of the network's size).
    pub positions: usize,
    /// The class's probability on the image without the sliding patch.
    pub base: f32,
    /// `[S, S]`: per pixel, the mean over every patch position covering it of
    /// `base - p(class | patch there)`. Positive: hiding that spot lowers the probability.
    pub drop: Map,
}

/// One network, built once for a batch size, that answers every question of this module.
pub struct Explainer<'g> {
    gpu: &'g Gpu,
    net: InferenceNetwork,
}

impl<'g> Explainer<'g> {
    /// Builds the network for `config` at `batch` images per submission and loads `packed`
    /// (with batch norm, on its initial running statistics: a model that has not trained).
    pub fn new(gpu: &'g Gpu, config: &ModelConfig, packed: &[f32], batch: usize) -> Result<Self> {
        let net = pollster::block_on(InferenceNetwork::new(gpu, config, batch))?;
        net.write_params(gpu, packed)?;
        Ok(Explainer { gpu, net })
    }

    /// Builds the network for a checkpoint's config and loads its parameters and buffers.
    pub fn from_checkpoint(gpu: &'g Gpu, ck: &Checkpoint, batch: usize) -> Result<Self> {
        let net = pollster::block_on(InferenceNetwork::from_checkpoint(gpu, ck, batch))?;
        Ok(Explainer { gpu, net })
    }

    pub fn config(&self) -> &ModelConfig {
        self.net.config()
    }

    fn plane(&self) -> usize {
        let c = self.net.config();
        c.in_channels * c.image_size * c.image_size
    }

    fn check(&self, image: &[u8]) -> Result<()> {
        let c = self.net.config();
        if image.len() != self.plane() {
            return Err(Error::InvalidConfig {
                op: "explain".into(),
                message: format!(
                    "an image of {} bytes is not {} x {} x {} (the checkpoint's input)",
                    image.len(),
                    c.in_channels,
                    c.image_size,
                    c.image_size
                ),
            });
        }
        Ok(())
    }

    /// Uploads images `rows` (fewer than a batch are padded with the first one).
    fn upload(&self, images: &[&[u8]]) -> Result<()> {
        let batch = self.net.batch();
        let mut data = Vec::with_capacity(batch * self.plane());
        for k in 0..batch {
            let img = images.get(k).unwrap_or(&images[0]);
            data.extend(img.iter().map(|&p| p as f32 / 255.0));
        }
        self.net.write_batch(self.gpu, &data, &vec![0; batch])
    }

    /// Probabilities and every stage's gates for each image, one submission per batch.
    pub fn inspect(&self, images: &[Vec<u8>]) -> Result<Vec<Inspection>> {
        for img in images {
            self.check(img)?;
        }
        let k = self.net.config().classes.len();
        let stages = self.net.config().widths.len();
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.net.batch()) {
            let refs: Vec<&[u8]> = chunk.iter().map(|v| v.as_slice()).collect();
            self.upload(&refs)?;
            self.net.forward_eval(self.gpu)?;
            let probs = self.gpu.read_blocking(self.net.probs())?;
            let mut spatial = Vec::with_capacity(stages);
            let mut channel = Vec::with_capacity(stages);
            for i in 0..stages {
                spatial.push(match self.net.spatial_map(i) {
                    Some(t) => Some((t.shape().to_vec(), self.gpu.read_blocking(t)?)),
                    None => None,
                });
                channel.push(match self.net.channel_gate(i) {
                    Some(t) => Some((t.shape().to_vec(), self.gpu.read_blocking(t)?)),
                    None => None,
                });
            }
            for r in 0..chunk.len() {
                let stages = (0..stages)
                    .map(|i| StageGates {
                        // M_s is [N, 1, H, W]; M_c is [N, C].
                        spatial: spatial[i].as_ref().map(|(shape, v)| {
                            let (h, w) = (shape[2], shape[3]);
                            Map {
                                h,
                                w,
                                values: v[r * h * w..(r + 1) * h * w].to_vec(),
                            }
                        }),
                        channel: channel[i].as_ref().map(|(shape, v)| {
                            let c = shape[1];
                            v[r * c..(r + 1) * c].to_vec()
                        }),
                    })
                    .collect();
                out.push(Inspection {
                    probs: probs[r * k..(r + 1) * k].to_vec(),
                    stages,
                });
            }
        }
        Ok(out)
    }

    /// Probabilities `[count, K]` of the images `make(0..count)`, made on the fly (a batch at a
    /// time, so thousands of patched copies never sit in memory together); one submission per
    /// batch into one device buffer, read back once.
    pub fn probabilities(&self, count: usize, make: impl Fn(usize) -> Vec<u8>) -> Result<Vec<f32>> {
        let batch = self.net.batch();
        let k = self.net.config().classes.len();
        let batches = count.div_ceil(batch).max(1);
        let all = self.gpu.zeros("explain.probs", &[batches * batch, k])?;
        for b in 0..batches {
            let imgs: Vec<Vec<u8>> = (b * batch..((b + 1) * batch).min(count))
                .map(&make)
                .collect();
            if imgs.is_empty() {
                break;
            }
            for img in &imgs {
                self.check(img)?;
            }
            let refs: Vec<&[u8]> = imgs.iter().map(|v| v.as_slice()).collect();
            self.upload(&refs)?;
            self.net.forward_eval_into(self.gpu, &all, b * batch)?;
        }
        let mut flat = self.gpu.read_blocking(&all)?;
        flat.truncate(count * k);
        Ok(flat)
    }

    /// Slides a black `patch` x `patch` square over `image` with `stride` (the last row and
    /// column of positions touch the far edges, so every pixel is covered) and records how much
    /// `class`'s probability drops; `class` defaults to the predicted one.
    pub fn sensitivity(
        &self,
        image: &[u8],
        class: Option<usize>,
        patch: usize,
        stride: usize,
    ) -> Result<Sensitivity> {
        self.check(image)?;
        let c = self.net.config();
        let (channels, size) = (c.in_channels, c.image_size);
        if patch == 0 || patch > size || stride == 0 {
            return Err(Error::InvalidConfig {
                op: "sensitivity".into(),
                message: format!(
                    "patch {patch} and stride {stride} must be positive and the patch at most the image size {size}"
                ),
            });
        }
        let mut starts: Vec<usize> = (0..=size - patch).step_by(stride).collect();
        if *starts.last().expect("0 is always a start") != size - patch {
            starts.push(size - patch);
        }
        let grid: Vec<(usize, usize)> = starts
            .iter()
            .flat_map(|&y| starts.iter().map(move |&x| (x, y)))
            .collect();
        // Row 0 is the image itself, so the base probability comes from the same submissions.
        let probs = self.probabilities(grid.len() + 1, |r| {
            let mut img = image.to_vec();
            if r > 0 {
                let (x0, y0) = grid[r - 1];
                for ch in 0..channels {
                    for y in y0..y0 + patch {
                        let row = ch * size * size + y * size;
                        img[row + x0..row + x0 + patch].fill(0);
                    }
                }
            }
            img
        })?;
        let k = c.classes.len();
        let class = class.unwrap_or_else(|| metrics::argmax(&probs[..k]));
        let base = probs[class];
        let mut sum = vec![0.0f32; size * size];
        let mut hits = vec![0u32; size * size];
        for (r, &(x0, y0)) in grid.iter().enumerate() {
            let d = base - probs[(r + 1) * k + class];
            for y in y0..y0 + patch {
                for x in x0..x0 + patch {
                    sum[y * size + x] += d;
                    hits[y * size + x] += 1;
                }
            }
        }
        let values = sum
            .iter()
            .zip(&hits)
            .map(|(s, &n)| s / n.max(1) as f32)
            .collect();
        Ok(Sensitivity {
            class,
            patch,
            stride,
            positions: grid.len(),
            base,
            drop: Map {
                h: size,
                w: size,
                values,
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Figures.

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const FAINT: Rgb<u8> = Rgb([110, 110, 110]);
const BAR: Rgb<u8> = Rgb([70, 110, 170]);
const TRUE_BAR: Rgb<u8> = Rgb([40, 150, 70]);
const LINE_H: u32 = 10;

/// Viridis (matplotlib's perceptually uniform map), 9 anchors linearly interpolated.
pub fn viridis(t: f32) -> Rgb<u8> {
    const A: [[f32; 3]; 9] = [
        [68.0, 1.0, 84.0],
        [71.0, 44.0, 122.0],
        [59.0, 81.0, 139.0],
        [44.0, 113.0, 142.0],
        [33.0, 144.0, 141.0],
        [39.0, 173.0, 129.0],
        [92.0, 200.0, 99.0],
        [170.0, 220.0, 50.0],
        [253.0, 231.0, 37.0],
    ];
    ramp(&A, t)
}

/// A diverging blue-white-red map (Moreland's cool-warm): `t` in [-1, 1].
pub fn coolwarm(t: f32) -> Rgb<u8> {
    const A: [[f32; 3]; 3] = [
        [59.0, 76.0, 192.0],
        [235.0, 235.0, 235.0],
        [180.0, 4.0, 38.0],
    ];
    ramp(&A, (t + 1.0) / 2.0)
}

fn ramp(anchors: &[[f32; 3]], t: f32) -> Rgb<u8> {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (anchors.len() - 1) as f32;
    let i = (x.floor() as usize).min(anchors.len() - 2);
    let f = x - i as f32;
    let c = |j: usize| (anchors[i][j] * (1.0 - f) + anchors[i + 1][j] * f).round() as u8;
    Rgb([c(0), c(1), c(2)])
}

fn blend(a: Rgb<u8>, b: Rgb<u8>, alpha: f32) -> Rgb<u8> {
    let m = |x: u8, y: u8| (x as f32 * (1.0 - alpha) + y as f32 * alpha).round() as u8;
    Rgb([m(a[0], b[0]), m(a[1], b[1]), m(a[2], b[2])])
}

fn fill(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: Rgb<u8>) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, c);
        }
    }
}

fn frame(img: &mut RgbImage, x: u32, y: u32, w: u32, h: u32, c: Rgb<u8>) {
    fill(img, x, y, w, 1, c);
    fill(img, x, y + h - 1, w, 1, c);
    fill(img, x, y, 1, h, c);
    fill(img, x + w - 1, y, 1, h, c);
}

fn label(img: &mut RgbImage, x: u32, y: u32, s: &str, c: Rgb<u8>) {
    text::draw(img, x as i64, y as i64, s, c, 1);
}

/// Keeps the end of `s` (file names end in what tells them apart) within `chars` characters.
fn fit(s: &str, chars: usize) -> String {
    let n = s.chars().count();
    if n <= chars {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(n - chars.saturating_sub(3)).collect();
        format!("...{tail}")
    }
}

/// The first channel of a `[C, S, S]` image as a map in 0..1.
fn gray_map(image: &[u8], size: usize) -> Map {
    Map {
        h: size,
        w: size,
        values: image[..size * size]
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect(),
    }
}

/// A colour per position `(u, v)` in the panel, and its opacity over the face.
type Heat<'a> = (&'a dyn Fn(f32, f32) -> Rgb<u8>, f32);

/// Draws `face` (bilinear) into a `side` x `side` panel, optionally overlaying `heat(u, v)`.
fn panel(img: &mut RgbImage, x: u32, y: u32, side: u32, face: &Map, heat: Option<Heat<'_>>) {
    for j in 0..side {
        for i in 0..side {
            let (u, v) = (
                (i as f32 + 0.5) / side as f32,
                (j as f32 + 0.5) / side as f32,
            );
            let g = (face.sample(u, v).clamp(0.0, 1.0) * 255.0).round() as u8;
            let mut c = Rgb([g, g, g]);
            if let Some((h, alpha)) = heat {
                c = blend(c, h(u, v), alpha);
            }
            img.put_pixel(x + i, y + j, c);
        }
    }
    frame(img, x, y, side, side, FAINT);
}

/// One column of a figure: an image as the network saw it and what the network did with it.
pub struct Column<'a> {
    /// "clean", "occluded: mouth".
    pub title: String,
    /// `[C, S, S]` as fed to the network.
    pub image: &'a [u8],
    pub inspection: &'a Inspection,
    pub sensitivity: Option<&'a Sensitivity>,
}

/// Everything one figure shows.
pub struct Figure<'a> {
    /// Where the image came from.
    pub title: String,
    pub classes: &'a [String],
    /// The true class, when known.
    pub label: Option<usize>,
    pub image_size: usize,
    pub columns: Vec<Column<'a>>,
}

const P: u32 = 128; // panel side
const G: u32 = 8; // gap inside a column
const CG: u32 = 24; // gap between columns
const M: u32 = 10; // outer margin
const CW: u32 = 2 * P + G; // column width

/// Composes the figure: per column the input (and its sensitivity map), every stage's M_s over
/// the face, every stage's M_c as a strip, and the class probabilities as bars. Each stage's
/// colour scale is shared by all columns, so a shift of attention between columns shows.
pub fn figure(f: &Figure<'_>) -> RgbImage {
    let cols = f.columns.len().max(1) as u32;
    let stages = f.columns.first().map_or(0, |c| c.inspection.stages.len());
    let has = |pick: &dyn Fn(&StageGates) -> bool| {
        f.columns
            .iter()
            .any(|c| c.inspection.stages.iter().any(pick))
    };
    let any_spatial = has(&|s| s.spatial.is_some());
    let any_channel = has(&|s| s.channel.is_some());
    let any_sens = f.columns.iter().any(|c| c.sensitivity.is_some());
    let k = f.classes.len() as u32;
    let spatial_rows = if any_spatial {
        stages.div_ceil(2) as u32
    } else {
        0
    };

    let width = 2 * M + cols * CW + (cols - 1) * CG;
    let mut height = M + 2 * LINE_H + 4; // title, true class
    height += 2 * LINE_H + 4; // column title, prediction
    height += LINE_H + P + G; // input row
    height += spatial_rows * (LINE_H + P + G);
    if any_channel {
        height += LINE_H + stages as u32 * 12 + G;
    }
    if !any_spatial && !any_channel {
        height += 2 * LINE_H + G;
    }
    height += LINE_H + k * LINE_H + G; // probabilities
    height += 3 * (LINE_H + 4) + M; // legends
    let mut img = RgbImage::from_pixel(width, height, WHITE);
    let chars = ((width - 2 * M) / text::CELL.0) as usize;

    let mut y = M;
    label(&mut img, M, y, &fit(&f.title, chars), INK);
    y += LINE_H;
    let truth = match f.label {
        Some(c) => format!("true class: {} (marked *)", f.classes[c]),
        None => "true class: unknown".to_string(),
    };
    label(&mut img, M, y, &truth, FAINT);
    y += LINE_H + 4;

    // Each stage's M_s colour range, shared by every column.
    let ranges: Vec<Option<(f32, f32)>> = (0..stages)
        .map(|i| {
            let maps: Vec<&Map> = f
                .columns
                .iter()
                .filter_map(|c| c.inspection.stages[i].spatial.as_ref())
                .collect();
            if maps.is_empty() {
                return None;
            }
            let lo = maps.iter().map(|m| m.min()).fold(f32::INFINITY, f32::min);
            let hi = maps
                .iter()
                .map(|m| m.max())
                .fold(f32::NEG_INFINITY, f32::max);
            Some((lo, hi))
        })
        .collect();
    // One sensitivity scale for every column too: the largest |drop| anywhere.
    let sens_scale = f
        .columns
        .iter()
        .filter_map(|c| c.sensitivity)
        .flat_map(|s| s.drop.values.iter().map(|v| v.abs()))
        .fold(0.0f32, f32::max)
        .max(1e-6);

    for (ci, col) in f.columns.iter().enumerate() {
        let x0 = M + ci as u32 * (CW + CG);
        let mut y = y;
        let face = gray_map(col.image, f.image_size);
        let ins = col.inspection;
        label(&mut img, x0, y, &fit(&col.title, (CW / 6) as usize), INK);
        y += LINE_H;
        let p = ins.predicted();
        let pred = format!("predicted: {} {:.2}", f.classes[p], ins.probs[p]);
        label(&mut img, x0, y, &pred, FAINT);
        y += LINE_H + 4;

        label(&mut img, x0, y, "input", INK);
        if let Some(s) = col.sensitivity {
            let t = format!("drop p({}) {:.2}", f.classes[s.class], s.drop.max());
            label(&mut img, x0 + P + G, y, &fit(&t, (P / 6) as usize), INK);
        }
        y += LINE_H;
        panel(&mut img, x0, y, P, &face, None);
        if let Some(s) = col.sensitivity {
            let heat = |u: f32, v: f32| coolwarm(s.drop.sample(u, v) / sens_scale);
            panel(&mut img, x0 + P + G, y, P, &face, Some((&heat, 0.6)));
        }
        y += P + G;

        if any_spatial {
            for (i, st) in ins.stages.iter().enumerate() {
                let (px, py) = (
                    x0 + (i as u32 % 2) * (P + G),
                    y + (i as u32 / 2) * (LINE_H + P + G),
                );
                match (&st.spatial, ranges[i]) {
                    (Some(m), Some((lo, hi))) => {
                        let t = format!("s{i} {}x{}: {lo:.2}-{hi:.2}", m.h, m.w);
                        label(&mut img, px, py, &fit(&t, (P / 6) as usize), INK);
                        let span = (hi - lo).max(1e-6);
                        let heat = |u: f32, v: f32| viridis((m.sample(u, v) - lo) / span);
                        panel(&mut img, px, py + LINE_H, P, &face, Some((&heat, 0.55)));
                    }
                    _ => label(&mut img, px, py, &format!("s{i}: no spatial gate"), FAINT),
                }
            }
            y += spatial_rows * (LINE_H + P + G);
        }
        if any_channel {
            label(&mut img, x0, y, "M_c per stage: 0 black, 1 white", INK);
            y += LINE_H;
            let (lx, strip_w) = (x0 + 18, CW - 18 - 30);
            for (i, st) in ins.stages.iter().enumerate() {
                label(&mut img, x0, y + 1, &format!("s{i}"), FAINT);
                if let Some(g) = &st.channel {
                    for xx in 0..strip_w {
                        let c = (xx as usize * g.len() / strip_w as usize).min(g.len() - 1);
                        let v = (g[c].clamp(0.0, 1.0) * 255.0).round() as u8;
                        fill(&mut img, lx + xx, y, 1, 9, Rgb([v, v, v]));
                    }
                    frame(&mut img, lx, y, strip_w, 9, FAINT);
                    let mean = g.iter().sum::<f32>() / g.len().max(1) as f32;
                    label(
                        &mut img,
                        lx + strip_w + 4,
                        y + 1,
                        &format!("{mean:.2}"),
                        FAINT,
                    );
                } else {
                    label(&mut img, lx, y + 1, "no channel gate", FAINT);
                }
                y += 12;
            }
            y += G;
        }
        if !any_spatial && !any_channel {
            label(&mut img, x0, y, "no attention gates in this", FAINT);
            label(&mut img, x0, y + LINE_H, "model (attention none)", FAINT);
            y += 2 * LINE_H + G;
        }

        label(&mut img, x0, y, "class probabilities", INK);
        y += LINE_H;
        let (bx, bw) = (x0 + 9 * 6, CW - 9 * 6 - 30);
        for (c, &prob) in ins.probs.iter().enumerate() {
            let truth = f.label == Some(c);
            let name = format!("{}{}", fit(&f.classes[c], 8), if truth { "*" } else { "" });
            label(&mut img, x0, y + 1, &name, if truth { INK } else { FAINT });
            fill(&mut img, bx, y + 1, bw, 7, Rgb([236, 236, 236]));
            let len = (prob.clamp(0.0, 1.0) * bw as f32).round() as u32;
            fill(
                &mut img,
                bx,
                y + 1,
                len,
                7,
                if truth { TRUE_BAR } else { BAR },
            );
            label(&mut img, bx + bw + 4, y + 1, &format!("{prob:.2}"), FAINT);
            y += LINE_H;
        }
    }

    // Legends, under everything.
    let mut y = height - M - 3 * (LINE_H + 4);
    if any_spatial {
        for i in 0..60 {
            fill(&mut img, M + i, y, 1, 8, viridis(i as f32 / 59.0));
        }
        label(
            &mut img,
            M + 66,
            y,
            "M_s over the face, low to high; range per stage, same in all columns",
            FAINT,
        );
        y += LINE_H + 4;
    }
    if any_sens {
        for i in 0..60 {
            fill(&mut img, M + i, y, 1, 8, coolwarm(i as f32 / 29.5 - 1.0));
        }
        let s = f
            .columns
            .iter()
            .find_map(|c| c.sensitivity)
            .expect("any_sens");
        label(
            &mut img,
            M + 66,
            y,
            &format!(
                "black {0}x{0} patch slid over the face: red = prob. falls, blue = rises",
                s.patch
            ),
            FAINT,
        );
    }
    img
}

/// A grid of small images: `rows` of (row label, images `[1, S, S]` gray), one column per image,
/// column titles on top, each image scaled up by a whole factor so small crops stay visible.
/// `title` lines are cut to the grid's width.
pub fn grid(
    title: &[String],
    column_titles: &[String],
    rows: &[(String, Vec<Vec<u8>>)],
    size: usize,
) -> RgbImage {
    let zoom = (96usize.div_ceil(size)).max(1) as u32;
    let cell = size as u32 * zoom;
    let cols = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(1) as u32;
    let left = 8 * text::CELL.0 + 6;
    let gap = 4;
    let top = M + (title.len() as u32 + 1) * LINE_H + 4;
    let width = (2 * M + left + cols * (cell + gap) - gap).max(360);
    let height = top + rows.len() as u32 * (cell + gap) - gap + M;
    let mut img = RgbImage::from_pixel(width, height, WHITE);
    let chars = ((width - 2 * M) / text::CELL.0) as usize;
    for (l, line) in title.iter().enumerate() {
        let ink = if l == 0 { INK } else { FAINT };
        label(&mut img, M, M + l as u32 * LINE_H, &fit(line, chars), ink);
    }
    for (c, t) in column_titles.iter().enumerate() {
        let x = M + left + c as u32 * (cell + gap);
        label(
            &mut img,
            x,
            top - LINE_H - 2,
            &fit(t, (cell / 6) as usize),
            FAINT,
        );
    }
    for (r, (name, images)) in rows.iter().enumerate() {
        let y = top + r as u32 * (cell + gap);
        label(&mut img, M, y + cell / 2 - 4, &fit(name, 8), INK);
        for (c, im) in images.iter().enumerate() {
            let x = M + left + c as u32 * (cell + gap);
            for j in 0..cell {
                for i in 0..cell {
                    let v = im[(j / zoom) as usize * size + (i / zoom) as usize];
                    img.put_pixel(x + i, y + j, Rgb([v, v, v]));
                }
            }
        }
    }
    img
}

/// Writes `img` as a PNG (best compression) atomically: a temporary file, then a rename.
pub fn save_png(path: &std::path::Path, img: &RgbImage) -> Result<()> {
    use image::ImageEncoder;
    let mut bytes = Vec::new();
    image::codecs::png::PngEncoder::new_with_quality(
        &mut bytes,
        image::codecs::png::CompressionType::Best,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| Error::Data {
        path: path.display().to_string(),
        message: format!("cannot encode PNG: {e}"),
    })?;
    crate::files::write_atomic(path, &bytes)
}
