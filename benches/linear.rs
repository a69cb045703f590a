//! linear at the head's shapes, batch 64: 256 -> 128 and 128 -> 7, forward and each backward.
//! Throughput is in FLOPs (a multiply-add counts 2), reported by criterion as "elements".

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::linear::{Linear, LinearShape};
use fer_cbam::Gpu;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let mut group = c.benchmark_group("linear");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (fi, fo) in [(256, 128), (128, 7)] {
        let s = LinearShape {
            n: 64,
            in_features: fi,
            out_features: fo,
        };
        let lin = pollster::block_on(Linear::new(&gpu, s, true)).unwrap();
        let fill = |name: &str, shape: &[usize]| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            gpu.tensor(name, shape, &data).unwrap()
        };
        let x = fill("x", &s.input_shape());
        let w = fill("w", &s.weight_shape());
        let b = fill("b", &[fo]);
        let dy = fill("dy", &s.output_shape());
        let y = gpu.zeros("y", &s.output_shape()).unwrap();
        let dx = gpu.zeros("dx", &s.input_shape()).unwrap();
        let dw = gpu.zeros("dw", &s.weight_shape()).unwrap();
        let db = gpu.zeros("db", &[fo]).unwrap();
        let forward = lin.forward(&gpu, &x, &w, Some(&b), &y).unwrap();
        let backward = [
            lin.backward_input(&gpu, &dy, &w, &dx).unwrap(),
            lin.backward_weight(&gpu, &dy, &x, &dw).unwrap(),
            lin.backward_bias(&gpu, &dy, &db).unwrap(),
        ];
        group.throughput(Throughput::Elements(s.flops()));
        group.bench_function(format!("{fi}x{fo}_batch64_forward"), |bch| {
            bch.iter(|| {
                black_box(gpu.submit(&[&forward]).unwrap());
                gpu.wait().unwrap();
            })
        });
        // dx and dW each cost one forward's FLOPs; db is negligible.
        group.throughput(Throughput::Elements(2 * s.flops()));
        group.bench_function(format!("{fi}x{fo}_batch64_backward"), |bch| {
            bch.iter(|| {
                black_box(
                    gpu.submit(&[&backward[0], &backward[1], &backward[2]])
                        .unwrap(),
                );
                gpu.wait().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
