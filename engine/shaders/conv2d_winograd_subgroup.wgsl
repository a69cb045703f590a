// conv2d v3's batched GEMM with A shared through subgroup shuffles: the same product as `gemm`
// in conv2d_winograd.wgsl (C[chunk0 + chunk][e] = A_e B_e over the chunk's share of the
// reduction, 8 rows x 8 columns per invocation in named vec4 registers, B read as two vec4),
// but where every lane of `gemm` loads the 8 A values of its rows for each k (the same 8
// addresses across a row of lanes, gathered lane by lane on lavapipe), lane l of each group of
// 8 lanes loads row l's value and subgroupShuffle hands the 8 round. The roofline bench's same
// change (benches/roofline_subgroup.wgsl) ran 1024^3 at 42-44 GFLOP/s against 30-31 for the
// plain kernel, in one run on lavapipe.
//
// A file of its own: a device without wgpu::Features::SUBGROUP cannot compile a module that
// uses subgroup built-ins at all. The wrapper (src/ops/conv2d_winograd.rs) builds it only where
// the device has them with subgroups of 8 to 64 lanes (`KernelSet::subgroups`): then each
// aligned group of 8 lanes is 8 consecutive invocations, and with GEMM_WX a multiple of 8 they
// share one row block. A group whose rows are past the matrix leaves at once; in a group with
// rows inside, every lane runs the whole loop (its neighbours read its A value), the column
// index clamped, and only the lanes inside the matrix store.
//
// Binding 0 is the uniform `p: Params` (common.wgsl), the one of conv2d_winograd.wgsl.

override TILE: u32 = 2u;
override GEMM_WX: u32 = 16u;
override GEMM_WY: u32 = 4u;
// GEMM_WX * GEMM_WY, the workgroup's invocations (set by the wrapper).
override GEMM_WG: u32 = 64u;

@group(0) @binding(6) var<storage, read> ga: array<f32>;
@group(0) @binding(7) var<storage, read> gb: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> gc: array<vec4<f32>>;

// One-dimensional workgroups (WGSL allows subgroup_invocation_id only there) of
// GEMM_WX x GEMM_WY invocations laid out as `gemm`'s: invocation i is column block i % GEMM_WX,
// row block i / GEMM_WX. grid z = e + E * chunk.
@compute @workgroup_size(GEMM_WG)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) li: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    let n4 = p.gemm_n / 4u;
    let col = (wid.x * GEMM_WX + li % GEMM_WX) * 2u;
    let row = (wid.y * GEMM_WY + li / GEMM_WX) * 8u;
    // Rows past the matrix: the whole aligned group of 8 lanes shares its row block, so it
    // leaves together and no lane that stays reads from one that left.
    if (row >= p.gemm_m) { return; }
    let inside = col < n4;
    let ee = (TILE + 2u) * (TILE + 2u);
    let e = wid.z % ee;
    let chunk = wid.z / ee;
    let k0 = chunk * p.k_chunk;
    let k1 = min(p.gemm_k, k0 + p.k_chunk);
    let lda = p.lda;
    // This lane's row of A for the shuffles (row + 7 < gemm_m: both are multiples of 8).
    let mine = row + (lane & 7u);
    let a_row = e * p.gemm_m * lda + mine * lda;
    let base = lane & ~7u;
    let bb = e * p.b_rows * n4 + min(col, n4 - 2u);
    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);
    for (var k = k0; k < k1; k++) {
        let bi = bb + k * n4;
        let b0 = gb[bi];
        let b1 = gb[bi + 1u];
        let am = ga[a_row + k];
        let a0 = subgroupShuffle(am, base);
        let a1 = subgroupShuffle(am, base + 1u);
        let a2 = subgroupShuffle(am, base + 2u);
        let a3 = subgroupShuffle(am, base + 3u);
        let a4 = subgroupShuffle(am, base + 4u);
        let a5 = subgroupShuffle(am, base + 5u);
        let a6 = subgroupShuffle(am, base + 6u);
        let a7 = subgroupShuffle(am, base + 7u);
        c00 = fma(vec4(a0), b0, c00); c01 = fma(vec4(a0), b1, c01);
        c10 = fma(vec4(a1), b0, c10); c11 = fma(vec4(a1), b1, c11);
        c20 = fma(vec4(a2), b0, c20); c21 = fma(vec4(a2), b1, c21);
        c30 = fma(vec4(a3), b0, c30); c31 = fma(vec4(a3), b1, c31);
        c40 = fma(vec4(a4), b0, c40); c41 = fma(vec4(a4), b1, c41);
        c50 = fma(vec4(a5), b0, c50); c51 = fma(vec4(a5), b1, c51);
        c60 = fma(vec4(a6), b0, c60); c61 = fma(vec4(a6), b1, c61);
        c70 = fma(vec4(a7), b0, c70); c71 = fma(vec4(a7), b1, c71);
    }
    if (!inside) { return; }
    let cb = ((p.chunk0 + chunk) * ee + e) * p.gemm_m * n4 + row * n4 + col;
    gc[cb] = c00; gc[cb + 1u] = c01;
    gc[cb + n4] = c10; gc[cb + n4 + 1u] = c11;
    gc[cb + 2u * n4] = c20; gc[cb + 2u * n4 + 1u] = c21;
    gc[cb + 3u * n4] = c30; gc[cb + 3u * n4 + 1u] = c31;
    gc[cb + 4u * n4] = c40; gc[cb + 4u * n4 + 1u] = c41;
    gc[cb + 5u * n4] = c50; gc[cb + 5u * n4 + 1u] = c51;
    gc[cb + 6u * n4] = c60; gc[cb + 6u * n4 + 1u] = c61;
    gc[cb + 7u * n4] = c70; gc[cb + 7u * n4 + 1u] = c71;
}
