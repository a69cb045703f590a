//! Shared test helpers: one device per test binary, seeded data, upload/run/read.
#![allow(dead_code)]

use std::sync::OnceLock;

use fer_cbam::{Dispatch, Gpu, Tensor};
#[allow(unused_imports)]
pub use fer_cbam_reference::check::{
    assert_close, assert_close_f64, assert_within, dot, finite_difference, sum_bounds, sum_factor,
    sum_rms, Tol, FD_TOL, U,
};
use rand::{Rng, SeedableRng};

/// One device shared by the tests of a binary (error scopes are per thread, so tests running in
/// parallel threads do not see each other's errors).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}")))
}

/// The device running kernel set `kind` on this adapter: [`gpu`] when that is its set, else a
/// second device with the set forced (every variant is tested on lavapipe, and the cpu set on a
/// GPU).
pub fn kernel_set(kind: fer_cbam::kernels::KernelSetKind) -> &'static Gpu {
    use fer_cbam::kernels::{KernelChoice, KernelSetKind};
    static CPU: OnceLock<Gpu> = OnceLock::new();
    static GPU: OnceLock<Gpu> = OnceLock::new();
    if gpu().kernels.kind == kind {
        return gpu();
    }
    let (cell, choice) = match kind {
        KernelSetKind::Cpu => (&CPU, KernelChoice::Cpu),
        KernelSetKind::Gpu => (&GPU, KernelChoice::Gpu),
    };
    cell.get_or_init(|| {
        let g = Gpu::with_kernels_blocking(choice).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            g.kernels.kind,
            kind,
            "the adapter cannot run the {} kernel set: {}",
            kind.name(),
            g.kernels.reason
        );
        g
    })
}

/// [`kernel_set`] of the gpu set (conv2d's v4).
pub fn gpu_set() -> &'static Gpu {
    kernel_set(fer_cbam::kernels::KernelSetKind::Gpu)
}

/// [`kernel_set`] of the cpu set (conv2d's v3, Winograd, where it runs; v2 elsewhere).
pub fn cpu_set() -> &'static Gpu {
    kernel_set(fer_cbam::kernels::KernelSetKind::Cpu)
}

/// The cpu set with conv2d v2 (the direct kernels) for every convolution: what the cpu set ran
/// before Winograd, kept under the whole-step tests.
pub fn cpu_set_direct() -> &'static Gpu {
    use fer_cbam::kernels::KernelChoice;
    use fer_cbam::ops::conv2d::Conv2dVersion;
    static DIRECT: OnceLock<Gpu> = OnceLock::new();
    DIRECT.get_or_init(|| {
        let mut g = Gpu::with_kernels_blocking(KernelChoice::Cpu).unwrap_or_else(|e| panic!("{e}"));
        g.kernels = g
            .kernels
            .clone()
            .with_conv(Conv2dVersion::V2, "tests/common".into());
        g
    })
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// `n` values uniform in [-1, 1), reproducible from `seed`.
pub fn random(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn upload(name: &str, shape: &[usize], data: &[f32]) -> Tensor {
    gpu().tensor(name, shape, data).unwrap()
}

pub fn zeros(name: &str, shape: &[usize]) -> Tensor {
    gpu().zeros(name, shape).unwrap()
}

/// Submits the dispatches as one submission and waits.
pub fn run(dispatches: &[&Dispatch]) {
    gpu().submit(dispatches).unwrap();
    gpu().wait().unwrap();
}

pub fn read(t: &Tensor) -> Vec<f32> {
    gpu().read_blocking(t).unwrap()
}

/// Holds an f32 sum against its f64 reference with the error model of
/// `fer_cbam_reference::check::sum_bounds`: `levels` is how the kernel adds up each output (its
/// op reports them, e.g. `Conv2d::sums`), `abs_sum` the reference applied to the inputs'
/// magnitudes (each output's sum of |terms|). Prints the largest error in units of the model's
/// rms, u sum|t| sum_rms(levels), for docs/numerics.md (`--nocapture`). Returns that number.
#[track_caller]
pub fn check_sum(what: &str, got: &[f32], want: &[f64], abs_sum: &[f64], levels: &[usize]) -> f64 {
    use fer_cbam_reference::check::{assert_within, sum_bounds, sum_rms, U};
    let rms = sum_rms(levels);
    let used = got
        .iter()
        .zip(want)
        .zip(abs_sum)
        .map(|((&g, &w), &a)| (g as f64 - w).abs() / (U * rms * a).max(f64::MIN_POSITIVE))
        .fold(0.0f64, f64::max);
    eprintln!(
        "{what}: levels {levels:?}: model rms {rms:.2} u sum|t|, largest error {used:.2} rms"
    );
    let bounds = sum_bounds(levels, abs_sum, want);
    assert_within(
        what,
        got,
        want,
        &bounds,
        "f32 sum in the kernel's blocked order: min((sqrt(2 ln n) + 2) rms, gamma_D) sum|t| + u|want|",
    );
    used
}

/// Magnitudes, for the reference's sums of |terms|.
pub fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

/// Tolerance for an element-wise op evaluated in f32 against f64: a few ulps of the result,
/// plus an absolute floor for results near zero (exp and division round once or twice each).
pub const ELEMENTWISE_TOL: Tol = Tol {
    atol: 1e-6,
    rtol: 4.0 * f32::EPSILON as f64,
    why: "one f32 exp/division per element: a few ulps, absolute 1e-6 near zero",
};

/// Whether `CI` is set (to anything but empty or `false`), as CI services and `.ci/run` do:
/// then a test whose tools or data are missing fails instead of skipping.
pub fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// `../shared/datasets/<rel>` beside this checkout, or `None` when it is not there: the test
/// that asked is then skipped, with one line on stderr naming what is missing, and under
/// [`ci`] it fails instead (CI must have the data).
pub fn dataset(rel: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/datasets")
        .join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        !ci(),
        "{} is missing, and CI is set: the shared datasets must be beside the checkout",
        p.display()
    );
    eprintln!(
        "SKIPPED: {} is missing (the shared datasets are not beside this checkout)",
        p.display()
    );
    None
}

