//! The parameter table: every parameter's name (the spec's, PyTorch state_dict style), shape and
//! offset in ONE buffer (llm.c style: parameters, gradients and Adam's m and v are each one
//! buffer laid out by this table), and PyTorch's default initialisation, seeded.

use crate::model::config::ModelConfig;

/// Offsets are multiples of 64 floats (256 bytes): the largest storage-offset alignment a
/// WebGPU device may demand, so every parameter can be bound on its own.
pub const ALIGN: usize = 64;

/// One named parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in elements into the packed buffer.
    pub offset: usize,
    /// PyTorch's fan-in for its default init bound 1/sqrt(fan_in).
    pub fan_in: usize,
}

impl ParamEntry {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All parameters of a config, in the spec's order.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTable {
    entries: Vec<ParamEntry>,
    /// Length of the packed buffer in elements, padding included.
    packed_len: usize,
}

impl ParamTable {
    pub fn new(config: &ModelConfig) -> ParamTable {
        let mut specs: Vec<(String, Vec<usize>, usize)> = Vec::new();
        let mut c_prev = config.in_channels;
        for (i, &w) in config.widths.iter().enumerate() {
            let conv_fan = c_prev * 9;
            specs.push((
                format!("stages.{i}.conv.weight"),
                vec![w, c_prev, 3, 3],
                conv_fan,
            ));
            specs.push((format!("stages.{i}.conv.bias"), vec![w], conv_fan));
            if config.attention.has_channel() {
                let h = ModelConfig::reduced(w);
                let p = format!("stages.{i}.cbam.channel");
                specs.push((format!("{p}.fc1.weight"), vec![h, w], w));
                specs.push((format!("{p}.fc1.bias"), vec![h], w));
                specs.push((format!("{p}.fc2.weight"), vec![w, h], h));
                specs.push((format!("{p}.fc2.bias"), vec![w], h));
            }
            if config.attention.has_spatial() {
                let p = format!("stages.{i}.cbam.spatial.conv");
                specs.push((format!("{p}.weight"), vec![1, 2, 7, 7], 98));
                specs.push((format!("{p}.bias"), vec![1], 98));
            }
            c_prev = w;
        }
        let k = config.classes.len();
        let hid = config.hidden;
        specs.push(("head.fc1.weight".into(), vec![hid, c_prev], c_prev));
        specs.push(("head.fc1.bias".into(), vec![hid], c_prev));
        specs.push(("head.fc2.weight".into(), vec![k, hid], hid));
        specs.push(("head.fc2.bias".into(), vec![k], hid));

        let mut offset = 0;
        let entries = specs
            .into_iter()
            .map(|(name, shape, fan_in)| {
                let e = ParamEntry {
                    name,
                    shape,
                    offset,
                    fan_in,
                };
                offset += e.len().div_ceil(ALIGN) * ALIGN;
                e
            })
            .collect();
        ParamTable {
            entries,
            packed_len: offset,
        }
    }

    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Number of parameters (434,001 for the spec's default).
    pub fn count(&self) -> usize {
        self.entries.iter().map(ParamEntry::len).sum()
    }

    /// Length of the packed buffer in elements (padding between entries is zero).
    pub fn packed_len(&self) -> usize {
        self.packed_len
    }

    /// PyTorch's default init for conv and linear layers, weights and biases alike:
    /// uniform(-b, b) with b = 1/sqrt(fan_in). Seeded with our own SplitMix64 so the same seed
    /// gives the same weights on every platform and every version of every dependency.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64(seed);
        let mut packed = vec![0.0f32; self.packed_len];
        for e in &self.entries {
            let bound = 1.0 / (e.fan_in as f64).sqrt();
            for v in &mut packed[e.offset..e.offset + e.len()] {
                *v = ((2.0 * rng.next_unit() - 1.0) * bound) as f32;
            }
        }
        packed
    }

    /// The tensor `name` out of a packed buffer.
    pub fn slice<'a>(&self, packed: &'a [f32], name: &str) -> Option<&'a [f32]> {
        self.get(name)
            .map(|e| &packed[e.offset..e.offset + e.len()])
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever, unlike a library's
/// "standard" generator.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
