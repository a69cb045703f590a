//! Class-per-folder datasets: the two shared datasets (CK+48, FER2013), the naming schemes,
//! decoding (PNG, JPEG, palette TIFF), and the errors a user can run into.

mod common;
use common::palette_tiff;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use fer_cbam::data::folder::{class_index, decode, scan, subject_of, Split};
use fer_cbam::Error;

const CKPLUS: &str = "ckplus";
const FER2013: &str = "fer2013";

/// A fresh empty folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fer-cbam-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn data_message(e: Error) -> (String, String) {
    match e {
        Error::Data { path, message } => (path, message),
        other => panic!("expected a data error, got {other}"),
    }
}

#[test]
fn ckplus_has_927_images_in_six_classes_and_contempt_is_skipped() {
    let Some(root) = common::dataset(CKPLUS) else {
        return;
    };
    let ds = scan(root).unwrap();
    assert!(!ds.has_splits);
    assert_eq!(ds.items.len(), 927);
    assert_eq!(ds.counts(None), [135, 177, 75, 207, 0, 84, 249]);
    assert!(ds.items.iter().all(|i| i.split == Split::Unsplit));
    assert_eq!(ds.skipped.len(), 1);
    assert_eq!(ds.skipped[0].path, Path::new("contempt"));
    assert_eq!(ds.skipped[0].entries, 54);
    // Every CK+ file names its subject; 106 subjects remain without contempt (SOURCE.md).
    assert!(ds.items.iter().all(|i| i.group.is_some()));
    let subjects: HashSet<_> = ds.items.iter().map(|i| i.group.clone().unwrap()).collect();
    assert_eq!(subjects.len(), 106);
    let report = ds.report();
    assert!(
        report.contains("927 images") && report.contains("contempt"),
        "{report}"
    );
    println!("{report}");
}

#[test]
fn ckplus_last_frame_per_sequence_gives_the_papers_309() {
    let Some(root) = common::dataset(CKPLUS) else {
        return;
    };
    let mut ds = scan(root).unwrap();
    assert_eq!(ds.keep_last_frame_per_sequence(), 927 - 309);
    // The paper's Table 1 CK+ column.
    assert_eq!(ds.counts(None), [45, 59, 25, 69, 0, 28, 83]);
    let s = ds
        .items
        .iter()
        .find(|i| i.path.ends_with("S010_004_00000019.png"));
    assert!(s.is_some(), "the last frame of S010_004 is kept");
    assert!(!ds
        .items
        .iter()
        .any(|i| i.path.ends_with("S010_004_00000018.png")));
}

#[test]
fn ckplus_images_all_decode() {
    let Some(root) = common::dataset(CKPLUS) else {
        return;
    };
    let ds = scan(root).unwrap();
    for it in &ds.items {
        let px = decode(&it.path, 48, 1).unwrap();
        assert_eq!(px.len(), 48 * 48);
    }
    // 128x128, 3 channels: three identical planes.
    let px = decode(&ds.items[0].path, 128, 3).unwrap();
    assert_eq!(px.len(), 3 * 128 * 128);
    let n = 128 * 128;
    assert_eq!(px[..n], px[n..2 * n]);
    assert_eq!(px[..n], px[2 * n..]);
    assert!(px.iter().any(|&v| v != px[0]), "not a flat image");
}

#[test]
fn fer2013_train_and_test_counts_match_its_source_notes() {
    let Some(root) = common::dataset(FER2013) else {
        return;
    };
    let ds = scan(root).unwrap();
    assert!(ds.has_splits);
    assert!(ds.skipped.is_empty(), "{:?}", ds.skipped);
    assert_eq!(
        ds.counts(Some(Split::Train)),
        [3995, 436, 4097, 7215, 4965, 4830, 3171]
    );
    assert_eq!(
        ds.counts(Some(Split::Test)),
        [958, 111, 1024, 1774, 1233, 1247, 831]
    );
    assert_eq!(ds.items.len(), 35887);
    assert_eq!(ds.split(Split::Train).len(), 28709);
    assert!(ds.items.iter().all(|i| i.group.is_none()));
    // Sorted: all of train first, by class.
    assert!(ds
        .items
        .windows(2)
        .all(|w| (w[0].split, w[0].label) <= (w[1].split, w[1].label)));
    println!("{}", ds.report());
}

#[test]
fn fer2013_jpegs_decode_unchanged_at_their_own_size() {
    let Some(root) = common::dataset(FER2013) else {
        return;
    };
    let ds = scan(root).unwrap();
    // The first image of every class and split: 48x48 JPEGs pass through without resampling.
    let mut seen = HashSet::new();
    for it in &ds.items {
        if !seen.insert((it.split, it.label)) {
            continue;
        }
        let px = decode(&it.path, 48, 1).unwrap();
        let direct = image::open(&it.path).unwrap().to_luma8().into_raw();
        assert_eq!(px, direct, "{}", it.path.display());
    }
    assert_eq!(seen.len(), 14);
}

