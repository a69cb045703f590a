//! The device layer: errors that name the WGSL file and entry point, checked allocations,
//! the pipeline cache, and the CLI's one-line answers.

mod common;
use common::*;

use fer_cbam::pipeline::{Binding, KernelDesc};
use fer_cbam::{Error, Gpu};

/// A device of its own, so that shader overrides do not leak into other tests.
fn fresh_gpu() -> Gpu {
    Gpu::new_blocking().unwrap()
}

#[test]
fn a_wgsl_syntax_error_names_the_file_and_entry_point() {
    let gpu = fresh_gpu();
    gpu.override_shader("activation", "fn elu_forward( {".into())
        .unwrap();
    let Err(err) = block_on(fer_cbam::ops::activation::Activation::new(
        &gpu,
        fer_cbam::ops::activation::ActivationKind::Relu,
        &[4],
    )) else {
        panic!("a broken shader must fail");
    };
    let msg = err.to_string();
    assert!(matches!(err, Error::Shader { .. }), "{msg}");
    assert!(
        msg.contains("shaders/activation.wgsl") && msg.contains("relu_forward"),
        "{msg}"
    );
}

/// The engine appends the generated `Params` and common.wgsl after a shader's own text, so a
/// compile error's line number is the line of the file as written.
#[test]
fn a_compile_error_gives_the_line_in_the_shader_file() {
    let gpu = fresh_gpu();
    let source = fer_cbam::pipeline::shader_source("activation").unwrap();
    let head = "fn relu_forward(";
    let body_start =
        source[source.find(head).unwrap()..].find('\n').unwrap() + source.find(head).unwrap() + 1;
    let broken = format!(
        "{}    let broken: u32 = 1.5;\n{}",
        &source[..body_start],
        &source[body_start..]
    );
    let line = source[..body_start].lines().count() + 1;
    gpu.override_shader("activation", broken).unwrap();
    let Err(err) = block_on(fer_cbam::ops::activation::Activation::new(
        &gpu,
        fer_cbam::ops::activation::ActivationKind::Relu,
        &[4],
    )) else {
        panic!("a type error must fail");
    };
    let msg = err.to_string();
    assert!(msg.contains("shaders/activation.wgsl"), "{msg}");
    assert!(
        msg.contains(&format!(":{line}:")),
        "line {line} expected: {msg}"
    );
    assert!(msg.contains("shaders/common.wgsl"), "{msg}");
}

#[test]
fn a_missing_entry_point_or_wrong_binding_names_the_file_and_entry_point() {
    let gpu = gpu();
    let desc = |entry, bindings| KernelDesc {
        shader: "conv2d",
        uniform: fer_cbam::ops::uniform_layout("conv2d"),
        entry,
        bindings,
        constants: &[],
    };
    let err = block_on(gpu.kernel(desc("no_such_entry", &[(0, Binding::Uniform)])))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("shaders/conv2d.wgsl") && err.contains("no_such_entry"),
        "{err}"
    );
    // The shader declares binding 1 read-only storage; a uniform layout there must be refused.
    let err = block_on(gpu.kernel(desc(
        "forward",
        &[(0, Binding::Uniform), (1, Binding::Uniform)],
    )))
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("shaders/conv2d.wgsl") && err.contains("forward"),
        "{err}"
    );
    let err = block_on(gpu.kernel(KernelDesc {
        shader: "nonexistent",
        ..desc("forward", &[])
    }))
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("nonexistent"), "{err}");
}

#[test]
fn an_allocation_past_the_limits_names_the_buffer_and_its_size() {
    let gpu = gpu();
    let limit = gpu.limits.max_storage_buffer_binding_size;
    let elems = (limit / 4 + 1) as usize;
    let err = gpu.zeros("activations.stage0", &[elems]).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::BufferTooLarge { .. }), "{msg}");
    assert!(
        msg.contains("activations.stage0") && msg.contains(&format!("{}", elems * 4)),
        "{msg}"
    );
    // Exactly the limit is allowed: the first activation at batch 64 is exactly 128 MiB.
    assert!(gpu.check_size("at the limit", limit, true).is_ok());
}

