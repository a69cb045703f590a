//! The embedded default dataset: procedurally drawn grayscale faces with the seven expressions,
//! so the engine trains and tests out of the box, with no files and no download.
//!
//! Each face is a pure function of `(seed, index, size)`: identity, pose, lighting, expression
//! and noise all come from one SplitMix64 stream seeded by the pair, and every random number
//! that shapes the geometry is drawn before the per-pixel noise, so the same `(seed, index)`
//! is the same face at 48x48 and at 128x128.
//!
//! Expressions are built the way the Facial Action Coding System describes them: a few action
//! units (AUs) with an intensity each move the 68 landmarks, and wrinkles and shading follow the
//! same AUs. The prototypes (Ekman & Friesen's EMFACS table) are:
//!
//! | class    | action units |
//! |----------|--------------|
//! | angry    | 4 brow lowerer (drawn together), 5 or 7 glare/squint, 23/24 lips pressed, 17 chin raiser (or an open, shouting mouth) |
//! | disgust  | 9 nose wrinkler, 10 upper lip raiser (often one-sided), 4, 6/7, 15/17 |
//! | fear     | 1+2+4 brows raised and drawn together, 5 eyes wide, 20 lip stretcher, 25/26 mouth slightly open |
//! | happy    | 6 cheek raiser (eyes narrow from below, crow's feet), 12 lip corner puller, often 25 teeth |
//! | neutral  | none |
//! | sad      | 1+4 inner brows raised (oblique brows), drooping lids, 15 lip corner depressor, 17 |
//! | surprise | 1+2 brows raised high, 5 eyes wide, 26/27 jaw drop (oval mouth) |
//!
//! Intensity is drawn per face from 0.3 to 1, every AU is jittered, every face gets a little
//! AU noise and a resting face of its own (brow height, mouth-corner curve, eye openness), so
//! weak expressions overlap neutral and each other: the task is learnable but not trivial.
//!
//! Landmarks follow the iBUG 300-W 68-point convention (0-16 jaw, 17-21 right brow, 22-26 left
//! brow, 27-35 nose, 36-41 right eye, 42-47 left eye, 48-59 outer lip, 60-67 inner lip; "right"
//! is the subject's right, the left of the image) in continuous pixel coordinates: pixel `(i, j)`
//! covers `[i, i+1) x [j, j+1)`. They are the exact control points of the drawn outlines (the
//! outlines are Catmull-Rom splines through them, after the pose transform), so an occlusion
//! computed from them covers exactly the drawn eyes and mouth. Brow points lie on the upper edge
//! of the brow, as in iBUG.

use super::raster::{self, Canvas, P};
use crate::rng::SplitMix64;

/// Number of expression classes (the spec's order: angry, disgust, fear, happy, neutral, sad,
/// surprise; see [`crate::model::CLASSES`]).
pub const NUM_CLASSES: usize = crate::model::CLASSES.len();

/// 68 landmarks, `[x, y]` in pixels.
pub type Landmarks = [[f32; 2]; 68];

/// One generated face.
#[derive(Clone, Debug)]
pub struct Face {
    /// `size * size` grayscale pixels, row-major.
    pub pixels: Vec<u8>,
    /// Class index in the spec's order.
    pub label: usize,
    /// The drawn geometry, iBUG 68-point order, pixel coordinates.
    pub landmarks: Landmarks,
}

impl Face {
    /// The pixels as a `[channels, size, size]` image: grayscale replicated to every channel
    /// (the spec's 3-channel input), or the plane itself when `channels == 1`.
    pub fn image(&self, channels: usize) -> Vec<u8> {
        self.pixels.repeat(channels)
    }
}

/// The class of item `index`: classes are balanced in every aligned block of 7 indices (each
/// block is a seeded permutation of 0..7), so any prefix of the dataset is balanced to within one
/// item per class while the order is not a fixed cycle.
pub fn label_of(seed: u64, index: u64) -> usize {
    let mut rng = SplitMix64(mix(seed ^ 0x6C61_6265_6C73, index / NUM_CLASSES as u64));
    let mut perm = [0usize, 1, 2, 3, 4, 5, 6];
    for i in (1..NUM_CLASSES).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    perm[(index % NUM_CLASSES as u64) as usize]
}

/// Draws face `index` of the dataset `seed` at `size` x `size` pixels.
pub fn generate(seed: u64, index: u64, size: usize) -> Face {
    assert!(
        size >= 8,
        "synthetic faces need at least 8x8 pixels, got {size}"
    );
    let label = label_of(seed, index);
    let mut rng = Rng(SplitMix64(mix(seed, index)));
    let id = Identity::draw(&mut rng);
    let mut pose = Pose::draw(&mut rng, size);
    let au = Aus::draw(&mut rng, label);
    let look = Look::draw(&mut rng);
    let geo = Geometry::build(&id, &au);
    // A face detector frames the whole face: a wide-open mouth that would leave the image moves
    // the face up instead (brows to mouth always stay inside, so occlusions find them).
    let low = geo.landmarks[17..]
        .iter()
        .map(|&p| pose.px(p)[1])
        .fold(f32::MIN, f32::max);
    pose.cy -= (low - size as f32 * (47.0 / 48.0)).max(0.0);
    let landmarks = geo.landmarks.map(|p| pose.px(p));
    let canvas = render(&geo, &id, &au, &look, &pose, size);
    let pixels = finish(&canvas, &look, &mut rng);
    Face {
        pixels,
        label,
        landmarks,
    }
}

