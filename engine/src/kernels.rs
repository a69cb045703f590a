//! Which kernel variants run: chosen once per device from the adapter (its type and limits),
//! unless the `--kernels` flag or the `FER_CBAM_KERNELS` environment variable says otherwise.
//!
//! - **cpu**: the register-blocked v2 kernels. On a CPU Vulkan driver (lavapipe) every
//!   invocation is one lane of a SIMD loop on a few cores, workgroup barriers are expensive and
//!   a few hundred invocations already fill the machine; v2 keeps blocks of outputs in
//!   registers and uses no workgroup memory.
//! - **gpu**: conv2d's v4 kernels, tiles of the implicit matrix product staged in workgroup
//!   memory (what a GPU's on-chip memory is for), and split-K weight and bias gradients whose
//!   chunk count is sized from [`KernelSet::target_workgroups`] so that the gradient passes
//!   launch enough workgroups to fill the device.
//!
//! Both sets compute the same sums to within f32 rounding, in fixed orders (bit-identical run
//! to run on one device), and both are tested on lavapipe against the f64 reference.

use std::sync::Mutex;

/// What was asked for: `auto` (the adapter decides), or one set by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    Auto,
    Cpu,
    Gpu,
}

impl std::str::FromStr for KernelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<KernelChoice, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(KernelChoice::Auto),
            "cpu" => Ok(KernelChoice::Cpu),
            "gpu" => Ok(KernelChoice::Gpu),
            _ => Err(format!("unknown kernel set {s:?} (auto, cpu, gpu)")),
        }
    }
}

/// The variant families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelSetKind {
    Cpu,
    Gpu,
}

impl KernelSetKind {
    pub fn name(self) -> &'static str {
        match self {
            KernelSetKind::Cpu => "cpu",
            KernelSetKind::Gpu => "gpu",
        }
    }
}

/// Which kernels a conv2d runs (`crate::ops::conv2d::Conv2d`; the kernels are described
/// there and in docs/kernels/conv2d.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Conv2dVersion {
    /// `forward`, `backward_input`, `backward_weight`, `backward_bias`: one output per
    /// invocation, the reduction as plain loops (about 2 GFLOP/s on lavapipe).
    V1,
    /// `forward_v2`, `backward_input_v2`, `backward_weight_v2`, `backward_bias_v2`: a block of
    /// outputs per invocation held in registers (see the notes in conv2d.wgsl). The weight
    /// gradient is split-K over chunks of output rows (`backward_weight_reduce` adds them);
    /// with fewer than 4 output channels it runs `backward_weight_rows_v2` (one weight per
    /// invocation, chunked the same way). The kernels of the cpu set.
    V2,
    /// `forward_v4`, `backward_input_v4`, `backward_weight_v4`, `backward_bias_v4`: tiles of the
    /// implicit matrix product through workgroup memory, split-K gradients with as many chunks
    /// as fill the device. Passes whose row dimension (output channels; input channels for
    /// backward_input) is below 8 run v2's kernels instead (a 64-row tile would be mostly
    /// padding: the spatial gate's 2 -> 1). The kernels of the gpu set.
    V4,
    /// Winograd's F(2x2, 3x3) ([`crate::ops::conv2d_winograd`]): input, filter and output
    /// transforms around a batched matrix product, 16 multiplies per 2x2 output tile where the
    /// direct convolution does 36. For 3x3 kernels with padding <= 2; other shapes (the spatial
    /// gate's 7x7) run v2. The bias gradient is v2's.
    V3,
    /// Winograd's F(4x4, 3x3): 36 multiplies per 4x4 tile where the direct convolution does
    /// 144, with a larger f32 error (its transforms hold 4, 5 and 8; docs/numerics.md).
    V3F4,
}

impl std::str::FromStr for Conv2dVersion {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Conv2dVersion, String> {
        let s = s.trim().to_ascii_lowercase();
        Conv2dVersion::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown conv2d version {s:?} (v1, v2, v3, v3f4, v4)"))
    }
}

