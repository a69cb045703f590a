//! softmax_xent at the network's [64, 7] logits (batch 64, 7 classes), forward and backward.
//! Throughput in logits processed.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::ops::softmax_xent::{SoftmaxXent, SoftmaxXentShape};
use fer_cbam::Gpu;

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    let s = SoftmaxXentShape { n: 64, k: 7 };
    let op = pollster::block_on(SoftmaxXent::new(&gpu, s, false)).unwrap();
    let logits: Vec<f32> = (0..64 * 7)
        .map(|i| ((i * 37) % 23) as f32 / 5.0 - 2.0)
        .collect();
    let z = gpu.tensor("logits", &[64, 7], &logits).unwrap();
    let y = gpu.zeros("labels", &[64]).unwrap();
    let labels: Vec<u32> = (0..64).map(|i| i % 7).collect();
    op.write_labels(&gpu, &y, &labels).unwrap();
    let probs = gpu.zeros("probs", &[64, 7]).unwrap();
    let loss = gpu.zeros("loss", &[1]).unwrap();
    let correct = gpu.zeros("correct", &[1]).unwrap();
    let dz = gpu.zeros("dlogits", &[64, 7]).unwrap();
    let forward = op
        .forward(&gpu, &z, &y, None, &probs, &loss, &correct)
        .unwrap();
    let backward = op.backward(&gpu, &probs, &y, None, &dz).unwrap();

    let mut group = c.benchmark_group("softmax_xent");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(64 * 7));
    for (name, dispatch) in [("64x7_forward", &forward), ("64x7_backward", &backward)] {
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
