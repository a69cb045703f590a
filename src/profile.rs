//! The per-kernel profiler behind `fer-cbam profile`: runs training steps exactly as
//! [`Network::train_step`](crate::model::Network::train_step) records them, with a timestamp
//! around every dispatch (a [`Recorder`] from [`crate::timing`]), and turns the times into a
//! table per kernel (shader and entry point), a JSON document and a Chrome trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::timing::Recorder;
pub use crate::timing::{DispatchTime, Method};

/// What to profile.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    pub config: crate::model::ModelConfig,
    pub batch: usize,
    /// Profiled steps; as many unprofiled steps follow for the images/s figure.
    pub steps: usize,
    /// `None`: the best the device has.
    pub method: Option<Method>,
    /// Seed of the parameters and the batch.
    pub seed: u64,
}

/// Seconds spent before the first step finished.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Startup {
    /// Opening the adapter and device (filled in by the caller that opened it).
    pub device_s: Option<f64>,
    /// Building the network: every pipeline compiled, every buffer and bind group created.
    pub build_s: f64,
    /// The first training step, submitted and finished (unprofiled).
    pub first_step_s: f64,
}

impl Startup {
    /// From before the device was opened (if known) to the end of the first step.
    pub fn total_s(&self) -> f64 {
        self.device_s.unwrap_or(0.0) + self.build_s + self.first_step_s
    }
}

/// One profiled training step.
#[derive(Clone, Debug, Serialize)]
pub struct StepProfile {
    /// From submission to the device going idle, on the CPU clock.
    pub wall_ms: f64,
    /// Every dispatch of the step, in recording order.
    pub dispatches: Vec<DispatchTime>,
}

/// One row of the table: a kernel (shader and entry point) over all profiled steps.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub kernel: String,
    pub calls: usize,
    pub total_ms: f64,
    /// Share of the profiled steps' wall time.
    pub percent_of_step: f64,
    /// `None` where the kernel's FLOPs are not counted (element-wise kernels).
    pub gflops: Option<f64>,
    pub gbytes_per_s: f64,
}

/// Step-level figures.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Mean over the profiled steps.
    pub step_wall_ms: f64,
    /// Mean over the profiled steps of the sum of their kernels' times.
    pub kernel_sum_ms: f64,
    /// `step_wall_ms - kernel_sum_ms`: submission, barriers, and time no kernel accounts for.
    pub gap_ms: f64,
    /// `step_wall_ms / kernel_sum_ms`.
    pub wall_over_kernels: f64,
    /// Mean wall time of the unprofiled steps after the profiled ones.
    pub plain_step_ms: f64,
    /// Training images per second of the unprofiled steps.
    pub images_per_s: f64,
    /// FLOPs of one training step, as counted by the dispatches.
    pub step_gflop: f64,
    /// The conv2d kernels (all passes) together: counted FLOPs over their time.
    pub conv_gflops: f64,
    /// The conv2d kernels' share of the kernel time.
    pub conv_percent: f64,
}

/// A finished profile.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub adapter: String,
    pub driver: String,
    /// The kernel variants that ran, and why (see [`crate::kernels`]).
    pub kernels: crate::kernels::KernelSet,
    pub method: Method,
    pub method_description: &'static str,
    pub config: crate::model::ModelConfig,
    pub batch: usize,
    pub startup: Startup,
    pub steps: Vec<StepProfile>,
    pub plain_steps_ms: Vec<f64>,
    /// Dispatches whose timestamps ran backwards (their time is reported as 0).
    pub non_monotonic: usize,
}

