// conv2d v3: Winograd's F(m x m, 3 x 3) for 3x3 convolutions, m = TILE = 2 or 4 (the wrapper,
// src/ops/conv2d_winograd.rs, runs these; docs/kernels/conv2d_winograd.md derives them).
//
// One m x m tile of outputs Y from the a x a input patch d under it (a = m + 2) and the 3x3
// filter g:  Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A.  Summed over input channels the element-wise
// product turns into a*a independent matrix products, so a pass is four kernels:
//
//   filter_transform   U[e][row][col] = (G g G^T)[e]            (once per pass)
//   input_transform    V[e][c][t]     = (B^T d B)[e]            (per tile t of the slice)
//   gemm               C[e]           = A_e B_e                 (a*a products, one dispatch)
//   output_transform   y              = A^T C A (+ bias)        (per tile)
//
// and the weight gradient is dg = G^T [ sum_t (A dY A^T) ⊙ (B^T d B) ] G:
// input_transform of x, output_grad_transform of dy, gemm split over chunks of tiles into
// partials, then weight_reduce adds the chunks in a fixed order and applies G^T . G.
//
// Layouts (all row-major, e = i * a + j the element of the a x a tile):
//   V  [E][c_pad][cols]   c_pad: channels rounded up to 8, cols: tiles rounded up to 8;
//                         padding rows and columns hold zeros.
//   U  [E][rows_pad][k]   rows: output channels (forward) or input channels (FLIP).
//   Z  [E][cols][c_pad]   the output gradient's transform, channel fastest.
//   C  [chunk][E][gemm_m][gemm_n].
// Tile t of a slice is (image - image0, ty, tx) in that order, tx fastest.

override TILE: u32 = 2u;
// The filter transform of the input gradient: rows are input channels and the filter is turned
// by 180 degrees (dx is the convolution of dy with it, padding 2 - pad).
override FLIP: bool = false;
// The GEMM's workgroup (invocations along columns, rows): 16 x 4 as the roofline's; 8 x 8 for
// the weight gradient's small products (8 column blocks of its 64 output channels).
override GEMM_WX: u32 = 16u;
override GEMM_WY: u32 = 4u;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(5) var<storage, read_write> tv: array<f32>;
@group(0) @binding(6) var<storage, read> ga: array<f32>;
@group(0) @binding(7) var<storage, read> gb: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> gc: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> prod: array<f32>;

// The transforms of Lavin and Gray: F(2x2, 3x3) from the points 0, 1, -1, infinity; F(4x4, 3x3)
// from 0, 1, -1, 2, -2, infinity (reference/src/conv2d_winograd.rs checks them in f64).
const BT2 = array<f32, 16>(
    1.0,  0.0, -1.0,  0.0,
    0.0,  1.0,  1.0,  0.0,
    0.0, -1.0,  1.0,  0.0,
    0.0,  1.0,  0.0, -1.0);
const G2 = array<f32, 12>(
    1.0,  0.0, 0.0,
    0.5,  0.5, 0.5,
    0.5, -0.5, 0.5,
    0.0,  0.0, 1.0);
const AT2 = array<f32, 8>(
    1.0, 1.0,  1.0,  0.0,
    0.0, 1.0, -1.0, -1.0);
const BT4 = array<f32, 36>(
    4.0,  0.0, -5.0,  0.0, 1.0, 0.0,
    0.0, -4.0, -4.0,  1.0, 1.0, 0.0,
    0.0,  4.0, -4.0, -1.0, 1.0, 0.0,
    0.0, -2.0, -1.0,  2.0, 1.0, 0.0,
    0.0,  2.0, -1.0, -2.0, 1.0, 0.0,
    0.0,  4.0,  0.0, -5.0, 0.0, 1.0);
const G4 = array<f32, 18>(
     0.25,                 0.0,                  0.0,
    -0.16666666666666666, -0.16666666666666666, -0.16666666666666666,
    -0.16666666666666666,  0.16666666666666666, -0.16666666666666666,
     0.041666666666666664, 0.08333333333333333,  0.16666666666666666,
     0.041666666666666664,-0.08333333333333333,  0.16666666666666666,
     0.0,                  0.0,                  1.0);
const AT4 = array<f32, 24>(
    1.0, 1.0,  1.0, 1.0,  1.0, 0.0,
    0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
    0.0, 1.0,  1.0, 4.0,  4.0, 0.0,
    0.0, 1.0, -1.0, 8.0, -8.0, 1.0);

