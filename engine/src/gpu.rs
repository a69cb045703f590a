//! The GPU context: adapter choice, device limits, checked allocations, submission and readback.
//!
//! Everything here is async underneath (a browser cannot block); `*_blocking` helpers on top
//! serve the native binary and the tests.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::kernels::{KernelChoice, KernelSet};
use crate::pipeline::{now_or_never, Dispatch, Kernel, KernelDesc, PipelineCache};
use crate::tensor::Tensor;

/// Records a submission's dispatches in place of [`Gpu::submit_with_copies`]'s single compute
/// pass, while installed with [`Gpu::set_submit_hook`]: the profiler's timestamps go in here.
pub trait SubmitHook: Send {
    /// Records `dispatches`, in order, into `encoder` (which the submission then finishes and
    /// submits, with its copies after them).
    fn record(
        &mut self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        dispatches: &mut dyn Iterator<Item = &Dispatch>,
    ) -> Result<()>;
}

/// A hook shared between the [`Gpu`] that calls it and the code that installed it.
pub type SharedHook = Arc<Mutex<dyn SubmitHook>>;

/// One device and queue with the limits we asked for, plus the pipeline cache.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with (the adapter's own sizes, not wgpu's defaults).
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The kernel variants this device runs (see [`crate::kernels`]).
    pub kernels: KernelSet,
    pub(crate) pipelines: PipelineCache,
    lost: Arc<Mutex<Option<(String, String)>>>,
    /// The first device error no error scope caught since the last check, with the dispatches
    /// of the submission before it; the next submit, readback or wait returns it.
    uncaptured: Arc<Mutex<Option<String>>>,
    /// The dispatches of the last submission, named in a device-lost error.
    last_submit: Mutex<String>,
    /// A 16-byte zeroed storage buffer bound where an optional input is absent (a conv without bias).
    pub(crate) dummy: wgpu::Buffer,
    /// While installed (the profiler's recorder): records every submission's dispatches.
    hook: Mutex<Option<SharedHook>>,
    /// Set when the adapter in use is a slow fallback the user may not have meant: the OpenGL
    /// backend, or a CPU adapter while a GPU is there. The CLI prints it on every command.
    pub warning: Option<String>,
}

/// How to choose a backend and an adapter, for messages.
pub const CHOOSING: &str = "choose with WGPU_BACKEND=vulkan|metal|dx12|gl and \
                            WGPU_ADAPTER_NAME=<part of an adapter's name>";

/// Why `info` (the adapter picked) is probably not what the user wanted, if it is a slow
/// fallback: GL (wgpu's last resort when it finds no Vulkan, Metal or DX12 driver; compute
/// through it is many times slower), or a CPU adapter while a GPU adapter exists.
async fn slow_fallback(instance: &wgpu::Instance, info: &wgpu::AdapterInfo) -> Option<String> {
    let asked = wgpu::Backends::from_env();
    if info.backend == wgpu::Backend::Gl && asked != Some(wgpu::Backends::GL) {
        return Some(format!(
            "running on the OpenGL backend ({}): no Vulkan, Metal or DX12 adapter was found, and \
             compute through OpenGL is many times slower. Install a Vulkan driver (on Linux \
             without a GPU: `sudo bash tools/install-lavapipe.sh` in the fer-cbam repository, \
             or the mesa-vulkan-drivers package, for Mesa's lavapipe), or set WGPU_BACKEND=gl \
             to use OpenGL on purpose",
            info.name
        ));
    }
    if info.device_type == wgpu::DeviceType::Cpu && std::env::var_os("WGPU_ADAPTER_NAME").is_none()
    {
        // Without WGPU_BACKEND, wgpu already prefers any GPU to a CPU adapter: only a narrowed
        // backend can hide one, so only then is it worth listing the adapters.
        asked?;
        let gpus: Vec<String> = instance
            .enumerate_adapters(wgpu::Backends::all())
            .await
            .iter()
            .map(|a| a.get_info())
            .filter(|i| i.device_type != wgpu::DeviceType::Cpu)
            .map(|i| format!("{} ({:?})", i.name, i.backend))
            .collect();
        if !gpus.is_empty() {
            return Some(format!(
                "running on the CPU adapter {} ({:?}) while this machine has {}: WGPU_BACKEND \
                 leaves them out; unset it, or {CHOOSING}",
                info.name,
                info.backend,
                gpus.join(", ")
            ));
        }
    }
    None
}

