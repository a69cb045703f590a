// What every shader of the engine shares. The pipeline cache appends this file, after the op's
// own file and its generated `struct Params`, to every engine shader it compiles
// (pipeline::assemble); WGSL declarations may come in any order, so a shader uses these names
// as if it had declared them, and the compiler's line numbers for the op's file stay its own.

// Invocations per workgroup of the one-dimensional entry points; the op wrappers set it
// (`WG` in src/ops/mod.rs) and it is part of the pipeline's key.
override WG: u32 = 64u;

// Every op's shape uniform, declared in Rust (crate::uniform!) and generated for WGSL.
@group(0) @binding(0) var<uniform> p: Params;

// The flat invocation index of a grid folded into x and y past the per-dimension workgroup
// limit (Gpu::grid): row gid.y holds nwg.x * WG invocations.
fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}
