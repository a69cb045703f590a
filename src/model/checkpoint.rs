//! safetensors checkpoints: parameters named exactly as the spec lists them, f32, and the model
//! config as JSON in the header's `__metadata__`, so a checkpoint alone runs inference.
//! Writes are atomic (a temporary file in the same folder, then a rename).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::files::read_file;
use crate::model::config::ModelConfig;
use crate::model::params::ParamTable;

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

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Writes `bytes` to `path` atomically: a crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temporary(path, bytes)?;
    commit(&tmp, path)
}

/// The temporary file [`write_atomic`] writes before renaming it to `path`.
fn temporary_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| err(path, "not a file path"))?;
    Ok(crate::files::parent_of(path).join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes and syncs the temporary file for `path`; [`commit`] renames it into place. Only a
/// regular file (or nothing) at `path` may be replaced: a rename would put the new file in
/// place of a folder's entry, a device node or a link.
fn write_temporary(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    crate::files::ensure_replaceable(path)?;
    let tmp = temporary_path(path)?;
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path, format!("cannot write: {e}")));
    }
    Ok(tmp)
}

fn commit(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(err(path, format!("cannot write: {e}")));
    }
    Ok(())
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
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| Error::InvalidConfig {
                    op: "safetensors".into(),
                    message: format!("tensor `{name}`: {e}"),
                })?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_>>()?;
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::InvalidConfig {
            op: "safetensors".into(),
            message: e.to_string(),
        })?;
    sort_metadata(bytes)
}

/// Saves the parameters of `packed` (laid out by the config's [`ParamTable`]).
pub fn save(path: &Path, config: &ModelConfig, packed: &[f32]) -> Result<()> {
    write_atomic(path, &checkpoint_bytes(path, config, packed, None)?)
}

/// The bytes of a checkpoint: the spec's tensors, the config, the hash of the parameters and,
/// for a save made by training, the step. Non-finite parameters are refused: such a file would
/// evaluate and predict without complaint, every score NaN.
fn checkpoint_bytes(
    path: &Path,
    config: &ModelConfig,
    packed: &[f32],
    step: Option<u32>,
) -> Result<Vec<u8>> {
    let table = ParamTable::new(config);
    if packed.len() != table.packed_len() {
        return Err(err(
            path,
            format!(
                "{} packed values for a table of {}",
                packed.len(),
                table.packed_len()
            ),
        ));
    }
    if let Some((name, i, v)) = first_non_finite(&table, packed) {
        return Err(err(
            path,
            format!("not written: parameter `{name}`[{i}] is {v} (training diverged?)"),
        ));
    }
    let tensors: Vec<(String, Vec<usize>, &[f32])> = table
        .entries()
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.shape.clone(),
                &packed[e.offset..e.offset + e.len()],
            )
        })
        .collect();
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
    to_bytes(&tensors, metadata)
}

/// The first parameter value that is NaN or infinite: (tensor, index in it, value).
fn first_non_finite<'a>(table: &'a ParamTable, packed: &[f32]) -> Option<(&'a str, usize, f32)> {
    table.entries().iter().find_map(|e| {
        packed[e.offset..e.offset + e.len()]
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (e.name.as_str(), i, packed[e.offset + i]))
    })
}

/// A loaded checkpoint: its config and its parameters packed by the config's table.
pub struct Checkpoint {
    pub config: ModelConfig,
    pub packed: Vec<f32>,
}

/// Reads and checks a checkpoint: the config must parse, and every parameter the config implies
/// must be present with its exact shape and dtype f32, with nothing else beside them.
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
    // Every tensor is checked before anything is allocated, so the allocation below is bounded
    // by what the file holds, whatever its header claims.
    let mut views = Vec::with_capacity(table.entries().len());
    for e in table.entries() {
        let view = st.tensor(&e.name).map_err(|_| {
            err(
                path,
                format!("tensor `{}` {:?} is missing", e.name, e.shape),
            )
        })?;
        if view.dtype() != Dtype::F32 {
            return Err(err(
                path,
                format!("tensor `{}` is {:?}, expected F32", e.name, view.dtype()),
            ));
        }
        if view.shape() != e.shape.as_slice() {
            return Err(err(
                path,
                format!(
                    "tensor `{}` has shape {:?}, the config needs {:?}",
                    e.name,
                    view.shape(),
                    e.shape
                ),
            ));
        }
        views.push(view);
    }
    if let Some(extra) = st.names().into_iter().find(|n| table.get(n).is_none()) {
        return Err(err(
            path,
            format!("unexpected tensor `{extra}` for this config"),
        ));
    }
    let mut packed = vec![0.0f32; table.packed_len()];
    for (e, view) in table.entries().iter().zip(&views) {
        decode_f32(
            path,
            &e.name,
            view.data(),
            &mut packed[e.offset..e.offset + e.len()],
        )?;
    }
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
    Ok(Checkpoint { config, packed })
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
}

/// Saves a training run's state as the checkpoint `path` (the spec's tensors, loadable by
/// PyTorch) and its optimizer state beside it ([`optimizer_path`]). Each file records the step
/// and the hash of the parameters, so a pair left out of step (a crash between the two
/// renames) is refused by [`load_training`] instead of resuming wrongly. Both files are written
/// and synced under temporary names before either is renamed into place, so the window in
/// which a crash can split them is two renames wide. Returns the optimizer state's path.
pub fn save_training(
    path: &Path,
    config: &ModelConfig,
    packed: &[f32],
    m: &[f32],
    v: &[f32],
    step: u32,
) -> Result<PathBuf> {
    let optim = optimizer_path(path);
    let ck = checkpoint_bytes(path, config, packed, Some(step))?;
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
    let tmp_ck = write_temporary(path, &ck)?;
    let tmp_opt = match write_temporary(&optim, &opt) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_ck);
            return Err(e);
        }
    };
    // The optimizer state first: a checkpoint that appears always has its state beside it.
    if let Err(e) = commit(&tmp_opt, &optim) {
        let _ = std::fs::remove_file(&tmp_ck);
        return Err(e);
    }
    commit(&tmp_ck, path)?;
    Ok(optim)
}

/// Loads checkpoint `path` and its optimizer state and checks they belong together: the same
/// config, the same step, and the optimizer state's record of the parameters' hash matches the
/// checkpoint's parameters.
pub fn load_training(path: &Path) -> Result<TrainingState> {
    let bytes =
        read_file(path, MAX_FILE_BYTES).map_err(|e| err(path, format!("cannot read: {e}")))?;
    let checkpoint = from_bytes(&bytes, path)?;
    let ck_step: Option<u32> = parse(&bytes, path)?
        .1
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
    let (st, meta) = parse(&bytes, &optim)?;
    let saved: Option<ModelConfig> = meta
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
    let step: u32 = meta
        .get("adam.step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(&optim, "no `adam.step` in the header"))?;
    let table = ParamTable::new(config);
    let hash = format!("{:016x}", params_hash(&table, &checkpoint.packed));
    let recorded = meta.get(HASH_KEY).ok_or_else(|| {
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
    })
}
