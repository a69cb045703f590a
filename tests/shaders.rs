//! Every WGSL file under shaders/ parses and validates with naga (as the engine assembles it:
//! the file, its generated uniform declaration and common.wgsl), declares compute entry points,
//! and is embedded in the engine under its own name; every op's uniform has the same layout in
//! WGSL as in Rust; no shader repeats what common.wgsl declares.

use std::path::Path;

/// naga's validator for `shaders/<name>.wgsl`: no optional capabilities, except subgroup
/// operations for the one file that uses them (built only on devices that have them).
fn validator(name: &str) -> naga::valid::Validator {
    if name.ends_with("_subgroup") {
        let mut v = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::SUBGROUP,
        );
        v.subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::all());
        return v;
    }
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
}

#[test]
fn every_wgsl_file_validates_with_naga() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engine/shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        // Not a shader of its own: it is validated as part of every other one.
        .filter(|p| p.file_stem().is_some_and(|s| s != "common"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .wgsl files in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let source = fer_cbam::pipeline::assemble(
            name,
            &std::fs::read_to_string(path).unwrap(),
            fer_cbam::ops::uniform_layout(name),
        );
        let module = match naga::front::wgsl::parse_str(&source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e.emit_to_string_with_path(&source, path.to_str().unwrap()));
                continue;
            }
        };
        let mut validator = validator(name);
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
        .filter(|s| s != "common")
        .collect();
    on_disk.sort();
    let common = std::fs::read_to_string(dir.join("common.wgsl")).unwrap();
    assert_eq!(
        common,
        fer_cbam::pipeline::COMMON,
        "common.wgsl differs from the embedded copy"
    );
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

/// naga's layout of `struct <name>` in `source`: (member, byte offset) and the struct's span.
fn naga_layout(source: &str, name: &str) -> (Vec<(String, u32)>, u32) {
    let module = naga::front::wgsl::parse_str(source).unwrap();
    let ty = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no struct {name}"))
        .1;
    match &ty.inner {
        naga::TypeInner::Struct { members, span } => (
            members
                .iter()
                .map(|m| (m.name.clone().unwrap(), m.offset))
                .collect(),
            *span,
        ),
        other => panic!("{name} is not a struct: {other:?}"),
    }
}

#[test]
fn every_uniform_has_the_rust_layout_in_wgsl() {
    use fer_cbam::ops::UNIFORMS;
    // Every shader binds a uniform `p: Params`, so every one must have its layout declared.
    let mut with_uniform: Vec<&str> = UNIFORMS.iter().map(|(n, _)| *n).collect();
    with_uniform.sort();
    let mut shaders: Vec<&str> = fer_cbam::pipeline::SHADERS
        .iter()
        .map(|(n, _)| *n)
        .collect();
    shaders.sort();
    assert_eq!(with_uniform, shaders);
    for (shader, layout) in UNIFORMS {
        let body = fer_cbam::pipeline::shader_source(shader).unwrap();
        assert!(
            !body.contains("struct Params"),
            "{shader}.wgsl declares its own Params: the generated one is the only one"
        );
        let source = fer_cbam::ops::assembled_source(shader).unwrap();
        let (members, span) = naga_layout(&source, layout.name);
        let rust: Vec<(String, u32)> = layout
            .members
            .iter()
            .map(|(n, _, offset)| (n.to_string(), *offset as u32))
            .collect();
        assert_eq!(members, rust, "{shader}: member offsets, WGSL against Rust");
        assert_eq!(
            span as usize, layout.size,
            "{shader}: size, WGSL against Rust"
        );
        assert!(
            layout.size.is_multiple_of(16),
            "{shader}: {} bytes",
            layout.size
        );
        assert!(
            !layout.members.iter().any(|(n, _, _)| n.starts_with('_')),
            "{shader}: a padding member; the generated declaration pads by itself"
        );
    }
}

#[test]
fn uniform_padding_is_generated_for_every_struct_size() {
    // One to five 4-byte members: 16, 16, 16, 16, 32 bytes, in Rust's buffer and in WGSL.
    fer_cbam::uniform! {
        struct One { a: u32 }
    }
    fer_cbam::uniform! {
        struct Three { a: u32, b: f32, c: i32 }
    }
    fer_cbam::uniform! {
        struct Four { a: u32, b: f32, c: i32, d: u32 }
    }
    fer_cbam::uniform! {
        struct Five { a: u32, b: f32, c: i32, d: u32, e: f32 }
    }
    use fer_cbam::uniform::{Uniform, UniformLayout};
    for (layout, size, rust_size) in [
        (UniformLayout::of::<One>(), 16, std::mem::size_of::<One>()),
        (
            UniformLayout::of::<Three>(),
            16,
            std::mem::size_of::<Three>(),
        ),
        (UniformLayout::of::<Four>(), 16, std::mem::size_of::<Four>()),
        (UniformLayout::of::<Five>(), 32, std::mem::size_of::<Five>()),
    ] {
        assert_eq!(layout.size, size, "{}", layout.name);
        assert_eq!(rust_size, 4 * layout.members.len(), "{}", layout.name);
        let source = format!(
            "{}@group(0) @binding(0) var<uniform> p: {};\n\
             @compute @workgroup_size(1) fn main() {{ _ = p; }}\n",
            (layout.wgsl)(),
            layout.name
        );
        let (members, span) = naga_layout(&source, layout.name);
        assert_eq!(span as usize, size, "{}", layout.name);
        let offsets: Vec<u32> = members.iter().map(|m| m.1).collect();
        let rust: Vec<u32> = layout.members.iter().map(|m| m.2 as u32).collect();
        assert_eq!(offsets, rust, "{}", layout.name);
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        validator(layout.name)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {e:?}\n{source}", layout.name));
    }
    assert_eq!(Five::SIZE, 32);
}

#[test]
fn no_shader_repeats_what_common_wgsl_declares() {
    let common = fer_cbam::pipeline::COMMON;
    let shared = ["override WG", "var<uniform> p", "fn flat(", "struct Params"];
    for decl in &shared[..3] {
        assert!(common.contains(decl), "common.wgsl lost `{decl}`");
    }
    for (name, source) in fer_cbam::pipeline::SHADERS {
        for decl in shared {
            assert!(
                !source.contains(decl),
                "{name}.wgsl declares `{decl}`, which the engine appends to every shader"
            );
        }
        let assembled = fer_cbam::ops::assembled_source(name).unwrap();
        assert!(
            assembled.starts_with(source),
            "{name}: its own text must come first"
        );
        assert!(
            assembled.ends_with(common),
            "{name}: common.wgsl must be appended"
        );
    }
}