#[test]
fn pipelines_are_built_once_per_shader_entry_and_constants() {
    let gpu = fresh_gpu();
    let shape = fer_cbam::ops::maxpool2d::MaxPool2dShape {
        n: 1,
        c: 1,
        h: 4,
        w: 4,
    };
    block_on(fer_cbam::ops::maxpool2d::MaxPool2d::new(&gpu, shape)).unwrap();
    let after_first = gpu.pipeline_count();
    let other = fer_cbam::ops::maxpool2d::MaxPool2dShape {
        n: 3,
        c: 5,
        h: 9,
        w: 7,
    };
    block_on(fer_cbam::ops::maxpool2d::MaxPool2d::new(&gpu, other)).unwrap();
    assert_eq!(after_first, 2, "forward and backward");
    assert_eq!(
        gpu.pipeline_count(),
        after_first,
        "a new shape must reuse the pipelines"
    );
}

#[test]
fn upload_and_readback_round_trip_and_check_lengths() {
    let data = random(1, 1001);
    let t = upload("t", &[7, 11, 13], &data);
    assert_eq!(read(&t), data);
    let err = gpu()
        .tensor("short", &[2, 2], &[1.0])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("short") && err.contains("[2, 2]"), "{err}");
}

#[test]
fn info_prints_adapter_backend_driver_and_limits() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .arg("info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in [
        "adapter:",
        "backend:",
        "driver:",
        "max_storage_buffer_binding_size",
        "max_buffer_size",
    ] {
        assert!(stdout.contains(field), "missing {field}: {stdout}");
    }
}

#[test]
fn no_adapter_is_one_line_naming_the_fix_and_a_non_zero_exit() {
    // Point the Vulkan loader at a driver manifest that does not exist: no adapter at all.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .arg("info")
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env_remove("WGPU_ADAPTER_NAME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR")) // the loader's own noise
        .collect();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(lines.len(), 1, "expected one line: {stderr}");
    assert!(
        lines[0].contains("no GPU adapter") && lines[0].contains("tools/install-lavapipe.sh"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unknown_adapter_name_lists_the_adapters_found() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fer-cbam"))
        .arg("info")
        .env("WGPU_ADAPTER_NAME", "no-such-gpu-9000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no-such-gpu-9000") && stderr.contains("adapters found"),
        "{stderr}"
    );
}

#[test]
fn a_lost_device_is_an_error_naming_the_last_dispatches() {
    let gpu = fresh_gpu();
    let shape = fer_cbam::ops::maxpool2d::MaxPool2dShape {
        n: 1,
        c: 1,
        h: 4,
        w: 4,
    };
    let pool = block_on(fer_cbam::ops::maxpool2d::MaxPool2d::new(&gpu, shape)).unwrap();
    let x = gpu.zeros("x", &[1, 1, 4, 4]).unwrap();
    let y = gpu.zeros("y", &[1, 1, 2, 2]).unwrap();
    let d = pool.forward(&gpu, &x, &y).unwrap();
    gpu.submit(&[&d]).unwrap();
    gpu.wait().unwrap();
    gpu.device.destroy();
    let _ = gpu.device.poll(wgpu::PollType::Poll);
    let err = gpu
        .submit(&[&d])
        .expect_err("a destroyed device must fail")
        .to_string();
    assert!(
        err.contains("device lost") && err.contains("maxpool2d.wgsl:forward"),
        "{err}"
    );
}

/// Runs `fer-cbam ARGS` with neither kernel variable set except `var=value` when given:
/// (success, its `kernels:` line, stderr).
fn info_kernels_line(args: &[&str], var: &str, value: Option<&str>) -> (bool, String, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fer-cbam"));
    c.args(args)
        .env_remove("FER_CBAM_KERNELS")
        .env_remove("FER_CBAM_CONV");
    if let Some(v) = value {
        c.env(var, v);
    }
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("kernels:"))
        .unwrap_or("")
        .to_string();
    (out.status.success(), line, stderr)
}

