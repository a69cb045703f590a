//! The roofline: the best plain WGSL matmul we could write for the adapter (1024^3 f32,
//! register-blocked, no workgroup memory), so that a kernel's GFLOP/s can be read as a share of
//! what this device does for plain WGSL. Variants differ in override constants only (rows per
//! invocation, how A is read, workgroup shape); the fastest is the roofline (the README names it).
//! Each variant's result is checked against a CPU dot product first.
//!
//! Run: `cargo bench --bench roofline -- --warm-up-time 1 --measurement-time 5`.
//! Throughput is in FLOPs (a multiply-add counts 2): criterion's "elem/s" reads as FLOP/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fer_cbam::pipeline::{Binding, KernelDesc};
use fer_cbam::Gpu;
use std::time::Duration;

const M: usize = 1024;
const N: usize = 1024;
const K: usize = 1024;

/// (name, ROWS, A_VEC4, WG_X, WG_Y).
const VARIANTS: [(&str, u32, bool, u32, u32); 5] = [
    ("r8x8_ascalar_wg8x8", 8, false, 8, 8),
    ("r8x8_avec4_wg8x8", 8, true, 8, 8),
    ("r4x8_ascalar_wg8x8", 4, false, 8, 8),
    ("r4x8_avec4_wg8x8", 4, true, 8, 8),
    ("r8x8_ascalar_wg16x4", 8, false, 16, 4),
];

const BINDINGS: &[(u32, Binding)] = &[
    (0, Binding::Uniform),
    (1, Binding::Read),
    (2, Binding::Read),
    (3, Binding::ReadWrite),
    (4, Binding::Read),
];

fn bench(c: &mut Criterion) {
    let gpu = Gpu::new_blocking().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", gpu.info.name);
    gpu.override_shader("roofline", include_str!("roofline.wgsl").to_string())
        .unwrap();
    let fill = |seed: usize, n: usize| -> Vec<f32> {
        (0..n)
            .map(|j| (((j + seed) * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect()
    };
    let a_host = fill(1, M * K);
    let b_host = fill(2, K * N);
    let a = gpu.tensor("a", &[M, K], &a_host).unwrap();
    let b = gpu.tensor("b", &[K, N], &b_host).unwrap();
    let out = gpu.zeros("c", &[M, N]).unwrap();
    let dims = gpu.uniform_buffer("dims", &[M as u32, N as u32, K as u32, 0u32]);

    let mut group = c.benchmark_group("roofline/matmul1024");
    group.throughput(Throughput::Elements((2 * M * N * K) as u64));
    let mut kernels = Vec::new();
    for &(name, rows, vec4_a, wg_x, wg_y) in &VARIANTS {
        let kernel = pollster::block_on(gpu.kernel(KernelDesc {
            shader: "roofline",
            // Its own `struct Dims`: not an engine shader, nothing is appended.
            uniform: None,
            entry: "matmul",
            bindings: BINDINGS,
            constants: &[
                ("ROWS", rows as f64),
                ("A_VEC4", vec4_a as u32 as f64),
                ("WG_X", wg_x as f64),
                ("WG_Y", wg_y as f64),
            ],
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        // Each invocation: ROWS rows x 8 columns.
        let grid = [
            (N / 8).div_ceil(wg_x as usize) as u32,
            (M / rows as usize).div_ceil(wg_y as usize) as u32,
            1,
        ];
        kernels.push((name, kernel, grid, BINDINGS));
    }
    // r8x8_ascalar_wg16x4 with A shared through subgroup shuffles, where the device has them.
    if gpu.features.contains(wgpu::Features::SUBGROUP) {
        gpu.override_shader(
            "roofline_subgroup",
            include_str!("roofline_subgroup.wgsl").to_string(),
        )
        .unwrap();
        let kernel = pollster::block_on(gpu.kernel(KernelDesc {
            shader: "roofline_subgroup",
            uniform: None,
            entry: "matmul",
            bindings: &BINDINGS[..4],
            constants: &[],
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let grid = [(N / 8).div_ceil(16) as u32, (M / 8).div_ceil(4) as u32, 1];
        kernels.push(("r8x8_subgroup_shuffle_wg16x4", kernel, grid, &BINDINGS[..4]));
    } else {
        eprintln!("the device has no subgroup operations: no subgroup variant");
    }
    for (name, kernel, grid, bindings) in kernels {
        let resources = [
            dims.as_entire_binding(),
            a.binding(),
            b.binding(),
            out.binding(),
            a.binding(),
        ];
        let d = kernel
            .dispatch(&gpu, &resources[..bindings.len()], grid)
            .unwrap();
        gpu.write(&out, &vec![f32::NAN; M * N]).unwrap();
        gpu.submit(&[&d]).unwrap();
        let got = gpu.read_blocking(&out).unwrap();
        // Every row and column block is touched by some check (stride coprime to 8 and 1024).
        for idx in (0..M * N).step_by(4099) {
            let (i, j) = (idx / N, idx % N);
            let terms = (0..K).map(|k| a_host[i * K + k] as f64 * b_host[k * N + j] as f64);
            let want: f64 = terms.clone().sum();
            let abs: f64 = terms.map(f64::abs).sum();
            // Higham's bound for an f32 sum of K products: K 2^-24 sum |a b|.
            assert!(
                (got[idx] as f64 - want).abs() <= K as f64 * f32::EPSILON as f64 / 2.0 * abs,
                "{name}: c[{i}][{j}] = {} expected {want}",
                got[idx]
            );
        }
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                gpu.submit(&[&d]).unwrap();
                gpu.wait().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
