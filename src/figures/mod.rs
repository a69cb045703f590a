//! PNG figures of evaluations and training runs, drawn with plotters into an RGB buffer and
//! encoded with `image`.
//!
//! Text, here and in the attention figures of `explain`, is drawn by one renderer, the bitmap
//! font of [`text`] (through [`backend::Bitmap`] for plotters), so a figure has the same labels
//! on a machine without any font (CI) as on a desktop.
//!
//! Every figure has a fixed size (the `*_SIZE` constants), a title and labelled axes, and is
//! written atomically: a temporary file beside the target, then a rename, so an error never
//! leaves a half-written PNG. Errors are [`Error::Data`] naming the path.

use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::{Error, Result};

pub mod backend;
pub mod text;

use backend::Bitmap;

/// (width, height) in pixels of [`confusion_png`].
pub const CONFUSION_SIZE: (u32, u32) = (900, 820);
/// (width, height) in pixels of [`roc_png`].
pub const ROC_SIZE: (u32, u32) = (820, 760);
/// (width, height) in pixels of [`curves_png`].
pub const CURVES_SIZE: (u32, u32) = (1200, 520);
/// (width, height) in pixels of [`bars_png`].
pub const BARS_SIZE: (u32, u32) = (1000, 620);

/// One epoch of a training run, for [`curves_png`]. Accuracies are fractions in [0, 1].
#[derive(Clone, Debug, Serialize)]
pub struct EpochPoint {
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub loss: f64,
    /// Training accuracy over the epoch.
    pub accuracy: f64,
    /// Accuracy on the held-out set after the epoch, when one was evaluated.
    pub test_accuracy: Option<f64>,
}

/// The family plotters is told; [`backend::Bitmap`] draws every family with the bitmap font.
const FONT: &str = "sans-serif";

