// Max pool 2x2, stride 2, no padding; odd sizes floor (the last row/column is dropped), as
// PyTorch's MaxPool2d(2). x [N, C, H, W] -> y [N, C, H/2, W/2].
// The gradient goes to the FIRST maximum of each window in row-major order (strict `>` while
// scanning (0,0), (0,1), (1,0), (1,1)), as PyTorch does. The backward recomputes the window's
// argmax from x instead of saving indices: one more read of x, no index buffer, and every dx
// element (including the dropped row/column) written by exactly one invocation.

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// Flat x index of the first maximum of window (oy, ox) in plane `plane`.
fn window_argmax(plane: u32, oy: u32, ox: u32) -> u32 {
    let base = plane * p.h * p.w + (2u * oy) * p.w + 2u * ox;
    var best = base;
    var best_v = x[base];
    let candidates = array<u32, 3>(base + 1u, base + p.w, base + p.w + 1u);
    for (var j = 0u; j < 3u; j++) {
        let v = x[candidates[j]];
        if (v > best_v) {
            best_v = v;
            best = candidates[j];
        }
    }
    return best;
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.h_out * p.w_out) { return; }
    let ox = i % p.w_out;
    let oy = (i / p.w_out) % p.h_out;
    let plane = i / (p.w_out * p.h_out);
    y[i] = x[window_argmax(plane, oy, ox)];
}

// One invocation per input element: it receives dy of its window if it is that window's argmax.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.h * p.w) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let plane = i / (p.w * p.h);
    let oy = iy / 2u;
    let ox = ix / 2u;
    var g = 0.0;
    if (oy < p.h_out && ox < p.w_out && window_argmax(plane, oy, ox) == i) {
        g = dy[(plane * p.h_out + oy) * p.w_out + ox];
    }
    dx[i] = g;
}

// v2 backward: one invocation per 2x2 cell of dx (ceil(H/2) x ceil(W/2) cells per plane), so each
// window's argmax is found once, not once per element of the window as in `backward` (4x the
// x reads; and lavapipe keeps `window_argmax`'s candidate array in memory). The four values are
// named, compared in the same order with the same strict `>`, so the gradient goes to the same
// first maximum. Cells of a dropped last row/column (odd sizes) have no window and write 0;
// every dx element is still written by exactly one invocation.
@compute @workgroup_size(WG)
fn backward_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let ch = (p.h + 1u) / 2u;
    let cw = (p.w + 1u) / 2u;
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * ch * cw) { return; }
    let cx = i % cw;
    let cy = (i / cw) % ch;
    let plane = i / (cw * ch);
    let base = plane * p.h * p.w + (2u * cy) * p.w + 2u * cx;
    if (cy < p.h_out && cx < p.w_out) {
        let a = x[base];
        let b = x[base + 1u];
        let c = x[base + p.w];
        let d = x[base + p.w + 1u];
        var best = 0u;
        var best_v = a;
        if (b > best_v) { best = 1u; best_v = b; }
        if (c > best_v) { best = 2u; best_v = c; }
        if (d > best_v) { best = 3u; }
        let g = dy[(plane * p.h_out + cy) * p.w_out + cx];
        dx[base] = select(0.0, g, best == 0u);
        dx[base + 1u] = select(0.0, g, best == 1u);
        dx[base + p.w] = select(0.0, g, best == 2u);
        dx[base + p.w + 1u] = select(0.0, g, best == 3u);
    } else {
        let has_right = 2u * cx + 1u < p.w;
        let has_below = 2u * cy + 1u < p.h;
        dx[base] = 0.0;
        if (has_right) { dx[base + 1u] = 0.0; }
        if (has_below) { dx[base + p.w] = 0.0; }
        if (has_right && has_below) { dx[base + p.w + 1u] = 0.0; }
    }
}

// v2 forward: `forward` with the window's four values named instead of gathered through
// `window_argmax`'s candidate array (which lavapipe keeps in memory); same order, same `>`.
@compute @workgroup_size(WG)
fn forward_v2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c * p.h_out * p.w_out) { return; }
    let ox = i % p.w_out;
    let oy = (i / p.w_out) % p.h_out;
    let plane = i / (p.w_out * p.h_out);
    let base = plane * p.h * p.w + (2u * oy) * p.w + 2u * ox;
    var best_v = x[base];
    let b = x[base + 1u];
    let c = x[base + p.w];
    let d = x[base + p.w + 1u];
    if (b > best_v) { best_v = b; }
    if (c > best_v) { best_v = c; }
    if (d > best_v) { best_v = d; }
    y[i] = best_v;
}