/// `info` names the kernel set and why; `--kernels` and `FER_CBAM_KERNELS` override the
/// adapter's choice (the flag over the variable); a bad value is one line naming it.
#[test]
fn info_says_which_kernel_set_runs_and_why() {
    let info = |args: &[&str], env: Option<&str>| info_kernels_line(args, "FER_CBAM_KERNELS", env);
    let gpu = gpu();
    let (ok, line, err) = info(&["info"], None);
    assert!(ok, "{err}");
    let auto = gpu.kernels.kind.name();
    assert!(line.contains(&format!("kernels:  {auto} (")), "{line}");
    let (ok, line, _) = info(&["--kernels", "gpu", "info"], None);
    assert!(
        ok && line.contains("gpu (--kernels asks for the gpu set)"),
        "{line}"
    );
    let (ok, line, _) = info(&["info", "--kernels", "cpu"], Some("gpu"));
    assert!(
        ok && line.contains("cpu (--kernels"),
        "the flag wins: {line}"
    );
    let (ok, line, _) = info(&["info"], Some("gpu"));
    assert!(ok && line.contains("gpu (FER_CBAM_KERNELS=gpu"), "{line}");
    let (ok, _, err) = info(&["info"], Some("fastest"));
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert!(
        !ok && lines.len() == 1 && lines[0].contains("FER_CBAM_KERNELS"),
        "{err}"
    );
    let (ok, _, err) = info(&["info", "--kernels", "fastest"], None);
    assert!(
        !ok && err.contains("--kernels") && err.contains("auto, cpu, gpu"),
        "{err}"
    );
}

/// `info` names the convolution version and where it came from: the kernel set's (v3 on the cpu
/// set, v4 on the gpu set), `--conv` over `FER_CBAM_CONV`; a bad value is one line naming it.
#[test]
fn info_says_which_convolution_runs() {
    let info = |args: &[&str], env: Option<&str>| info_kernels_line(args, "FER_CBAM_CONV", env);
    let (ok, line, err) = info(&["--kernels", "cpu", "info"], None);
    assert!(
        ok && line.contains("conv2d v3 (the cpu set)"),
        "{line} {err}"
    );
    let (ok, line, _) = info(&["--kernels", "gpu", "info"], None);
    assert!(ok && line.contains("conv2d v4 (the gpu set)"), "{line}");
    let (ok, line, _) = info(&["info", "--conv", "v3f4"], Some("v1"));
    assert!(
        ok && line.contains("conv2d v3f4 (--conv)"),
        "the flag wins: {line}"
    );
    let (ok, line, _) = info(&["info"], Some("V2"));
    assert!(
        ok && line.contains("conv2d v2 (FER_CBAM_CONV=V2)"),
        "{line}"
    );
    let (ok, _, err) = info(&["info"], Some("v9"));
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert!(
        !ok && lines.len() == 1 && lines[0].contains("FER_CBAM_CONV"),
        "{err}"
    );
    let (ok, _, err) = info(&["info", "--conv", "winograd"], None);
    assert!(
        !ok && err.contains("--conv") && err.contains("v1, v2, v3, v3f4, v4"),
        "{err}"
    );
}

/// A device error outside every error scope (here a buffer whose usages cannot go together)
/// is not lost: the next submission returns it, once, and so does the next readback.
#[test]
fn an_uncaught_device_error_reaches_the_next_submit_and_readback() {
    let gpu = fresh_gpu();
    let invalid_buffer = |label| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::MAP_WRITE,
            mapped_at_creation: false,
        })
    };
    let _b = invalid_buffer("uncaught-1");
    let err = gpu
        .submit(&[])
        .expect_err("the uncaught error must come back");
    let msg = err.to_string();
    assert!(matches!(err, Error::Gpu { .. }), "{msg}");
    assert!(msg.contains("uncaught"), "{msg}");
    gpu.submit(&[]).expect("an error is reported once");

    let t = gpu.tensor("t", &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let _b = invalid_buffer("uncaught-2");
    let err = gpu.read_blocking(&t).expect_err("the readback must fail");
    assert!(matches!(err, Error::Gpu { .. }), "{err}");
    assert_eq!(gpu.read_blocking(&t).unwrap(), [1.0, 2.0, 3.0, 4.0]);
}