// The patch side a and the tile's element count a * a; the loops below run to these constants,
// so the compiler unrolls them and keeps the small arrays in registers.
const MAX_A: u32 = 6u;
const MAX_E: u32 = 36u;
fn side() -> u32 { return TILE + 2u; }

fn bt(i: u32, j: u32) -> f32 {
    if (TILE == 2u) { return BT2[i * 4u + j]; }
    return BT4[i * 6u + j];
}
fn g(i: u32, j: u32) -> f32 {
    if (TILE == 2u) { return G2[i * 3u + j]; }
    return G4[i * 3u + j];
}
fn at(i: u32, j: u32) -> f32 {
    if (TILE == 2u) { return AT2[i * 4u + j]; }
    return AT4[i * 6u + j];
}

// Tile t of the slice: (image, ty, tx).
fn tile_of(t: u32) -> vec3<u32> {
    let per_image = p.tiles_h * p.tiles_w;
    return vec3<u32>(p.image0 + t / per_image, (t % per_image) / p.tiles_w, t % p.tiles_w);
}

// U[e][row][col] = (G g G^T)[e], g the filter of (row, col); zero for padding rows.
// One invocation per (row, col) of rows_pad x k.
@compute @workgroup_size(WG)
fn filter_transform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.rows_pad * p.gemm_k) { return; }
    let row = i / p.gemm_k;
    let col = i % p.gemm_k;
    let a = side();
    var f: array<f32, 9>;
    for (var k = 0u; k < 9u; k++) {
        if (row >= p.rows) {
            f[k] = 0.0;
        } else if (FLIP) {
            // weight[co = col][ci = row] turned by 180 degrees.
            f[k] = weight[(col * p.rows + row) * 9u + 8u - k];
        } else {
            f[k] = weight[(row * p.gemm_k + col) * 9u + k];
        }
    }
    // gg = G f (a x 3), then U = gg G^T (a x a).
    var gg: array<f32, 18>;
    for (var r = 0u; r < a; r++) {
        for (var c = 0u; c < 3u; c++) {
            gg[r * 3u + c] = g(r, 0u) * f[c] + g(r, 1u) * f[3u + c] + g(r, 2u) * f[6u + c];
        }
    }
    let e_stride = p.rows_pad * p.gemm_k;
    for (var r = 0u; r < a; r++) {
        for (var c = 0u; c < a; c++) {
            let u = gg[r * 3u] * g(c, 0u) + gg[r * 3u + 1u] * g(c, 1u) + gg[r * 3u + 2u] * g(c, 2u);
            tv[(r * a + c) * e_stride + i] = u;
        }
    }
}

// V[e][c][t] = (B^T d B)[e], d the a x a patch of `src` (channels x h x w per image) whose top
// left is (TILE ty - pad, TILE tx - pad), zero outside the image; zero for padding rows and
// columns. One invocation per (c, t) of c_pad x cols, t fastest (contiguous writes).
@compute @workgroup_size(WG)
fn input_transform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.c_pad * p.cols) { return; }
    let c = i / p.cols;
    let t = i % p.cols;
    let a = side();
    var d: array<f32, MAX_E>;
    let valid = c < p.channels && t < p.tiles;
    let tl = tile_of(t);
    let plane = (tl.x * p.channels + c) * p.h * p.w;
    let y0 = i32(TILE * tl.y) - i32(p.pad);
    let x0 = i32(TILE * tl.z) - i32(p.pad);
    let e_stride = p.c_pad * p.cols;
    if (TILE == 2u) {
        // F(2x2): the four rows of d as vec4, B^T d down the rows, then d B along each row.
        var r: array<vec4<f32>, 4>;
        for (var q = 0u; q < 4u; q++) {
            r[q] = patch_row(valid, plane, y0 + i32(q), x0);
        }
        let v0 = bt2(r[0] - r[2]);
        let v1 = bt2(r[1] + r[2]);
        let v2 = bt2(r[2] - r[1]);
        let v3 = bt2(r[1] - r[3]);
        store4(i, e_stride, 0u, v0);
        store4(i, e_stride, 4u, v1);
        store4(i, e_stride, 8u, v2);
        store4(i, e_stride, 12u, v3);
        return;
    }
    for (var r = 0u; r < a; r++) {
        for (var q = 0u; q < a; q++) {
            let yy = y0 + i32(r);
            let xx = x0 + i32(q);
            var v = 0.0;
            if (valid && yy >= 0 && yy < i32(p.h) && xx >= 0 && xx < i32(p.w)) {
                v = src[plane + u32(yy) * p.w + u32(xx)];
            }
            d[r * a + q] = v;
        }
    }
    // bd = B^T d, then V = bd B (F(4x4): the loops run to constants and unroll).
    var bd: array<f32, MAX_E>;
    for (var r = 0u; r < a; r++) {
        for (var q = 0u; q < a; q++) {
            var s = 0.0;
            for (var k = 0u; k < a; k++) { s += bt(r, k) * d[k * a + q]; }
            bd[r * a + q] = s;
        }
    }
    for (var r = 0u; r < a; r++) {
        for (var q = 0u; q < a; q++) {
            var s = 0.0;
            for (var k = 0u; k < a; k++) { s += bd[r * a + k] * bt(q, k); }
            tv[(r * a + q) * e_stride + i] = s;
        }
    }
}