impl Gpu {
    /// Open the adapter chosen by `WGPU_BACKEND` / `WGPU_ADAPTER_NAME`, or the best one there is,
    /// with the kernel set of `--kernels` / `FER_CBAM_KERNELS` or, by default, the adapter's.
    pub async fn new() -> Result<Gpu> {
        let (choice, source) = crate::kernels::current_choice()?;
        Gpu::open(choice, &source).await
    }

    /// [`Gpu::new`] with the kernel set forced to `choice` (tests run the gpu set on lavapipe).
    pub async fn with_kernels(choice: KernelChoice) -> Result<Gpu> {
        Gpu::open(choice, "the caller").await
    }

    async fn open(choice: KernelChoice, source: &str) -> Result<Gpu> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        // WGPU_BACKEND narrows the backends; without it every native backend is tried.
        if let Some(b) = wgpu::Backends::from_env() {
            desc.backends = b;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = choose_adapter(&instance).await?;
        let info = adapter.get_info();
        let warning = slow_fallback(&instance, &info).await;
        if let Some(w) = &warning {
            log::warn!("{w}");
        }
        let a = adapter.limits();

        // wgpu's defaults cap a storage binding at 128 MiB: exactly the first activation at batch
        // 64, and the gradients of that activation need more. Ask for what the adapter has.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: a.max_storage_buffer_binding_size,
            max_buffer_size: a.max_buffer_size,
            max_storage_buffers_per_shader_stage: a.max_storage_buffers_per_shader_stage,
            max_compute_workgroups_per_dimension: a.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: a.max_compute_invocations_per_workgroup,
            max_compute_workgroup_size_x: a.max_compute_workgroup_size_x,
            max_compute_workgroup_storage_size: a.max_compute_workgroup_storage_size,
            ..wgpu::Limits::default()
        };