/// A fresh, empty folder for one test: `<temp>/fer-cbam-<name>-<pid>`.
pub fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fer-cbam-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A minimal uncompressed 8-bit palette TIFF (PhotometricInterpretation = 3), written by hand:
/// the `image` crate reads palette TIFFs but cannot write them, and JAFFE ships as such files.
pub fn palette_tiff(
    w: u16,
    h: u16,
    index: impl Fn(u16, u16) -> u8,
    palette: &[(u16, u16, u16)],
) -> Vec<u8> {
    let entries: [(u16, u16, u32, u32); 10] = {
        let ifd_len = 2 + 10 * 12 + 4;
        let cmap_at = 8 + ifd_len;
        let data_at = cmap_at + 3 * 256 * 2;
        [
            (256, 3, 1, w as u32),            // ImageWidth
            (257, 3, 1, h as u32),            // ImageLength
            (258, 3, 1, 8),                   // BitsPerSample
            (259, 3, 1, 1),                   // Compression: none
            (262, 3, 1, 3),                   // Photometric: palette
            (273, 4, 1, data_at),             // StripOffsets
            (277, 3, 1, 1),                   // SamplesPerPixel
            (278, 3, 1, h as u32),            // RowsPerStrip
            (279, 4, 1, w as u32 * h as u32), // StripByteCounts
            (320, 3, 3 * 256, cmap_at),       // ColorMap
        ]
    };
    let mut b = Vec::new();
    b.extend_from_slice(b"II");
    b.extend_from_slice(&42u16.to_le_bytes());
    b.extend_from_slice(&8u32.to_le_bytes());
    b.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, ty, count, value) in entries {
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&ty.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        if ty == 3 && count == 1 {
            b.extend_from_slice(&(value as u16).to_le_bytes());
            b.extend_from_slice(&[0, 0]);
        } else {
            b.extend_from_slice(&value.to_le_bytes());
        }
    }
    b.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    for channel in 0..3 {
        for i in 0..256 {
            let c = palette.get(i).copied().unwrap_or((0, 0, 0));
            let v = [c.0, c.1, c.2][channel];
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    for y in 0..h {
        for x in 0..w {
            b.push(index(x, y));
        }
    }
    b
}

/// A fresh empty folder under the system temp dir (`fer-cbam-<name>-<pid>`), removed when
/// dropped: for dataset fixtures that must not outlive the test.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fer-cbam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
    /// Writes `text` to `rel` under the folder (creating parents) and returns its path.
    pub fn file(&self, rel: &str, text: &str) -> std::path::PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the `fer-cbam` binary of this build: (success, stdout, stderr). Only test binaries of
/// this package have the binary's path, which `env!` resolves where this is compiled.
pub fn run_bin(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
