//! ELU (the network's activation) forward and backward at the four stage shapes, batch 64,
//! 128x128 input. Throughput in bytes moved (read x and write y; read x, dy and write dx).
//!
//! Run: `cargo bench --bench activation`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::activation::{Activation, ActivationKind};
use fer_cbam::Gpu;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("activation/b64");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (i, (w, s)) in [(32usize, 128usize), (64, 64), (128, 32), (256, 16)]
        .into_iter()
        .enumerate()
    {
        let shape = [64, w, s, s];
        let n: usize = shape.iter().product();
        let act = pollster::block_on(Activation::new(
            &gpu,
            ActivationKind::Elu { alpha: 1.0 },
            &shape,
        ))
        .unwrap();
        let data: Vec<f32> = (0..n).map(|j| (j % 1000) as f32 / 500.0 - 1.0).collect();
        let x = gpu.tensor("x", &shape, &data).unwrap();
        let y = gpu.zeros("y", &shape).unwrap();
        let dy = gpu.tensor("dy", &shape, &data).unwrap();
        let dx = gpu.zeros("dx", &shape).unwrap();
        let passes = [
            (
                "elu_forward",
                act.forward(&gpu, &x, &y).unwrap(),
                8 * n as u64,
            ),
            (
                "elu_backward",
                act.backward(&gpu, &x, &dy, &dx).unwrap(),
                12 * n as u64,
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