/// Profiles `opts.steps` training steps of a freshly initialised network on `gpu`: one
/// unprofiled first step (timed from the network's construction), the profiled steps, then as
/// many unprofiled steps for the throughput.
pub fn run(gpu: &Gpu, opts: &ProfileOptions) -> Result<Profile> {
    use crate::model::network::{Network, TrainOptions};
    // The recorder records every submission to the device while it is installed, so two
    // profiles at once (threads sharing a device, as tests do) would each record the other's
    // steps: they run one after the other.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let method = match opts.method {
        None => Method::available(gpu)[0],
        Some(m) if Method::available(gpu).contains(&m) => m,
        Some(m) => {
            return Err(Error::InvalidConfig {
                op: "profile".into(),
                message: format!(
                    "the adapter {:?} does not support the {} method (it has: {})",
                    gpu.info.name,
                    m.name(),
                    Method::available(gpu)
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    };
    if opts.steps == 0 {
        return Err(Error::InvalidConfig {
            op: "profile".into(),
            message: "--steps must be at least 1".into(),
        });
    }
    let t = Instant::now();
    let mut net = pollster::block_on(Network::new(
        gpu,
        &opts.config,
        opts.batch,
        TrainOptions {
            seed: opts.seed as u32,
            ..Default::default()
        },
    ))?;
    net.write_params(gpu, &net.table().init(opts.seed))?;
    let (images, labels) = batch(&opts.config, opts.batch, opts.seed);
    net.write_batch(gpu, &images, &labels)?;
    gpu.wait()?;
    let build_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    net.train_step(gpu, true)?;
    gpu.wait()?;
    let first_step_s = t.elapsed().as_secs_f64();

    let recorder = Arc::new(Mutex::new(Recorder::new(gpu, method)));
    gpu.set_submit_hook(Some(recorder.clone()));
    // Uninstalls the recorder on every path out, errors included.
    struct Uninstall<'a>(&'a Gpu);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            self.0.set_submit_hook(None);
        }
    }
    let guard = Uninstall(gpu);
    let mut steps = Vec::with_capacity(opts.steps);
    for _ in 0..opts.steps {
        let t = Instant::now();
        net.train_step(gpu, true)?;
        gpu.wait()?;
        let wall_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut subs = recorder.lock().unwrap().collect(gpu)?;
        if subs.len() != 1 {
            return Err(Error::InvalidConfig {
                op: "profile".into(),
                message: format!(
                    "a training step made {} submissions, expected 1",
                    subs.len()
                ),
            });
        }
        steps.push(StepProfile {
            wall_ms,
            dispatches: subs.pop().expect("one"),
        });
    }
    let non_monotonic = recorder.lock().unwrap().non_monotonic();
    drop(guard);

    let mut plain_steps_ms = Vec::with_capacity(opts.steps);
    for _ in 0..opts.steps {
        let t = Instant::now();
        net.train_step(gpu, true)?;
        gpu.wait()?;
        plain_steps_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Profile {
        adapter: gpu.info.name.clone(),
        driver: format!("{} {}", gpu.info.driver, gpu.info.driver_info),
        kernels: gpu.kernels.clone(),
        method,
        method_description: method.describe(),
        config: opts.config.clone(),
        batch: opts.batch,
        startup: Startup {
            device_s: None,
            build_s,
            first_step_s,
        },
        steps,
        plain_steps_ms,
        non_monotonic,
    })
}

/// A deterministic batch: pixels in [0, 1), labels cycling through the classes.
fn batch(config: &crate::model::ModelConfig, n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = crate::rng::SplitMix64(seed ^ 0x9e37_79b9);
    let len = n * config.in_channels * config.image_size * config.image_size;
    let images = (0..len).map(|_| rng.next_unit() as f32).collect();
    let k = config.classes.len() as u32;
    let labels = (0..n as u32).map(|i| i % k).collect();
    (images, labels)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        0.0
    } else {
        s / n as f64
    }
}

impl Profile {
    /// One row per kernel, the most expensive first.
    pub fn kernels(&self) -> Vec<KernelRow> {
        let wall_ms: f64 = self.steps.iter().map(|s| s.wall_ms).sum();
        let mut rows: Vec<KernelRow> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut sums: Vec<(u64, u64)> = Vec::new();
        for d in self.steps.iter().flat_map(|s| &s.dispatches) {
            let i = *index.entry(&d.kernel).or_insert_with(|| {
                rows.push(KernelRow {
                    kernel: d.kernel.clone(),
                    calls: 0,
                    total_ms: 0.0,
                    percent_of_step: 0.0,
                    gflops: None,
                    gbytes_per_s: 0.0,
                });
                sums.push((0, 0));
                rows.len() - 1
            });
            rows[i].calls += 1;
            rows[i].total_ms += d.dur_ns / 1e6;
            sums[i].0 += d.flops;
            sums[i].1 += d.bytes;
        }
        for (r, (flops, bytes)) in rows.iter_mut().zip(sums) {
            let s = r.total_ms / 1e3;
            r.percent_of_step = if wall_ms > 0.0 {
                100.0 * r.total_ms / wall_ms
            } else {
                0.0
            };
            if s > 0.0 {
                r.gflops = (flops > 0).then(|| flops as f64 / s / 1e9);
                r.gbytes_per_s = bytes as f64 / s / 1e9;
            }
        }
        rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        rows
    }

