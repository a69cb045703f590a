//! Every figure writes a PNG of its documented size that decodes, has content (title text
//! included), and fails cleanly, naming the path, where it cannot be written.

use std::path::{Path, PathBuf};

use fer_cbam::figures::{
    bars_png, confusion_png, curves_png, roc_png, EpochPoint, BARS_SIZE, CONFUSION_SIZE,
    CURVES_SIZE, ROC_SIZE,
};
use fer_cbam::metrics::Metrics;
use rand::{Rng, SeedableRng};

/// A fresh folder, removed when dropped unless FER_CBAM_KEEP_FIGURES is set (to look at them).
struct TmpDir(PathBuf);

impl TmpDir {
    fn new(name: &str) -> TmpDir {
        let d = std::env::temp_dir().join(format!("fer-cbam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if std::env::var_os("FER_CBAM_KEEP_FIGURES").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const CLASSES: [&str; 7] = [
    "Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral",
];

/// A plausible 7-class evaluation: the true class gets a boost, so curves and the diagonal show.
fn metrics() -> Metrics {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (n, k) = (350, CLASSES.len());
    let labels: Vec<u32> = (0..n).map(|i| (i % k) as u32).collect();
    let mut probs = Vec::with_capacity(n * k);
    for &y in &labels {
        let mut row: Vec<f32> = (0..k).map(|_| rng.random_range(0.0..1.0)).collect();
        row[y as usize] += 0.6;
        let sum: f32 = row.iter().sum();
        probs.extend(row.iter().map(|v| v / sum));
    }
    let names: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    Metrics::new(&probs, &labels, &names)
}

fn epochs() -> Vec<EpochPoint> {
    (1..=12)
        .map(|e| EpochPoint {
            epoch: e,
            loss: 1.9 / (e as f64).sqrt(),
            accuracy: 0.3 + 0.05 * e as f64,
            test_accuracy: (e % 2 == 0).then_some(0.25 + 0.045 * e as f64),
        })
        .collect()
}

fn groups() -> Vec<(String, Vec<(String, f64)>)> {
    ["none", "patch", "eyes", "mouth"]
        .iter()
        .enumerate()
        .map(|(i, g)| {
            (
                g.to_string(),
                vec![
                    ("CBAM".to_string(), 0.82 - 0.06 * i as f64),
                    ("no attention".to_string(), 0.79 - 0.09 * i as f64),
                ],
            )
        })
        .collect()
}

/// Decodes `path`, checks its size, that it is not blank (luma variance well above a flat
/// image's 0: a plot with axes and a few filled areas has hundreds), and that the title band
/// at the top holds dark pixels (text drawn with the bitmap font).
fn check_png(path: &Path, size: (u32, u32)) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_luma8();
    assert_eq!(img.dimensions(), size, "{}", path.display());
    let px: Vec<f64> = img.pixels().map(|p| p.0[0] as f64).collect();
    let mean = px.iter().sum::<f64>() / px.len() as f64;
    let var = px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / px.len() as f64;
    assert!(var > 100.0, "{}: luma variance {var}", path.display());
    let (w, _) = size;
    let title_dark = (0..45)
        .flat_map(|y| (w / 4..3 * w / 4).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 100)
        .count();
    assert!(
        title_dark > 50,
        "{}: no title text ({title_dark} dark pixels)",
        path.display()
    );
    // Written atomically: no temporary file left beside it.
    let dir = path.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn confusion_figure() {
    let dir = TmpDir::new("fig-confusion");
    let path = dir.join("confusion.png");
    confusion_png(&path, &metrics(), "Confusion matrix (synthetic test set)").unwrap();
    check_png(&path, CONFUSION_SIZE);
}

#[test]
fn roc_figure() {
    let dir = TmpDir::new("fig-roc");
    let path = dir.join("roc.png");
    roc_png(&path, &metrics(), "ROC, one vs rest").unwrap();
    check_png(&path, ROC_SIZE);
}

#[test]
fn curves_figure() {
    let dir = TmpDir::new("fig-curves");
    let path = dir.join("curves.png");
    curves_png(&path, &epochs(), "Training curves").unwrap();
    check_png(&path, CURVES_SIZE);
}

#[test]
fn bars_figure() {
    let dir = TmpDir::new("fig-bars");
    let path = dir.join("bars.png");
    bars_png(&path, &groups(), "Accuracy per occlusion", "Accuracy").unwrap();
    check_png(&path, BARS_SIZE);
}

/// Degenerate inputs still give a readable, valid figure rather than a panic: no epochs, one
/// epoch, a NaN loss, no groups, a class without AUC.
#[test]
fn degenerate_inputs() {
    let dir = TmpDir::new("fig-degenerate");
    curves_png(&dir.join("none.png"), &[], "No epochs").unwrap();
    let one = EpochPoint {
        epoch: 3,
        loss: f64::NAN,
        accuracy: 0.5,
        test_accuracy: None,
    };
    curves_png(&dir.join("one.png"), &[one], "One epoch").unwrap();
    check_png(&dir.join("one.png"), CURVES_SIZE);
    bars_png(&dir.join("bars.png"), &[], "Nothing", "Accuracy").unwrap();
    let names = vec!["a".to_string(), "b".to_string()];
    let m = Metrics::new(&[0.9, 0.1, 0.8, 0.2], &[0, 0], &names);
    roc_png(&dir.join("roc.png"), &m, "No curves").unwrap();
    confusion_png(&dir.join("confusion.png"), &m, "Two classes").unwrap();
    check_png(&dir.join("confusion.png"), CONFUSION_SIZE);
}

/// A missing folder and a path that is a folder: each call fails with an error naming the path,
/// and nothing (not even a temporary file) is left behind.
#[test]
fn unwritable_path_errors_name_it() {
    let dir = TmpDir::new("fig-errors");
    let m = metrics();
    let missing = dir.join("no-such-dir").join("x.png");
    let occupied = dir.join("a-folder");
    std::fs::create_dir(&occupied).unwrap();
    // A missing folder fails at the write; a folder in the file's place is refused before it.
    for (path, why) in [(&missing, "cannot write"), (&occupied, "is a folder")] {
        let results = [
            confusion_png(path, &m, "t"),
            roc_png(path, &m, "t"),
            curves_png(path, &epochs(), "t"),
            bars_png(path, &groups(), "t", "y"),
        ];
        for r in results {
            let e = r.expect_err("writing must fail").to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
            assert!(e.contains(why), "{e}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("a-folder")]);
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 0);
}

/// Twelve classes with long names: they must shrink to fit, which only a look can judge; the
/// test checks that such input draws at all.
#[test]
fn many_long_class_names() {
    let dir = TmpDir::new("fig-long-names");
    let k = 12;
    let names: Vec<String> = (0..k).map(|i| format!("expression number {i}")).collect();
    let labels: Vec<u32> = (0..k as u32).cycle().take(5 * k).collect();
    let probs: Vec<f32> = labels
        .iter()
        .flat_map(|&y| (0..k).map(move |c| if c == y as usize { 0.5 } else { 0.05 }))
        .collect();
    let m = Metrics::new(&probs, &labels, &names);
    confusion_png(&dir.join("confusion.png"), &m, "Twelve classes").unwrap();
    check_png(&dir.join("confusion.png"), CONFUSION_SIZE);
}