/// The average neutral face in canonical units (origin midway between the eye centres, x to the
/// right of the image, y down, one unit = the distance between the eye centres): every identity
/// parameter at the middle of its range, no action unit. It is the shape of the landmark
/// template for real face crops ([`crate::data::occlusion::Template`]).
pub fn mean_shape() -> Landmarks {
    Geometry::build(&Identity::draw(&mut Middle), &Aus::default()).landmarks
}

/// Mixes a seed and an index into one well-spread 64-bit state, so neighbouring indices (and
/// neighbouring seeds) start unrelated streams.
fn mix(seed: u64, index: u64) -> u64 {
    let mut a = SplitMix64(seed);
    let mut b = SplitMix64(index ^ a.next_u64());
    b.next_u64() ^ a.next_u64().rotate_left(17)
}

struct Rng(SplitMix64);

impl Rng {
    fn unit(&mut self) -> f32 {
        self.0.next_unit() as f32
    }
    fn range(&mut self, a: f32, b: f32) -> f32 {
        a + (b - a) * self.unit()
    }
    fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
    /// Approximately standard normal (sum of four uniforms from one draw): cheap enough for
    /// per-pixel noise.
    fn normal(&mut self) -> f32 {
        let r = self.0.next_u64();
        let s: u32 = (0..4).map(|k| ((r >> (16 * k)) & 0xFFFF) as u32).sum();
        (s as f32 / 65535.0 - 2.0) * 1.732_050_8
    }
}

// ---------------------------------------------------------------------------------------------
// Identity, pose, expression

/// What stays fixed for a person. Canonical units: origin midway between the eye centres, x to
/// the right of the image, y down, one unit = the distance between eye centres.
struct Identity {
    face_w: f32,     // half-width at the cheekbones
    jaw_y0: f32,     // height of jaw points 0 and 16
    chin_y: f32,     // chin (point 8)
    jaw_n: f32,      // superellipse exponent of the jaw (2 = round, 3 = square)
    jaw_taper: f32,  // narrowing toward the chin
    eye_sep: f32,    // half-distance between eye centres (~0.5, varies the spacing)
    eye_w: f32,      // half-width of an eye opening
    eye_hu: f32,     // upper lid height above the corner line
    eye_hl: f32,     // lower lid depth
    eye_tilt: f32,   // outer corners above inner ones
    iris_r: f32,     // iris radius
    brow_y: f32,     // upper edge of the brow above the eye line
    brow_arch: f32,  // arch height
    brow_thick: f32, // thickness
    brow_in: f32,    // |x| of the inner end
    brow_out: f32,   // |x| of the outer end
    nose_tip: f32,   // y of point 30
    nose_w: f32,     // |x| of points 31/35
    mouth_y: f32,    // y of the mouth corners at rest
    mouth_w: f32,    // half-width
    lip_u: f32,      // upper lip thickness
    lip_l: f32,      // lower lip thickness
    rest_brow: f32,  // resting brow height offset
    rest_curve: f32, // resting mouth-corner height (negative = up)
    rest_open: f32,  // resting eye openness factor
    skin: f32,
    lip_tone: f32,
    brow_tone: f32,
    iris_tone: f32,
    hair: Option<Hair>,
}

struct Hair {
    tone: f32,
    line: f32,  // y of the hairline at the middle of the forehead
    long: bool, // hair down beside the face
}

/// Where identity parameters come from: random draws, or the middle of every range (the
/// average face behind [`mean_shape`]).
trait Pick {
    fn range(&mut self, a: f32, b: f32) -> f32;
    fn chance(&mut self, p: f32) -> bool;
}

impl Pick for Rng {
    fn range(&mut self, a: f32, b: f32) -> f32 {
        Rng::range(self, a, b)
    }
    fn chance(&mut self, p: f32) -> bool {
        Rng::chance(self, p)
    }
}

struct Middle;

impl Pick for Middle {
    fn range(&mut self, a: f32, b: f32) -> f32 {
        (a + b) / 2.0
    }
    fn chance(&mut self, _: f32) -> bool {
        false
    }
}

impl Identity {
    fn draw(r: &mut impl Pick) -> Identity {
        let skin = r.range(0.38, 0.86);
        Identity {
            face_w: r.range(1.02, 1.18),
            jaw_y0: r.range(0.05, 0.18),
            chin_y: r.range(1.55, 1.78),
            jaw_n: r.range(1.9, 2.6),
            jaw_taper: r.range(0.2, 0.4),
            eye_sep: r.range(0.47, 0.53),
            eye_w: r.range(0.2, 0.25),
            eye_hu: r.range(0.075, 0.1),
            eye_hl: r.range(0.045, 0.065),
            eye_tilt: r.range(-0.02, 0.04),
            iris_r: r.range(0.085, 0.1),
            brow_y: r.range(0.27, 0.35),
            brow_arch: r.range(0.03, 0.09),
            brow_thick: r.range(0.05, 0.1),
            brow_in: r.range(0.1, 0.18),
            brow_out: r.range(0.86, 0.98),
            nose_tip: r.range(0.5, 0.6),
            nose_w: r.range(0.16, 0.23),
            mouth_y: r.range(1.0, 1.12),
            mouth_w: r.range(0.39, 0.49),
            lip_u: r.range(0.07, 0.11),
            lip_l: r.range(0.09, 0.14),
            rest_brow: r.range(-0.03, 0.03),
            rest_curve: r.range(-0.025, 0.025),
            rest_open: r.range(0.88, 1.12),
            skin,
            lip_tone: r.range(0.68, 0.88),
            brow_tone: r.range(0.08, 0.45).min(skin * 0.6),
            iris_tone: r.range(0.1, 0.45),
            hair: if r.chance(0.85) {
                Some(Hair {
                    tone: if r.chance(0.8) {
                        r.range(0.05, 0.3)
                    } else {
                        r.range(0.5, 0.9)
                    },
                    line: r.range(-1.15, -0.8),
                    long: r.chance(0.4),
                })
            } else {
                None
            },
        }
    }
}