// F(2x2)'s B^T applied to a vector of four: (v0 - v2, v1 + v2, v2 - v1, v1 - v3).
fn bt2(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(v.x - v.z, v.y + v.z, v.z - v.y, v.y - v.w);
}

// Row y of the patch, columns x0..x0+3 of `src`'s plane, zero outside the image.
fn patch_row(valid: bool, plane: u32, y: i32, x0: i32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (!valid || y < 0 || y >= i32(p.h)) { return v; }
    let row = plane + u32(y) * p.w;
    for (var q = 0; q < 4; q++) {
        let x = x0 + q;
        if (x >= 0 && x < i32(p.w)) { v[q] = src[row + u32(x)]; }
    }
    return v;
}

// Elements e0..e0+3 of invocation i's tile.
fn store4(i: u32, e_stride: u32, e0: u32, v: vec4<f32>) {
    tv[e0 * e_stride + i] = v.x;
    tv[(e0 + 1u) * e_stride + i] = v.y;
    tv[(e0 + 2u) * e_stride + i] = v.z;
    tv[(e0 + 3u) * e_stride + i] = v.w;
}

// Z[e][t][c] = (A dY A^T)[e], dY the TILE x TILE tile of the output gradient `src` (channels x
// h x w per image: the convolution's output) at (TILE ty, TILE tx), zero past its edge; zero for
// padding. One invocation per (t, c) of cols x c_pad, c fastest.
@compute @workgroup_size(WG)
fn output_grad_transform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.c_pad * p.cols) { return; }
    let t = i / p.c_pad;
    let c = i % p.c_pad;
    let a = side();
    let valid = c < p.channels && t < p.tiles;
    let tl = tile_of(t);
    let plane = (tl.x * p.channels + c) * p.h * p.w;
    let e_stride = p.c_pad * p.cols;
    if (TILE == 2u) {
        // F(2x2): A = (A^T)^T maps a pair (u, v) to (u, u + v, u - v, -v), down the two rows
        // of dY and then along each of the four.
        var q0 = vec2<f32>(0.0);
        var q1 = vec2<f32>(0.0);
        let yy = 2u * tl.y;
        let xx = 2u * tl.z;
        if (valid) {
            let row0 = plane + yy * p.w + xx;
            q0.x = src[row0];
            if (xx + 1u < p.w) { q0.y = src[row0 + 1u]; }
            if (yy + 1u < p.h) {
                q1.x = src[row0 + p.w];
                if (xx + 1u < p.w) { q1.y = src[row0 + p.w + 1u]; }
            }
        }
        store4(i, e_stride, 0u, a2(q0));
        store4(i, e_stride, 4u, a2(q0 + q1));
        store4(i, e_stride, 8u, a2(q0 - q1));
        store4(i, e_stride, 12u, a2(-q1));
        return;
    }
    var d: array<f32, 16>;
    for (var r = 0u; r < TILE; r++) {
        for (var q = 0u; q < TILE; q++) {
            let yy = TILE * tl.y + r;
            let xx = TILE * tl.z + q;
            var v = 0.0;
            if (valid && yy < p.h && xx < p.w) { v = src[plane + yy * p.w + xx]; }
            d[r * TILE + q] = v;
        }
    }
    // ad = A dY (a x TILE) with A = (A^T)^T, then Z = ad A^T.
    var ad: array<f32, 24>;
    for (var r = 0u; r < a; r++) {
        for (var q = 0u; q < TILE; q++) {
            var s = 0.0;
            for (var k = 0u; k < TILE; k++) { s += at(k, r) * d[k * TILE + q]; }
            ad[r * TILE + q] = s;
        }
    }
    for (var r = 0u; r < a; r++) {
        for (var q = 0u; q < a; q++) {
            var s = 0.0;
            for (var k = 0u; k < TILE; k++) { s += ad[r * TILE + k] * at(k, q); }
            tv[(r * a + q) * e_stride + i] = s;
        }
    }
}

