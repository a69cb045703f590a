//! Small anti-aliased raster helpers for the synthetic face generator.
//!
//! Shapes are not painted directly: each primitive returns a [`Mask`] (coverage in 0..1 over its
//! own bounding box), so that one shape can be clipped by another (an iris by the eye opening,
//! teeth by the mouth opening) before it is composited. Coordinates are continuous pixel
//! coordinates: pixel `(i, j)` covers `[i, i+1) x [j, j+1)` and is sampled at its centre
//! `(i + 0.5, j + 0.5)`.
//!
//! Everything works on a square `f32` luminance canvas in 0..1 and allocates only per shape,
//! which keeps a 48x48 face well under a millisecond.

/// A point in pixel coordinates.
pub type P = [f32; 2];

/// Coverage of one shape over an axis-aligned pixel rectangle (clipped to the canvas).
#[derive(Clone, Debug)]
pub struct Mask {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
    pub cov: Vec<f32>,
}

impl Mask {
    /// An all-zero mask over the pixels touched by `[x0, x1) x [y0, y1)`, clipped to a canvas of
    /// `size` x `size`. Empty (w or h = 0) when the rectangle misses the canvas.
    fn over(x0: f32, y0: f32, x1: f32, y1: f32, size: usize) -> Mask {
        let clip = |v: f32| -> usize { v.max(0.0).min(size as f32) as usize };
        let (ax, ay) = (clip(x0.floor()), clip(y0.floor()));
        let (bx, by) = (clip(x1.ceil()), clip(y1.ceil()));
        let (w, h) = (bx.saturating_sub(ax), by.saturating_sub(ay));
        Mask {
            x0: ax,
            y0: ay,
            w,
            h,
            cov: vec![0.0; w * h],
        }
    }

    /// Coverage at canvas pixel `(x, y)`, 0 outside the mask's rectangle.
    pub fn at(&self, x: usize, y: usize) -> f32 {
        if x < self.x0 || y < self.y0 || x >= self.x0 + self.w || y >= self.y0 + self.h {
            0.0
        } else {
            self.cov[(y - self.y0) * self.w + (x - self.x0)]
        }
    }

    /// Clip by another shape: coverage becomes the product of both.
    pub fn clip(&mut self, other: &Mask) {
        for j in 0..self.h {
            for i in 0..self.w {
                self.cov[j * self.w + i] *= other.at(self.x0 + i, self.y0 + j);
            }
        }
    }

    /// Calls `f(x, y, coverage)` for every canvas pixel with non-zero coverage.
    fn for_each(&self, mut f: impl FnMut(usize, usize, f32)) {
        for j in 0..self.h {
            for i in 0..self.w {
                let c = self.cov[j * self.w + i];
                if c > 0.0 {
                    f(self.x0 + i, self.y0 + j, c);
                }
            }
        }
    }
}

/// A square luminance canvas, values in 0..1 (not clamped while drawing).
pub struct Canvas {
    pub size: usize,
    pub px: Vec<f32>,
}

impl Canvas {
    pub fn new(size: usize) -> Canvas {
        Canvas {
            size,
            px: vec![0.0; size * size],
        }
    }

    /// Alpha-blends `value` over the mask: `c += (value - c) * coverage * opacity`.
    pub fn paint(&mut self, m: &Mask, value: f32, opacity: f32) {
        let s = self.size;
        m.for_each(|x, y, c| {
            let p = &mut self.px[y * s + x];
            *p += (value - *p) * c * opacity;
        });
    }

    /// Like [`Canvas::paint`] with a value that depends on the pixel (shaded skin).
    pub fn paint_with(&mut self, m: &Mask, opacity: f32, value: impl Fn(usize, usize) -> f32) {
        let s = self.size;
        m.for_each(|x, y, c| {
            let p = &mut self.px[y * s + x];
            *p += (value(x, y) - *p) * c * opacity;
        });
    }

    /// Multiplies by `factor` where covered (shadows below 1, highlights above), blended by
    /// coverage so soft masks give soft shading.
    pub fn shade(&mut self, m: &Mask, factor: f32) {
        let s = self.size;
        m.for_each(|x, y, c| {
            self.px[y * s + x] *= 1.0 + (factor - 1.0) * c;
        });
    }
}

/// Vertical sub-scanlines per pixel row in [`polygon`]; horizontal coverage is exact.
const SUB: usize = 5;