/// Where the canonical face lands in the image. On average the eyes are 37% down and 39% of the
/// width apart, and the mouth about 80% down: the framing of the FER2013 crops (measured on the
/// mean of its training images, see [`crate::data::occlusion::Template`]), with the jitter of
/// loosely aligned crops.
struct Pose {
    scale: f32, // pixels per canonical unit
    cos: f32,
    sin: f32,
    cx: f32,
    cy: f32,
}

impl Pose {
    fn draw(r: &mut Rng, size: usize) -> Pose {
        let s = size as f32;
        let scale = s * 0.39 * r.range(0.86, 1.08);
        let angle = r.range(-0.2, 0.2);
        let cx = s * (0.5 + r.range(-0.05, 0.05));
        let cy = s * (0.37 + r.range(-0.04, 0.04));
        Pose {
            scale,
            cos: angle.cos(),
            sin: angle.sin(),
            cx,
            cy,
        }
    }
    fn px(&self, p: P) -> P {
        [
            self.cx + self.scale * (self.cos * p[0] - self.sin * p[1]),
            self.cy + self.scale * (self.sin * p[0] + self.cos * p[1]),
        ]
    }
    /// Inverse of [`Pose::px`], for per-pixel shading in canonical coordinates.
    fn canon(&self, x: f32, y: f32) -> P {
        let (dx, dy) = ((x - self.cx) / self.scale, (y - self.cy) / self.scale);
        [
            self.cos * dx + self.sin * dy,
            -self.sin * dx + self.cos * dy,
        ]
    }
    fn angle(&self) -> f32 {
        self.sin.atan2(self.cos)
    }
}

/// Action-unit intensities (0 = absent, ~1 = strong) plus a few shape switches.
#[derive(Default)]
struct Aus {
    au1: f32,   // inner brow raiser
    au2: f32,   // outer brow raiser
    au4: f32,   // brow lowerer (and drawn together)
    au5: f32,   // upper lid raiser (eyes wide)
    au6: f32,   // cheek raiser
    au7: f32,   // lid tightener
    au9: f32,   // nose wrinkler
    au10: f32,  // upper lip raiser
    au12: f32,  // lip corner puller
    au15: f32,  // lip corner depressor
    au17: f32,  // chin raiser
    au20: f32,  // lip stretcher
    au23: f32,  // lip tightener / presser
    au25: f32,  // lips part
    au26: f32,  // jaw drop
    droop: f32, // upper lids lowered (sadness)
    teeth: bool,
    /// Left/right imbalance of the mouth AUs (unilateral upper-lip raise in disgust).
    asym: f32,
}

impl Aus {
    fn draw(r: &mut Rng, label: usize) -> Aus {
        let t = r.range(0.3, 1.0);
        let mut a = Aus::default();
        // Each prototype AU: strength x intensity x jitter.
        let j = |base: f32, r: &mut Rng| base * t * r.range(0.75, 1.25);
        match label {
            0 => {
                // angry
                a.au4 = j(1.0, r);
                if r.chance(0.5) {
                    a.au5 = j(0.5, r);
                } else {
                    a.au7 = j(0.8, r);
                }
                if r.chance(0.75) {
                    a.au23 = j(1.0, r);
                    a.au17 = j(0.6, r);
                } else {
                    a.au10 = j(0.7, r);
                    a.au25 = j(0.8, r);
                    a.au26 = j(0.35, r);
                    a.au20 = j(0.3, r);
                    a.teeth = true;
                }
            }
            1 => {
                // disgust
                a.au9 = j(1.0, r);
                a.au10 = j(1.0, r);
                a.au4 = j(0.5, r);
                a.au6 = j(0.4, r);
                a.au7 = j(0.4, r);
                a.au15 = j(0.35, r);
                a.au17 = j(0.4, r);
                a.teeth = r.chance(0.5);
                if a.teeth {
                    a.au25 = j(0.4, r);
                }
                if r.chance(0.35) {
                    a.asym = r.range(0.3, 0.6) * if r.chance(0.5) { 1.0 } else { -1.0 };
                }
            }
            2 => {
                // fear
                a.au1 = j(1.0, r);
                a.au2 = j(0.6, r);
                a.au4 = j(0.6, r);
                a.au5 = j(1.0, r);
                a.au20 = j(1.0, r);
                a.au25 = j(0.8, r);
                a.au26 = j(0.3, r);
                a.teeth = r.chance(0.5);
            }
            3 => {
                // happy
                a.au6 = j(0.9, r);
                a.au12 = j(1.0, r);
                if r.chance(0.6) {
                    a.teeth = true;
                    a.au25 = j(0.7, r);
                    a.au26 = if r.chance(0.3) { j(0.35, r) } else { 0.0 };
                }
            }
            4 => {}
            5 => {
                // sad
                a.au1 = j(1.0, r);
                a.au4 = j(0.6, r);
                a.au15 = j(1.0, r);
                a.au17 = j(0.6, r);
                a.droop = j(0.6, r);
            }
            _ => {
                // surprise
                a.au1 = j(1.0, r);
                a.au2 = j(1.0, r);
                a.au5 = j(0.9, r);
                a.au26 = j(1.0, r);
                a.au25 = j(1.0, r);
                a.teeth = r.chance(0.3);
            }
        }
        // A little of everything on every face: people are never perfectly still.
        for v in [
            &mut a.au1,
            &mut a.au2,
            &mut a.au4,
            &mut a.au5,
            &mut a.au6,
            &mut a.au7,
            &mut a.au9,
            &mut a.au10,
            &mut a.au12,
            &mut a.au15,
            &mut a.au17,
            &mut a.au20,
            &mut a.au23,
        ] {
            *v = (*v + 0.06 * r.normal()).max(0.0);
        }
        a
    }
}