/// Ten distinguishable colours (matplotlib's tab10), cycled for series.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const GRID: RGBColor = RGBColor(225, 225, 225);

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn font(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Draws with `draw` on a white canvas of `size` and writes it to `path` as a PNG, atomically.
fn render<F>(path: &Path, size: (u32, u32), draw: F) -> Result<()>
where
    F: FnOnce(&DrawingArea<Bitmap<'_>, Shift>) -> std::result::Result<(), String>,
{
    let fail = |message: String| Error::Data {
        path: path.display().to_string(),
        message,
    };
    let (w, h) = size;
    let mut buf = vec![255u8; w as usize * h as usize * 3];
    {
        let root = Bitmap(BitMapBackend::with_buffer(&mut buf, size)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| fail(format!("drawing: {e}")))?;
        draw(&root).map_err(|e| fail(format!("drawing: {e}")))?;
        root.present().map_err(|e| fail(format!("drawing: {e}")))?;
    }
    let mut png = Vec::new();
    image::RgbImage::from_raw(w, h, buf)
        .expect("buffer is w*h*3 bytes")
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| fail(format!("encoding PNG: {e}")))?;
    crate::files::write_atomic(path, &png)
}

/// Plotters' errors carry the backend's error type; the figures only report them.
fn msg<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Width in pixels of `text` in `style`, 0 if the font cannot measure it.
fn text_width(area: &DrawingArea<Bitmap<'_>, Shift>, text: &str, style: &TextStyle) -> u32 {
    area.estimate_text_size(text, style).map_or(0, |s| s.0)
}

/// Linear blend from white (0) to a dark blue (1), the shading of the confusion matrix.
fn blues(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let (r, g, b) = (8.0, 48.0, 107.0);
    let mix = |c: f64| (255.0 + (c - 255.0) * t).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

/// The confusion matrix as a heat map (rows: true class, columns: predicted class). Each cell
/// shows its count and its share of the row; the shading is that share, so a class's recall is
/// the darkness of its diagonal cell whatever the class sizes.
pub fn confusion_png(path: &Path, m: &Metrics, title: &str) -> Result<()> {
    let k = m.confusion.len();
    let names: Vec<String> = (0..k)
        .map(|c| {
            m.per_class
                .get(c)
                .map_or_else(|| c.to_string(), |p| p.class.clone())
        })
        .collect();
    render(path, CONFUSION_SIZE, |root| {
        // Class names shrink to fit: the y labels to at most a third of the width, the x labels
        // to their column, so long names never overlap.
        let label_font = 16.0;
        let widest = names
            .iter()
            .map(|n| text_width(root, n, &font(label_font)))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let (w, _) = CONFUSION_SIZE;
        let y_room = (w as f64 / 3.0).min(widest);
        let y_font = (label_font * y_room / widest).max(8.0);
        let cell_px = (w as f64 - 60.0 - (y_room + 50.0)) / k.max(1) as f64;
        // Names wider than their column at 12 px are turned to run downwards instead.
        let fit = ((cell_px - 8.0) / widest).min(1.0);
        let rotate = label_font * fit < 12.0;
        let x_room = if rotate { y_room.min(180.0) } else { 20.0 };
        let x_font = if rotate {
            (label_font * x_room / widest).clamp(8.0, 14.0)
        } else {
            label_font * fit
        };
        let x_style = if rotate {
            font(x_font).transform(FontTransform::Rotate90)
        } else {
            font(x_font)
        };
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(24.0))
            .margin(20)
            .margin_right(40)
            .x_label_area_size(x_room as u32 + 40)
            .y_label_area_size(y_room as u32 + 50)
            .build_cartesian_2d(
                Ticked::new(0.0, k as f64, centers(k)),
                Ticked::new(0.0, k as f64, centers(k)),
            )
            .map_err(msg)?;
        // Rows are drawn top to bottom: class i sits at y = k - 1 - i.
        // Plotters centres a rotated tick label on its tick, half inside the plot: rotated names
        // are drawn below instead.
        let x_name = |x: &f64| {
            if rotate {
                String::new()
            } else {
                names.get(x.floor() as usize).cloned().unwrap_or_default()
            }
        };
        let y_name = |y: &f64| {
            let row = k as isize - 1 - y.floor() as isize;
            usize::try_from(row)
                .ok()
                .and_then(|r| names.get(r).cloned())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_label_formatter(&x_name)
            .y_label_formatter(&y_name)
            .label_style(font(y_font))
            .x_label_style(x_style.clone())
            .axis_desc_style(font(18.0))
            .x_desc("Predicted class")
            .y_desc("True class")
            .draw()
            .map_err(msg)?;

        let count_font = (cell_px * 0.22).clamp(10.0, 20.0);
        let share_font = (cell_px * 0.16).clamp(9.0, 15.0);
        for (i, row) in m.confusion.iter().enumerate() {
            let total: usize = row.iter().sum();
            let y = (k - 1 - i) as f64;
            for (j, &count) in row.iter().enumerate() {
                let share = if total > 0 {
                    count as f64 / total as f64
                } else {
                    0.0
                };
                let x = j as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x, y), (x + 1.0, y + 1.0)],
                        blues(share).filled(),
                    )))
                    .map_err(msg)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let centre = Pos::new(HPos::Center, VPos::Center);
                // The two lines sit a fixed number of pixels around the cell's centre, whatever
                // the cell size.
                let (px, py) = chart.backend_coord(&(x + 0.5, y + 0.5));
                let share_text = if total > 0 {
                    format!("{:.0}%", share * 100.0)
                } else {
                    "-".to_string()
                };
                root.draw(&Text::new(
                    count.to_string(),
                    (px, py - (count_font * 0.55) as i32),
                    font(count_font).color(&ink).pos(centre),
                ))
                .map_err(msg)?;
                root.draw(&Text::new(
                    share_text,
                    (px, py + (share_font * 0.8) as i32),
                    font(share_font).color(&ink).pos(centre),
                ))
                .map_err(msg)?;
            }
        }
        if rotate {
            for (j, name) in names.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(j as f64 + 0.5, 0.0));
                root.draw(&Text::new(
                    name.clone(),
                    (px, py + 8),
                    x_style.clone().pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(msg)?;
            }
        }
        // Cell borders, drawn last so that shading does not cover them.
        for i in 0..=k {
            let v = i as f64;
            chart
                .draw_series([
                    PathElement::new(vec![(v, 0.0), (v, k as f64)], GRID),
                    PathElement::new(vec![(0.0, v), (k as f64, v)], GRID),
                ])
                .map_err(msg)?;
        }
        Ok(())
    })
}