/// Filled polygon (even-odd rule), anti-aliased: exact horizontal span coverage on `SUB`
/// sub-scanlines per row. Cost is rows x edges, independent of the polygon's area, so the whole
/// face outline is as cheap as a lip.
pub fn polygon(pts: &[P], size: usize) -> Mask {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in pts {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
        x1 = x1.max(p[0]);
        y1 = y1.max(p[1]);
    }
    let mut m = Mask::over(x0, y0, x1, y1, size);
    if m.w == 0 || m.h == 0 || pts.len() < 3 {
        return m;
    }
    let mut xs: Vec<f32> = Vec::with_capacity(16);
    let wsub = 1.0 / SUB as f32;
    let (left, right) = (m.x0 as f32, (m.x0 + m.w) as f32);
    for j in 0..m.h {
        let row = &mut m.cov[j * m.w..(j + 1) * m.w];
        for s in 0..SUB {
            let yy = (m.y0 + j) as f32 + (s as f32 + 0.5) * wsub;
            xs.clear();
            for k in 0..pts.len() {
                let a = pts[k];
                let b = pts[(k + 1) % pts.len()];
                // Half-open in y so a vertex shared by two edges is counted once.
                if (a[1] <= yy) != (b[1] <= yy) {
                    let t = (yy - a[1]) / (b[1] - a[1]);
                    xs.push(a[0] + t * (b[0] - a[0]));
                }
            }
            xs.sort_by(|a, b| a.total_cmp(b));
            for span in xs.chunks_exact(2) {
                let (xa, xb) = (span[0].max(left), span[1].min(right));
                if xb <= xa {
                    continue;
                }
                add_span(row, xa - left, xb - left, wsub);
            }
        }
    }
    m
}

/// Adds `weight` times the length of `[xa, xb)` falling in each cell of `row`.
fn add_span(row: &mut [f32], xa: f32, xb: f32, weight: f32) {
    let (ia, ib) = (xa.floor() as usize, xb.floor() as usize);
    if ia == ib {
        row[ia] += (xb - xa) * weight;
        return;
    }
    row[ia] += (ia as f32 + 1.0 - xa) * weight;
    let end = ib.min(row.len());
    for c in &mut row[ia + 1..end] {
        *c += weight;
    }
    if ib < row.len() {
        row[ib] += (xb - ib as f32) * weight;
    }
}

/// Filled ellipse with a one-pixel anti-aliased edge. `angle` rotates the `rx` axis
/// (radians, clockwise on screen since y points down).
pub fn ellipse(c: P, rx: f32, ry: f32, angle: f32, size: usize) -> Mask {
    let (sn, cs) = angle.sin_cos();
    // Bounding box of a rotated ellipse.
    let ex = ((rx * cs).powi(2) + (ry * sn).powi(2)).sqrt() + 1.0;
    let ey = ((rx * sn).powi(2) + (ry * cs).powi(2)).sqrt() + 1.0;
    let mut m = Mask::over(c[0] - ex, c[1] - ey, c[0] + ex, c[1] + ey, size);
    let (rx, ry) = (rx.max(1e-3), ry.max(1e-3));
    for j in 0..m.h {
        for i in 0..m.w {
            let dx = (m.x0 + i) as f32 + 0.5 - c[0];
            let dy = (m.y0 + j) as f32 + 0.5 - c[1];
            let (u, v) = (dx * cs + dy * sn, -dx * sn + dy * cs);
            let f = ((u / rx).powi(2) + (v / ry).powi(2)).sqrt();
            // Signed distance to the outline, to first order: (f - 1) / |grad f|.
            let g = ((u / (rx * rx)).powi(2) + (v / (ry * ry)).powi(2)).sqrt();
            let d = if g > 0.0 {
                (f - 1.0) * f / g
            } else {
                -rx.min(ry)
            };
            m.cov[j * m.w + i] = (0.5 - d).clamp(0.0, 1.0);
        }
    }
    m
}

/// A soft blob: coverage `(1 - r^2)^2` of the normalised elliptical radius `r`, for shading
/// (eye sockets, cheeks, shadows under the nose and lip) that must have no visible edge.
pub fn soft_ellipse(c: P, rx: f32, ry: f32, angle: f32, size: usize) -> Mask {
    let (sn, cs) = angle.sin_cos();
    let ex = ((rx * cs).powi(2) + (ry * sn).powi(2)).sqrt();
    let ey = ((rx * sn).powi(2) + (ry * cs).powi(2)).sqrt();
    let mut m = Mask::over(c[0] - ex, c[1] - ey, c[0] + ex, c[1] + ey, size);
    let (rx, ry) = (rx.max(1e-3), ry.max(1e-3));
    for j in 0..m.h {
        for i in 0..m.w {
            let dx = (m.x0 + i) as f32 + 0.5 - c[0];
            let dy = (m.y0 + j) as f32 + 0.5 - c[1];
            let (u, v) = (dx * cs + dy * sn, -dx * sn + dy * cs);
            let r2 = (u / rx).powi(2) + (v / ry).powi(2);
            if r2 < 1.0 {
                m.cov[j * m.w + i] = (1.0 - r2) * (1.0 - r2);
            }
        }
    }
    m
}

