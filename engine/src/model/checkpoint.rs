//! safetensors checkpoints: parameters named exactly as the spec lists them, f32, and the model
//! config as JSON in the header's `__metadata__`, so a checkpoint alone runs inference. With
//! batch norm, the running statistics (f32) and each batch norm's `num_batches_tracked` (an I64
//! scalar) sit beside the parameters under PyTorch's state_dict names. A checkpoint written by
//! training also records its step, the hash of its parameters and how it was trained; its
//! optimizer state is a second file beside it, checked against it on `--resume`.
//! Writes are atomic ([`crate::files::stage`]: a temporary file in the same folder, then a
//! rename).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{read_file, Staged};
use crate::model::config::ModelConfig;
use crate::model::params::{ParamEntry, ParamTable};

/// `__metadata__` key holding the config JSON.
pub const CONFIG_KEY: &str = "fer_cbam.config";
/// `__metadata__` key of a checkpoint written by training: the step it was saved at.
pub const STEP_KEY: &str = "fer_cbam.step";
/// `__metadata__` key holding [`params_hash`] of the parameters (in a checkpoint: its own,
/// checked on load; in optimizer state: those of the checkpoint it belongs to).
pub const HASH_KEY: &str = "fer_cbam.params_fnv1a64";
/// Largest file read as a checkpoint or optimizer state: twice the largest parameter set
/// ([`crate::model::config::MAX_PARAMETERS`] f32) and room for the header. Anything larger
/// (or a device, or a pipe) is refused before it is read into memory.
pub const MAX_FILE_BYTES: u64 = 2 * 4 * crate::model::config::MAX_PARAMETERS as u64 + (1 << 26);

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

/// A face crop with its margin (a fraction of the face box's side, added on every side): how
/// the images a checkpoint was trained on were cut out of their photos, which `eval`,
/// `predict` and `explain` then repeat.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceCrop {
    pub margin: f32,
}

impl FaceCrop {
    pub fn new(margin: f32) -> Result<FaceCrop> {
        if !(0.0..=2.0).contains(&margin) {
            return Err(Error::InvalidConfig {
                op: "--face-margin".into(),
                message: format!("{margin} is outside 0..2"),
            });
        }
        Ok(FaceCrop { margin })
    }
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

/// Stages `bytes` for `path` ([`crate::files::stage`]), errors naming the checkpoint. Only a
/// regular file (or nothing) at `path` may be replaced.
fn stage(path: &Path, bytes: &[u8]) -> Result<Staged> {
    crate::files::ensure_replaceable(path)?;
    crate::files::stage(path, bytes).map_err(|e| err(path, format!("cannot write: {e}")))
}

fn commit(staged: Staged, path: &Path) -> Result<()> {
    staged
        .commit()
        .map_err(|e| err(path, format!("cannot write: {e}")))
}

/// Writes `bytes` to `path` atomically, errors naming the checkpoint.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    commit(stage(path, bytes)?, path)
}

