//! cbam_spatial at the network's four stage shapes for batch 64 and 128x128 images (widths 32,
//! 64, 128, 256 at 64, 32, 16, 8 pixels a side after pooling), forward and backward.
//! Throughput counts the unavoidable traffic of the C-channel tensors: the forward reads F'
//! twice (pooling, gating) and writes F''; the backward reads dF'' twice and F' once and writes
//! dF'. The 1- and 2-channel maps add 1/C of that and are left out.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::cbam_spatial::{CbamSpatial, CbamSpatialShape};
use fer_cbam::Gpu;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    for (width, side) in [(32, 64), (64, 32), (128, 16), (256, 8)] {
        let s = CbamSpatialShape {
            n: 64,
            c: width,
            h: side,
            w: side,
        };
        let gate = pollster::block_on(CbamSpatial::new(&gpu, s)).unwrap();
        let x = gpu.zeros("x", &s.input_shape()).unwrap();
        let y = gpu.zeros("y", &s.input_shape()).unwrap();
        let dy = gpu.zeros("dy", &s.input_shape()).unwrap();
        let dx = gpu.zeros("dx", &s.input_shape()).unwrap();
        let w = gpu.zeros("weight", &s.weight_shape()).unwrap();
        let b = gpu.zeros("bias", &s.bias_shape()).unwrap();
        let dw = gpu.zeros("dweight", &s.weight_shape()).unwrap();
        let db = gpu.zeros("dbias", &s.bias_shape()).unwrap();
        let forward = gate.forward(&gpu, &x, &w, &b, &y).unwrap();
        let backward = gate.backward(&gpu, &x, &dy, &w, &dx, &dw, &db).unwrap();
        let forward: Vec<_> = forward.iter().collect();
        let backward: Vec<_> = backward.iter().collect();
        let bytes = 4 * x.len() as u64;

        let mut group = c.benchmark_group(format!("cbam_spatial/64x{width}x{side}x{side}"));
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(3));
        group.throughput(Throughput::Bytes(3 * bytes));
        group.bench_function("forward", |bch| {
            bch.iter(|| {
                gpu.submit(black_box(&forward)).unwrap();
                gpu.wait().unwrap();
            })
        });
        group.throughput(Throughput::Bytes(4 * bytes));
        group.bench_function("backward", |bch| {
            bch.iter(|| {
                gpu.submit(black_box(&backward)).unwrap();
                gpu.wait().unwrap();
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
