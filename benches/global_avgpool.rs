//! global_avgpool at the network's head input: batch 64, 256 channels, 8x8 (128x128 images after
//! four 2x2 pools). Throughput counts the bytes each pass must read and write.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::global_avgpool::{GlobalAvgPool, GlobalAvgPoolShape};
use fer_cbam::Gpu;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let s = GlobalAvgPoolShape {
        n: 64,
        c: 256,
        h: 8,
        w: 8,
    };
    let pool = pollster::block_on(GlobalAvgPool::new(&gpu, s)).unwrap();
    let x = gpu.zeros("x", &s.input_shape()).unwrap();
    let y = gpu.zeros("y", &s.output_shape()).unwrap();
    let dy = gpu.zeros("dy", &s.output_shape()).unwrap();
    let dx = gpu.zeros("dx", &s.input_shape()).unwrap();
    let forward = pool.forward(&gpu, &x, &y).unwrap();
    let backward = pool.backward(&gpu, &dy, &dx).unwrap();
    let bytes = 4 * (x.len() + y.len()) as u64;

    let mut group = c.benchmark_group("global_avgpool/64x256x8x8");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("forward", |b| {
        b.iter(|| {
            gpu.submit(black_box(&[&forward])).unwrap();
            gpu.wait().unwrap();
        })
    });
    group.bench_function("backward", |b| {
        b.iter(|| {
            gpu.submit(black_box(&[&backward])).unwrap();
            gpu.wait().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
