// The roofline: the fastest plain WGSL f32 matmul we could write for this device, C = A B with
// A [M, K], B [K, N], C [M, N] row-major, M and N multiples of the block, K any.
//
// Each invocation computes ROWS x 8 outputs held in named vec4 registers (lavapipe's compiler
// keeps arrays indexed by loop variables in memory, so there are none), no workgroup memory
// (a workgroup barrier is expensive on lavapipe). Override constants pick the variant:
// ROWS (4 or 8 rows per invocation), A_VEC4 (A read as vec4 along K, four k per iteration,
// instead of one scalar per row per k) and the workgroup shape WG_X x WG_Y.

override ROWS: u32 = 8u;
override A_VEC4: bool = false;
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

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

// The rows of A as vec4 along K (the same buffer, read four k at a time when K % 4 == 0).
@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;

@compute @workgroup_size(WG_X, WG_Y)
fn matmul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = dims.n / 4u;
    let col = gid.x * 2u;
    let row = gid.y * ROWS;
    if (col >= n4 || row >= dims.m) {
        return;
    }
    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
    var c20 = vec4<f32>(0.0); var c21 = vec4<f32>(0.0);
    var c30 = vec4<f32>(0.0); var c31 = vec4<f32>(0.0);
    var c40 = vec4<f32>(0.0); var c41 = vec4<f32>(0.0);
    var c50 = vec4<f32>(0.0); var c51 = vec4<f32>(0.0);
    var c60 = vec4<f32>(0.0); var c61 = vec4<f32>(0.0);
    var c70 = vec4<f32>(0.0); var c71 = vec4<f32>(0.0);
    let kk = dims.k;
    if (A_VEC4) {
        let k4 = kk / 4u;
        for (var q = 0u; q < k4; q++) {
            let r0 = a4[(row + 0u) * k4 + q];
            let r1 = a4[(row + 1u) * k4 + q];
            let r2 = a4[(row + 2u) * k4 + q];
            let r3 = a4[(row + 3u) * k4 + q];
            var r4 = vec4<f32>(0.0); var r5 = vec4<f32>(0.0);
            var r6 = vec4<f32>(0.0); var r7 = vec4<f32>(0.0);
            if (ROWS == 8u) {
                r4 = a4[(row + 4u) * k4 + q];
                r5 = a4[(row + 5u) * k4 + q];
                r6 = a4[(row + 6u) * k4 + q];
                r7 = a4[(row + 7u) * k4 + q];
            }
            for (var j = 0u; j < 4u; j++) {
                let bi = (4u * q + j) * n4 + col;
                let b0 = b[bi];
                let b1 = b[bi + 1u];
                c00 = fma(vec4(r0[j]), b0, c00); c01 = fma(vec4(r0[j]), b1, c01);
                c10 = fma(vec4(r1[j]), b0, c10); c11 = fma(vec4(r1[j]), b1, c11);
                c20 = fma(vec4(r2[j]), b0, c20); c21 = fma(vec4(r2[j]), b1, c21);
                c30 = fma(vec4(r3[j]), b0, c30); c31 = fma(vec4(r3[j]), b1, c31);
                if (ROWS == 8u) {
                    c40 = fma(vec4(r4[j]), b0, c40); c41 = fma(vec4(r4[j]), b1, c41);
                    c50 = fma(vec4(r5[j]), b0, c50); c51 = fma(vec4(r5[j]), b1, c51);
                    c60 = fma(vec4(r6[j]), b0, c60); c61 = fma(vec4(r6[j]), b1, c61);
                    c70 = fma(vec4(r7[j]), b0, c70); c71 = fma(vec4(r7[j]), b1, c71);
                }
            }
        }
    } else {
        for (var k = 0u; k < kk; k++) {
            let bi = k * n4 + col;
            let b0 = b[bi];
            let b1 = b[bi + 1u];
            let a0 = a[(row + 0u) * kk + k];
            let a1 = a[(row + 1u) * kk + k];
            let a2 = a[(row + 2u) * kk + k];
            let a3 = a[(row + 3u) * kk + k];
            c00 = fma(vec4(a0), b0, c00); c01 = fma(vec4(a0), b1, c01);
            c10 = fma(vec4(a1), b0, c10); c11 = fma(vec4(a1), b1, c11);
            c20 = fma(vec4(a2), b0, c20); c21 = fma(vec4(a2), b1, c21);
            c30 = fma(vec4(a3), b0, c30); c31 = fma(vec4(a3), b1, c31);
            if (ROWS == 8u) {
                let a4_ = a[(row + 4u) * kk + k];
                let a5 = a[(row + 5u) * kk + k];
                let a6 = a[(row + 6u) * kk + k];
                let a7 = a[(row + 7u) * kk + k];
                c40 = fma(vec4(a4_), b0, c40); c41 = fma(vec4(a4_), b1, c41);
                c50 = fma(vec4(a5), b0, c50); c51 = fma(vec4(a5), b1, c51);
                c60 = fma(vec4(a6), b0, c60); c61 = fma(vec4(a6), b1, c61);
                c70 = fma(vec4(a7), b0, c70); c71 = fma(vec4(a7), b1, c71);
            }
        }
    }
    c[(row + 0u) * n4 + col] = c00; c[(row + 0u) * n4 + col + 1u] = c01;
    c[(row + 1u) * n4 + col] = c10; c[(row + 1u) * n4 + col + 1u] = c11;
    c[(row + 2u) * n4 + col] = c20; c[(row + 2u) * n4 + col + 1u] = c21;
    c[(row + 3u) * n4 + col] = c30; c[(row + 3u) * n4 + col + 1u] = c31;
    if (ROWS == 8u) {
        c[(row + 4u) * n4 + col] = c40; c[(row + 4u) * n4 + col + 1u] = c41;
        c[(row + 5u) * n4 + col] = c50; c[(row + 5u) * n4 + col + 1u] = c51;
        c[(row + 6u) * n4 + col] = c60; c[(row + 6u) * n4 + col + 1u] = c61;
        c[(row + 7u) * n4 + col] = c70; c[(row + 7u) * n4 + col + 1u] = c71;
    }
}
