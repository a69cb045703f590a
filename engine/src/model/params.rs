//! The parameter table: every parameter's name (the spec's, PyTorch state_dict style), shape and
//! offset in ONE buffer (llm.c style: parameters, gradients and Adam's m and v are each one
//! buffer laid out by this table), and the seeded initialisation (PyTorch's default, He or
//! Glorot, as the config says). With batch norm, the table also lays out the running statistics:
//! buffers, not parameters (no gradient, no Adam), packed the same way into a buffer of their own.

use crate::model::config::{Init, ModelConfig, Norm};
use crate::rng::SplitMix64;

/// Offsets are multiples of 64 floats (256 bytes): the largest storage-offset alignment a
/// WebGPU device may demand, so every parameter can be bound on its own.
pub const ALIGN: usize = 64;

/// What an entry is, which decides how it is initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A conv or linear weight.
    Weight,
    /// A conv or linear bias.
    Bias,
    /// Batch norm's gamma (`bn.weight`): starts at 1.
    BnWeight,
    /// Batch norm's beta (`bn.bias`): starts at 0.
    BnBias,
    /// A running mean (a buffer): starts at 0.
    RunningMean,
    /// A running variance (a buffer): starts at 1.
    RunningVar,
}

/// One named parameter (or buffer).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in elements into the packed buffer.
    pub offset: usize,
    /// The layer's fan-in (PyTorch's: in channels x kernel taps, or in features), which sets
    /// the init's scale; 0 for batch norm's tensors.
    pub fan_in: usize,
    /// The layer's fan-out (out channels x kernel taps, or out features), for Glorot's bound;
    /// 0 for batch norm's tensors.
    pub fan_out: usize,
    pub kind: ParamKind,
}

impl ParamEntry {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// All parameters of a config, in the spec's order, and its buffers (the running statistics).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTable {
    entries: Vec<ParamEntry>,
    /// Length of the packed buffer in elements, padding included.
    packed_len: usize,
    buffers: Vec<ParamEntry>,
    buffers_len: usize,
    init: Init,
}

/// Lays entries out one after another, each on an [`ALIGN`] boundary; returns the total length.
fn pack(specs: Vec<(String, Vec<usize>, usize, usize, ParamKind)>) -> (Vec<ParamEntry>, usize) {
    let mut offset = 0;
    let entries = specs
        .into_iter()
        .map(|(name, shape, fan_in, fan_out, kind)| {
            let e = ParamEntry {
                name,
                shape,
                offset,
                fan_in,
                fan_out,
                kind,
            };
            offset += e.len().div_ceil(ALIGN) * ALIGN;
            e
        })
        .collect();
    (entries, offset)
}

