//! Shape uniforms declared once, in Rust, for both sides: [`uniform!`](crate::uniform!)
//! generates an op's `#[repr(C)]` Params struct (bytemuck `Pod`) and, through [`Uniform`], the
//! WGSL declaration of the same struct that the pipeline cache adds to the op's shader. No shader
//! declares its own `struct Params`, and no struct carries hand-written padding.
//!
//! Members are 4-byte scalars (`u32`, `i32`, `f32`): their WGSL offsets are then those of
//! `repr(C)` (4-byte aligned, no gaps), and only the struct's end is padded, to a multiple of
//! 16 bytes: the alignment WGSL requires of a struct in the uniform address space, so the size
//! is one any uniform layout accepts (it is the size the hand-written padding used to reach).
//! The WGSL side gets it from an `@size` on its last member, the buffer from
//! [`crate::gpu::Gpu::uniform_buffer`], which zero-pads its contents to [`Uniform::SIZE`].
//! `tests/shaders.rs` parses every assembled shader with naga and checks each member's offset
//! and the struct's size against these.

/// A uniform struct that knows its WGSL declaration.
pub trait Uniform: bytemuck::Pod {
    /// The struct's name, on both sides.
    const NAME: &'static str;
    /// `(name, WGSL type, byte offset)` of every member, in declaration order.
    const MEMBERS: &'static [(&'static str, &'static str, usize)];
    /// Bytes the WGSL struct spans: the Rust struct's size rounded up to 16.
    const SIZE: usize = std::mem::size_of::<Self>().next_multiple_of(16);

    /// The WGSL declaration, its last member sized to end the struct at [`Uniform::SIZE`].
    fn wgsl() -> String {
        let mut s = format!("struct {} {{\n", Self::NAME);
        let last = Self::MEMBERS.len().saturating_sub(1);
        for (i, (name, ty, offset)) in Self::MEMBERS.iter().enumerate() {
            if i == last && Self::SIZE != offset + 4 {
                s += &format!("    @size({}) {name}: {ty},\n", Self::SIZE - offset);
            } else {
                s += &format!("    {name}: {ty},\n");
            }
        }
        s + "}\n"
    }
}

/// A scalar a uniform may hold, and its WGSL name.
pub trait WgslScalar: bytemuck::Pod {
    const WGSL: &'static str;
}

impl WgslScalar for u32 {
    const WGSL: &'static str = "u32";
}
impl WgslScalar for i32 {
    const WGSL: &'static str = "i32";
}
impl WgslScalar for f32 {
    const WGSL: &'static str = "f32";
}

/// Declares a uniform struct for Rust and WGSL at once:
///
/// ```
/// fer_cbam_engine::uniform! {
///     /// The op's shape.
///     pub struct Params {
///         n: u32,
///         eps: f32,
///     }
/// }
/// use fer_cbam_engine::uniform::Uniform;
/// assert_eq!(Params::SIZE, 16);
/// assert!(Params::wgsl().contains("@size(12) eps: f32"));
/// ```
///
/// Members must be `u32`, `i32` or `f32` (anything else fails to compile: it does not
/// implement [`WgslScalar`]).
#[macro_export]
macro_rules! uniform {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, ::bytemuck::Pod, ::bytemuck::Zeroable)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )+
        }

        impl $crate::uniform::Uniform for $name {
            const NAME: &'static str = stringify!($name);
            const MEMBERS: &'static [(&'static str, &'static str, usize)] = &[
                $( (
                    stringify!($field),
                    <$ty as $crate::uniform::WgslScalar>::WGSL,
                    ::std::mem::offset_of!($name, $field),
                ), )+
            ];
        }

        impl $name {
            /// The layout, for `KernelDesc::uniform` and `ops::UNIFORMS`.
            #[allow(dead_code)]
            pub const LAYOUT: $crate::uniform::UniformLayout =
                $crate::uniform::UniformLayout::of::<$name>();
        }

        // 4-byte members are what makes repr(C)'s offsets WGSL's.
        const _: () = { $( assert!(::std::mem::size_of::<$ty>() == 4); )+ };
    };
}

/// One [`Uniform`]'s layout, without its type: what the pipeline cache and the layout test need.
#[derive(Clone, Copy, Debug)]
pub struct UniformLayout {
    pub name: &'static str,
    /// `(name, WGSL type, byte offset)` of every member.
    pub members: &'static [(&'static str, &'static str, usize)],
    /// Bytes the struct spans in WGSL and in its buffer.
    pub size: usize,
    /// The WGSL declaration.
    pub wgsl: fn() -> String,
}

impl UniformLayout {
    pub const fn of<T: Uniform>() -> UniformLayout {
        UniformLayout {
            name: T::NAME,
            members: T::MEMBERS,
            size: T::SIZE,
            wgsl: T::wgsl,
        }
    }
}
