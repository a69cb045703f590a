//! safetensors checkpoints: parameters named exactly as the spec lists them, f32, and the model
//! config as JSON in the header's `__metadata__`, so a checkpoint alone runs inference. With
//! batch norm, the running statistics (f32) and each batch norm's `num_batches_tracked` (an I64
//! scalar) sit beside the parameters under PyTorch's state_dict names.
//! Writes are atomic (a temporary file in the same folder, then a rename).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::data::crop::FaceCrop;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::params::{ParamEntry, ParamTable};

/// `__metadata__` key holding the config JSON.
pub const CONFIG_KEY: &str = "fer_cbam.config";

/// `__metadata__` key holding [`TrainingMeta`] JSON, in checkpoints written by training.
pub const TRAINING_KEY: &str = "fer_cbam.training";

/// How a checkpoint was trained, as far as using it depends on it: the face crop its training
/// images had (which `eval`, `predict` and `explain` then apply by default), the recipe for the
/// record, and the validation score of the state it holds (which a resumed run must beat).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingMeta {
    /// `None`: images were used whole.
    #[serde(default)]
    pub crop: Option<FaceCrop>,
    /// The training flags (augmentation, schedule, validation), as the command reported them.
    #[serde(default)]
    pub recipe: serde_json::Value,
    #[serde(default)]
    pub validation: Option<ValidationMeta>,
}

/// The validation split a checkpoint was selected on, and the score of its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationMeta {
    pub fraction: f64,
    pub seed: u64,
    pub grouped: bool,
    /// The epoch (1-based) whose state the checkpoint holds...
    pub epoch: usize,
    /// ... and its validation accuracy and mean cross-entropy.
    pub accuracy: f64,
    pub loss: f64,
}

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| err(path, "not a file path"))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path, format!("cannot write: {e}")));
    }
    Ok(())
}

/// Named f32 tensors plus metadata, serialised as safetensors bytes.
pub fn to_bytes(
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    to_bytes_with_counters(tensors, &[], metadata)
}

/// [`to_bytes`] plus named I64 scalars (shape `[]`, as PyTorch saves `num_batches_tracked`).
pub fn to_bytes_with_counters(
    tensors: &[(String, Vec<usize>, &[f32])],
    counters: &[(String, i64)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bad = |name: &str, e: safetensors::SafeTensorError| Error::InvalidConfig {
        op: "safetensors".into(),
        message: format!("tensor `{name}`: {e}"),
    };
    let counter_bytes: Vec<[u8; 8]> = counters.iter().map(|(_, v)| v.to_le_bytes()).collect();
    let mut views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| bad(name, e))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    for ((name, _), bytes) in counters.iter().zip(&counter_bytes) {
        let view = TensorView::new(Dtype::I64, vec![], bytes).map_err(|e| bad(name, e))?;
        views.push((name.clone(), view));
    }
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::InvalidConfig {
            op: "safetensors".into(),
            message: e.to_string(),
        })?;
    Ok(canonical_header(bytes))
}

/// The same file with its header's JSON keys sorted. safetensors writes the metadata map in
/// hash order, which changes from run to run; sorted, the same tensors and metadata always
/// give the same bytes (the same seed, the same checkpoint). Sorting keeps the header's
/// length, so the padding and every data offset stay as they were.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(
                    entries.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                )
            }
            other => other,
        }
    }
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + n) else {
        return bytes;
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    let text = serde_json::to_string(&sorted(json)).expect("a parsed value serialises");
    if text.len() <= n {
        // The padding safetensors added (spaces to an 8-byte boundary) stays.
        bytes[8..8 + text.len()].copy_from_slice(text.as_bytes());
        bytes[8 + text.len()..8 + n].fill(b' ');
    }
    bytes
}

/// Saves the parameters of `packed` (laid out by the config's [`ParamTable`]) of a model that
/// has not trained yet: with batch norm, its buffers get their initial values (running mean 0,
/// variance 1, no batches tracked). A trained model saves through [`save_with_buffers`].
pub fn save(path: &Path, config: &ModelConfig, packed: &[f32]) -> Result<()> {
    let table = ParamTable::new(config);
    save_with_buffers(path, config, packed, &table.init_buffers(), 0)
}

