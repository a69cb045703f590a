//! BatchNorm2d forward (training and evaluation) and backward at the default network's four
//! stage shapes, batch 64 (128x128 input: the convs' outputs 32 x 128 x 128, 64 x 64 x 64,
//! 128 x 32 x 32, 256 x 16 x 16), and at the first stage of the 48x48 network. Throughput
//! counts the bytes of the big [N, C, H, W] tensors each pass moves.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::batchnorm2d::{BatchNorm2d, BatchNorm2dShape, BnAffine, BnRunning};
use fer_cbam::Gpu;

const STAGES: &[(usize, usize)] = &[(32, 128), (64, 64), (128, 32), (256, 16), (32, 48)];

fn bench(cr: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let mut group = cr.benchmark_group("batchnorm2d");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for &(c, side) in STAGES {
        let s = BatchNorm2dShape {
            n: 64,
            c,
            h: side,
            w: side,
        };
        let op = pollster::block_on(BatchNorm2d::new(&gpu, s)).unwrap();
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
        let gamma = fill("gamma", &s.channel_shape());
        let beta = fill("beta", &s.channel_shape());
        let rm = gpu.zeros("running_mean", &s.channel_shape()).unwrap();
        let rv = fill("running_var", &s.channel_shape());
        let dgamma = gpu.zeros("dgamma", &s.channel_shape()).unwrap();
        let dbeta = gpu.zeros("dbeta", &s.channel_shape()).unwrap();
        let affine = BnAffine {
            weight: &gamma,
            bias: &beta,
        };
        let running = BnRunning {
            mean: &rm,
            var: &rv,
        };
        let grads = BnAffine {
            weight: &dgamma,
            bias: &dbeta,
        };
        let train = op.forward_train(&gpu, &x, &affine, &running, &y).unwrap();
        let eval = op.forward_eval(&gpu, &x, &affine, &running, &y).unwrap();
        let bwd = op.backward(&gpu, &x, &gamma, &dy, &dx, &grads).unwrap();
        let id = format!("n64_c{c}_{side}x{side}");
        for (name, list, bytes) in [
            ("forward_train", &train, s.forward_bytes()),
            // eval_stats is C values; normalize reads x once and writes y.
            (
                "forward_eval",
                &eval,
                2 * 4 * (s.n * c * side * side) as u64,
            ),
        ] {
            let list: Vec<_> = list.iter().collect();
            group.throughput(Throughput::Bytes(bytes));
            group.bench_function(format!("{name}/{id}"), |b| {
                b.iter(|| {
                    gpu.submit(black_box(&list)).unwrap();
                    gpu.wait().unwrap();
                })
            });
        }
        // The backward reads the statistics the training forward saved: run it once first.
        gpu.submit(&train.iter().collect::<Vec<_>>()).unwrap();
        gpu.wait().unwrap();
        let bwd: Vec<_> = bwd.iter().collect();
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