/// FNV-1a (64 bits) of the parameters' f32 little-endian bytes, tensor by tensor in the
/// table's order (padding excluded): what a checkpoint records of its own data, and what
/// optimizer state records of the checkpoint it belongs to. A check against corruption and
/// mismatched files, not against tampering: one changed byte always changes it.
pub fn params_hash(table: &ParamTable, packed: &[f32]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for e in table.entries() {
        for v in &packed[e.offset..e.offset + e.len()] {
            for b in v.to_le_bytes() {
                h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    h
}

/// The safetensors crate writes `__metadata__` in hash-map order, which changes from run to
/// run; rewrites the header with its metadata keys sorted (tensor entries keep their order and
/// offsets, the data is untouched), so identical content gives identical bytes.
fn sort_metadata(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |m: String| Error::InvalidConfig {
        op: "safetensors".into(),
        message: m,
    };
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| bad(e.to_string()))?;
    let mut text = String::from("{");
    if let Some(meta) = header.get("__metadata__") {
        let sorted: std::collections::BTreeMap<String, String> =
            serde_json::from_value(meta.clone()).map_err(|e| bad(e.to_string()))?;
        text += &format!(
            "\"__metadata__\":{}",
            serde_json::to_string(&sorted).unwrap()
        );
    }
    // Tensors in the order of their data, as the crate laid them out.
    let mut tensors: Vec<(&String, &serde_json::Value)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .collect();
    tensors.sort_by_key(|(_, v)| v["data_offsets"][0].as_u64().unwrap_or(0));
    for (name, info) in tensors {
        if text.len() > 1 {
            text.push(',');
        }
        text += &format!("{}:{}", serde_json::to_string(name).unwrap(), info);
    }
    text.push('}');
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
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
    sort_metadata(bytes)
}

/// Saves the parameters of `packed` (laid out by the config's [`ParamTable`]) of a model that
/// has not trained yet: with batch norm, its buffers get their initial values (running mean 0,
/// variance 1, no batches tracked). A trained model saves through [`save_training`].
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
    let ck = Checkpoint {
        config: config.clone(),
        packed: packed.to_vec(),
        buffers: buffers.to_vec(),
        batches_tracked,
    };
    write_file(path, &checkpoint_bytes(path, &ck, None, None)?)
}

/// The bytes of a checkpoint: the spec's tensors (parameters, then batch norm buffers and
/// counters), the config, the hash of the parameters and, for a save made by training, the step
/// and the training metadata. Non-finite values are refused: such a file would evaluate and
/// predict without complaint, every score NaN.
fn checkpoint_bytes(
    path: &Path,
    ck: &Checkpoint,
    step: Option<u32>,
    training: Option<&TrainingMeta>,
) -> Result<Vec<u8>> {
    let (config, packed, buffers) = (&ck.config, &ck.packed, &ck.buffers);
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
    if let Some((name, i, v)) = first_non_finite(table.entries(), packed)
        .or_else(|| first_non_finite(table.buffers(), buffers))
    {
        return Err(err(
            path,
            format!("not written: `{name}`[{i}] is {v} (training diverged?)"),
        ));
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
    let count = i64::try_from(ck.batches_tracked).unwrap_or(i64::MAX);
    let counters: Vec<(String, i64)> = table.counters().into_iter().map(|n| (n, count)).collect();
    let mut metadata = HashMap::new();
    metadata.insert(
        CONFIG_KEY.to_string(),
        serde_json::to_string(config).unwrap(),
    );
    metadata.insert(
        HASH_KEY.to_string(),
        format!("{:016x}", params_hash(&table, packed)),
    );
    if let Some(step) = step {
        metadata.insert(STEP_KEY.to_string(), step.to_string());
    }
    if let Some(t) = training {
        metadata.insert(TRAINING_KEY.to_string(), serde_json::to_string(t).unwrap());
    }
    to_bytes_with_counters(&tensors, &counters, metadata)
}

/// The first value of `entries` in `packed` that is NaN or infinite: (tensor, index, value).
fn first_non_finite<'a>(
    entries: &'a [ParamEntry],
    packed: &[f32],
) -> Option<(&'a str, usize, f32)> {
    entries.iter().find_map(|e| {
        packed[e.offset..e.offset + e.len()]
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (e.name.as_str(), i, packed[e.offset + i]))
    })
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

/// Reads and checks a checkpoint: the config must parse, and every tensor the config implies
/// must be present with its exact shape and dtype, finite, with nothing else beside them.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes =
        read_file(path, MAX_FILE_BYTES).map_err(|e| err(path, format!("cannot read: {e}")))?;
    from_bytes(&bytes, path)
}

/// The `__metadata__` of a safetensors file, and the parsed file.
fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| err(path, format!("not a safetensors file: {e}")))?;
    Ok((st, meta.metadata().clone().unwrap_or_default()))
}

/// Decodes one F32 tensor (little-endian, maybe unaligned) into `dst`, refusing NaN and
/// infinities by name and index.
fn decode_f32(path: &Path, name: &str, data: &[u8], dst: &mut [f32]) -> Result<()> {
    for (i, (d, chunk)) in dst.iter_mut().zip(data.chunks_exact(4)).enumerate() {
        let v = f32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        if !v.is_finite() {
            return Err(err(
                path,
                format!("tensor `{name}`[{i}] is {v}: a checkpoint must hold finite numbers"),
            ));
        }
        *d = v;
    }
    Ok(())
}