impl Conv2dVersion {
    /// Every version, by name.
    pub const ALL: [Conv2dVersion; 5] = [
        Conv2dVersion::V1,
        Conv2dVersion::V2,
        Conv2dVersion::V3,
        Conv2dVersion::V3F4,
        Conv2dVersion::V4,
    ];

    /// `v1`, `v2`, `v3`, `v3f4`, `v4`: the names `--conv` takes and the benches print.
    pub fn name(self) -> &'static str {
        match self {
            Conv2dVersion::V1 => "v1",
            Conv2dVersion::V2 => "v2",
            Conv2dVersion::V3 => "v3",
            Conv2dVersion::V3F4 => "v3f4",
            Conv2dVersion::V4 => "v4",
        }
    }

    /// m of Winograd's F(m x m, 3 x 3) for v3 and v3f4.
    pub fn winograd_tile(self) -> Option<usize> {
        match self {
            Conv2dVersion::V3 => Some(2),
            Conv2dVersion::V3F4 => Some(4),
            _ => None,
        }
    }
}

/// The kernel set a device runs, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KernelSet {
    pub kind: KernelSetKind,
    /// One sentence: what decided (the flag, the variable, or the adapter's type and limits).
    pub reason: String,
    /// Workgroups one split-K gradient pass aims to launch (gpu set): about two waves of what
    /// a device of this type keeps resident at once. wgpu does not report compute-unit counts,
    /// so this comes from the adapter type: 2,048 for a discrete GPU (an H100/H200 keeps about
    /// 132 x 4-8 workgroups of 256 resident), 256 for an integrated one, 512 otherwise; 64 on a
    /// CPU adapter forced to the gpu set (there it only has to exercise the split).
    pub target_workgroups: u32,
    /// The conv2d version the device's convolutions run ([`Conv2dVersion::for_gpu`]): the
    /// set's (cpu: v3, Winograd F(2x2, 3x3), with v2 for the shapes it does not cover; gpu:
    /// v4), unless `--conv` or `FER_CBAM_CONV` names one.
    pub conv: Conv2dVersion,
    /// Where [`KernelSet::conv`] came from: "the cpu set", "--conv", "FER_CBAM_CONV=v2".
    pub conv_source: String,
    /// Whether kernels may use subgroup operations (conv2d v3's GEMM shares its A values by
    /// subgroup shuffles): the device has `wgpu::Features::SUBGROUP` with subgroups of 8 to 64
    /// lanes. Set when the device opens ([`KernelSet::with_subgroups`]).
    pub subgroups: bool,
}

/// Workgroup memory the v4 kernels stage per workgroup (two 16 x 65 f32 tiles), and the
/// invocations of their largest workgroup: an adapter below either keeps the cpu set.
pub const V4_WORKGROUP_BYTES: u32 = 2 * 16 * 65 * 4;
pub const V4_INVOCATIONS: u32 = 256;

