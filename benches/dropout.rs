//! dropout at the head's first dropout, [64, 256] (batch 64), forward and backward.
//! Throughput in bytes moved (one f32 read and one written per element).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::dropout::Dropout;
use fer_cbam::Gpu;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let shape = [64, 256];
    let n = 64 * 256;
    let d = pollster::block_on(Dropout::new(&gpu, &shape, 0.2, 1)).unwrap();
    d.set_step(&gpu, 1);
    let data: Vec<f32> = (0..n).map(|i| (i % 97) as f32 / 97.0).collect();
    let x = gpu.tensor("x", &shape, &data).unwrap();
    let y = gpu.zeros("y", &shape).unwrap();
    let dx = gpu.zeros("dx", &shape).unwrap();
    let forward = d.forward(&gpu, &x, &y).unwrap();
    let backward = d.backward(&gpu, &x, &dx).unwrap();

    let mut group = c.benchmark_group("dropout");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(8 * n as u64));
    for (name, dispatch) in [("64x256_forward", &forward), ("64x256_backward", &backward)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(gpu.submit(&[dispatch]).unwrap());
                gpu.wait().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