/// [`load`] from bytes already in memory (a browser has no files); `origin` names them in
/// errors.
pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Checkpoint> {
    let path = origin;
    let (st, meta) = parse(bytes, path)?;
    let json = meta.get(CONFIG_KEY).ok_or_else(|| {
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
    let counters = table.counters();
    let known = |n: &str| {
        table.get(n).is_some() || table.buffer(n).is_some() || counters.iter().any(|c| c == n)
    };
    if let Some(extra) = st.names().into_iter().find(|n| !known(n)) {
        return Err(err(
            path,
            format!("unexpected tensor `{extra}` for this config"),
        ));
    }
    // Every tensor is checked before anything is allocated, so the allocations below are
    // bounded by what the file holds, whatever its header claims.
    let mut views = Vec::new();
    for e in table.entries().iter().chain(table.buffers()) {
        views.push(tensor(&e.name, Dtype::F32, &e.shape)?);
    }
    let mut tracked: Option<(String, i64)> = None;
    for name in &counters {
        let view = tensor(name, Dtype::I64, &[])?;
        let v = i64::from_le_bytes(view.data().try_into().expect("8 bytes of a [] I64"));
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
    let (param_views, buffer_views) = views.split_at(table.entries().len());
    let unpack = |entries: &[ParamEntry], views: &[TensorView], len: usize| -> Result<Vec<f32>> {
        let mut packed = vec![0.0f32; len];
        for (e, view) in entries.iter().zip(views) {
            decode_f32(
                path,
                &e.name,
                view.data(),
                &mut packed[e.offset..e.offset + e.len()],
            )?;
        }
        Ok(packed)
    };
    let packed = unpack(table.entries(), param_views, table.packed_len())?;
    let buffers = unpack(table.buffers(), buffer_views, table.buffers_len())?;
    // Files written by other tools (PyTorch) carry no hash; ours are checked.
    if let Some(want) = meta.get(HASH_KEY) {
        let got = format!("{:016x}", params_hash(&table, &packed));
        if *want != got {
            return Err(err(
                path,
                format!(
                    "the parameters do not match the hash in the header ({want}, the data \
                     gives {got}): the file is corrupted"
                ),
            ));
        }
    }
    Ok(Checkpoint {
        config,
        packed,
        buffers,
        batches_tracked: tracked.map_or(0, |(_, v)| v as u64),
    })
}

/// The training metadata of a checkpoint; `None` for one written without it (`init`, or a
/// version before it existed).
pub fn load_training_meta(path: &Path) -> Result<Option<TrainingMeta>> {
    let bytes =
        read_file(path, MAX_FILE_BYTES).map_err(|e| err(path, format!("cannot read: {e}")))?;
    training_meta(&parse(&bytes, path)?.1, path)
}

/// [`load_training_meta`] from bytes already in memory (a browser has no files); `origin` names
/// them in errors.
pub fn training_meta_from_bytes(bytes: &[u8], origin: &Path) -> Result<Option<TrainingMeta>> {
    training_meta(&parse(bytes, origin)?.1, origin)
}

fn training_meta(meta: &HashMap<String, String>, path: &Path) -> Result<Option<TrainingMeta>> {
    match meta.get(TRAINING_KEY) {
        None => Ok(None),
        Some(json) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| err(path, format!("bad training metadata in the header: {e}"))),
    }
}

/// Where the optimizer state of checkpoint `path` lives: `<path without .safetensors>.optim.safetensors`.
pub fn optimizer_path(path: &Path) -> PathBuf {
    let s = path.to_string_lossy();
    let stem = s.strip_suffix(".safetensors").unwrap_or(&s);
    PathBuf::from(format!("{stem}.optim.safetensors"))
}

/// Everything a run needs to continue exactly: the checkpoint, Adam's moments (packed like
/// the parameters) and the step count.
pub struct TrainingState {
    pub checkpoint: Checkpoint,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u32,
    /// How the checkpoint was trained (its crop, recipe and validation score).
    pub meta: Option<TrainingMeta>,
}

impl TrainingState {
    /// The state of a network without batch norm buffers of its own (they get their initial
    /// values) and without training metadata.
    pub fn new(config: &ModelConfig, packed: &[f32], m: &[f32], v: &[f32], step: u32) -> Self {
        let table = ParamTable::new(config);
        TrainingState {
            checkpoint: Checkpoint {
                config: config.clone(),
                packed: packed.to_vec(),
                buffers: table.init_buffers(),
                batches_tracked: 0,
            },
            m: m.to_vec(),
            v: v.to_vec(),
            step,
            meta: None,
        }
    }
}

/// Saves a training run's state as the checkpoint `path` (the spec's tensors, loadable by
/// PyTorch) and its optimizer state beside it ([`optimizer_path`]). Each file records the step
/// and the hash of the parameters, so a pair left out of step (a crash between the two
/// renames) is refused by [`load_training`] instead of resuming wrongly. Both files are written
/// and synced under temporary names before either is renamed into place, so the window in
/// which a crash can split them is two renames wide. Returns the optimizer state's path.
pub fn save_training(path: &Path, state: &TrainingState) -> Result<PathBuf> {
    let (config, packed) = (&state.checkpoint.config, &state.checkpoint.packed);
    let (m, v, step) = (&state.m[..], &state.v[..], state.step);
    let optim = optimizer_path(path);
    let ck = checkpoint_bytes(path, &state.checkpoint, Some(step), state.meta.as_ref())?;
    let table = ParamTable::new(config);
    let n = table.packed_len();
    if m.len() != n || v.len() != n {
        return Err(err(
            &optim,
            format!(
                "moments of {} and {} values, the table has {n}",
                m.len(),
                v.len()
            ),
        ));
    }
    for (name, t) in [("adam.m", m), ("adam.v", v)] {
        if let Some(i) = t.iter().position(|x| !x.is_finite()) {
            return Err(err(
                &optim,
                format!(
                    "not written: `{name}`[{i}] is {} (training diverged?)",
                    t[i]
                ),
            ));
        }
    }
    let tensors: Vec<(String, Vec<usize>, &[f32])> =
        vec![("adam.m".into(), vec![n], m), ("adam.v".into(), vec![n], v)];
    let mut metadata = HashMap::new();
    metadata.insert(
        CONFIG_KEY.to_string(),
        serde_json::to_string(config).unwrap(),
    );
    metadata.insert("adam.step".to_string(), step.to_string());
    metadata.insert(
        HASH_KEY.to_string(),
        format!("{:016x}", params_hash(&table, packed)),
    );
    let opt = to_bytes(&tensors, metadata)?;
    // Both staged before either is in place (a failed stage removes what was staged), and the
    // optimizer state committed first: a checkpoint that appears always has its state beside it.
    let staged_ck = stage(path, &ck)?;
    let staged_opt = stage(&optim, &opt)?;
    commit(staged_opt, &optim)?;
    commit(staged_ck, path)?;
    Ok(optim)
}

/// The checkpoint path and the optimizer-state path beside it, both checked like
/// [`crate::files::check_file`] against `inputs`; returns the optimizer state's path.
pub fn check_pair_outputs(path: &Path, inputs: &[&Path]) -> Result<PathBuf> {
    let optim = optimizer_path(path);
    crate::files::check_file(path, inputs)?;
    crate::files::check_file(&optim, inputs)?;
    Ok(optim)
}

/// Loads checkpoint `path` and its optimizer state and checks they belong together: the same
/// config, the same step, and the optimizer state's record of the parameters' hash matches the
/// checkpoint's parameters.
pub fn load_training(path: &Path) -> Result<TrainingState> {
    let bytes =
        read_file(path, MAX_FILE_BYTES).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let checkpoint = from_bytes(&bytes, path)?;
    let header = parse(&bytes, path)?.1;
    let meta = training_meta(&header, path)?;
    let ck_step: Option<u32> = header
        .get(STEP_KEY)
        .map(|s| s.parse())
        .transpose()
        .map_err(|_| {
            err(
                path,
                format!("`{STEP_KEY}` in the header is not a step count"),
            )
        })?;
    drop(bytes);
    let config = &checkpoint.config;
    let optim = optimizer_path(path);
    let bytes = read_file(&optim, MAX_FILE_BYTES)
        .map_err(|e| err(&optim, format!("cannot read optimizer state: {e}")))?;
    let (st, header) = parse(&bytes, &optim)?;
    let saved: Option<ModelConfig> = header
        .get(CONFIG_KEY)
        .and_then(|j| serde_json::from_str(j).ok());
    if saved.as_ref() != Some(config) {
        return Err(err(
            &optim,
            format!(
                "optimizer state belongs to another model config than {}",
                path.display()
            ),
        ));
    }
    let step: u32 = header
        .get("adam.step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(&optim, "no `adam.step` in the header"))?;
    let table = ParamTable::new(config);
    let hash = format!("{:016x}", params_hash(&table, &checkpoint.packed));
    let recorded = header.get(HASH_KEY).ok_or_else(|| {
        err(
            &optim,
            format!(
                "no `{HASH_KEY}` in the header: it cannot be matched to {} (written by an older \
                 version?)",
                path.display()
            ),
        )
    })?;
    let mismatch = match ck_step {
        None => Some(format!(
            "{} records no training step (not saved by `train`)",
            path.display()
        )),
        Some(s) if s != step => Some(format!(
            "it is from step {step} and {} from step {s}",
            path.display()
        )),
        _ if *recorded != hash => Some(format!(
            "it belongs to other parameters than those in {}",
            path.display()
        )),
        _ => None,
    };
    if let Some(why) = mismatch {
        return Err(err(
            &optim,
            format!(
                "out of step with its checkpoint: {why} (a save was interrupted between the two \
                 files?); resume from a matching pair or start again"
            ),
        ));
    }
    let n = table.packed_len();
    let read = |name: &str| -> Result<Vec<f32>> {
        let t = st
            .tensor(name)
            .map_err(|_| err(&optim, format!("tensor `{name}` is missing")))?;
        if t.dtype() != Dtype::F32 || t.shape() != [n] {
            return Err(err(
                &optim,
                format!(
                    "tensor `{name}` is {:?} {:?}, expected F32 [{n}]",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        let mut out = vec![0.0f32; n];
        decode_f32(&optim, name, t.data(), &mut out)?;
        Ok(out)
    };
    Ok(TrainingState {
        m: read("adam.m")?,
        v: read("adam.v")?,
        step,
        checkpoint,
        meta,
    })
}
