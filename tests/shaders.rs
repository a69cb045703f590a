//! Every WGSL file under shaders/ parses and validates with naga, declares compute entry points,
//! and is embedded in the engine under its own name.

use std::path::Path;

#[test]
fn every_wgsl_file_validates_with_naga() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .wgsl files in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap();
        let module = match naga::front::wgsl::parse_str(&source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e.emit_to_string_with_path(&source, path.to_str().unwrap()));
                continue;
            }
        };
        let mut validator = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        );
        if let Err(e) = validator.validate(&module) {
            failures.push(e.emit_to_string_with_path(&source, path.to_str().unwrap()));
            continue;
        }
        if !module
            .entry_points
            .iter()
            .any(|e| e.stage == naga::ShaderStage::Compute)
        {
            failures.push(format!("{}: no @compute entry point", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_shader_file_is_embedded_under_its_name() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut embedded: Vec<String> = fer_cbam::pipeline::SHADERS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    embedded.sort();
    assert_eq!(on_disk, embedded);
    for (name, source) in fer_cbam::pipeline::SHADERS {
        let disk = std::fs::read_to_string(dir.join(format!("{name}.wgsl"))).unwrap();
        assert_eq!(&disk, source, "{name}.wgsl differs from the embedded copy");
    }
}
