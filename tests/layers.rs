//! The layers point only downward. Every module of the engine (`engine/src`) and of the
//! application (`src`) may use only the modules listed for it below; the engine's manifest has
//! none of the application's dependencies, and the browser crate depends on the engine alone.
//! A new `use crate::...` that points up fails here, naming the file, the line and the edge.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The engine's modules, each with what it may use (besides itself). Read bottom-up: `error`
/// and `rng` need nothing, the device (`gpu`) sits on the pipelines, the ops on the device,
/// the network (`model`) on the ops.
const ENGINE: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("rng", &[]),
    ("tensor", &["error"]),
    ("preprocess", &["error"]),
    ("files", &["error"]),
    ("onnx_proto", &[]),
    ("uniform", &[]),
    ("pipeline", &["error", "uniform"]),
    ("kernels", &["error"]),
    ("gpu", &["error", "kernels", "pipeline", "tensor"]),
    (
        "ops",
        &["error", "gpu", "kernels", "pipeline", "tensor", "uniform"],
    ),
    ("timing", &["error", "gpu", "pipeline"]),
    (
        "model",
        &[
            "error",
            "files",
            "gpu",
            "onnx_proto",
            "ops",
            "pipeline",
            "rng",
            "tensor",
        ],
    ),
];

/// The application's library modules. They may also use every engine module (re-exported at
/// the crate root); the binary (`main.rs`, `cli/`) may use everything.
const APPLICATION: &[(&str, &[&str])] = &[
    ("metrics", &[]),
    ("data", &[]),
    ("train", &["data", "metrics"]),
    ("sources", &["data", "train"]),
    ("figures", &["metrics"]),
    ("explain", &["data", "figures", "metrics"]),
    (
        "protocol",
        &["data", "figures", "metrics", "sources", "train"],
    ),
    ("profile", &[]),
];