        // Timestamp queries are wanted by the profiler where the adapter has them; subgroup
        // operations by conv2d v3's GEMM (and the roofline bench). Not in the browser: its WGSL
        // wants `enable subgroups;`, which naga 30 (native) rejects, so the shader has none.
        let subgroup = match cfg!(target_arch = "wasm32") {
            true => wgpu::Features::empty(),
            false => wgpu::Features::SUBGROUP,
        };
        let features = adapter.features()
            & (wgpu::Features::TIMESTAMP_QUERY
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
                | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
                | subgroup);

        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("fer-cbam"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;

        let mut kernels = KernelSet::choose(info.device_type, &limits, choice, source);
        if let Some((conv, source)) = crate::kernels::conv_choice()? {
            kernels = kernels.with_conv(conv, source);
        }
        let kernels = kernels.with_subgroups(KernelSet::subgroups_usable(
            features,
            info.subgroup_min_size,
            info.subgroup_max_size,
        ));
        let lost = Arc::new(Mutex::new(None));
        {
            let lost = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                *lost.lock().unwrap() = Some((format!("{reason:?}"), message));
            });
        }
        // Errors are caught by error scopes around each call that can raise one. One that
        // escapes (in a browser, validation can report after the scope was popped) would be
        // wgpu's default panic natively and a console line nobody reads on the web: it is kept
        // instead, the first one only (later ones are usually its consequences), and the next
        // submit, readback or wait returns it as `Error::Gpu`.
        let uncaptured: Arc<Mutex<Option<String>>> = Arc::default();
        {
            let uncaptured = uncaptured.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                log::error!("uncaptured wgpu error: {e}");
                uncaptured
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }));
        }
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            kernels,
            pipelines: PipelineCache::default(),
            lost,
            uncaptured,
            last_submit: Mutex::new(String::new()),
            dummy,
            hook: Mutex::new(None),
            warning,
        })
    }

    /// One line: the adapter, its kind and the backend, and how to choose another.
    pub fn summary(&self) -> String {
        format!(
            "{} ({:?}) on {:?}; {CHOOSING}",
            self.info.name, self.info.device_type, self.info.backend
        )
    }

    /// [`Gpu::new`] for native code that may block.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Gpu> {
        pollster::block_on(Gpu::new())
    }

    /// [`Gpu::with_kernels`] for native code that may block.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_kernels_blocking(choice: KernelChoice) -> Result<Gpu> {
        pollster::block_on(Gpu::with_kernels(choice))
    }

    /// A human-readable description: adapter, backend, driver and the limits in use.
    pub fn describe(&self) -> String {
        let i = &self.info;
        let l = &self.limits;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        format!(
            "adapter:  {} ({:?})\nbackend:  {:?}\ndriver:   {} {}\nlimits in use:\n  \
             max_buffer_size                      {} ({:.0} MiB)\n  \
             max_storage_buffer_binding_size      {} ({:.0} MiB)\n  \
             max_storage_buffers_per_shader_stage {}\n  \
             max_compute_workgroups_per_dimension {}\n  \
             max_compute_invocations_per_workgroup {}\n  \
             max_compute_workgroup_storage_size   {}\n  \
             min_storage_buffer_offset_alignment  {}\ntimestamp queries: {}\nkernels:  {}",
            i.name,
            i.device_type,
            i.backend,
            i.driver,
            i.driver_info,
            l.max_buffer_size,
            mib(l.max_buffer_size),
            l.max_storage_buffer_binding_size,
            mib(l.max_storage_buffer_binding_size),
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_storage_size,
            l.min_storage_buffer_offset_alignment,
            if self
                .features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
            {
                "inside passes"
            } else if self.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
                "per pass"
            } else {
                "none (the profiler falls back to wall clock)"
            },
            self.kernels.describe(),
        )
    }

    /// Fails if the device was lost, or with the first device error that no error scope caught
    /// since the last call (which it then clears: each is reported once). Every submission,
    /// readback and wait calls it.
    pub fn check_errors(&self) -> Result<()> {
        self.check_lost()?;
        let taken = self.uncaptured.lock().unwrap().take();
        match taken {
            Some(message) => Err(Error::Gpu {
                context: format!(
                    "an earlier device call (uncaught; last submission: [{}])",
                    self.last_submit.lock().unwrap()
                ),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Fails if the device was lost.
    pub fn check_lost(&self) -> Result<()> {
        match &*self.lost.lock().unwrap() {
            Some((reason, message)) => Err(Error::DeviceLost {
                reason: reason.clone(),
                message: format!(
                    "{message} (last submission: [{}])",
                    self.last_submit.lock().unwrap()
                ),
            }),
            None => Ok(()),
        }
    }

    /// Checks `size` bytes against the device's limits, naming the buffer when it does not fit.
    pub fn check_size(&self, name: &str, size: u64, storage: bool) -> Result<()> {
        let too_large = |limit_name, limit| Error::BufferTooLarge {
            name: name.to_string(),
            size,
            mib: size as f64 / (1024.0 * 1024.0),
            limit_name,
            limit,
        };
        if size > self.limits.max_buffer_size {
            return Err(too_large("max_buffer_size", self.limits.max_buffer_size));
        }
        if storage && size > self.limits.max_storage_buffer_binding_size {
            return Err(too_large(
                "max_storage_buffer_binding_size",
                self.limits.max_storage_buffer_binding_size,
            ));
        }
        Ok(())
    }

    /// A storage buffer of `size` bytes (rounded up to 4), checked against the limits.
    pub fn storage_buffer(&self, name: &str, size: u64) -> Result<wgpu::Buffer> {
        let size = size.max(4).div_ceil(4) * 4;
        self.check_size(name, size, true)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = now_or_never(scope.pop()).flatten() {
            return Err(Error::Gpu {
                context: format!("allocating buffer `{name}` ({size} bytes)"),
                message: e.to_string(),
            });
        }
        Ok(buffer)
    }

    /// A uniform buffer holding `data` (an op's shape parameters), zero-padded to a multiple of
    /// 16 bytes: the size WGSL gives a uniform struct ([`crate::uniform::Uniform::SIZE`] for the
    /// ops' `Params`), so the struct itself carries no padding.
    pub fn uniform_buffer<T: bytemuck::Pod>(&self, name: &str, data: &T) -> wgpu::Buffer {
        let bytes = bytemuck::bytes_of(data);
        let mut contents = vec![0u8; bytes.len().next_multiple_of(16)];
        contents[..bytes.len()].copy_from_slice(bytes);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: &contents,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A zero-filled f32 tensor.
    pub fn zeros(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        // A product that overflows is a size no device has, not a wrapped small one.
        let n = shape
            .iter()
            .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
            .ok_or_else(|| Error::BufferTooLarge {
                name: name.to_string(),
                size: u64::MAX,
                mib: f64::INFINITY,
                limit_name: "max_buffer_size",
                limit: self.limits.max_buffer_size,
            })?
            / 4;
        let buffer = self.storage_buffer(name, 4 * n)?;
        Ok(Tensor::new(name, Arc::new(buffer), 0, shape))
    }

    /// An f32 tensor holding `data` (which must have `shape.product()` elements).
    pub fn tensor(&self, name: &str, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape {
                op: "upload".into(),
                tensor: name.into(),
                expected: shape.to_vec(),
                got: vec![data.len()],
            });
        }
        let t = self.zeros(name, shape)?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// Overwrites a tensor's contents from the CPU (queued; takes effect at the next submit).
    pub fn write(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        if data.len() != t.len() {
            return Err(Error::Shape {
                op: "write".into(),
                tensor: t.name().into(),
                expected: t.shape().to_vec(),
                got: vec![data.len()],
            });
        }
        if !data.is_empty() {
            self.queue
                .write_buffer(t.buffer(), t.offset(), bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Number of workgroups for `threads` invocations at `wg` per workgroup, folded into two
    /// dimensions once it passes the per-dimension limit (65,535 on most devices). Shaders
    /// recover the flat index as `gid.x + gid.y * nwg.x * WG`.
    pub fn grid(&self, threads: usize, wg: u32) -> [u32; 3] {
        let groups = (threads as u64).div_ceil(wg as u64).max(1);
        let max = self.limits.max_compute_workgroups_per_dimension as u64;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            let y = groups.div_ceil(max);
            let x = groups.div_ceil(y);
            [x as u32, y as u32, 1]
        }
    }

    /// The pipeline for `desc`, compiled on first use and cached under (shader, entry point,
    /// binding list, override constants). Compilation and validation errors name the WGSL file
    /// and entry point.
    pub async fn kernel(&self, desc: KernelDesc<'_>) -> Result<Arc<Kernel>> {
        self.pipelines.kernel(&self.device, desc).await
    }

    /// Replaces the embedded source of `shaders/<name>.wgsl` for this device, before any of its
    /// pipelines is built: for kernel development (try an edited shader without rebuilding)
    /// and for testing the error path. Fails once the shader has been compiled.
    pub fn override_shader(&self, name: &'static str, source: String) -> Result<()> {
        self.pipelines.override_shader(name, source)
    }

    /// Number of distinct pipelines built so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.len()
    }

    /// The WGSL file and entry point (`<shader>.wgsl:<entry>`) of every pipeline built so far,
    /// sorted, each once.
    pub fn pipeline_labels(&self) -> Vec<String> {
        self.pipelines.labels()
    }

    /// Installs `hook` to record every submission from now on (`None` uninstalls it).
    pub fn set_submit_hook(&self, hook: Option<SharedHook>) {
        *self.hook.lock().unwrap() = hook;
    }

    /// Records `dispatches` in order into one compute pass and submits them in one submission.
    /// Validation errors come back naming the WGSL file and entry point of the failing dispatch.
    pub fn submit(&self, dispatches: &[&Dispatch]) -> Result<wgpu::SubmissionIndex> {
        self.submit_with_copies(dispatches.iter().copied(), &[])
    }

    /// [`Gpu::submit`], then in the same submission copies each `(src, dst, dst_offset)`:
    /// `src` whole into `dst` starting `dst_offset` elements in (metrics into a history buffer,
    /// so they are read back every few steps instead of stalling every step).
    /// Takes any re-iterable sequence of dispatches (a training step chains its forward,
    /// backward and update lists), so no list is built per step.
    pub fn submit_with_copies<'a, I>(
        &self,
        dispatches: I,
        copies: &[(&Tensor, &Tensor, usize)],
    ) -> Result<wgpu::SubmissionIndex>
    where
        I: IntoIterator<Item = &'a Dispatch>,
        I::IntoIter: Clone,
    {
        let dispatches = dispatches.into_iter();
        self.check_errors()?;
        for (src, dst, at) in copies {
            if at + src.len() > dst.len() {
                return Err(Error::Shape {
                    op: format!("copy into `{}` at element {at}", dst.name()),
                    tensor: src.name().into(),
                    expected: dst.shape().to_vec(),
                    got: src.shape().to_vec(),
                });
            }
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("submit"),
            });
        // Cloned out of the lock: the hook may submit work of its own.
        let hook = self.hook.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook.lock()
                .unwrap()
                .record(self, &mut encoder, &mut dispatches.clone())?;
        } else {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("ops"),
                timestamp_writes: None,
            });
            for d in dispatches.clone() {
                d.record(&mut pass);
            }
        }
        for (src, dst, at) in copies {
            encoder.copy_buffer_to_buffer(
                src.buffer(),
                src.offset(),
                dst.buffer(),
                dst.offset() + 4 * *at as u64,
                4 * src.len() as u64,
            );
        }
        {
            // Reuses the string's capacity: no allocation per step once warm.
            let mut last = self.last_submit.lock().unwrap();
            last.clear();
            for (i, d) in dispatches.clone().enumerate() {
                if i > 0 {
                    last.push_str(", ");
                }
                last.push_str(d.label());
            }
        }
        let index = self.queue.submit(Some(encoder.finish()));
        if let Some(e) = now_or_never(scope.pop()).flatten() {
            let names: Vec<&str> = dispatches.map(|d| d.label()).collect();
            return Err(Error::Gpu {
                context: format!("dispatches [{}]", names.join(", ")),
                message: e.to_string(),
            });
        }
        Ok(index)
    }

    /// Copies a tensor back to the CPU. Never blocks: on native code someone must poll the
    /// device (see [`Gpu::read_blocking`]); in a browser the event loop does. Fails with a
    /// device error that no error scope caught, one pending now or one raised by the time the
    /// copy is done (the work before it is done then too), so such an error cannot pass silently
    /// into the numbers read.
    pub fn read(&self, t: &Tensor) -> impl Future<Output = Result<Vec<f32>>> + use<> {
        let pending = self.check_errors();
        let uncaptured = self.uncaptured.clone();
        let size = (t.len() * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: size.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        if size > 0 {
            encoder.copy_buffer_to_buffer(t.buffer(), t.offset(), &staging, 0, size);
        }
        self.queue.submit(Some(encoder.finish()));
        let slot: Arc<Mutex<MapSlot>> = Arc::default();
        {
            let slot = slot.clone();
            staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let mut s = slot.lock().unwrap();
                s.result = Some(r.map_err(|e| e.to_string()));
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            });
        }
        let name = t.name().to_string();
        let n = t.len();
        async move {
            pending?;
            let r = MapFuture { slot }.await;
            r.map_err(|message| Error::Readback {
                name: name.clone(),
                message,
            })?;
            let raised = uncaptured.lock().unwrap().take();
            if let Some(message) = raised {
                return Err(Error::Gpu {
                    context: format!("reading back `{name}` (an earlier device call, uncaught)"),
                    message,
                });
            }
            let out = {
                let view = staging
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Readback {
                        name: name.clone(),
                        message: e.to_string(),
                    })?;
                bytemuck::cast_slice::<u8, f32>(&view)[..n].to_vec()
            };
            staging.unmap();
            Ok(out)
        }
    }

    /// [`Gpu::read`] plus the submission index of its copy: submit more work, then
    /// [`Gpu::wait_for`] that index, and the device never idles while the CPU reads.
    pub fn read_later(
        &self,
        t: &Tensor,
    ) -> (
        wgpu::SubmissionIndex,
        impl Future<Output = Result<Vec<f32>>> + use<>,
    ) {
        let fut = self.read(t);
        // `read` submitted its copy last; an empty submission returns the index after it.
        let index = self.queue.submit(std::iter::empty());
        (index, fut)
    }

    /// Blocks until submission `index` (and everything before it) is done (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_for(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| Error::Gpu {
                context: "waiting for a submission".into(),
                message: e.to_string(),
            })?;
        self.check_errors()
    }

    /// [`Gpu::read`], waiting for the device.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_blocking(&self, t: &Tensor) -> Result<Vec<f32>> {
        let fut = self.read(t);
        self.wait()?;
        pollster::block_on(fut)
    }

    /// Blocks until all submitted work is done (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu {
                context: "waiting for the device".into(),
                message: e.to_string(),
            })?;
        self.check_errors()
    }
}

/// Picks an adapter: the one whose name contains `WGPU_ADAPTER_NAME`, else the high-performance one.
async fn choose_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let adapters = instance.enumerate_adapters(backends).await;
        let lower = wanted.to_lowercase();
        let mut names = Vec::new();
        for a in adapters {
            let info = a.get_info();
            if info.name.to_lowercase().contains(&lower) {
                return Ok(a);
            }
            names.push(format!("{} ({:?})", info.name, info.backend));
        }
        if names.is_empty() {
            return Err(Error::NoAdapter {
                detail: String::new(),
            });
        }
        return Err(Error::AdapterNotFound {
            wanted,
            found: names.join(", "),
        });
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::NoAdapter {
            detail: format!(" ({e})"),
        })
}

#[derive(Default)]
struct MapSlot {
    result: Option<std::result::Result<(), String>>,
    waker: Option<Waker>,
}

/// Resolves when `map_async`'s callback has run.
struct MapFuture {
    slot: Arc<Mutex<MapSlot>>,
}

impl Future for MapFuture {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.lock().unwrap();
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl AsRef<wgpu::Device> for Gpu {
    fn as_ref(&self) -> &wgpu::Device {
        &self.device
    }
}
