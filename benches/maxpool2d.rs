//! 2x2 max pool forward and backward at the four stage shapes, batch 64, 128x128 input.
//! Throughput in bytes moved (forward: read x, write y; backward: read x, dy, write dx).
//!
//! The backward runs in both versions (ids `stage0/backward/v1`, `stage0/backward/v2`).
//!
//! Run: `cargo bench --bench maxpool2d`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::maxpool2d::{MaxPool2d, MaxPool2dShape, MaxPool2dVersion};
use fer_cbam::Gpu;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("maxpool2d/b64");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (i, (w, s)) in [(32usize, 128usize), (64, 64), (128, 32), (256, 16)]
        .into_iter()
        .enumerate()
    {
        let shape = MaxPool2dShape {
            n: 64,
            c: w,
            h: s,
            w: s,
        };
        let n_in: usize = shape.input_shape().iter().product();
        let n_out: usize = shape.output_shape().iter().product();
        let pool = pollster::block_on(MaxPool2d::new(&gpu, shape)).unwrap();
        let pool_v1 =
            pollster::block_on(MaxPool2d::with_version(&gpu, shape, MaxPool2dVersion::V1)).unwrap();
        let data: Vec<f32> = (0..n_in).map(|j| ((j * 7919) % 1000) as f32).collect();
        let x = gpu.tensor("x", &shape.input_shape(), &data).unwrap();
        let y = gpu.zeros("y", &shape.output_shape()).unwrap();
        let dy = gpu
            .tensor("dy", &shape.output_shape(), &data[..n_out])
            .unwrap();
        let dx = gpu.zeros("dx", &shape.input_shape()).unwrap();
        let passes = [
            (
                "forward",
                pool.forward(&gpu, &x, &y).unwrap(),
                4 * (n_in + n_out) as u64,
            ),
            (
                "backward/v1",
                pool_v1.backward(&gpu, &x, &dy, &dx).unwrap(),
                4 * (2 * n_in + n_out) as u64,
            ),
            (
                "backward/v2",
                pool.backward(&gpu, &x, &dy, &dx).unwrap(),
                4 * (2 * n_in + n_out) as u64,
            ),
        ];
        for (name, d, bytes) in &passes {
            group.throughput(Throughput::Bytes(*bytes));
            group.bench_function(format!("stage{i}/{name}"), |b| {
                b.iter(|| {
                    gpu.submit(&[d]).unwrap();
                    gpu.wait().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