/// A linear f64 axis whose ticks are exactly the given values (class or group centres, whole
/// epochs). Plotters' own `with_key_points` drops the default formatting that `configure_mesh`
/// needs, so this is the small axis type it takes instead.
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ticked {
    fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Ticked {
        Ticked { lo, hi, ticks }
    }
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = if self.hi > self.lo {
            (v - self.lo) / (self.hi - self.lo)
        } else {
            0.5
        };
        limit.0 + (t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // Only bold ticks: light grid lines between class centres would cut through cells.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

fn centers(k: usize) -> Vec<f64> {
    (0..k).map(|i| i as f64 + 0.5).collect()
}

/// One-vs-rest ROC curves of every class that has one, the chance diagonal, and the AUC of each
/// class (and the macro AUC) in the legend.
pub fn roc_png(path: &Path, m: &Metrics, title: &str) -> Result<()> {
    render(path, ROC_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(24.0))
            .margin(20)
            .margin_right(30)
            .x_label_area_size(55)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(msg)?;
        chart
            .configure_mesh()
            .max_light_lines(1)
            .light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .label_style(font(15.0))
            .axis_desc_style(font(18.0))
            .x_desc("False positive rate")
            .y_desc("True positive rate")
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(msg)?;
        let chance = RGBColor(150, 150, 150);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                8,
                6,
                chance.stroke_width(1),
            ))
            .map_err(msg)?
            .label("chance (AUC 0.5)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], chance));
        for (i, curve) in m.roc.iter().enumerate() {
            let Some(auc) = curve.auc else { continue };
            let c = color(i);
            chart
                .draw_series(LineSeries::new(
                    curve.points.iter().copied(),
                    c.stroke_width(2),
                ))
                .map_err(msg)?
                .label(format!("{} (AUC {auc:.3})", curve.class))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                });
        }
        if let Some(a) = m.macro_auc {
            // A legend line without a curve: the summary belongs beside the per-class AUCs.
            chart
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                .map_err(msg)?
                .label(format!("macro AUC {a:.3}"))
                .legend(|(x, y)| EmptyElement::at((x, y)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .margin(12)
            .label_font(font(15.0))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(msg)?;
        Ok(())
    })
}

/// Epoch ticks: whole epochs only, at most about ten.
fn epoch_ticks(lo: usize, hi: usize) -> Vec<f64> {
    let step = (hi - lo).div_ceil(10).max(1);
    (lo..=hi).step_by(step).map(|e| e as f64).collect()
}

/// One panel of the training curves: epochs across, `y_desc` from 0 to `y_top` up, with the
/// shared grid and label styles.
fn epoch_panel<'a, 'b>(
    area: &'a DrawingArea<Bitmap<'b>, Shift>,
    caption: &str,
    x: Ticked,
    y_top: f64,
    y_desc: &str,
    y_decimals: usize,
) -> std::result::Result<
    ChartContext<'a, Bitmap<'b>, Cartesian2d<Ticked, plotters::coord::types::RangedCoordf64>>,
    String,
> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(18.0))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(65)
        .build_cartesian_2d(x, 0f64..y_top)
        .map_err(msg)?;
    chart
        .configure_mesh()
        .max_light_lines(1)
        .light_line_style(GRID.mix(0.5))
        .bold_line_style(GRID)
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .x_desc("Epoch")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
        .draw()
        .map_err(msg)?;
    Ok(chart)
}

/// Training curves: the loss per epoch (left panel) and the training and, where present, test
/// accuracy per epoch (right panel). Non-finite values are left out of the lines.
pub fn curves_png(path: &Path, epochs: &[EpochPoint], title: &str) -> Result<()> {
    render(path, CURVES_SIZE, |root| {
        let root = root
            .margin(12, 0, 0, 0)
            .titled(title, font(24.0))
            .map_err(msg)?
            .margin(5, 10, 10, 10);
        let (left, right) = root.split_horizontally(CURVES_SIZE.0 as i32 / 2);
        let lo = epochs.iter().map(|e| e.epoch).min().unwrap_or(0);
        let hi = epochs.iter().map(|e| e.epoch).max().unwrap_or(1);
        // Half an epoch of room on each side keeps the end markers off the axes, and gives a
        // single epoch a range to sit in.
        let x_range = || Ticked::new(lo as f64 - 0.5, hi as f64 + 0.5, epoch_ticks(lo, hi));

        let losses: Vec<(f64, f64)> = epochs
            .iter()
            .filter(|e| e.loss.is_finite())
            .map(|e| (e.epoch as f64, e.loss))
            .collect();
        let loss_max = losses.iter().map(|p| p.1).fold(0.0f64, f64::max);
        let loss_top = if loss_max > 0.0 { loss_max * 1.1 } else { 1.0 };
        let mut chart = epoch_panel(&left, "Training loss", x_range(), loss_top, "Loss", 2)?;
        chart
            .draw_series(LineSeries::new(losses, color(0).stroke_width(2)).point_size(3))
            .map_err(msg)?;

        let train: Vec<(f64, f64)> = epochs
            .iter()
            .filter(|e| e.accuracy.is_finite())
            .map(|e| (e.epoch as f64, e.accuracy))
            .collect();
        let test: Vec<(f64, f64)> = epochs
            .iter()
            .filter_map(|e| Some((e.epoch as f64, e.test_accuracy?)))
            .filter(|p| p.1.is_finite())
            .collect();
        // Fractions; a caller passing percentages still gets every point on the plot.
        let acc_top = train
            .iter()
            .chain(&test)
            .map(|p| p.1)
            .fold(1.0f64, f64::max);
        let mut chart = epoch_panel(&right, "Accuracy", x_range(), acc_top, "Accuracy", 1)?;
        let (c0, c1) = (color(0), color(1));
        chart
            .draw_series(LineSeries::new(train, c0.stroke_width(2)).point_size(3))
            .map_err(msg)?
            .label("train")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c0.stroke_width(3)));
        if !test.is_empty() {
            chart
                .draw_series(LineSeries::new(test, c1.stroke_width(2)).point_size(3))
                .map_err(msg)?
                .label("test")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c1.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .margin(12)
            .label_font(font(15.0))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(msg)?;
        Ok(())
    })
}