    pub fn summary(&self) -> Summary {
        let step_wall_ms = mean(self.steps.iter().map(|s| s.wall_ms));
        let sum_of = |s: &StepProfile| s.dispatches.iter().map(|d| d.dur_ns).sum::<f64>() / 1e6;
        let kernel_sum_ms = mean(self.steps.iter().map(sum_of));
        let plain_step_ms = mean(self.plain_steps_ms.iter().copied());
        let conv = self
            .steps
            .iter()
            .flat_map(|s| &s.dispatches)
            // Every conv2d shader: the direct kernels (conv2d) and Winograd's (conv2d_winograd,
            // conv2d_winograd_subgroup), whose transforms count no FLOPs and whose products
            // count the direct convolution's.
            .filter(|d| {
                let shader = d.kernel.split("::").next().unwrap_or("");
                shader == "conv2d" || shader.starts_with("conv2d_winograd")
            });
        let (conv_flops, conv_ns) = conv.fold((0u64, 0.0), |(f, t), d| (f + d.flops, t + d.dur_ns));
        let all_ns: f64 = self
            .steps
            .iter()
            .flat_map(|s| &s.dispatches)
            .map(|d| d.dur_ns)
            .sum();
        Summary {
            step_wall_ms,
            kernel_sum_ms,
            gap_ms: step_wall_ms - kernel_sum_ms,
            wall_over_kernels: if kernel_sum_ms > 0.0 {
                step_wall_ms / kernel_sum_ms
            } else {
                0.0
            },
            plain_step_ms,
            images_per_s: if plain_step_ms > 0.0 {
                self.batch as f64 / (plain_step_ms / 1e3)
            } else {
                0.0
            },
            step_gflop: self.steps.first().map_or(0.0, |s| {
                s.dispatches.iter().map(|d| d.flops).sum::<u64>() as f64 / 1e9
            }),
            conv_gflops: if conv_ns > 0.0 {
                conv_flops as f64 / conv_ns
            } else {
                0.0
            },
            conv_percent: if all_ns > 0.0 {
                100.0 * conv_ns / all_ns
            } else {
                0.0
            },
        }
    }