impl ParamTable {
    pub fn new(config: &ModelConfig) -> ParamTable {
        use ParamKind::*;
        let mut specs: Vec<(String, Vec<usize>, usize, usize, ParamKind)> = Vec::new();
        let mut buffers = Vec::new();
        let mut c_prev = config.in_channels;
        for (i, &w) in config.widths.iter().enumerate() {
            let (fan_in, fan_out) = (c_prev * 9, w * 9);
            let p = format!("stages.{i}");
            specs.push((
                format!("{p}.conv.weight"),
                vec![w, c_prev, 3, 3],
                fan_in,
                fan_out,
                Weight,
            ));
            specs.push((format!("{p}.conv.bias"), vec![w], fan_in, fan_out, Bias));
            if config.norm == Norm::Batch {
                specs.push((format!("{p}.bn.weight"), vec![w], 0, 0, BnWeight));
                specs.push((format!("{p}.bn.bias"), vec![w], 0, 0, BnBias));
                buffers.push((format!("{p}.bn.running_mean"), vec![w], 0, 0, RunningMean));
                buffers.push((format!("{p}.bn.running_var"), vec![w], 0, 0, RunningVar));
            }
            if config.attention.has_channel() {
                let h = ModelConfig::reduced(w);
                let p = format!("{p}.cbam.channel");
                specs.push((format!("{p}.fc1.weight"), vec![h, w], w, h, Weight));
                specs.push((format!("{p}.fc1.bias"), vec![h], w, h, Bias));
                specs.push((format!("{p}.fc2.weight"), vec![w, h], h, w, Weight));
                specs.push((format!("{p}.fc2.bias"), vec![w], h, w, Bias));
            }
            if config.attention.has_spatial() {
                let p = format!("{p}.cbam.spatial.conv");
                specs.push((format!("{p}.weight"), vec![1, 2, 7, 7], 98, 49, Weight));
                specs.push((format!("{p}.bias"), vec![1], 98, 49, Bias));
            }
            c_prev = w;
        }
        let k = config.classes.len();
        let hid = config.hidden;
        specs.push((
            "head.fc1.weight".into(),
            vec![hid, c_prev],
            c_prev,
            hid,
            Weight,
        ));
        specs.push(("head.fc1.bias".into(), vec![hid], c_prev, hid, Bias));
        specs.push(("head.fc2.weight".into(), vec![k, hid], hid, k, Weight));
        specs.push(("head.fc2.bias".into(), vec![k], hid, k, Bias));

        let (entries, packed_len) = pack(specs);
        let (buffers, buffers_len) = pack(buffers);
        ParamTable {
            entries,
            packed_len,
            buffers,
            buffers_len,
            init: config.init,
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

    /// The config's initialisation of every parameter, packed, seeded with our own SplitMix64 so
    /// the same seed gives the same weights on every platform and every version of every
    /// dependency:
    /// - `pytorch` (PyTorch's default for conv and linear layers): weights and biases
    ///   uniform(-b, b), b = 1 / sqrt(fan_in);
    /// - `he` (`kaiming_normal_`, relu gain): weights normal, std sqrt(2 / fan_in); biases 0;
    /// - `glorot`: weights uniform(-b, b), b = sqrt(6 / (fan_in + fan_out)); biases 0.
    ///
    /// Batch norm's gamma is 1 and beta 0 under every scheme. Only drawn values consume the
    /// generator, in table order: the same seed gives the same conv weights with or without
    /// batch norm.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64(seed);
        let mut packed = vec![0.0f32; self.packed_len];
        for e in &self.entries {
            let values = &mut packed[e.offset..e.offset + e.len()];
            let (fan_in, fan_out) = (e.fan_in as f64, e.fan_out as f64);
            match (e.kind, self.init) {
                (ParamKind::BnWeight, _) => values.fill(1.0),
                (ParamKind::Weight, Init::He) => {
                    let std = (2.0 / fan_in).sqrt();
                    values
                        .iter_mut()
                        .for_each(|v| *v = (rng.next_normal() * std) as f32);
                }
                (ParamKind::Weight, Init::Glorot) => {
                    let bound = (6.0 / (fan_in + fan_out)).sqrt();
                    values
                        .iter_mut()
                        .for_each(|v| *v = ((2.0 * rng.next_unit() - 1.0) * bound) as f32);
                }
                (ParamKind::Weight | ParamKind::Bias, Init::Pytorch) => {
                    let bound = 1.0 / fan_in.sqrt();
                    values
                        .iter_mut()
                        .for_each(|v| *v = ((2.0 * rng.next_unit() - 1.0) * bound) as f32);
                }
                // He and Glorot biases, batch norm's beta: zero, as allocated.
                _ => {}
            }
        }
        packed
    }

    /// The running statistics (buffers, not parameters), in table order; empty without batch
    /// norm.
    pub fn buffers(&self) -> &[ParamEntry] {
        &self.buffers
    }

    /// The names of the batch norms' step counters (`stages.{i}.bn.num_batches_tracked`, an
    /// I64 scalar each in a checkpoint, as PyTorch's state_dict has them); empty without batch
    /// norm.
    pub fn counters(&self) -> Vec<String> {
        self.buffers
            .iter()
            .filter_map(|e| e.name.strip_suffix(".running_mean"))
            .map(|p| format!("{p}.num_batches_tracked"))
            .collect()
    }

    /// The buffer `name`.
    pub fn buffer(&self, name: &str) -> Option<&ParamEntry> {
        self.buffers.iter().find(|e| e.name == name)
    }

    /// Length of the packed buffers in elements, padding included (0 without batch norm).
    pub fn buffers_len(&self) -> usize {
        self.buffers_len
    }

    /// The buffers' initial values, packed: running means 0, running variances 1 (PyTorch's).
    pub fn init_buffers(&self) -> Vec<f32> {
        let mut packed = vec![0.0f32; self.buffers_len];
        for e in &self.buffers {
            if e.kind == ParamKind::RunningVar {
                packed[e.offset..e.offset + e.len()].fill(1.0);
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
