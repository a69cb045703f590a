//! The synthetic face generator: faces per second at the demo's 32x32, FER2013's 48x48 and the
//! spec's 128x128 (the training loop's prefetch thread makes one per example per epoch).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::data::synthetic::generate;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("synthetic");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for size in [32usize, 48, 128] {
        group.throughput(Throughput::Elements(1));
        let mut i = 0u64;
        group.bench_function(format!("face{size}"), |b| {
            b.iter(|| {
                i += 1;
                black_box(generate(7, i, size))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
