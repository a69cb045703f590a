//! Compute pipelines, built once and cached by (shader, entry point, override constants), and
//! the [`Dispatch`]es built from them.
//!
//! Shaders are real files under `shaders/`, embedded at compile time so the binary (and the
//! wasm build) carries them. Bind group layouts are explicit: every entry point of a file uses
//! a subset of one binding list declared by its op wrapper.
//!
//! This layer knows only a `wgpu::Device`; [`crate::gpu::Gpu`] owns the cache and hands it
//! its device.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::uniform::UniformLayout;

/// Every WGSL file of the engine, by op name (`shaders/<name>.wgsl`).
pub const SHADERS: &[(&str, &str)] = &[
    ("activation", include_str!("../shaders/activation.wgsl")),
    ("conv2d", include_str!("../shaders/conv2d.wgsl")),
    (
        "conv2d_winograd",
        include_str!("../shaders/conv2d_winograd.wgsl"),
    ),
    (
        "conv2d_winograd_subgroup",
        include_str!("../shaders/conv2d_winograd_subgroup.wgsl"),
    ),
    ("maxpool2d", include_str!("../shaders/maxpool2d.wgsl")),
    ("cbam_channel", include_str!("../shaders/cbam_channel.wgsl")),
    ("cbam_spatial", include_str!("../shaders/cbam_spatial.wgsl")),
    (
        "global_avgpool",
        include_str!("../shaders/global_avgpool.wgsl"),
    ),
    ("linear", include_str!("../shaders/linear.wgsl")),
    ("dropout", include_str!("../shaders/dropout.wgsl")),
    ("softmax_xent", include_str!("../shaders/softmax_xent.wgsl")),
    ("adam", include_str!("../shaders/adam.wgsl")),
    ("batchnorm2d", include_str!("../shaders/batchnorm2d.wgsl")),
];

/// `shaders/common.wgsl`: what every engine shader shares (the workgroup size `WG`, the uniform
/// binding `p`, `flat()`), appended to each by [`assemble`].
pub const COMMON: &str = include_str!("../shaders/common.wgsl");

/// The source of `shaders/<name>.wgsl`, as written.
pub fn shader_source(name: &str) -> Option<&'static str> {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The WGSL the device compiles for `shaders/<name>.wgsl` whose text is `body` (the file, or an
/// override of it): `body`, then what the engine declares for it, the declaration of its
/// `uniform` (the op's `Params`) and [`COMMON`]. WGSL declarations may come in any order, so the
/// additions go after the file and the compiler's line numbers for the file's own lines stay the
/// file's. A shader that is not the engine's (a bench's own) is compiled as given.
/// `crate::ops::assembled_source(op)` gives an embedded shader's.
pub fn assemble(name: &str, body: &str, uniform: Option<&UniformLayout>) -> String {
    assembly(name, body, uniform).0
}

/// [`assemble`]'s text and, for error messages, the lines (1-based) where the generated
/// `Params` and the appended common.wgsl start, 0 where absent.
fn assembly(name: &str, body: &str, uniform: Option<&UniformLayout>) -> (String, usize, usize) {
    let mut s = body.to_string();
    if shader_source(name).is_none() {
        return (s, 0, 0);
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let mut params_line = 0;
    if let Some(u) = uniform {
        s += &format!(
            "\n// Generated from the Rust declaration of `{}`.\n",
            u.name
        );
        params_line = s.lines().count() + 1;
        s += &(u.wgsl)();
    }
    s += "\n// shaders/common.wgsl\n";
    let common_line = s.lines().count() + 1;
    s += COMMON;
    (s, params_line, common_line)
}

/// Where the compiler's line numbers past the file's own come from, for its error messages.
fn line_note(name: &str, body: &str, uniform: Option<&UniformLayout>) -> String {
    let (_, params, common) = assembly(name, body, uniform);
    let mut note = format!("(lines 1-{} are {name}.wgsl", body.lines().count());
    if params > 0 {
        note += &format!("; from line {params}, the generated `struct Params`");
    }
    if common > 0 {
        note += &format!(
            "; from line {common}, shaders/common.wgsl (its line k at line {} + k)",
            common - 1
        );
    }
    note + "; ops::assembled_source gives the whole text)"
}

/// How a binding is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

/// What identifies a pipeline.
#[derive(Clone, Debug)]
pub struct KernelDesc<'a> {
    pub shader: &'static str,
    /// The shader's uniform, whose WGSL declaration [`assemble`] adds to an engine shader:
    /// the op's `Params::LAYOUT` (every entry point of one file passes the same one). `None`
    /// for a shader that declares its own (a bench's).
    pub uniform: Option<&'static UniformLayout>,
    pub entry: &'static str,
    /// `(binding index, use)` for each binding this entry point reads or writes; entry points
    /// of one file share one numbering and each lists the subset it uses.
    pub bindings: &'a [(u32, Binding)],
    /// WGSL `override` constants, for example the workgroup size.
    pub constants: &'a [(&'static str, f64)],
}