/// Saves the parameters and the buffers (the running statistics, packed by the table's
/// [`ParamTable::buffers`] layout) and the batch norms' step count `batches_tracked`.
pub fn save_with_buffers(
    path: &Path,
    config: &ModelConfig,
    packed: &[f32],
    buffers: &[f32],
    batches_tracked: u64,
) -> Result<()> {
    save_full(path, config, packed, buffers, batches_tracked, None)
}

/// [`save_with_buffers`] with the training metadata beside the config.
pub fn save_trained(
    path: &Path,
    config: &ModelConfig,
    packed: &[f32],
    buffers: &[f32],
    batches_tracked: u64,
    training: &TrainingMeta,
) -> Result<()> {
    save_full(
        path,
        config,
        packed,
        buffers,
        batches_tracked,
        Some(training),
    )
}

fn save_full(
    path: &Path,
    config: &ModelConfig,
    packed: &[f32],
    buffers: &[f32],
    batches_tracked: u64,
    training: Option<&TrainingMeta>,
) -> Result<()> {
    let table = ParamTable::new(config);
    for (what, got, want) in [
        ("parameter", packed.len(), table.packed_len()),
        ("buffer", buffers.len(), table.buffers_len()),
    ] {
        if got != want {
            return Err(err(
                path,
                format!("{got} packed {what} values for a table of {want}"),
            ));
        }
    }
    fn slice<'a>(v: &'a [f32], e: &ParamEntry) -> (String, Vec<usize>, &'a [f32]) {
        (
            e.name.clone(),
            e.shape.clone(),
            &v[e.offset..e.offset + e.len()],
        )
    }
    let tensors: Vec<(String, Vec<usize>, &[f32])> = table
        .entries()
        .iter()
        .map(|e| slice(packed, e))
        .chain(table.buffers().iter().map(|e| slice(buffers, e)))
        .collect();
    let count = i64::try_from(batches_tracked).unwrap_or(i64::MAX);
    let counters: Vec<(String, i64)> = table.counters().into_iter().map(|n| (n, count)).collect();
    let mut metadata = HashMap::new();
    metadata.insert(
        CONFIG_KEY.to_string(),
        serde_json::to_string(config).unwrap(),
    );
    if let Some(t) = training {
        metadata.insert(TRAINING_KEY.to_string(), serde_json::to_string(t).unwrap());
    }
    write_atomic(
        path,
        &to_bytes_with_counters(&tensors, &counters, metadata)?,
    )
}

/// The training metadata of a checkpoint; `None` for one written without it (`init`, or a
/// version before it existed).
pub fn load_training(path: &Path) -> Result<Option<TrainingMeta>> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    match meta.metadata().as_ref().and_then(|m| m.get(TRAINING_KEY)) {
        None => Ok(None),
        Some(json) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| err(path, format!("bad training metadata in the header: {e}"))),
    }
}

/// A loaded checkpoint: its config, its parameters packed by the config's table and, with
/// batch norm, its buffers (the running statistics) packed by the table's buffer layout and
/// the batch norms' step count (empty and 0 without batch norm).
pub struct Checkpoint {
    pub config: ModelConfig,
    pub packed: Vec<f32>,
    pub buffers: Vec<f32>,
    pub batches_tracked: u64,
}

/// Reads and checks a checkpoint: the config must parse, and every parameter the config implies
/// must be present with its exact shape and dtype f32, with nothing else beside them.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read: {e}")))?;
    from_bytes(&bytes, path)
}

