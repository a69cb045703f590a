//! adam over the network's 434,001 parameters: one step (one dispatch).
//! Throughput in bytes moved: params, grads, m, v read and params, m, v written (28 B/parameter).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::adam::{Adam, AdamConfig};
use fer_cbam::Gpu;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let len = 434_001;
    let adam = pollster::block_on(Adam::new(&gpu, len, AdamConfig::default())).unwrap();
    let data: Vec<f32> = (0..len).map(|i| (i % 101) as f32 / 101.0 - 0.5).collect();
    let p = gpu.tensor("params", &[len], &data).unwrap();
    let g = gpu.tensor("grads", &[len], &data).unwrap();
    let m = gpu.zeros("m", &[len]).unwrap();
    let v = gpu.zeros("v", &[len]).unwrap();
    let step = adam.step(&gpu, &p, &g, &m, &v).unwrap();

    let mut group = c.benchmark_group("adam");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(28 * len as u64));
    group.bench_function("434001_params_step", |b| {
        b.iter(|| {
            black_box(gpu.submit(&[&step]).unwrap());
            gpu.wait().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