type Key = (
    &'static str,
    &'static str,
    Vec<(u32, Binding)>,
    Vec<(&'static str, u64)>,
    String,
);

/// A compiled entry point and the layout its bind groups must follow.
pub struct Kernel {
    pub(crate) shader: &'static str,
    pub(crate) entry: &'static str,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) label: String,
    pub(crate) bindings: Vec<(u32, Binding)>,
    /// Invocations per workgroup in x, y, z, from the entry point's `@workgroup_size`.
    pub(crate) workgroup_size: [u32; 3],
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    kernels: Mutex<HashMap<Key, Arc<Kernel>>>,
    /// By shader and its uniform's WGSL declaration ("" for none): one built without it (or
    /// with another) is another module, never the one the ops' pipelines use.
    modules: Mutex<HashMap<(&'static str, String), wgpu::ShaderModule>>,
    overrides: Mutex<HashMap<String, String>>,
}

impl PipelineCache {
    /// The pipeline for `desc`, compiled on `device` on first use. Compilation and validation
    /// errors name the WGSL file and entry point.
    pub(crate) async fn kernel(
        &self,
        device: &wgpu::Device,
        desc: KernelDesc<'_>,
    ) -> Result<Arc<Kernel>> {
        let uniform_wgsl = desc.uniform.map(|u| (u.wgsl)()).unwrap_or_default();
        let key: Key = (
            desc.shader,
            desc.entry,
            desc.bindings.to_vec(),
            desc.constants
                .iter()
                .map(|(k, v)| (*k, v.to_bits()))
                .collect(),
            uniform_wgsl.clone(),
        );
        if let Some(k) = self.kernels.lock().unwrap().get(&key) {
            return Ok(k.clone());
        }
        let shader_err = |message: String| Error::Shader {
            file: desc.shader.into(),
            entry: desc.entry.into(),
            message,
        };
        let module_key = (desc.shader, uniform_wgsl);
        let cached = self.modules.lock().unwrap().get(&module_key).cloned();
        let overridden = self.overrides.lock().unwrap().get(desc.shader).cloned();
        let body = match overridden {
            Some(s) => s,
            None => shader_source(desc.shader)
                .ok_or_else(|| shader_err("no such shader file".into()))?
                .to_string(),
        };
        let source = assemble(desc.shader, &body, desc.uniform);
        let workgroup_size =
            workgroup_size(&source, desc.entry, desc.constants).map_err(shader_err)?;
        let module = match cached {
            Some(m) => m,
            None => {
                let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
                let m = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(desc.shader),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
                if let Some(e) = scope.pop().await {
                    return Err(shader_err(format!(
                        "{e} {}",
                        line_note(desc.shader, &body, desc.uniform)
                    )));
                }
                // Two threads compiling the same file at once both succeed; either copy serves.
                self.modules.lock().unwrap().insert(module_key, m.clone());
                m
            }
        };
        let label = format!("{}.wgsl:{}", desc.shader, desc.entry);
        let entries: Vec<wgpu::BindGroupLayoutEntry> = desc
            .bindings
            .iter()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: *i,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b {
                        Binding::Uniform => wgpu::BufferBindingType::Uniform,
                        Binding::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Binding::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(&label),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(desc.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: desc.constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(shader_err(e.to_string()));
        }
        let kernel = Arc::new(Kernel {
            shader: desc.shader,
            entry: desc.entry,
            pipeline,
            layout,
            label,
            bindings: desc.bindings.to_vec(),
            workgroup_size,
        });
        self.kernels.lock().unwrap().insert(key, kernel.clone());
        Ok(kernel)
    }

    /// Replaces the embedded source of `shaders/<name>.wgsl` before any of its pipelines is
    /// built; fails once the shader has been compiled.
    pub(crate) fn override_shader(&self, name: &'static str, source: String) -> Result<()> {
        if self.modules.lock().unwrap().keys().any(|(n, _)| *n == name) {
            return Err(Error::Shader {
                file: name.into(),
                entry: String::new(),
                message: "already compiled; override shaders before building any op".into(),
            });
        }
        self.overrides
            .lock()
            .unwrap()
            .insert(name.to_string(), source);
        Ok(())
    }

    /// Number of distinct pipelines built so far.
    pub(crate) fn len(&self) -> usize {
        self.kernels.lock().unwrap().len()
    }

    /// `<shader>.wgsl:<entry>` of every pipeline built so far, sorted, each once.
    pub(crate) fn labels(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .kernels
            .lock()
            .unwrap()
            .values()
            .map(|k| k.label.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

impl Kernel {
    /// A dispatch to record later: the bind group is created here, once, not per step.
    /// `resources` follow the order of the kernel's binding list.
    /// `device` is the one the kernel was built on (a [`crate::gpu::Gpu`] serves).
    pub fn dispatch(
        &self,
        device: &impl AsRef<wgpu::Device>,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let device = device.as_ref();
        if resources.len() != self.bindings.len() {
            return Err(Error::Shader {
                file: self.shader.into(),
                entry: self.entry.into(),
                message: format!(
                    "{} resources given for {} bindings",
                    resources.len(),
                    self.bindings.len()
                ),
            });
        }
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .zip(&self.bindings)
            .map(|(r, (i, _))| wgpu::BindGroupEntry {
                binding: *i,
                resource: r.clone(),
            })
            .collect();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&self.label),
            layout: &self.layout,
            entries: &entries,
        });
        if let Some(e) = now_or_never(scope.pop()).flatten() {
            return Err(Error::Gpu {
                context: format!("binding {}", self.label),
                message: e.to_string(),
            });
        }
        let bytes = resources
            .iter()
            .zip(&self.bindings)
            .filter(|(_, (_, b))| *b != Binding::Uniform)
            .map(|(r, _)| match r {
                wgpu::BindingResource::Buffer(b) => b
                    .size
                    .map(|s| s.get())
                    .unwrap_or_else(|| b.buffer.size().saturating_sub(b.offset)),
                _ => 0,
            })
            .sum();
        Ok(Dispatch {
            pipeline: self.pipeline.clone(),
            bind_group,
            workgroups,
            label: self.label.clone(),
            shader: self.shader,
            entry: self.entry,
            workgroup_size: self.workgroup_size,
            flops: 0,
            bytes,
        })
    }
}

/// One recorded-later kernel launch. Built once (the bind group is created at build time).
pub struct Dispatch {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) workgroups: [u32; 3],
    pub(crate) label: String,
    pub(crate) shader: &'static str,
    pub(crate) entry: &'static str,
    /// Invocations per workgroup (x, y, z) of the entry point.
    pub(crate) workgroup_size: [u32; 3],
    /// Floating-point operations (a multiply-add counts 2), where the op wrapper counts them;
    /// 0 for memory-bound element-wise kernels. For the profiler's GFLOP/s.
    pub(crate) flops: u64,
    /// Bytes of every storage buffer bound, each counted once (read or written): the least
    /// memory traffic the kernel can have. For the profiler's GB/s.
    pub(crate) bytes: u64,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatch({} {:?})", self.label, self.workgroups)
    }
}

impl Dispatch {
    /// Records the launch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
    /// `<shader>.wgsl:<entry point>`.
    pub fn label(&self) -> &str {
        &self.label
    }
    pub fn workgroups(&self) -> [u32; 3] {
        self.workgroups
    }
    /// Workgroups launched in all.
    pub fn workgroup_count(&self) -> u64 {
        self.workgroups.iter().map(|&v| v as u64).product()
    }
    /// Invocations per workgroup.
    pub fn workgroup_size(&self) -> [u32; 3] {
        self.workgroup_size
    }
    /// Invocations launched (workgroups times their size; some return at once where a grid is
    /// rounded up).
    pub fn invocations(&self) -> u64 {
        self.workgroup_count()
            * self
                .workgroup_size
                .iter()
                .map(|&v| v as u64)
                .product::<u64>()
    }
    /// The WGSL file (without `.wgsl`) and entry point: what the profiler groups by.
    pub fn kernel(&self) -> (&'static str, &'static str) {
        (self.shader, self.entry)
    }
    /// Counted FLOPs (0 where the wrapper does not count them).
    pub fn flops(&self) -> u64 {
        self.flops
    }
    /// Bytes of the storage buffers bound, each once.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
    /// Sets the counted FLOPs (op wrappers that know their shapes).
    pub(crate) fn with_flops(mut self, flops: u64) -> Dispatch {
        self.flops = flops;
        self
    }
}

/// Polls a future once. wgpu-core resolves error-scope futures immediately, so native code gets
/// its answer here; on the web an unresolved scope is treated as "no error yet".
pub(crate) fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The `@workgroup_size(x, y, z)` of `entry` in `source`: each dimension a literal, or an
/// `override` constant set by `constants` or else by its default in the source. The profiler
/// multiplies it by a dispatch's workgroup count to show how many invocations ran.
fn workgroup_size(
    source: &str,
    entry: &str,
    constants: &[(&str, f64)],
) -> std::result::Result<[u32; 3], String> {
    let err = |what: &str| format!("cannot read the @workgroup_size of `{entry}`: {what}");
    let at = source
        .find(&format!("fn {entry}("))
        .ok_or_else(|| err("no such entry point"))?;
    let attr = source[..at]
        .rfind("@workgroup_size(")
        .ok_or_else(|| err("no @workgroup_size before it"))?;
    let args = &source[attr + "@workgroup_size(".len()..];
    let args = &args[..args.find(')').ok_or_else(|| err("unclosed"))?];
    let mut size = [1u32; 3];
    for (d, arg) in args.split(',').map(str::trim).enumerate().take(3) {
        let literal = arg.trim_end_matches(['u', 'i']);
        size[d] = if let Ok(v) = literal.parse::<u32>() {
            v
        } else if let Some((_, v)) = constants.iter().find(|(k, _)| *k == arg) {
            *v as u32
        } else {
            let decl = format!("override {arg}: u32 = ");
            let at = source
                .find(&decl)
                .ok_or_else(|| err(&format!("`{arg}` is neither a literal nor an override")))?;
            let rest = &source[at + decl.len()..];
            rest[..rest.find(';').ok_or_else(|| err("bad override"))?]
                .trim()
                .trim_end_matches('u')
                .parse()
                .map_err(|_| err(&format!("the default of `{arg}` is not a literal")))?
        };
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::workgroup_size;

    #[test]
    fn workgroup_sizes_come_from_literals_constants_and_override_defaults() {
        let src = "override WG: u32 = 64u;\n@compute @workgroup_size(WG)\nfn a() {}\n\
                   @compute @workgroup_size(1)\nfn b() {}\n@compute @workgroup_size(8, 4u)\nfn c() {}";
        assert_eq!(workgroup_size(src, "a", &[]), Ok([64, 1, 1]));
        assert_eq!(workgroup_size(src, "a", &[("WG", 256.0)]), Ok([256, 1, 1]));
        assert_eq!(workgroup_size(src, "b", &[("WG", 256.0)]), Ok([1, 1, 1]));
        assert_eq!(workgroup_size(src, "c", &[]), Ok([8, 4, 1]));
        assert!(workgroup_size(src, "d", &[]).is_err());
    }
}