/// Set by the CLI's `--kernels` before any device is opened; overrides the environment.
static CLI_CHOICE: Mutex<Option<(KernelChoice, &'static str)>> = Mutex::new(None);

/// The environment variable naming a kernel set (auto, cpu, gpu).
pub const ENV_VAR: &str = "FER_CBAM_KERNELS";

/// Set by the CLI's `--conv` before any device is opened; overrides the environment.
static CLI_CONV: Mutex<Option<(Conv2dVersion, &'static str)>> = Mutex::new(None);

/// The environment variable naming a conv2d version (v1, v2, v3, v3f4, v4).
pub const CONV_ENV_VAR: &str = "FER_CBAM_CONV";

/// Makes every device opened from now on run conv2d `version` (`source`: "--conv").
pub fn set_conv_choice(version: Conv2dVersion, source: &'static str) {
    *CLI_CONV.lock().unwrap() = Some((version, source));
}

/// The conv2d version asked for, if any, and where: the CLI flag, else `FER_CBAM_CONV`. An
/// unparsable variable is an error naming it.
pub fn conv_choice() -> crate::Result<Option<(Conv2dVersion, String)>> {
    if let Some((v, source)) = *CLI_CONV.lock().unwrap() {
        return Ok(Some((v, source.to_string())));
    }
    match std::env::var(CONV_ENV_VAR) {
        Ok(v) if !v.trim().is_empty() => v
            .parse::<Conv2dVersion>()
            .map(|c| Some((c, format!("{CONV_ENV_VAR}={v}"))))
            .map_err(|message| crate::Error::InvalidConfig {
                op: CONV_ENV_VAR.into(),
                message,
            }),
        _ => Ok(None),
    }
}

/// Makes every device opened from now on use `choice` (`source` names where it came from, for
/// `info`: "--kernels").
pub fn set_choice(choice: KernelChoice, source: &'static str) {
    *CLI_CHOICE.lock().unwrap() = Some((choice, source));
}

/// The choice in force and where it came from: the CLI flag, else `FER_CBAM_KERNELS`, else auto.
/// An unparsable variable is an error naming it.
pub fn current_choice() -> crate::Result<(KernelChoice, String)> {
    if let Some((c, source)) = *CLI_CHOICE.lock().unwrap() {
        return Ok((c, source.to_string()));
    }
    match std::env::var(ENV_VAR) {
        Ok(v) if !v.trim().is_empty() => v
            .parse::<KernelChoice>()
            .map(|c| (c, format!("{ENV_VAR}={v}")))
            .map_err(|message| crate::Error::InvalidConfig {
                op: ENV_VAR.into(),
                message,
            }),
        _ => Ok((KernelChoice::Auto, "auto".into())),
    }
}

fn target_workgroups(device_type: wgpu::DeviceType) -> u32 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 2048,
        wgpu::DeviceType::IntegratedGpu => 256,
        wgpu::DeviceType::Cpu => 64,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 512,
    }
}

impl KernelSet {
    /// The set for an adapter of type `device_type` (`wgpu::AdapterInfo::device_type`) and
    /// `limits` under `choice` (from `source`).
    pub fn choose(
        device_type: wgpu::DeviceType,
        limits: &wgpu::Limits,
        choice: KernelChoice,
        source: &str,
    ) -> KernelSet {
        let target = target_workgroups(device_type);
        let fits_v4 = limits.max_compute_workgroup_storage_size >= V4_WORKGROUP_BYTES
            && limits.max_compute_invocations_per_workgroup >= V4_INVOCATIONS
            && limits.max_compute_workgroup_size_x >= V4_INVOCATIONS;
        let gpu = |reason: String| KernelSet {
            kind: KernelSetKind::Gpu,
            reason,
            target_workgroups: target,
            conv: Conv2dVersion::V4,
            conv_source: "the gpu set".into(),
            subgroups: false,
        };
        let cpu = |reason: String| KernelSet {
            kind: KernelSetKind::Cpu,
            reason,
            target_workgroups: target,
            conv: Conv2dVersion::V3,
            conv_source: "the cpu set".into(),
            subgroups: false,
        };
        let limits_note = format!(
            "{} bytes of workgroup memory and {} invocations per workgroup (v4 needs {} and {})",
            limits.max_compute_workgroup_storage_size,
            limits.max_compute_invocations_per_workgroup,
            V4_WORKGROUP_BYTES,
            V4_INVOCATIONS
        );
        match choice {
            KernelChoice::Cpu => cpu(format!("{source} asks for the cpu set")),
            KernelChoice::Gpu if fits_v4 => gpu(format!("{source} asks for the gpu set")),
            KernelChoice::Gpu => cpu(format!(
                "{source} asks for the gpu set, but the device has only {limits_note}"
            )),
            KernelChoice::Auto if device_type == wgpu::DeviceType::Cpu => cpu(format!(
                "the adapter is a CPU ({device_type:?}): register-blocked kernels without \
                 workgroup memory"
            )),
            KernelChoice::Auto if !fits_v4 => cpu(format!(
                "the adapter ({device_type:?}) has only {limits_note}"
            )),
            KernelChoice::Auto => gpu(format!(
                "the adapter is a {device_type:?}: workgroup-memory tiles, split-K gradients \
                 aiming at {target} workgroups"
            )),
        }
    }

