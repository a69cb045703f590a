//! The whole training step (forward, loss, backward, Adam: one submission) and inference (the
//! forward pass) of the spec's network (widths 32-64-128-256, both gates) at batch 64, at the
//! paper's 128x128 and at 48x48 (FER2013's size), with each conv2d version that runs the step
//! (v2 direct, v3 Winograd F(2x2, 3x3), v3f4 F(4x4, 3x3); the device's own kernel set
//! otherwise): ids read `step/b64/s48/train/v3`. Throughput is in images: criterion's "elem/s"
//! reads as images/s.
//!
//! Run: `cargo bench --bench step -- s48` (a 128x128 step takes seconds on lavapipe:
//! `cargo bench --bench step -- s128/train --warm-up-time 1 --measurement-time 30`); one
//! version: `cargo bench --bench step -- train/v3$`. Per-kernel times: `fer-cbam profile`
//! (`--conv v2|v3|...`).

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use fer_cbam::model::network::{Network, TrainOptions};
use fer_cbam::model::ModelConfig;
use fer_cbam::ops::conv2d::Conv2dVersion;
use fer_cbam::Gpu;
use std::time::Duration;

const BATCH: usize = 64;

const VERSIONS: [Conv2dVersion; 3] = [Conv2dVersion::V2, Conv2dVersion::V3, Conv2dVersion::V3F4];

fn bench(c: &mut Criterion) {
    for size in [48usize, 128] {
        for version in VERSIONS {
            // The version is fixed when a device opens: one device per version.
            fer_cbam::kernels::set_conv_choice(version, "benches/step.rs");
            let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
            bench_one(c, &gpu, size, version.name());
        }
    }
}

fn bench_one(c: &mut Criterion, gpu: &Gpu, size: usize, v: &str) {
    eprintln!("{}: conv2d {v}", gpu.info.name);
    {
        let config = ModelConfig {
            image_size: size,
            ..ModelConfig::default()
        };
        let mut net =
            pollster::block_on(Network::new(gpu, &config, BATCH, TrainOptions::default()))
                .unwrap_or_else(|e| panic!("{e}"));
        net.write_params(gpu, &net.table().init(0)).unwrap();
        let pixels = BATCH * config.in_channels * size * size;
        let images: Vec<f32> = (0..pixels)
            .map(|j| ((j * 7919) % 256) as f32 / 255.0)
            .collect();
        let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % 7).collect();
        net.write_batch(gpu, &images, &labels).unwrap();

        let mut group = c.benchmark_group(format!("step/b{BATCH}/s{size}"));
        group.sampling_mode(SamplingMode::Flat);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("train/{v}"), |b| {
            b.iter(|| {
                net.train_step(gpu, true).unwrap();
                gpu.wait().unwrap();
            })
        });
        group.bench_function(format!("inference/{v}"), |b| {
            b.iter(|| {
                net.forward_eval(gpu).unwrap();
                gpu.wait().unwrap();
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