// F(2x2)'s A applied to a pair: (u, u + v, u - v, -v).
fn a2(v: vec2<f32>) -> vec4<f32> {
    return vec4<f32>(v.x, v.x + v.y, v.x - v.y, -v.y);
}

// C[chunk0 + chunk][e] = A_e B_e over the chunk's share of the reduction: A_e is gemm_m x
// gemm_k with rows lda floats apart (e-stride gemm_m * lda), B_e gemm_k x gemm_n (rows b_rows
// apart per e: V's padding rows are skipped). gemm_m and gemm_n are multiples of 8.
//
// The roofline's shape (benches/roofline.wgsl, its fastest variant on lavapipe): each
// invocation 8 rows x 8 columns held in named vec4 registers, A read as scalars, B as two vec4,
// no workgroup memory; workgroup GEMM_WX x GEMM_WY. grid z = e + E * chunk. (Running the row
// blocks fastest, so that consecutive workgroups share B's columns in cache, measured 10-35%
// slower on lavapipe.)
@compute @workgroup_size(GEMM_WX, GEMM_WY)
fn gemm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = p.gemm_n / 4u;
    let col = gid.x * 2u;
    let row = gid.y * 8u;
    if (col >= n4 || row >= p.gemm_m) { return; }
    let ee = side() * side();
    let e = gid.z % ee;
    let chunk = gid.z / ee;
    let k0 = chunk * p.k_chunk;
    let k1 = min(p.gemm_k, k0 + p.k_chunk);
    let ab = e * p.gemm_m * p.lda + row * p.lda;
    let lda = p.lda;
    let bb = e * p.b_rows * n4 + col;
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
        let a0 = ga[ab + k];
        let a1 = ga[ab + lda + k];
        let a2 = ga[ab + 2u * lda + k];
        let a3 = ga[ab + 3u * lda + k];
        let a4 = ga[ab + 4u * lda + k];
        let a5 = ga[ab + 5u * lda + k];
        let a6 = ga[ab + 6u * lda + k];
        let a7 = ga[ab + 7u * lda + k];
        c00 = fma(vec4(a0), b0, c00); c01 = fma(vec4(a0), b1, c01);
        c10 = fma(vec4(a1), b0, c10); c11 = fma(vec4(a1), b1, c11);
        c20 = fma(vec4(a2), b0, c20); c21 = fma(vec4(a2), b1, c21);
        c30 = fma(vec4(a3), b0, c30); c31 = fma(vec4(a3), b1, c31);
        c40 = fma(vec4(a4), b0, c40); c41 = fma(vec4(a4), b1, c41);
        c50 = fma(vec4(a5), b0, c50); c51 = fma(vec4(a5), b1, c51);
        c60 = fma(vec4(a6), b0, c60); c61 = fma(vec4(a6), b1, c61);
        c70 = fma(vec4(a7), b0, c70); c71 = fma(vec4(a7), b1, c71);
    }
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

