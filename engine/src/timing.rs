//! Timing of dispatches on the device: a [`Recorder`] installed as the [`Gpu`]'s
//! [`SubmitHook`] records every submission with a timestamp around each dispatch, using the
//! best method the device has (see [`Method`]): one compute pass with a timestamp written
//! between dispatches; else one pass per dispatch with the pass's begin and end timestamps;
//! else each dispatch submitted on its own and timed on the CPU clock. Native only: reading the
//! times back blocks. The front end (`fer-cbam profile`, its table, JSON and trace) is the
//! application's `profile` module.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{Gpu, SubmitHook};
use crate::pipeline::Dispatch;

/// How dispatch times are taken, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `ComputePass::write_timestamp` between dispatches of the step's one compute pass
    /// (`TIMESTAMP_QUERY_INSIDE_PASSES`): the step runs as it does unprofiled.
    InsidePasses,
    /// One compute pass per dispatch, each with begin/end timestamps (`TIMESTAMP_QUERY`): the
    /// time between passes is not attributed to any kernel.
    PerPass,
    /// Each dispatch submitted alone and waited for, timed on the CPU clock: includes the
    /// submission and wake-up latency of every dispatch.
    WallClock,
}

impl Method {
    /// Every method the device supports, best first (wall clock always works).
    pub fn available(gpu: &Gpu) -> Vec<Method> {
        let mut m = Vec::new();
        if gpu.features.contains(
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES,
        ) {
            m.push(Method::InsidePasses);
        }
        if gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            m.push(Method::PerPass);
        }
        m.push(Method::WallClock);
        m
    }

    /// What the table says about the method.
    pub fn describe(self) -> &'static str {
        match self {
            Method::InsidePasses => {
                "GPU timestamps between dispatches in one compute pass (TIMESTAMP_QUERY_INSIDE_PASSES)"
            }
            Method::PerPass => {
                "GPU timestamps at the start and end of one compute pass per dispatch (TIMESTAMP_QUERY)"
            }
            Method::WallClock => {
                "CPU wall clock around each dispatch submitted and waited for alone (no timestamp queries)"
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::InsidePasses => "inside-passes",
            Method::PerPass => "per-pass",
            Method::WallClock => "wall-clock",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Method, String> {
        match s {
            "inside-passes" => Ok(Method::InsidePasses),
            "per-pass" => Ok(Method::PerPass),
            "wall-clock" => Ok(Method::WallClock),
            _ => Err(format!(
                "unknown profiling method {s:?} (inside-passes, per-pass, wall-clock)"
            )),
        }
    }
}

/// One dispatch's measured time.
#[derive(Clone, Debug, Serialize)]
pub struct DispatchTime {
    /// `shader::entry`, what the table groups by.
    pub kernel: String,
    /// Start, in nanoseconds from the first measured dispatch of the run (the GPU's clock for
    /// timestamp methods, the CPU's for wall clock).
    pub start_ns: f64,
    pub dur_ns: f64,
    pub flops: u64,
    pub bytes: u64,
    /// The grid launched (x, y, z) and its total.
    pub grid: [u32; 3],
    pub workgroups: u64,
    /// Invocations per workgroup (x * y * z of `@workgroup_size`).
    pub workgroup_size: u32,
    /// Workgroups times their size.
    pub invocations: u64,
}

/// What a submission's dispatches are, kept until their times are read back.
struct Meta {
    kernel: String,
    flops: u64,
    bytes: u64,
    grid: [u32; 3],
    workgroup_size: u32,
}

enum Pending {
    /// Timestamps resolved into `readback` (`count` u64s) by the submission itself.
    Queries {
        meta: Vec<Meta>,
        readback: wgpu::Buffer,
        count: u32,
    },
    /// Already timed (wall clock): (start, duration) in ns from the recorder's origin.
    Timed {
        meta: Vec<Meta>,
        times: Vec<(f64, f64)>,
    },
}

/// Installed on a [`Gpu`] while profiling (as its [`SubmitHook`]): records every submission's
/// dispatches with timestamps.
pub struct Recorder {
    method: Method,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
    origin: Instant,
    /// The first tick read back: GPU times are reported from it.
    base_tick: Option<u64>,
    pending: Vec<Pending>,
    /// Dispatches whose end timestamp came before their start (clamped to 0 and counted).
    non_monotonic: usize,
}

impl Recorder {
    /// A recorder timing with `method`, which the device must support ([`Method::available`]).
    pub fn new(gpu: &Gpu, method: Method) -> Recorder {
        Recorder {
            method,
            period_ns: gpu.queue.get_timestamp_period() as f64,
            origin: Instant::now(),
            base_tick: None,
            pending: Vec::new(),
            non_monotonic: 0,
        }
    }

    /// Dispatches whose end timestamp came before their start (their time is reported as 0).
    pub fn non_monotonic(&self) -> usize {
        self.non_monotonic
    }

    /// Reads back every submission recorded since the last call (waits for the device), one
    /// list of dispatch times per submission.
    pub fn collect(&mut self, gpu: &Gpu) -> Result<Vec<Vec<DispatchTime>>> {
        let mut out = Vec::new();
        for p in std::mem::take(&mut self.pending) {
            let (meta, times) = match p {
                Pending::Timed { meta, times } => (meta, times),
                Pending::Queries {
                    meta,
                    readback,
                    count,
                } => {
                    let ticks = read_u64s(gpu, &readback, count as usize)?;
                    let base = *self.base_tick.get_or_insert(ticks[0]);
                    let ns = |t: u64| (t as i128 - base as i128) as f64 * self.period_ns;
                    let pairs: Vec<(u64, u64)> = match self.method {
                        Method::InsidePasses => ticks.windows(2).map(|w| (w[0], w[1])).collect(),
                        _ => ticks.chunks(2).map(|c| (c[0], c[1])).collect(),
                    };
                    let mut times = Vec::with_capacity(pairs.len());
                    for (a, b) in pairs {
                        let dur = if b < a {
                            self.non_monotonic += 1;
                            0.0
                        } else {
                            (b - a) as f64 * self.period_ns
                        };
                        times.push((ns(a), dur));
                    }
                    (meta, times)
                }
            };
            out.push(
                meta.into_iter()
                    .zip(times)
                    .map(|(m, (start_ns, dur_ns))| {
                        let workgroups = m.grid.iter().map(|&v| v as u64).product::<u64>();
                        DispatchTime {
                            kernel: m.kernel,
                            start_ns,
                            dur_ns,
                            flops: m.flops,
                            bytes: m.bytes,
                            grid: m.grid,
                            workgroups,
                            workgroup_size: m.workgroup_size,
                            invocations: workgroups * m.workgroup_size as u64,
                        }
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}

impl SubmitHook for Recorder {
    /// Records `dispatches` into `encoder` with this recorder's method.
    fn record(
        &mut self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        dispatches: &mut dyn Iterator<Item = &Dispatch>,
    ) -> Result<()> {
        let list: Vec<&Dispatch> = dispatches.collect();
        let meta: Vec<Meta> = list
            .iter()
            .map(|d| Meta {
                kernel: format!("{}::{}", d.shader, d.entry),
                flops: d.flops,
                bytes: d.bytes,
                grid: d.workgroups,
                workgroup_size: d.workgroup_size.iter().product(),
            })
            .collect();
        let n = list.len() as u32;
        let count = match self.method {
            Method::InsidePasses => n + 1,
            Method::PerPass => 2 * n,
            Method::WallClock => {
                // Flush the queued buffer writes (the batch, the step's uniforms) first, so
                // their copies are not charged to the first dispatch.
                gpu.queue.submit(std::iter::empty());
                poll_wait(gpu)?;
                let mut times = Vec::with_capacity(list.len());
                for d in &list {
                    let mut enc =
                        gpu.device
                            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                                label: Some("profile"),
                            });
                    {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: Some(d.label()),
                            timestamp_writes: None,
                        });
                        d.record(&mut pass);
                    }
                    let buf = enc.finish();
                    let t0 = Instant::now();
                    gpu.queue.submit(Some(buf));
                    poll_wait(gpu)?;
                    let start = t0.duration_since(self.origin).as_secs_f64() * 1e9;
                    times.push((start, t0.elapsed().as_secs_f64() * 1e9));
                }
                self.pending.push(Pending::Timed { meta, times });
                return Ok(());
            }
        };
        if count == 0 {
            self.pending.push(Pending::Timed {
                meta,
                times: Vec::new(),
            });
            return Ok(());
        }
        if count > wgpu::QUERY_SET_MAX_QUERIES {
            return Err(Error::InvalidConfig {
                op: "profile".into(),
                message: format!(
                    "{n} dispatches in one submission need {count} timestamp queries, more than \
                     a query set holds ({}); use --method wall-clock",
                    wgpu::QUERY_SET_MAX_QUERIES
                ),
            });
        }
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        match self.method {
            Method::InsidePasses => {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("ops"),
                    timestamp_writes: None,
                });
                pass.write_timestamp(&queries, 0);
                for (i, d) in list.iter().enumerate() {
                    d.record(&mut pass);
                    pass.write_timestamp(&queries, i as u32 + 1);
                }
            }
            Method::PerPass => {
                for (i, d) in list.iter().enumerate() {
                    let i = i as u32;
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some(d.label()),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &queries,
                            beginning_of_pass_write_index: Some(2 * i),
                            end_of_pass_write_index: Some(2 * i + 1),
                        }),
                    });
                    d.record(&mut pass);
                }
            }
            Method::WallClock => unreachable!("handled above"),
        }
        let size = 8 * count as u64;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile.resolve"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile.readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.resolve_query_set(&queries, 0..count, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &readback, 0, size);
        self.pending.push(Pending::Queries {
            meta,
            readback,
            count,
        });
        Ok(())
    }
}

fn poll_wait(gpu: &Gpu) -> Result<()> {
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map(|_| ())
        .map_err(|e| Error::Gpu {
            context: "profile: waiting for the device".into(),
            message: e.to_string(),
        })
}

fn read_u64s(gpu: &Gpu, buffer: &wgpu::Buffer, n: usize) -> Result<Vec<u64>> {
    let done: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>> = Arc::default();
    {
        let done = done.clone();
        buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            *done.lock().unwrap() = Some(r)
        });
    }
    poll_wait(gpu)?;
    let err = |message: String| Error::Readback {
        name: "profile timestamps".into(),
        message,
    };
    match done.lock().unwrap().take() {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(err(e.to_string())),
        None => return Err(err("the map callback did not run".into())),
    }
    let v = {
        let view = buffer
            .slice(..)
            .get_mapped_range()
            .map_err(|e| err(e.to_string()))?;
        bytemuck::cast_slice::<u8, u64>(&view)[..n].to_vec()
    };
    buffer.unmap();
    Ok(v)
}