/// A grouped bar chart: one group of bars per `(group, bars)` entry, one bar per `(series,
/// value)`, series coloured alike across groups (in order of first appearance) and named in the
/// legend; each bar is labelled with its value. The y axis starts at 0 (or below, for negative
/// values).
pub fn bars_png(
    path: &Path,
    groups: &[(String, Vec<(String, f64)>)],
    title: &str,
    y_label: &str,
) -> Result<()> {
    let mut series: Vec<&str> = Vec::new();
    for (_, bars) in groups {
        for (s, _) in bars {
            if !series.contains(&s.as_str()) {
                series.push(s);
            }
        }
    }
    let values = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|v| v.1))
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let top = if hi > 0.0 { hi * 1.15 } else { 1.0 };
    let bottom = lo * 1.15;
    let g = groups.len().max(1);
    render(path, BARS_SIZE, |root| {
        let area = root
            .margin(12, 0, 0, 0)
            .titled(title, font(24.0))
            .map_err(msg)?;
        // The legend is a row between title and plot, where no bar or value label can hide it.
        let (legend, plot) = area.split_vertically(36);
        let item_font = font(15.0);
        let widths: Vec<i32> = series
            .iter()
            .map(|s| text_width(root, s, &item_font) as i32 + 14 + 6 + 28)
            .collect();
        let mut x = (BARS_SIZE.0 as i32 - widths.iter().sum::<i32>()) / 2;
        for (i, (name, w)) in series.iter().zip(&widths).enumerate() {
            legend
                .draw(&Rectangle::new([(x, 10), (x + 14, 24)], color(i).filled()))
                .map_err(msg)?;
            legend
                .draw(&Text::new(
                    name.to_string(),
                    (x + 20, 17),
                    item_font.pos(Pos::new(HPos::Left, VPos::Center)),
                ))
                .map_err(msg)?;
            x += w;
        }
        let mut chart = ChartBuilder::on(&plot)
            .margin(20)
            .margin_top(5)
            .margin_right(30)
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d(Ticked::new(0.0, g as f64, centers(g)), bottom..top)
            .map_err(msg)?;
        let group_name = |x: &f64| {
            groups
                .get(x.floor() as usize)
                .map(|g| g.0.clone())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .max_light_lines(1)
            .light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .label_style(font(15.0))
            .axis_desc_style(font(18.0))
            .y_desc(y_label)
            .x_label_formatter(&group_name)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .draw()
            .map_err(msg)?;
        // Bars fill 80% of each group's slot, the rest separates groups.
        let slot = 0.8 / series.len().max(1) as f64;
        for (s, name) in series.iter().enumerate() {
            let c = color(s);
            let bars: Vec<(f64, f64)> = groups
                .iter()
                .enumerate()
                .filter_map(|(gi, (_, bars))| {
                    let v = bars.iter().find(|b| b.0 == *name)?.1;
                    v.is_finite()
                        .then_some((gi as f64 + 0.1 + slot * s as f64, v))
                })
                .collect();
            chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    Rectangle::new([(x + 0.01, 0.0), (x + slot - 0.01, v)], c.filled())
                }))
                .map_err(msg)?;
            let above = Pos::new(HPos::Center, VPos::Bottom);
            let value_font = (slot * 900.0 / g as f64 * 0.25).clamp(9.0, 14.0);
            chart
                .draw_series(bars.iter().map(|&(x, v)| {
                    Text::new(
                        format!("{v:.3}"),
                        (x + slot / 2.0, v.max(0.0) + (top - bottom) * 0.01),
                        font(value_font).pos(above),
                    )
                }))
                .map_err(msg)?;
        }
        Ok(())
    })
}
