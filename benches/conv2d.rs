//! conv2d forward, backward-input and backward-weight at the network's four stage shapes
//! (128x128 input: 3->32 at 128, 32->64 at 64, 64->128 at 32, 128->256 at 16), batch 8 and 64.
//! Throughput is in FLOPs (a multiply-add counts 2): criterion's "elem/s" reads as FLOP/s.
//!
//! Run: `cargo bench --bench conv2d` (all), `cargo bench --bench conv2d -- b8` (batch 8 only).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::conv2d::{Conv2d, Conv2dShape};
use fer_cbam::Gpu;
use std::time::Duration;

const STAGES: [(usize, usize, usize); 4] =
    [(3, 32, 128), (32, 64, 64), (64, 128, 32), (128, 256, 16)];

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", gpu.info.name);
    for batch in [8usize, 64] {
        let mut group = c.benchmark_group(format!("conv2d/b{batch}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(if batch == 64 { 20 } else { 5 }));
        for (i, &(c_in, c_out, s)) in STAGES.iter().enumerate() {
            let shape = Conv2dShape {
                n: batch,
                c_in,
                c_out,
                h: s,
                w: s,
                k: 3,
                pad: 1,
            };
            let conv = pollster::block_on(Conv2d::new(&gpu, shape, true)).unwrap();
            let fill = |name: &str, dims: &[usize]| {
                let n: usize = dims.iter().product();
                let data: Vec<f32> = (0..n)
                    .map(|j| ((j * 7919) % 1000) as f32 / 1000.0 - 0.5)
                    .collect();
                gpu.tensor(name, dims, &data).unwrap()
            };
            let x = fill("x", &shape.input_shape());
            let w = fill("w", &shape.weight_shape());
            let b = fill("b", &[c_out]);
            let y = gpu.zeros("y", &shape.output_shape()).unwrap();
            let dy = fill("dy", &shape.output_shape());
            let dx = gpu.zeros("dx", &shape.input_shape()).unwrap();
            let dw = gpu.zeros("dw", &shape.weight_shape()).unwrap();
            let passes = [
                ("forward", conv.forward(&gpu, &x, &w, Some(&b), &y).unwrap()),
                (
                    "backward_input",
                    conv.backward_input(&gpu, &dy, &w, &dx).unwrap(),
                ),
                (
                    "backward_weight",
                    conv.backward_weight(&gpu, &dy, &x, &dw).unwrap(),
                ),
            ];
            group.throughput(Throughput::Elements(shape.flops()));
            for (name, dispatch) in &passes {
                group.bench_function(format!("stage{i}/{name}"), |bencher| {
                    bencher.iter(|| {
                        gpu.submit(&[dispatch]).unwrap();
                        gpu.wait().unwrap();
                    })
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