    /// The set with conv2d `version` from `source` instead of its own.
    pub fn with_conv(self, version: Conv2dVersion, source: String) -> KernelSet {
        KernelSet {
            conv: version,
            conv_source: source,
            ..self
        }
    }

    /// The set with subgroup operations allowed or not.
    pub fn with_subgroups(self, subgroups: bool) -> KernelSet {
        KernelSet { subgroups, ..self }
    }

    /// Whether a device with `features` and subgroups of `min..=max` lanes lets kernels use
    /// subgroup operations: groups of 8 consecutive lanes must exist and fit a 64-invocation
    /// workgroup.
    pub fn subgroups_usable(features: wgpu::Features, min: u32, max: u32) -> bool {
        features.contains(wgpu::Features::SUBGROUP) && min >= 8 && max <= 64
    }

    /// One line for `info`: `gpu (the adapter is a DiscreteGpu: ...), conv2d v4 (the gpu set)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}), conv2d {} ({}){}",
            self.kind.name(),
            self.reason,
            self.conv.name(),
            self.conv_source,
            if self.subgroups {
                ", subgroup operations"
            } else {
                ""
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_adapter_type_and_limits_choose_unless_told() {
        let limits = wgpu::Limits::default();
        let choose = |t, c| KernelSet::choose(t, &limits, c, "test");
        let cpu = choose(wgpu::DeviceType::Cpu, KernelChoice::Auto);
        assert_eq!(cpu.kind, KernelSetKind::Cpu);
        assert!(cpu.reason.contains("CPU"), "{}", cpu.reason);
        let dgpu = choose(wgpu::DeviceType::DiscreteGpu, KernelChoice::Auto);
        assert_eq!(
            (dgpu.kind, dgpu.target_workgroups),
            (KernelSetKind::Gpu, 2048)
        );
        let igpu = choose(wgpu::DeviceType::IntegratedGpu, KernelChoice::Auto);
        assert_eq!(
            (igpu.kind, igpu.target_workgroups),
            (KernelSetKind::Gpu, 256)
        );
        // Told: either way, on either adapter.
        let forced = choose(wgpu::DeviceType::Cpu, KernelChoice::Gpu);
        assert_eq!(forced.kind, KernelSetKind::Gpu);
        assert!(forced.reason.contains("test asks"), "{}", forced.reason);
        let forced = choose(wgpu::DeviceType::DiscreteGpu, KernelChoice::Cpu);
        assert_eq!(forced.kind, KernelSetKind::Cpu);
        // A device too small for v4's tiles keeps the cpu set and says why.
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: 4096,
            ..wgpu::Limits::default()
        };
        for choice in [KernelChoice::Auto, KernelChoice::Gpu] {
            let k = KernelSet::choose(wgpu::DeviceType::DiscreteGpu, &small, choice, "t");
            assert_eq!(k.kind, KernelSetKind::Cpu);
            assert!(k.reason.contains("4096"), "{}", k.reason);
        }
    }

    #[test]
    fn choices_parse_by_name() {
        assert_eq!("GPU".parse::<KernelChoice>(), Ok(KernelChoice::Gpu));
        assert_eq!(" cpu ".parse::<KernelChoice>(), Ok(KernelChoice::Cpu));
        assert_eq!("auto".parse::<KernelChoice>(), Ok(KernelChoice::Auto));
        assert!("tpu"
            .parse::<KernelChoice>()
            .unwrap_err()
            .contains("auto, cpu, gpu"));
    }
}
