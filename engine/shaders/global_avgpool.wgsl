// Global average pool over H x W: x [N, C, H, W] -> y [N, C]; backward dx = dy / (H W) broadcast.
//
// The forward computes one output per invocation, summing its plane in a fixed order
// (row-major, in blocks of BLOCK elements whose sums are then added in order: an accumulator
// takes at most BLOCK + H W / BLOCK additions), so results are bit-identical run to run. The
// mean divides the f32 sum by H*W (one rounding) rather than multiplying by a rounded reciprocal.
// flat() (common.wgsl) gives the flat invocation index: grids fold into 2-D past 65,535.

// (n, c) planes per invocation of the backward.
override ROWS: u32 = 16u;
// Elements per partial sum of the forward.
const BLOCK: u32 = 256u;

// Binding 0 is the uniform `p: Params` (common.wgsl).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

// y[n, c] = (sum_{j < H W} x[n, c, j]) / (H W)
@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.n * p.c) { return; }
    let base = i * p.hw;
    var acc = 0.0;
    for (var j0 = 0u; j0 < p.hw; j0 += BLOCK) {
        var part = 0.0;
        for (var j = j0; j < min(j0 + BLOCK, p.hw); j++) {
            part += x[base + j];
        }
        acc += part;
    }
    y[i] = acc / f32(p.hw);
}

// dx[n, c, j] = dy[n, c] / (H W), for one position j and a block of ROWS consecutive planes
// (n, c) per invocation: consecutive invocations write consecutive positions (coalesced), and
// the index division (slow on CPU Vulkan) is paid once per ROWS elements instead of per element.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let planes = p.n * p.c;
    let i = flat(gid, nwg);
    if (i >= ((planes + ROWS - 1u) / ROWS) * p.hw) { return; }
    let j = i % p.hw;
    let r0 = (i / p.hw) * ROWS;
    let r1 = min(planes, r0 + ROWS);
    let scale = f32(p.hw);
    for (var r = r0; r < r1; r++) {
        dx[r * p.hw + j] = dy[r] / scale;
    }
}