/// A polyline of varying half-width `hw[k]` at vertex `k` (round joins and caps).
/// Lines thinner than a pixel are spread over a pixel with proportionally less coverage, so a
/// hairline wrinkle at 48x48 fades instead of flickering between 0 and 1 pixel wide.
pub fn stroke(pts: &[P], hw: &[f32], size: usize) -> Mask {
    assert_eq!(pts.len(), hw.len());
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    // One margin for the whole stroke: each segment's box below uses the wider of its two
    // widths at both ends, and must stay inside this one.
    let e = hw.iter().fold(0.5f32, |a, &w| a.max(w)) + 1.0;
    for p in pts {
        x0 = x0.min(p[0] - e);
        y0 = y0.min(p[1] - e);
        x1 = x1.max(p[0] + e);
        y1 = y1.max(p[1] + e);
    }
    let mut m = Mask::over(x0, y0, x1, y1, size);
    if m.w == 0 || m.h == 0 {
        return m;
    }
    for k in 0..pts.len().saturating_sub(1) {
        let (a, b) = (pts[k], pts[k + 1]);
        let (wa, wb) = (hw[k], hw[k + 1]);
        let e = wa.max(wb).max(0.5) + 1.0;
        let sub = Mask::over(
            a[0].min(b[0]) - e,
            a[1].min(b[1]) - e,
            a[0].max(b[0]) + e,
            a[1].max(b[1]) + e,
            size,
        );
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len2 = (dx * dx + dy * dy).max(1e-12);
        for j in sub.y0..sub.y0 + sub.h {
            for i in sub.x0..sub.x0 + sub.w {
                let (px, py) = (i as f32 + 0.5 - a[0], j as f32 + 0.5 - a[1]);
                let t = ((px * dx + py * dy) / len2).clamp(0.0, 1.0);
                let (qx, qy) = (px - t * dx, py - t * dy);
                let d = (qx * qx + qy * qy).sqrt();
                let w = wa + (wb - wa) * t;
                let we = w.max(0.5);
                let c = (we + 0.5 - d).clamp(0.0, 1.0) * (w / we);
                let idx = (j - m.y0) * m.w + (i - m.x0);
                if c > m.cov[idx] {
                    m.cov[idx] = c;
                }
            }
        }
    }
    m
}

/// Uniform Catmull-Rom spline through `pts` with `per_seg` samples per segment. The result
/// passes exactly through every input point (at indices `k * per_seg`), which is what lets the
/// generator's landmarks be points of the drawn outlines.
pub fn catmull_rom(pts: &[P], closed: bool, per_seg: usize) -> Vec<P> {
    let n = pts.len();
    if n < 3 || per_seg < 2 {
        return pts.to_vec();
    }
    let get = |i: isize| -> P {
        if closed {
            pts[i.rem_euclid(n as isize) as usize]
        } else {
            pts[i.clamp(0, n as isize - 1) as usize]
        }
    };
    let segs = if closed { n } else { n - 1 };
    let mut out = Vec::with_capacity(segs * per_seg + 1);
    for k in 0..segs as isize {
        let (p0, p1, p2, p3) = (get(k - 1), get(k), get(k + 1), get(k + 2));
        for s in 0..per_seg {
            let t = s as f32 / per_seg as f32;
            let (t2, t3) = (t * t, t * t * t);
            let f = |a: f32, b: f32, c: f32, d: f32| {
                0.5 * (2.0 * b
                    + (-a + c) * t
                    + (2.0 * a - 5.0 * b + 4.0 * c - d) * t2
                    + (-a + 3.0 * b - 3.0 * c + d) * t3)
            };
            out.push([f(p0[0], p1[0], p2[0], p3[0]), f(p0[1], p1[1], p2[1], p3[1])]);
        }
    }
    if !closed {
        out.push(pts[n - 1]);
    }
    out
}
