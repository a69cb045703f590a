//! conv2d forward, backward-input and backward-weight at the network's four stage shapes
//! (128x128 input: 3->32 at 128, 32->64 at 64, 64->128 at 32, 128->256 at 16) and the spatial
//! gate's 7x7 2->1 conv at the first two stage sizes, batch 8 and 64, for every kernel version
//! (v4, the gpu set's tiles, is slow on lavapipe by design; v3 and v3f4, Winograd, run the 3x3
//! stages and leave the gate to v2): ids read `conv2d/b64/stage1/forward/v2`,
//! `conv2d/b8/gate128/backward_weight/v1`, `conv2d/b64/stage2/forward/v3`. Each pass counts
//! all its dispatches (v2's split and reduce; v3's transforms, products and reduce).
//! Throughput is in direct-convolution FLOPs (2 N C_out H W C_in k^2 a pass, a multiply-add
//! counting 2, whatever the kernel really computes): criterion's "elem/s" reads as FLOP/s, and
//! for Winograd as the direct-equivalent rate.
//!
//! Run: `cargo bench --bench conv2d` (all; v1 at batch 64 takes seconds per iteration), or
//! filtered and short, e.g.
//! `cargo bench --bench conv2d -- b8/stage1 --warm-up-time 1 --measurement-time 3`.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use fer_cbam::ops::conv2d::{Conv2d, Conv2dShape, Conv2dVersion};
use fer_cbam::Gpu;
use std::time::Duration;

/// (name, c_in, c_out, size, k, pad).
const SHAPES: [(&str, usize, usize, usize, usize, usize); 6] = [
    ("stage0", 3, 32, 128, 3, 1),
    ("stage1", 32, 64, 64, 3, 1),
    ("stage2", 64, 128, 32, 3, 1),
    ("stage3", 128, 256, 16, 3, 1),
    ("gate128", 2, 1, 128, 7, 3),
    ("gate64", 2, 1, 64, 7, 3),
];

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", gpu.info.name);
    for batch in [8usize, 64] {
        let mut group = c.benchmark_group(format!("conv2d/b{batch}"));
        // One iteration of v1 at batch 64 takes seconds: equal-sized samples of few iterations.
        group.sampling_mode(SamplingMode::Flat);
        for &(name, c_in, c_out, s, k, pad) in &SHAPES {
            let shape = Conv2dShape {
                n: batch,
                c_in,
                c_out,
                h: s,
                w: s,
                k,
                pad,
            };
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
            group.throughput(Throughput::Elements(shape.flops()));
            for version in Conv2dVersion::ALL {
                let conv =
                    pollster::block_on(Conv2d::with_version(&gpu, shape, true, version)).unwrap();
                if conv.version() != version {
                    // Winograd does not run the 7x7 gate: that is v2, timed already.
                    continue;
                }
                let v = version.name();
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
                for (pass, dispatches) in &passes {
                    let list: Vec<_> = dispatches.iter().collect();
                    group.bench_function(format!("{name}/{pass}/{v}"), |bencher| {
                        bencher.iter(|| {
                            gpu.submit(&list).unwrap();
                            gpu.wait().unwrap();
                        })
                    });
                }
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    // Defaults; the command line's --warm-up-time / --measurement-time override them.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