// ---------------------------------------------------------------------------------------------
// Geometry (canonical coordinates)

/// The 68 landmarks plus the extra outline points the renderer needs, in canonical units.
struct Geometry {
    landmarks: Landmarks,
    /// Forehead arc from jaw point 16 back to jaw point 0 (closes the face outline).
    forehead: Vec<P>,
    /// Per brow (right, left): thickness at each of the 5 brow points.
    brow_thick: [[f32; 5]; 2],
    /// Eye centres (right, left) and iris centres.
    eye_c: [P; 2],
    iris_c: [P; 2],
}

impl Geometry {
    fn build(id: &Identity, au: &Aus) -> Geometry {
        let mut l = [[0.0f32; 2]; 68];

        // Jaw 0..16: a superellipse quarter on each side, tapered toward the chin; the jaw drop
        // (AU26) pulls the chin down most and the jaw angles least.
        let drop = 0.3 * au.au26;
        for (i, point) in l.iter_mut().enumerate().take(17) {
            let k = if i <= 8 { i } else { 16 - i } as f32;
            let side = if i <= 8 { -1.0 } else { 1.0 };
            let a = k / 8.0 * std::f32::consts::FRAC_PI_2;
            let e = 2.0 / id.jaw_n;
            // cos(pi/2) is -4e-8 in f32: clamp before the fractional power, or the chin is NaN.
            let (c, s) = (a.cos().max(0.0).powf(e), a.sin().max(0.0).powf(e));
            let x = side * id.face_w * c * (1.0 - id.jaw_taper * a.sin().powi(2));
            let y = id.jaw_y0 + (id.chin_y - id.jaw_y0) * s + drop * a.sin().powi(2);
            *point = [x, y];
        }
        let forehead: Vec<P> = (1..10)
            .map(|k| {
                let b = k as f32 / 10.0 * std::f32::consts::PI;
                [id.face_w * b.cos(), id.jaw_y0 - 1.5 * b.sin()]
            })
            .collect();

        // Brows. t runs from the inner end (0) to the outer end (1).
        let mut brow_thick = [[0.0; 5]; 2];
        for (b, side) in [(0usize, -1.0f32), (1, 1.0)] {
            // With AU1 the brow lowerer mostly pulls the brows together instead of down (the
            // oblique brows of sadness, the flat raised brows of fear).
            let lower = 0.14 * au.au4 * (1.0 - 0.6 * au.au1.min(1.0));
            let yi = -id.brow_y + id.rest_brow - 0.16 * au.au1 + lower;
            let yo =
                -id.brow_y + id.rest_brow + 0.03 - 0.16 * au.au2 + 0.05 * au.au4 + 0.03 * au.au1;
            let arch = (id.brow_arch + 0.04 * au.au2 - 0.03 * au.au4 - 0.02 * au.au1).max(0.0);
            let xi = id.brow_in - 0.06 * au.au4 + 0.02 * au.au1 * (1.0 - au.au4.min(1.0));
            for k in 0..5 {
                let t = k as f32 / 4.0;
                let x = side * (xi + (id.brow_out - xi) * t);
                let bump = (std::f32::consts::PI * t.powf(1.357)).sin();
                let y = yi + (yo - yi) * t - arch * bump;
                // 17..21 run outer -> inner; 22..26 inner -> outer.
                let idx = if b == 0 { 21 - k } else { 22 + k };
                l[idx] = [x, y];
                let slot = if b == 0 { 4 - k } else { k };
                brow_thick[b][slot] = id.brow_thick * (1.0 - 0.55 * t * t);
            }
        }

        // Eyes: corners on a tilted line, lids as arcs through the 1/3 points.
        let mut eye_c = [[0.0; 2]; 2];
        let mut iris_c = [[0.0; 2]; 2];
        let hu = (id.eye_hu * id.rest_open + 0.065 * au.au5
            - 0.03 * au.au7
            - 0.035 * au.au6
            - 0.035 * au.droop
            - 0.01 * au.au4
            - 0.02 * au.au9)
            .max(0.015);
        let hl = (id.eye_hl + 0.015 * au.au5 - 0.025 * au.au7 - 0.04 * au.au6 - 0.01 * au.au9)
            .max(0.012);
        for (e, side) in [(0usize, -1.0f32), (1, 1.0)] {
            let cx = side * id.eye_sep;
            let inner = [cx - side * id.eye_w, 0.01];
            let outer = [cx + side * id.eye_w, -id.eye_tilt - 0.02 * au.au6];
            let (left, right) = if side < 0.0 {
                (outer, inner)
            } else {
                (inner, outer)
            };
            let lid = |u: f32, h: f32| -> P {
                // u in -1..1 from the image-left corner to the image-right one.
                let x = left[0] + (right[0] - left[0]) * (u + 1.0) / 2.0;
                let y0 = left[1] + (right[1] - left[1]) * (u + 1.0) / 2.0;
                [x, y0 + h * (1.0 - u * u).powf(0.6)]
            };
            let base = if e == 0 { 36 } else { 42 };
            l[base] = left;
            l[base + 1] = lid(-0.4, -hu);
            l[base + 2] = lid(0.4, -hu);
            l[base + 3] = right;
            l[base + 4] = lid(0.4, hl);
            l[base + 5] = lid(-0.4, hl);
            eye_c[e] = [cx, (left[1] + right[1]) / 2.0];
            iris_c[e] = [cx, eye_c[e][1] - 0.1 * (hu - hl)];
        }

        // Nose: bridge 27..30 straight down the middle, base 31..35.
        let tip = id.nose_tip - 0.03 * au.au9;
        for k in 0..4 {
            l[27 + k] = [0.0, -0.03 + (tip + 0.03) * k as f32 / 3.0];
        }
        let base_y = tip + 0.09 - 0.05 * au.au9 - 0.02 * au.au10;
        let nw = id.nose_w + 0.03 * au.au9 + 0.015 * au.au10;
        l[31] = [-nw, base_y - 0.05];
        l[32] = [-0.5 * nw, base_y - 0.005];
        l[33] = [0.0, base_y];
        l[34] = [0.5 * nw, base_y - 0.005];
        l[35] = [nw, base_y - 0.05];

        // Mouth. Corners move with 12 (up, out), 15 (down), 20 (out), 23 (in), 26 (in); the seam
        // where the lips meet is a parabola through the corners; openings grow from it.
        let corner = |side: f32| -> P {
            let w = 1.0 + side * au.asym;
            let cx = id.mouth_w + w * (0.07 * au.au12 + 0.1 * au.au20 + 0.01 * au.au15)
                - 0.05 * au.au23
                - 0.14 * au.au26;
            let cy = id.mouth_y
                + id.rest_curve
                + w * (-0.12 * au.au12 + 0.08 * au.au15 + 0.02 * au.au20 - 0.02 * au.au10)
                + 0.02 * au.au26;
            [side * cx, cy]
        };
        let (cl, cr) = (corner(-1.0), corner(1.0));
        let seam_c = id.mouth_y - 0.03 * au.au17 + 0.015 * au.au15;
        // Seam height at x (parabola from the centre to each corner).
        let seam = |x: f32| -> f32 {
            let c = if x < 0.0 { cl } else { cr };
            let u = (x / c[0]).min(1.0);
            seam_c + (c[1] - seam_c) * u * u
        };
        let gap_up = 0.07 * au.au10
            + 0.05 * au.au26
            + if au.teeth {
                0.025 * au.au25 + 0.02 * au.au12
            } else {
                0.01 * au.au25
            };
        let gap_lo = 0.05 * au.au25 + 0.32 * au.au26 + if au.teeth { 0.03 * au.au12 } else { 0.0 };
        let p_open = 0.8 - 0.4 * au.au26.min(1.0);
        let open = |x: f32| -> f32 {
            let c = if x < 0.0 { cl } else { cr };
            (1.0 - (x / c[0]).powi(2)).max(0.0).powf(p_open)
        };
        // The raise of AU10 is stronger on one side when asym != 0.
        let up_side = |x: f32| 1.0 + au.asym * x.signum() * (x.abs() / cr[0]).min(1.0);
        let inner_up = |x: f32| seam(x) - gap_up * open(x) * up_side(x);
        let inner_lo = |x: f32| seam(x) + gap_lo * open(x);
        let thin = 1.0 - 0.55 * au.au23.min(1.0) - 0.3 * au.au20.min(1.0) - 0.25 * au.au12.min(1.0);
        let tu = id.lip_u * thin.max(0.25);
        let tl = id.lip_l * (thin + 0.2 * au.au17).max(0.25);
        let hw = (cr[0] - cl[0]) / 2.0;
        let xc = (cr[0] + cl[0]) / 2.0;
        let at = |f: f32| xc + f * hw;
        l[48] = cl;
        l[54] = cr;
        for (k, f, lift) in [
            (49, -0.55, 0.85),
            (50, -0.3, 1.05),
            (51, 0.0, 0.9),
            (52, 0.3, 1.05),
            (53, 0.55, 0.85),
        ] {
            let x = at(f);
            l[k] = [x, inner_up(x) - tu * lift];
        }
        for (k, f, drop) in [
            (55, 0.55, 0.75),
            (56, 0.25, 0.97),
            (57, 0.0, 1.0),
            (58, -0.25, 0.97),
            (59, -0.55, 0.75),
        ] {
            let x = at(f);
            l[k] = [x, inner_lo(x) + tl * drop];
        }
        let xin = hw - 0.03;
        l[60] = [xc - xin, seam(xc - xin)];
        l[64] = [xc + xin, seam(xc + xin)];
        for (k, f) in [(61, -0.45), (62, 0.0), (63, 0.45)] {
            let x = at(f);
            l[k] = [x, inner_up(x)];
        }
        for (k, f) in [(65, 0.45), (66, 0.0), (67, -0.45)] {
            let x = at(f);
            l[k] = [x, inner_lo(x)];
        }

        Geometry {
            landmarks: l,
            forehead,
            brow_thick,
            eye_c,
            iris_c,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// Per-image appearance that is not identity: background, light, noise.
struct Look {
    bg: f32,
    bg_grad: [f32; 2],
    light: [f32; 2],
    noise: f32,
    contrast: f32,
    gaze: [f32; 2],
}

impl Look {
    fn draw(r: &mut Rng) -> Look {
        Look {
            bg: r.range(0.1, 0.9),
            bg_grad: [r.range(-0.25, 0.25), r.range(-0.25, 0.25)],
            light: [r.range(-0.3, 0.3), r.range(-0.15, 0.2)],
            noise: r.range(0.0, 0.03),
            contrast: r.range(0.8, 1.15),
            gaze: [r.range(-0.04, 0.04), r.range(-0.015, 0.015)],
        }
    }
}

fn render(g: &Geometry, id: &Identity, au: &Aus, look: &Look, pose: &Pose, size: usize) -> Canvas {
    let mut cv = Canvas::new(size);
    let s = size as f32;
    let l = &g.landmarks;
    let px = |p: P| pose.px(p);
    let pxs = |ps: &[P]| -> Vec<P> { ps.iter().map(|&p| pose.px(p)).collect() };
    let u = pose.scale; // pixels per canonical unit
    let rot = pose.angle();
    // Spline density: about one sample per 1.5 px of outline, at least 3 per segment.
    let per = ((u / 12.0).ceil() as usize).clamp(3, 8);

    // Background: a flat tone with a linear gradient.
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = ((x as f32 + 0.5) / s - 0.5, (y as f32 + 0.5) / s - 0.5);
            cv.px[y * size + x] = look.bg + look.bg_grad[0] * fx + look.bg_grad[1] * fy;
        }
    }

    let skin = id.skin;
    let face_shade = |x: usize, y: usize| -> f32 {
        let c = pose.canon(x as f32 + 0.5, y as f32 + 0.5);
        let (nx, ny) = (c[0] / id.face_w, (c[1] - 0.25) / 1.6);
        let edge = (nx * nx + ny * ny - 0.5).max(0.0);
        skin * (1.0 + look.light[0] * nx + look.light[1] * ny - 0.45 * edge)
    };

    // Hair behind the head, then neck and ears, then the face over them.
    if let Some(h) = &id.hair {
        let m = raster::ellipse(px([0.0, -0.35]), u * id.face_w * 1.14, u * 1.55, rot, size);
        cv.paint(&m, h.tone, 1.0);
        if h.long {
            let m = raster::polygon(
                &pxs(&[
                    [-id.face_w * 1.14, -0.35],
                    [id.face_w * 1.14, -0.35],
                    [id.face_w * 1.2, 2.5],
                    [-id.face_w * 1.2, 2.5],
                ]),
                size,
            );
            cv.paint(&m, h.tone, 1.0);
        }
    }
    let neck = raster::polygon(
        &pxs(&[[-0.7, 0.9], [0.7, 0.9], [0.8, 3.0], [-0.8, 3.0]]),
        size,
    );
    cv.paint(&neck, skin * 0.72, 1.0);
    for side in [-1.0f32, 1.0] {
        let m = raster::ellipse(
            px([side * (id.face_w - 0.03), id.jaw_y0 + 0.22]),
            u * 0.13,
            u * 0.3,
            rot + side * 0.15,
            size,
        );
        cv.paint(&m, skin * 0.85, 1.0);
    }
    let mut outline: Vec<P> = l[0..17].to_vec();
    outline.extend_from_slice(&g.forehead);
    let face = raster::polygon(&raster::catmull_rom(&pxs(&outline), true, per), size);
    cv.paint_with(&face, 1.0, face_shade);
    if let Some(h) = &id.hair {
        let mut fringe = raster::ellipse(
            px([0.0, h.line - 1.3]),
            u * id.face_w * 1.35,
            u * 1.3,
            rot,
            size,
        );
        fringe.clip(&face);
        cv.paint(&fringe, h.tone, 1.0);
    }

    // Soft relief: eye sockets, nose side and tip, under the nose, cheeks, under the lip.
    let soft = |cv: &mut Canvas, c: P, rx: f32, ry: f32, f: f32| {
        let m = raster::soft_ellipse(px(c), u * rx, u * ry, rot, size);
        cv.shade(&m, f);
    };
    for e in 0..2 {
        let c = g.eye_c[e];
        soft(
            &mut cv,
            [c[0], c[1] - 0.06],
            0.38,
            0.22,
            0.82 - 0.06 * au.au4,
        );
    }
    let lit = if look.light[0] > 0.0 { -1.0 } else { 1.0 }; // the shadowed side of the nose
    soft(&mut cv, [lit * 0.13, 0.3], 0.07, 0.3, 0.88);
    soft(&mut cv, [0.0, l[30][1] - 0.05], 0.09, 0.08, 1.08);
    soft(&mut cv, [0.0, l[33][1] + 0.07], 0.22, 0.06, 0.84);
    for side in [-1.0f32, 1.0] {
        let cy = 0.55 - 0.15 * au.au6 - 0.05 * au.au12;
        soft(
            &mut cv,
            [side * 0.62, cy],
            0.3,
            0.22,
            1.05 + 0.07 * au.au6.min(1.2),
        );
        if au.au6 + au.au12 > 0.4 {
            let k = ((au.au6 + au.au12) * 0.5).min(1.0);
            soft(&mut cv, [side * 0.62, cy + 0.28], 0.3, 0.08, 1.0 - 0.08 * k);
        }
    }
    soft(&mut cv, [0.0, l[57][1] + 0.08], 0.24, 0.06, 0.86);
    if au.au17 > 0.2 {
        soft(
            &mut cv,
            [0.0, l[57][1] + 0.22],
            0.14,
            0.07,
            1.0 - 0.12 * au.au17.min(1.0),
        );
    }

    // Creases that come and go with the action units.
    let dark = skin * 0.45;
    let line = |cv: &mut Canvas, pts: &[P], w: f32, alpha: f32| {
        if alpha <= 0.02 {
            return;
        }
        let pts = raster::catmull_rom(&pxs(pts), false, per);
        let n = pts.len();
        let hw: Vec<f32> = (0..n)
            .map(|k| {
                let t = k as f32 / (n - 1).max(1) as f32;
                u * w * (1.0 - (2.0 * t - 1.0).powi(2)).sqrt().max(0.3)
            })
            .collect();
        let m = raster::stroke(&pts, &hw, size);
        cv.paint(&m, dark, alpha.min(0.9));
    };
    // Nasolabial folds, deepened by smiling, sneering and nose wrinkling.
    let fold = (0.12 + 0.6 * au.au12 + 0.5 * au.au10 + 0.3 * au.au9 + 0.2 * au.au6).min(1.0);
    for (side, c) in [(-1.0f32, l[48]), (1.0, l[54])] {
        let a = [side * (l[35][0].abs() + 0.06), l[31][1] - 0.02];
        let b = [c[0] + side * 0.1, c[1] + 0.02];
        let mid = [(a[0] + b[0]) / 2.0 + side * 0.07, (a[1] + b[1]) / 2.0];
        line(
            &mut cv,
            &[a, mid, b, [b[0] - side * 0.02, b[1] + 0.12]],
            0.02,
            0.45 * fold,
        );
    }
    // Horizontal forehead lines (AU1, AU2), concentrated in the middle for AU1.
    let fh = (au.au1 + au.au2) * 0.5;
    if fh > 0.15 {
        let top = l[19][1].min(l[24][1]);
        for k in 0..3 {
            let y = top - 0.14 - 0.12 * k as f32;
            let w = 0.35 + 0.2 * au.au2.min(1.0) - 0.05 * k as f32;
            line(
                &mut cv,
                &[[-w, y + 0.03], [0.0, y], [w, y + 0.03]],
                0.015,
                0.5 * fh,
            );
        }
    }
    // Vertical lines between the brows (AU4).
    if au.au4 > 0.15 {
        for side in [-1.0f32, 1.0] {
            let x = side * 0.05;
            let y = l[21][1].max(l[22][1]);
            line(
                &mut cv,
                &[[x, y - 0.12], [x * 1.2, y], [x * 1.6, y + 0.1]],
                0.015,
                0.6 * au.au4,
            );
        }
    }
    // Nose wrinkles (AU9): short creases across the bridge.
    if au.au9 > 0.15 {
        for k in 0..3 {
            let y = l[28][1] - 0.08 + 0.07 * k as f32;
            line(
                &mut cv,
                &[[-0.14, y + 0.03], [0.0, y], [0.14, y + 0.03]],
                0.012,
                0.6 * au.au9,
            );
        }
    }
    // Crow's feet (AU6) and the bulge under the lower lid (AU6, AU7).
    for (e, side) in [(0usize, -1.0f32), (1, 1.0)] {
        let corner = if e == 0 { l[36] } else { l[45] };
        if au.au6 > 0.2 {
            for k in -1..=1 {
                let a = [corner[0] + side * 0.06, corner[1] + 0.03 * k as f32];
                let b = [a[0] + side * 0.13, a[1] + 0.07 * k as f32];
                line(
                    &mut cv,
                    &[a, [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0], b],
                    0.012,
                    0.5 * au.au6,
                );
            }
        }
        let lo = if e == 0 {
            [l[41], l[40]]
        } else {
            [l[47], l[46]]
        };
        let k = (0.7 * au.au6 + 0.5 * au.au7).min(1.0);
        let c = g.eye_c[e];
        line(
            &mut cv,
            &[
                [c[0] - side * 0.18, lo[0][1] + 0.07],
                [c[0], lo[0][1].max(lo[1][1]) + 0.09],
                [c[0] + side * 0.2, lo[1][1] + 0.06],
            ],
            0.014,
            0.15 + 0.35 * k,
        );
    }

    // Brows: the landmarks are the upper edge; the lower edge is the upper one moved down by
    // the thickness.
    for b in 0..2 {
        let idx: Vec<usize> = if b == 0 {
            (17..22).collect()
        } else {
            (22..27).collect()
        };
        let top: Vec<P> = idx.iter().map(|&i| l[i]).collect();
        let mut poly = raster::catmull_rom(&pxs(&top), false, per);
        let th = g.brow_thick[b];
        let bottom: Vec<P> = idx
            .iter()
            .enumerate()
            .map(|(k, &i)| [l[i][0], l[i][1] + th[k]])
            .collect();
        let mut lower = raster::catmull_rom(&pxs(&bottom), false, per);
        lower.reverse();
        poly.extend(lower);
        let m = raster::polygon(&poly, size);
        cv.paint(&m, id.brow_tone, 0.88);
    }

    // Eyes: sclera, iris and pupil clipped to the opening, then lid lines.
    for e in 0..2 {
        let base = if e == 0 { 36 } else { 42 };
        let ring: Vec<P> = (base..base + 6).map(|i| l[i]).collect();
        let opening = raster::polygon(&raster::catmull_rom(&pxs(&ring), true, per), size);
        let sclera = (skin * 1.25).clamp(0.55, 0.92);
        cv.paint(&opening, sclera, 1.0);
        let ic = g.iris_c[e];
        let ic = [ic[0] + look.gaze[0], ic[1] + look.gaze[1]];
        let mut iris = raster::ellipse(px(ic), u * id.iris_r, u * id.iris_r, rot, size);
        iris.clip(&opening);
        cv.paint(&iris, id.iris_tone, 1.0);
        let mut pupil = raster::ellipse(
            px(ic),
            u * id.iris_r * 0.45,
            u * id.iris_r * 0.45,
            rot,
            size,
        );
        pupil.clip(&opening);
        cv.paint(&pupil, 0.04, 1.0);
        let mut glint = raster::ellipse(
            px([ic[0] + 0.03, ic[1] - 0.03]),
            u * 0.018,
            u * 0.018,
            rot,
            size,
        );
        glint.clip(&opening);
        cv.paint(&glint, 0.95, 0.8);
        // Upper lid with lashes (thick), lower lid (thin), and the lid crease above.
        let upper: Vec<P> = (0..4).map(|k| l[base + k]).collect();
        let up = raster::catmull_rom(&pxs(&upper), false, per);
        let n = up.len();
        let hw: Vec<f32> = (0..n)
            .map(|k| {
                let t = k as f32 / (n - 1) as f32;
                u * 0.022 * (0.5 + (std::f32::consts::PI * t).sin())
            })
            .collect();
        cv.paint(&raster::stroke(&up, &hw, size), 0.05, 0.9);
        let lower: Vec<P> = [3, 4, 5, 0].iter().map(|&k| l[base + k]).collect();
        let lo = raster::catmull_rom(&pxs(&lower), false, per);
        let hw = vec![u * 0.01; lo.len()];
        cv.paint(&raster::stroke(&lo, &hw, size), skin * 0.4, 0.6);
        let crease: Vec<P> = upper
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let lift = if k == 0 || k == 3 {
                    0.03
                } else {
                    0.06 + 0.02 * au.au5
                };
                [p[0], p[1] - lift]
            })
            .collect();
        line(&mut cv, &crease, 0.012, 0.35 - 0.2 * au.au5.min(1.0));
    }

    // Nose: nostrils, and the base curve 31..35.
    for side in [-1.0f32, 1.0] {
        let c = [side * (l[35][0].abs() * 0.55), l[33][1] - 0.035];
        let m = raster::ellipse(px(c), u * 0.06, u * 0.032, rot + side * 0.3, size);
        cv.paint(&m, skin * 0.25, 0.75);
    }
    let nb: Vec<P> = (31..36).map(|i| l[i]).collect();
    line(&mut cv, &nb, 0.012, 0.35);
    // The wings of the nose, curving up from 31 and 35.
    for p in [l[31], l[35]] {
        let side = p[0].signum();
        let wing = [
            p,
            [p[0] + side * 0.04, p[1] - 0.06],
            [p[0] - side * 0.01, p[1] - 0.13],
        ];
        line(&mut cv, &wing, 0.014, 0.45);
    }

    // Mouth: lips, the dark opening, teeth, then the seam line.
    let outer: Vec<P> = (48..60).map(|i| l[i]).collect();
    let lips = raster::polygon(&raster::catmull_rom(&pxs(&outer), true, per), size);
    cv.paint(&lips, skin * id.lip_tone, 1.0);
    let inner: Vec<P> = (60..68).map(|i| l[i]).collect();
    let inner_px = raster::catmull_rom(&pxs(&inner), true, per);
    let opening = raster::polygon(&inner_px, size);
    cv.paint(&opening, 0.06, 1.0);
    if au.teeth {
        // Upper teeth: a band hanging from the inner upper lip.
        let up: Vec<P> = [60, 61, 62, 63, 64].iter().map(|&i| l[i]).collect();
        let mut band = raster::catmull_rom(&pxs(&up), false, per);
        let drop: Vec<P> = up.iter().map(|p| [p[0], p[1] + 0.11]).rev().collect();
        band.extend(raster::catmull_rom(&pxs(&drop), false, per));
        let mut teeth = raster::polygon(&band, size);
        teeth.clip(&opening);
        cv.paint(&teeth, 0.85, 1.0);
    }
    let seam: Vec<P> = [48, 60, 61, 62, 63, 64, 54].iter().map(|&i| l[i]).collect();
    let sp = raster::catmull_rom(&pxs(&seam), false, per);
    let hw = vec![u * 0.014; sp.len()];
    cv.paint(&raster::stroke(&sp, &hw, size), skin * 0.3, 0.85);
    // A highlight on the lower lip.
    let m = raster::soft_ellipse(
        px([l[57][0], (l[57][1] + l[66][1]) / 2.0]),
        u * 0.12,
        u * 0.03,
        rot,
        size,
    );
    cv.shade(&m, 1.12);
    cv
}

/// Global contrast, pixel noise and quantisation to u8.
fn finish(cv: &Canvas, look: &Look, rng: &mut Rng) -> Vec<u8> {
    cv.px
        .iter()
        .map(|&v| {
            let v = 0.5 + (v - 0.5) * look.contrast + look.noise * rng.normal();
            (v * 255.0).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}