// dst[image][c][oy][ox] = (A^T C A)[oy - TILE ty][ox - TILE tx] (+ bias[c]) from the products
// C[e][c][t] (rows_pad x cols per e). One invocation per (c, t) of channels x tiles.
@compute @workgroup_size(WG)
fn output_transform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.channels * p.tiles) { return; }
    let c = i / p.tiles;
    let t = i % p.tiles;
    let a = side();
    let e_stride = p.rows_pad * p.cols;
    if (TILE == 2u) {
        // F(2x2): A^T maps four (m0..m3) to (m0 + m1 + m2, m1 - m2 - m3), down the rows of the
        // product and then along the two that remain.
        let base = c * p.cols + t;
        var r: array<vec4<f32>, 4>;
        for (var q = 0u; q < 4u; q++) {
            let e = 4u * q;
            r[q] = vec4<f32>(prod[e * e_stride + base], prod[(e + 1u) * e_stride + base],
                             prod[(e + 2u) * e_stride + base], prod[(e + 3u) * e_stride + base]);
        }
        let y0 = at2(r[0] + r[1] + r[2]);
        let y1 = at2(r[1] - r[2] - r[3]);
        var b = 0.0;
        if (p.has_bias != 0u) { b = bias[c]; }
        let tl = tile_of(t);
        let yy = 2u * tl.y;
        let xx = 2u * tl.z;
        let row0 = (tl.x * p.channels + c) * p.h * p.w + yy * p.w + xx;
        dst[row0] = y0.x + b;
        if (xx + 1u < p.w) { dst[row0 + 1u] = y0.y + b; }
        if (yy + 1u < p.h) {
            dst[row0 + p.w] = y1.x + b;
            if (xx + 1u < p.w) { dst[row0 + p.w + 1u] = y1.y + b; }
        }
        return;
    }
    var m: array<f32, MAX_E>;
    for (var e = 0u; e < a * a; e++) { m[e] = prod[e * e_stride + c * p.cols + t]; }
    // am = A^T m (TILE x a), then Y = am A.
    var am: array<f32, 24>;
    for (var r = 0u; r < TILE; r++) {
        for (var q = 0u; q < a; q++) {
            var s = 0.0;
            for (var k = 0u; k < a; k++) { s += at(r, k) * m[k * a + q]; }
            am[r * a + q] = s;
        }
    }
    var b = 0.0;
    if (p.has_bias != 0u) { b = bias[c]; }
    let tl = tile_of(t);
    let plane = (tl.x * p.channels + c) * p.h * p.w;
    for (var r = 0u; r < TILE; r++) {
        for (var q = 0u; q < TILE; q++) {
            let yy = TILE * tl.y + r;
            let xx = TILE * tl.z + q;
            if (yy < p.h && xx < p.w) {
                var s = 0.0;
                for (var k = 0u; k < a; k++) { s += am[r * a + k] * at(q, k); }
                dst[plane + yy * p.w + xx] = s + b;
            }
        }
    }
}

// F(2x2)'s A^T applied to four: (v0 + v1 + v2, v1 - v2 - v3).
fn at2(v: vec4<f32>) -> vec2<f32> {
    return vec2<f32>(v.x + v.y + v.z, v.y - v.z - v.w);
}

// Chunks summed in order before their group's sum is added: conv2d's REDUCE_GROUP, set by the
// wrapper.
override REDUCE_GROUP: u32 = 32u;

// dweight[co][ci] = G^T S G with S[e] = sum over chunks of C[chunk][e][ci][co] (gemm_m = c_pad
// rows of input channels, gemm_n columns of output channels), in groups of REDUCE_GROUP chunks.
// One invocation per (co, ci) of channels (c_out) x rows (c_in).
@compute @workgroup_size(WG)
fn weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.channels * p.rows) { return; }
    let co = i / p.rows;
    let ci = i % p.rows;
    let a = side();
    let ee = a * a;
    var s: array<f32, MAX_E>;
    for (var e = 0u; e < ee; e++) {
        let base = (e * p.gemm_m + ci) * p.gemm_n + co;
        let step = ee * p.gemm_m * p.gemm_n;
        var total = 0.0;
        for (var g0 = 0u; g0 < p.chunks; g0 += REDUCE_GROUP) {
            var part = 0.0;
            for (var c = g0; c < min(p.chunks, g0 + REDUCE_GROUP); c++) { part += prod[base + c * step]; }
            total += part;
        }
        s[e] = total;
    }
    // gs = G^T S (3 x a), then dg = gs G.
    var gs: array<f32, 18>;
    for (var r = 0u; r < 3u; r++) {
        for (var q = 0u; q < a; q++) {
            var acc = 0.0;
            for (var k = 0u; k < a; k++) { acc += g(k, r) * s[k * a + q]; }
            gs[r * a + q] = acc;
        }
    }
    for (var r = 0u; r < 3u; r++) {
        for (var q = 0u; q < 3u; q++) {
            var acc = 0.0;
            for (var k = 0u; k < a; k++) { acc += gs[r * a + k] * g(k, q); }
            dst[(co * p.rows + ci) * 9u + r * 3u + q] = acc;
        }
    }
}