/// What an item re-exported at a crate root belongs to.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Result", "error"),
    ("Gpu", "gpu"),
    ("Tensor", "tensor"),
    ("Dispatch", "pipeline"),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src_dir` belongs to (`ops/conv2d.rs` -> `ops`).
fn module_of(src_dir: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src_dir).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The modules a line of code names through `crate::`: `crate::a::...`, and in
/// `use crate::{a::x, B}` each member (a root item such as `Error` maps to its module).
fn crate_refs(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        // `fer_cbam::crate` cannot occur; skip identifiers that merely end in `crate`.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end]
                .split(',')
                .map(|s| s.trim().split("::").next().unwrap_or("").to_string())
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            vec![rest[..end].to_string()]
        };
        for n in names {
            let module = ROOT_ITEMS
                .iter()
                .find(|(item, _)| *item == n)
                .map_or(n.clone(), |(_, m)| m.to_string());
            out.push(module);
        }
    }
    out
}

/// Every edge `file:line: from -> to` of `src_dir` that `allowed` does not list. Comments are
/// skipped (a doc link may point anywhere).
fn violations(
    src_dir: &Path,
    allowed: &dyn Fn(&str, &str) -> Option<bool>,
    skip: &[&str],
) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let from = module_of(src_dir, &f);
        if skip.contains(&from.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // A multi-line `use crate::{...}` is read as one line.
        let mut joined: Vec<(usize, String)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            match joined.last_mut() {
                Some((_, open)) if open.contains("crate::{") && !open.contains('}') => {
                    open.push_str(code)
                }
                _ => joined.push((n + 1, code.to_string())),
            }
        }
        for (n, line) in joined {
            for to in crate_refs(&line) {
                if to == from {
                    continue;
                }
                match allowed(&from, &to) {
                    Some(true) => {}
                    Some(false) => bad.push(format!(
                        "{}:{n}: `{from}` uses `{to}`, which it may not (allowed: see tests/layers.rs)",
                        f.strip_prefix(root()).unwrap().display()
                    )),
                    None => bad.push(format!(
                        "{}:{n}: `{from}` or `{to}` is not in the layer table of tests/layers.rs",
                        f.strip_prefix(root()).unwrap().display()
                    )),
                }
            }
        }
    }
    bad
}

fn table(
    t: &[(&'static str, &'static [&'static str])],
) -> BTreeMap<&'static str, Vec<&'static str>> {
    t.iter().map(|(m, deps)| (*m, deps.to_vec())).collect()
}

#[test]
fn engine_modules_use_only_the_layers_below_them() {
    let engine = table(ENGINE);
    let allowed = |from: &str, to: &str| -> Option<bool> {
        let deps = engine.get(from)?;
        engine.get(to)?;
        Some(deps.contains(&to))
    };
    let bad = violations(&root().join("engine/src"), &allowed, &["lib"]);
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

#[test]
fn application_modules_use_the_engine_and_the_layers_below_them() {
    let engine = table(ENGINE);
    let app = table(APPLICATION);
    let allowed = |from: &str, to: &str| -> Option<bool> {
        if from == "main" || from == "cli" {
            return Some(true);
        }
        let deps = app.get(from)?;
        if engine.contains_key(to) {
            return Some(true);
        }
        app.get(to)?;
        Some(deps.contains(&to))
    };
    let bad = violations(&root().join("src"), &allowed, &["lib"]);
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

#[test]
fn the_layer_tables_catch_an_edge_that_points_up() {
    let engine = table(ENGINE);
    // gpu -> ops is the edge the device layer once had.
    assert_eq!(crate_refs("use crate::ops::Dispatch;"), ["ops"]);
    assert!(!engine["gpu"].contains(&"ops"));
    assert_eq!(
        crate_refs("use crate::{Error, Gpu, model::Network};"),
        ["error", "gpu", "model"]
    );
    assert_eq!(crate_refs("let r = crate::rng::SplitMix64(1);"), ["rng"]);
    assert!(crate_refs("let a = fer_cbam::model::CLASSES;").is_empty());
}

/// The `[dependencies]` (and target-specific dependencies) of a manifest, by name.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]"
                || (l.starts_with("[target.") && l.ends_with(".dependencies]"));
            continue;
        }
        if in_deps && !l.is_empty() && !l.starts_with('#') {
            if let Some((name, _)) = l.split_once('=') {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

#[test]
fn the_engine_has_none_of_the_applications_dependencies() {
    let engine = dependencies(&root().join("engine/Cargo.toml"));
    // What a device, its kernels, the network and checkpoints need, and nothing else: no image
    // format, CSV, plotting, face detector, command line or terminal.
    let allowed = [
        "wgpu",
        "bytemuck",
        "thiserror",
        "log",
        "serde",
        "serde_json",
        "safetensors",
        "tempfile",
        "pollster",
    ];
    let extra: Vec<&String> = engine
        .iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(extra.is_empty(), "engine/Cargo.toml depends on {extra:?}");
    let app = dependencies(&root().join("Cargo.toml"));
    for d in [
        "image",
        "rustface",
        "csv",
        "plotters",
        "clap",
        "indicatif",
        "ctrlc",
    ] {
        assert!(
            app.iter().any(|a| a == d),
            "the application no longer lists {d}"
        );
        assert!(!engine.iter().any(|e| e == d), "the engine depends on {d}");
    }
    assert!(app.iter().any(|a| a == "fer-cbam-engine"));
}

#[test]
fn the_browser_crate_depends_on_the_engine_alone() {
    let web = dependencies(&root().join("web/Cargo.toml"));
    assert!(web.iter().any(|d| d == "fer-cbam-engine"), "{web:?}");
    assert!(!web.iter().any(|d| d == "fer-cbam"), "{web:?}");
    for d in ["image", "rustface", "csv", "plotters"] {
        assert!(!web.iter().any(|w| w == d), "web/Cargo.toml depends on {d}");
    }
}