    /// The whole profile, the table and the summary as one JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "profile": self,
            "kernels": self.kernels(),
            "summary": self.summary(),
            "startup_total_s": self.startup.total_s(),
        })
    }

    /// Chrome trace format (chrome://tracing, Perfetto): one complete event (`ph: "X"`) per
    /// dispatch, `ts`/`dur` in microseconds, steps as consecutive stretches on one track.
    pub fn chrome_trace(&self) -> serde_json::Value {
        let events: Vec<serde_json::Value> = self
            .steps
            .iter()
            .enumerate()
            .flat_map(|(step, s)| {
                s.dispatches.iter().enumerate().map(move |(i, d)| {
                    serde_json::json!({
                        "name": d.kernel,
                        "cat": "kernel",
                        "ph": "X",
                        "ts": d.start_ns / 1e3,
                        "dur": d.dur_ns / 1e3,
                        "pid": 1,
                        "tid": 1,
                        "args": {
                            "step": step,
                            "index": i,
                            "flops": d.flops,
                            "bytes": d.bytes,
                            "grid": d.grid,
                            "workgroups": d.workgroups,
                            "invocations": d.invocations,
                        },
                    })
                })
            })
            .collect();
        serde_json::json!({
            "traceEvents": events,
            "displayTimeUnit": "ms",
            "otherData": {
                "adapter": self.adapter,
                "method": self.method.name(),
                "batch": self.batch,
                "image_size": self.config.image_size,
            },
        })
    }

    /// The table and summary as text.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let c = &self.config;
        let widths: Vec<String> = c.widths.iter().map(|w| w.to_string()).collect();
        let _ = writeln!(
            o,
            "profile: batch {} x {}x{}, widths {}, attention {:?}; {} profiled step(s)\n\
             adapter: {} ({})\nkernels: {}\nmethod:  {} ({})",
            self.batch,
            c.image_size,
            c.image_size,
            widths.join("-"),
            c.attention,
            self.steps.len(),
            self.adapter,
            self.driver,
            self.kernels.describe(),
            self.method.name(),
            self.method.describe(),
        );
        let _ = writeln!(
            o,
            "\n{:<36} {:>6} {:>11} {:>7} {:>8} {:>7}",
            "kernel (shader::entry)", "calls", "total ms", "% step", "GFLOP/s", "GB/s"
        );
        for r in self.kernels() {
            let _ = writeln!(
                o,
                "{:<36} {:>6} {:>11.2} {:>7.1} {:>8} {:>7.2}",
                r.kernel,
                r.calls,
                r.total_ms,
                r.percent_of_step,
                r.gflops.map_or("-".to_string(), |g| format!("{g:.2}")),
                r.gbytes_per_s,
            );
        }
        if let Some(step) = self.steps.first() {
            let target = self.kernels.target_workgroups as u64;
            let _ = writeln!(
                o,
                "\nevery dispatch of the first profiled step, in order (fill: workgroups against \
                 the {} the {} kernel set aims at)\n{:>4} {:<36} {:>16} {:>10} {:>6} {:>12} {:>6} {:>9}",
                target,
                self.kernels.kind.name(),
                "#",
                "kernel (shader::entry)",
                "grid x,y,z",
                "workgroups",
                "size",
                "invocations",
                "fill",
                "ms"
            );
            for (i, d) in step.dispatches.iter().enumerate() {
                let [x, y, z] = d.grid;
                let fill = 100.0 * d.workgroups as f64 / target.max(1) as f64;
                let _ = writeln!(
                    o,
                    "{:>4} {:<36} {:>16} {:>10} {:>6} {:>12} {:>6} {:>9.3}",
                    i,
                    d.kernel,
                    format!("{x},{y},{z}"),
                    d.workgroups,
                    d.workgroup_size,
                    d.invocations,
                    if fill >= 100.0 {
                        "full".to_string()
                    } else {
                        format!("{fill:.0}%")
                    },
                    d.dur_ns / 1e6
                );
            }
        }
        let s = self.summary();
        let _ = writeln!(
            o,
            "\nstep (profiled, mean): {:.1} ms wall; kernels sum {:.1} ms; gap {:.1} ms \
             (wall / kernels = {:.2})",
            s.step_wall_ms, s.kernel_sum_ms, s.gap_ms, s.wall_over_kernels
        );
        let _ = writeln!(
            o,
            "step (unprofiled, mean of {}): {:.1} ms = {:.2} images/s; {:.2} GFLOP counted per \
             step = {:.2} GFLOP/s",
            self.plain_steps_ms.len(),
            s.plain_step_ms,
            s.images_per_s,
            s.step_gflop,
            if s.plain_step_ms > 0.0 {
                s.step_gflop / (s.plain_step_ms / 1e3)
            } else {
                0.0
            },
        );
        let _ = writeln!(
            o,
            "conv2d kernels: {:.2} GFLOP/s, {:.1}% of the kernel time",
            s.conv_gflops, s.conv_percent
        );
        let st = &self.startup;
        let _ = writeln!(
            o,
            "startup: {}build (pipelines, buffers) {:.2} s, first step {:.2} s; first step \
             finished {:.2} s after start",
            st.device_s
                .map_or(String::new(), |d| format!("device {d:.2} s, ")),
            st.build_s,
            st.first_step_s,
            st.total_s()
        );
        if self.non_monotonic > 0 {
            let _ = writeln!(
                o,
                "warning: {} dispatch(es) had timestamps running backwards; counted as 0 ms",
                self.non_monotonic
            );
        }
        o
    }
}
