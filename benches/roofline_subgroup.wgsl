// The roofline matmul (roofline.wgsl, 8 rows x 8 columns per invocation, workgroup 16 x 4) with
// A shared through subgroup operations: instead of every lane loading the 8 A values of its
// rows for each k (the same 8 addresses across a row of lanes, gathered lane by lane), lane l
// of each group of 8 lanes loads row l's value and the 8 are passed round with subgroupShuffle.
// Needs subgroups of a multiple of 8 lanes whose groups of 8 share a workgroup row (lavapipe:
// 8; NVIDIA: 32); the bench runs it only where the device has wgpu::Features::SUBGROUP. (naga
// 30 takes the subgroup built-ins from that feature and rejects WGSL's `enable subgroups;`.)

struct Dims {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

// One-dimensional workgroups (WGSL allows subgroup_invocation_id only there) laid out as the
// roofline's 16 x 4: invocation i is column block i % 16, row block i / 16.
@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(local_invocation_index) li: u32,
          @builtin(subgroup_invocation_id) lane: u32) {
    let n4 = dims.n / 4u;
    let col = (wid.x * 16u + li % 16u) * 2u;
    let row = (wid.y * 4u + li / 16u) * 8u;
    // No early return: every lane takes part in the shuffles (the bench's sizes are whole
    // blocks).
    let base = lane & ~7u;
    let mine = row + (lane & 7u);
    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);
    let kk = dims.k;
    for (var k = 0u; k < kk; k++) {
        let bi = k * n4 + col;
        let b0 = b[bi];
        let b1 = b[bi + 1u];
        let am = a[mine * kk + k];
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
    c[(row + 0u) * n4 + col] = c00; c[(row + 0u) * n4 + col + 1u] = c01;
    c[(row + 1u) * n4 + col] = c10; c[(row + 1u) * n4 + col + 1u] = c11;
    c[(row + 2u) * n4 + col] = c20; c[(row + 2u) * n4 + col + 1u] = c21;
    c[(row + 3u) * n4 + col] = c30; c[(row + 3u) * n4 + col + 1u] = c31;
    c[(row + 4u) * n4 + col] = c40; c[(row + 4u) * n4 + col + 1u] = c41;
    c[(row + 5u) * n4 + col] = c50; c[(row + 5u) * n4 + col + 1u] = c51;
    c[(row + 6u) * n4 + col] = c60; c[(row + 6u) * n4 + col + 1u] = c61;
    c[(row + 7u) * n4 + col] = c70; c[(row + 7u) * n4 + col + 1u] = c71;
}
