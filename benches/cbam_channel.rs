//! CBAM channel gate forward and backward at the default network's four stage shapes, batch 64
//! (128x128 input: 32 x 64 x 64, 64 x 32 x 32, 128 x 16 x 16, 256 x 8 x 8 after each pooling).
//! Throughput counts the bytes of the big [N, C, H, W] tensors each pass moves (the pooled
//! vectors and the MLP are a rounding error next to them).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::cbam_channel::{CbamChannel, CbamChannelShape, ChannelMlp};
use fer_cbam::Gpu;

const STAGES: &[(usize, usize)] = &[(32, 64), (64, 32), (128, 16), (256, 8)];

fn bench(cr: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let mut group = cr.benchmark_group("cbam_channel");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for &(c, side) in STAGES {
        let s = CbamChannelShape {
            n: 64,
            c,
            h: side,
            w: side,
        };
        let op = pollster::block_on(CbamChannel::new(&gpu, s)).unwrap();
        let fill = |name: &str, shape: &[usize]| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
                .collect();
            gpu.tensor(name, shape, &data).unwrap()
        };
        let x = fill("x", &s.input_shape());
        let dy = fill("dy", &s.input_shape());
        let y = gpu.zeros("y", &s.input_shape()).unwrap();
        let dx = gpu.zeros("dx", &s.input_shape()).unwrap();
        let w1 = fill("fc1.weight", &s.fc1_weight_shape());
        let b1 = fill("fc1.bias", &s.fc1_bias_shape());
        let w2 = fill("fc2.weight", &s.fc2_weight_shape());
        let b2 = fill("fc2.bias", &s.fc2_bias_shape());
        let dw1 = gpu.zeros("dfc1.weight", &s.fc1_weight_shape()).unwrap();
        let db1 = gpu.zeros("dfc1.bias", &s.fc1_bias_shape()).unwrap();
        let dw2 = gpu.zeros("dfc2.weight", &s.fc2_weight_shape()).unwrap();
        let db2 = gpu.zeros("dfc2.bias", &s.fc2_bias_shape()).unwrap();
        let mlp = ChannelMlp {
            fc1_weight: &w1,
            fc1_bias: &b1,
            fc2_weight: &w2,
            fc2_bias: &b2,
        };
        let grads = ChannelMlp {
            fc1_weight: &dw1,
            fc1_bias: &db1,
            fc2_weight: &dw2,
            fc2_bias: &db2,
        };
        let fwd = op.forward(&gpu, &x, &mlp, &y).unwrap();
        let bwd = op.backward(&gpu, &x, &mlp, &dy, &dx, &grads).unwrap();
        let fwd: Vec<_> = fwd.iter().collect();
        let bwd: Vec<_> = bwd.iter().collect();
        let id = format!("n64_c{c}_{side}x{side}");

        group.throughput(Throughput::Bytes(s.forward_bytes()));
        group.bench_function(format!("forward/{id}"), |b| {
            b.iter(|| {
                gpu.submit(black_box(&fwd)).unwrap();
                gpu.wait().unwrap();
            })
        });
        // The backward reads what the forward saved: run the forward once first.
        gpu.submit(&fwd).unwrap();
        gpu.wait().unwrap();
        group.throughput(Throughput::Bytes(s.backward_bytes()));
        group.bench_function(format!("backward/{id}"), |b| {
            b.iter(|| {
                gpu.submit(black_box(&bwd)).unwrap();
                gpu.wait().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