/// [`load`] from bytes already in memory (a browser has no files); `origin` names them in
/// errors.
pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Checkpoint> {
    let path = origin;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CONFIG_KEY))
        .ok_or_else(|| {
            err(
                path,
                format!("no `{CONFIG_KEY}` in the header: not a fer-cbam checkpoint"),
            )
        })?;
    let config: ModelConfig = serde_json::from_str(json)
        .map_err(|e| err(path, format!("bad model config in the header: {e}")))?;
    config.validate().map_err(|e| err(path, e.to_string()))?;
    let table = ParamTable::new(&config);
    let tensor = |name: &str, dtype: Dtype, shape: &[usize]| {
        let view = st
            .tensor(name)
            .map_err(|_| err(path, format!("tensor `{name}` {shape:?} is missing")))?;
        if view.dtype() != dtype {
            return Err(err(
                path,
                format!("tensor `{name}` is {:?}, expected {dtype:?}", view.dtype()),
            ));
        }
        if view.shape() != shape {
            return Err(err(
                path,
                format!(
                    "tensor `{name}` has shape {:?}, the config needs {shape:?}",
                    view.shape()
                ),
            ));
        }
        Ok(view)
    };
    let unpack = |entries: &[ParamEntry], len: usize| -> Result<Vec<f32>> {
        let mut packed = vec![0.0f32; len];
        for e in entries {
            let view = tensor(&e.name, Dtype::F32, &e.shape)?;
            // safetensors data is little-endian and may be unaligned: decode bytewise.
            for (dst, chunk) in packed[e.offset..e.offset + e.len()]
                .iter_mut()
                .zip(view.data().chunks_exact(4))
            {
                *dst = f32::from_le_bytes(chunk.try_into().unwrap());
            }
        }
        Ok(packed)
    };
    let packed = unpack(table.entries(), table.packed_len())?;
    let buffers = unpack(table.buffers(), table.buffers_len())?;
    let counters = table.counters();
    let mut tracked: Option<(String, i64)> = None;
    for name in &counters {
        let view = tensor(name, Dtype::I64, &[])?;
        let v = i64::from_le_bytes(view.data().try_into().unwrap());
        if v < 0 {
            return Err(err(
                path,
                format!("tensor `{name}` is {v}, a negative count"),
            ));
        }
        match &tracked {
            Some((first, t)) if *t != v => {
                return Err(err(
                    path,
                    format!(
                        "`{name}` is {v} but `{first}` is {t}: the batch norms must have \
                         tracked the same number of batches"
                    ),
                ))
            }
            Some(_) => {}
            None => tracked = Some((name.clone(), v)),
        }
    }
    let known = |n: &str| {
        table.get(n).is_some() || table.buffer(n).is_some() || counters.iter().any(|c| c == n)
    };
    if let Some(extra) = st.names().into_iter().find(|n| !known(n)) {
        return Err(err(
            path,
            format!("unexpected tensor `{extra}` for this config"),
        ));
    }
    Ok(Checkpoint {
        config,
        packed,
        buffers,
        batches_tracked: tracked.map_or(0, |(_, v)| v as u64),
    })
}

/// Where the optimizer state of checkpoint `path` lives: `<path without .safetensors>.optim.safetensors`.
pub fn optimizer_path(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    let stem = s.strip_suffix(".safetensors").unwrap_or(&s);
    PathBuf::from(format!("{stem}.optim.safetensors"))
}

/// Saves Adam's moments (packed like the parameters) and the step count beside a checkpoint.
pub fn save_optimizer(
    path: &Path,
    config: &ModelConfig,
    m: &[f32],
    v: &[f32],
    step: u32,
) -> Result<()> {
    let n = m.len();
    let tensors: Vec<(String, Vec<usize>, &[f32])> =
        vec![("adam.m".into(), vec![n], m), ("adam.v".into(), vec![n], v)];
    let mut metadata = HashMap::new();
    metadata.insert(
        CONFIG_KEY.to_string(),
        serde_json::to_string(config).unwrap(),
    );
    metadata.insert("adam.step".to_string(), step.to_string());
    write_atomic(path, &to_bytes(&tensors, metadata)?)
}

/// Loads optimizer state saved by [`save_optimizer`], checking it belongs to `config`.
pub fn load_optimizer(path: &Path, config: &ModelConfig) -> Result<(Vec<f32>, Vec<f32>, u32)> {
    let bytes =
        std::fs::read(path).map_err(|e| err(path, format!("cannot read optimizer state: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| err(path, e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let saved: Option<ModelConfig> = meta
        .get(CONFIG_KEY)
        .and_then(|j| serde_json::from_str(j).ok());
    if saved.as_ref() != Some(config) {
        return Err(err(path, "optimizer state belongs to another model config"));
    }
    let step: u32 = meta
        .get("adam.step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(path, "no `adam.step` in the header"))?;
    let n = ParamTable::new(config).packed_len();
    let read = |name: &str| -> Result<Vec<f32>> {
        let t = st
            .tensor(name)
            .map_err(|_| err(path, format!("tensor `{name}` is missing")))?;
        if t.dtype() != Dtype::F32 || t.shape() != [n] {
            return Err(err(
                path,
                format!(
                    "tensor `{name}` is {:?} {:?}, expected F32 [{n}]",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    };
    Ok((read("adam.m")?, read("adam.v")?, step))
}