#[test]
fn names_give_subjects_and_classes() {
    assert_eq!(subject_of("S005_001_00000009.png").as_deref(), Some("S005"));
    assert_eq!(subject_of("S138_008_00000007.png").as_deref(), Some("S138"));
    assert_eq!(subject_of("KA.AN1.39.tiff").as_deref(), Some("KA"));
    assert_eq!(subject_of("Training_10118481.jpg"), None);
    assert_eq!(subject_of("PublicTest_123.jpg"), None);
    assert_eq!(subject_of("S_001_0001.png"), None);
    assert_eq!(subject_of("Smile_001_0001.png"), None);
    assert_eq!(class_index("angry"), Some(0));
    assert_eq!(class_index("Anger"), Some(0));
    assert_eq!(class_index("SADNESS"), Some(5));
    assert_eq!(class_index("surprise"), Some(6));
    assert_eq!(class_index("neutral"), Some(4));
    assert_eq!(class_index("contempt"), None);
}

#[test]
fn split_layout_reads_both_sides_and_lists_other_folders() {
    let t = TempDir::new("split-layout");
    let r = t.path();
    write_png(&r.join("train/happy/S001_002_00000003.png"), 8, 8, |_, _| 9);
    write_png(&r.join("train/Sadness/b.png"), 8, 8, |_, _| 9);
    write_png(&r.join("train/contempt/c.png"), 8, 8, |_, _| 9);
    write_png(&r.join("test/happy/d.png"), 8, 8, |_, _| 9);
    write_png(&r.join("val/happy/e.png"), 8, 8, |_, _| 9);
    std::fs::write(r.join("train/happy/notes.txt"), "not an image").unwrap();
    std::fs::write(
        r.join("train/happy/.hidden.png"),
        "hidden files are skipped",
    )
    .unwrap();
    let ds = scan(r).unwrap();
    assert!(ds.has_splits);
    assert_eq!(ds.items.len(), 3);
    assert_eq!(ds.counts(Some(Split::Train)), [0, 0, 0, 1, 0, 1, 0]);
    assert_eq!(ds.counts(Some(Split::Test)), [0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(ds.items[0].group.as_deref(), Some("S001"));
    let skipped: Vec<_> = ds.skipped.iter().map(|s| s.path.clone()).collect();
    assert!(skipped.contains(&PathBuf::from("val")), "{skipped:?}");
    assert!(
        skipped.contains(&PathBuf::from("train/contempt")),
        "{skipped:?}"
    );
    assert_eq!(ds.ignored_files, 1);
    let report = ds.report();
    assert!(
        report.contains("train/contempt") && report.contains("val"),
        "{report}"
    );
}

#[test]
fn missing_folder_is_an_error_naming_it() {
    let t = TempDir::new("missing");
    let p = t.path().join("no-such-dataset");
    let (path, message) = data_message(scan(&p).unwrap_err());
    assert!(path.contains("no-such-dataset"), "{path}");
    assert!(message.contains("does not exist"), "{message}");
    let file = t.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (_, message) = data_message(scan(&file).unwrap_err());
    assert!(message.contains("not a folder"), "{message}");
}

#[test]
fn empty_folder_is_an_empty_class_set() {
    let t = TempDir::new("empty");
    let (path, message) = data_message(scan(t.path()).unwrap_err());
    assert!(path.contains("fer-cbam-empty"), "{path}");
    assert!(message.contains("empty class set"), "{message}");
    // Only folders that are not classes: still empty, and the message says what was found.
    std::fs::create_dir_all(t.path().join("contempt")).unwrap();
    let (_, message) = data_message(scan(t.path()).unwrap_err());
    assert!(
        message.contains("empty class set") && message.contains("contempt"),
        "{message}"
    );
    // Class folders without images.
    std::fs::create_dir_all(t.path().join("happy")).unwrap();
    std::fs::write(t.path().join("happy/readme.txt"), "x").unwrap();
    let (_, message) = data_message(scan(t.path()).unwrap_err());
    assert!(
        message.contains("empty class set") && message.contains("no images"),
        "{message}"
    );
}

#[test]
fn corrupt_image_is_an_error_naming_the_file() {
    let t = TempDir::new("corrupt");
    let bad = t.path().join("happy/broken.png");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not the rest of a png").unwrap();
    let ds = scan(t.path()).unwrap(); // scanning does not decode
    assert_eq!(ds.items.len(), 1);
    let (path, message) = data_message(decode(&bad, 48, 3).unwrap_err());
    assert!(path.ends_with("broken.png"), "{path}");
    assert!(message.contains("decode"), "{message}");
    let (path, _) = data_message(decode(t.path().join("happy/gone.png"), 48, 3).unwrap_err());
    assert!(path.ends_with("gone.png"), "{path}");
}

#[test]
fn decode_converts_to_gray_and_resizes() {
    let t = TempDir::new("resize");
    // Left half black, right half white, 100x60: resized to 10x10 the left columns stay dark,
    // the right ones bright, and the middle is blended (a bilinear filter, not nearest).
    let p = t.path().join("half.png");
    write_png(&p, 100, 60, |x, _| if x < 50 { 0 } else { 255 });
    let px = decode(&p, 10, 1).unwrap();
    for y in 0..10 {
        assert!(
            px[y * 10] < 5 && px[y * 10 + 9] > 250,
            "{:?}",
            &px[y * 10..y * 10 + 10]
        );
    }
    // A colour PNG becomes luma (Rec. 709 weights: pure green is 182).
    let c = t.path().join("green.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([0, 255, 0]))
        .save(&c)
        .unwrap();
    let px = decode(&c, 4, 3).unwrap();
    assert_eq!(px.len(), 3 * 16);
    assert!(px.iter().all(|&v| (v as i32 - 182).abs() <= 1), "{px:?}");
}

#[test]
fn palette_tiff_decodes_through_its_colour_map() {
    let t = TempDir::new("palette");
    let p = t.path().join("KA.AN1.39.tiff");
    // Rows: red, green, blue, white, and index 4 (a mid gray) for the rest.
    let palette = [
        (65535, 0, 0),
        (0, 65535, 0),
        (0, 0, 65535),
        (65535, 65535, 65535),
        (32896, 32896, 32896),
    ];
    let bytes = palette_tiff(8, 8, |_, y| (y as u8).min(4), &palette);
    std::fs::write(&p, bytes).unwrap();
    let px = decode(&p, 8, 1).unwrap();
    let expect = [54u8, 182, 18, 255, 128, 128, 128, 128];
    for y in 0..8 {
        for x in 0..8 {
            let v = px[y * 8 + x] as i32;
            assert!(
                (v - expect[y] as i32).abs() <= 1,
                "row {y}: {v} vs {}",
                expect[y]
            );
        }
    }
    assert_eq!(subject_of("KA.AN1.39.tiff").as_deref(), Some("KA"));
}

// ---------------------------------------------------------------------------------------------
// Splits (src/data/split.rs), on made-up labels and on CK+'s subjects.

use fer_cbam::data::split::{stratified, stratified_kfold, Partition, TEST_FRACTION};

/// Imbalanced labels in a scrambled order: class sizes 50, 7, 13, 101, 0, 3, 1.
fn imbalanced() -> Vec<usize> {
    let sizes = [50, 7, 13, 101, 0, 3, 1];
    let mut l: Vec<usize> = (0..7)
        .flat_map(|c| std::iter::repeat_n(c, sizes[c]))
        .collect();
    let n = l.len();
    for i in 0..n {
        l.swap(i, (i * 7919 + 13) % n);
    }
    l
}

fn per_class(labels: &[usize], idx: &[usize]) -> [usize; 7] {
    let mut c = [0; 7];
    for &i in idx {
        c[labels[i]] += 1;
    }
    c
}

/// Both sides together are every index once.
fn assert_disjoint_cover(p: &Partition, n: usize) {
    let mut all: Vec<usize> = p.train.iter().chain(&p.test).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
}

#[test]
fn split_is_stratified_disjoint_and_deterministic() {
    let labels = imbalanced();
    let p = stratified(&labels, None, TEST_FRACTION, 5).unwrap();
    assert_disjoint_cover(&p, labels.len());
    let (all, test) = (
        per_class(&labels, &(0..labels.len()).collect::<Vec<_>>()),
        per_class(&labels, &p.test),
    );
    for c in 0..7 {
        let want = all[c] as f64 * 0.2;
        assert!(
            (test[c] as f64 - want).abs() <= 1.0,
            "class {c}: {} of {}",
            test[c],
            all[c]
        );
    }
    assert_eq!(p, stratified(&labels, None, TEST_FRACTION, 5).unwrap());
    assert_ne!(
        p.test,
        stratified(&labels, None, TEST_FRACTION, 6).unwrap().test
    );
}

#[test]
fn grouped_split_never_straddles_a_group() {
    // 60 made-up subjects with 1..6 images each, classes mixed within a subject.
    let (mut labels, mut groups) = (Vec::new(), Vec::new());
    for s in 0..60 {
        for k in 0..(1 + s % 6) {
            labels.push((s * 3 + k) % 7);
            groups.push(Some(format!("S{s:03}")));
        }
    }
    groups[5] = None; // an item without a subject stands alone
    let p = stratified(&labels, Some(&groups), 0.2, 9).unwrap();
    assert_disjoint_cover(&p, labels.len());
    let test_groups: std::collections::HashSet<_> =
        p.test.iter().filter_map(|&i| groups[i].clone()).collect();
    for &i in &p.train {
        if let Some(g) = &groups[i] {
            assert!(!test_groups.contains(g), "{g} is on both sides");
        }
    }
    let frac = p.test.len() as f64 / labels.len() as f64;
    assert!((frac - 0.2).abs() < 0.05, "test fraction {frac}");
    assert_eq!(p, stratified(&labels, Some(&groups), 0.2, 9).unwrap());
}

#[test]
fn ckplus_subject_split_keeps_every_class_near_20_percent() {
    let Some(root) = common::dataset(CKPLUS) else {
        return;
    };
    let ds = scan(root).unwrap();
    let labels: Vec<usize> = ds.items.iter().map(|i| i.label).collect();
    let groups: Vec<Option<String>> = ds.items.iter().map(|i| i.group.clone()).collect();
    let p = stratified(&labels, Some(&groups), TEST_FRACTION, 1).unwrap();
    assert_disjoint_cover(&p, labels.len());
    let train_subjects: HashSet<_> = p
        .train
        .iter()
        .map(|&i| groups[i].clone().unwrap())
        .collect();
    assert!(p
        .test
        .iter()
        .all(|&i| !train_subjects.contains(groups[i].as_ref().unwrap())));
    let (all, test) = (ds.counts(None), per_class(&labels, &p.test));
    for c in 0..7 {
        if all[c] > 0 {
            let f = test[c] as f64 / all[c] as f64;
            assert!(
                (f - 0.2).abs() < 0.06,
                "class {c}: {} of {}",
                test[c],
                all[c]
            );
        }
    }
    println!("CK+ by subject: test {:?} of {:?}", test, all);
}

#[test]
fn kfold_test_sides_cover_every_item_once_and_stay_stratified() {
    let labels = imbalanced();
    for k in [3, 5, 10] {
        let folds = stratified_kfold(&labels, None, k, 2).unwrap();
        assert_eq!(folds.len(), k);
        let mut seen = vec![0; labels.len()];
        for p in &folds {
            assert_disjoint_cover(p, labels.len());
            for &i in &p.test {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&s| s == 1), "k = {k}");
        let counts: Vec<[usize; 7]> = folds.iter().map(|p| per_class(&labels, &p.test)).collect();
        for c in 0..7 {
            let (lo, hi) = (
                counts.iter().map(|f| f[c]).min().unwrap(),
                counts.iter().map(|f| f[c]).max().unwrap(),
            );
            assert!(hi - lo <= 1, "k = {k}, class {c}: {lo}..{hi}");
        }
        let sizes: Vec<usize> = folds.iter().map(|p| p.test.len()).collect();
        let spread = sizes.iter().max().unwrap() - sizes.iter().min().unwrap();
        assert!(spread <= 1, "k = {k}: fold sizes {sizes:?}");
        assert_eq!(folds, stratified_kfold(&labels, None, k, 2).unwrap());
    }
}

#[test]
fn ckplus_kfold_by_subject_puts_each_subject_in_one_fold() {
    let Some(root) = common::dataset(CKPLUS) else {
        return;
    };
    let ds = scan(root).unwrap();
    let labels: Vec<usize> = ds.items.iter().map(|i| i.label).collect();
    let groups: Vec<Option<String>> = ds.items.iter().map(|i| i.group.clone()).collect();
    let folds = stratified_kfold(&labels, Some(&groups), 10, 4).unwrap();
    let mut fold_of: std::collections::HashMap<String, usize> = Default::default();
    for (f, p) in folds.iter().enumerate() {
        for &i in &p.test {
            let g = groups[i].clone().unwrap();
            assert_eq!(
                *fold_of.entry(g.clone()).or_insert(f),
                f,
                "{g} in two folds"
            );
        }
    }
    assert_eq!(fold_of.len(), 106);
    // Units are whole subjects (3 frames per sequence): each class spreads over the folds
    // within two sequences.
    let counts: Vec<[usize; 7]> = folds.iter().map(|p| per_class(&labels, &p.test)).collect();
    for c in 0..7 {
        let (lo, hi) = (
            counts.iter().map(|f| f[c]).min().unwrap(),
            counts.iter().map(|f| f[c]).max().unwrap(),
        );
        assert!(
            hi - lo <= 6,
            "class {c}: {lo}..{hi} over the folds {counts:?}"
        );
    }
}

#[test]
fn split_arguments_are_checked() {
    let labels = imbalanced();
    assert!(stratified(&labels, None, 1.5, 0).is_err());
    assert!(stratified_kfold(&labels, None, 1, 0).is_err());
    assert!(stratified_kfold(&labels[..3], None, 4, 0).is_err());
    let short = vec![None; 3];
    assert!(stratified(&labels, Some(&short), 0.2, 0).is_err());
}
