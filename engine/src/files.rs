//! Files read and written. Reads are bounded: only regular files, of at most a given size, so
//! a device, a pipe or a huge file given by mistake is an error, not an endless read or an
//! allocation abort. Every output location is checked before any work starts (a run must not
//! train for an hour and then find its folder missing), an output that is also an input is
//! refused (it would be destroyed), and only regular files are ever replaced.
//!
//! Every write is atomic ([`write_atomic`], [`stage`]): a temporary file beside the target,
//! synced, then renamed into place, so a crash or a full disk leaves the old file or the new
//! one, never half of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Reads a whole file of at most `limit` bytes. Devices, pipes and folders are refused, and so
/// is a file larger than the limit, before anything is read: `/dev/zero` or a 50 GB file given
/// by mistake must be an error, not an allocation abort.
pub fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, ErrorKind, Read};
    let m = std::fs::metadata(path)?;
    if !m.is_file() {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            if m.is_dir() {
                "is a folder, not a file"
            } else {
                "is not a regular file"
            },
        ));
    }
    if m.len() > limit {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!("{} bytes, more than the {limit} bytes accepted", m.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    // `take`: a file that grows while being read still stops at the limit.
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(IoError::new(
            ErrorKind::InvalidInput,
            format!("more than the {limit} bytes accepted"),
        ));
    }
    Ok(bytes)
}

/// A file written and synced beside its target, not yet in place: [`Staged::commit`] renames
/// it over the target; dropped without that, it is removed.
pub struct Staged {
    temp: tempfile::TempPath,
    path: PathBuf,
}

impl Staged {
    /// Renames the file into place.
    pub fn commit(self) -> std::io::Result<()> {
        self.temp.persist(&self.path).map_err(|e| e.error)
    }
}

/// Writes `bytes` to a temporary file in `path`'s folder (named `.<name>.tmp-<random>`) and
/// syncs it; [`Staged::commit`] puts it in place. Two files that must appear together (a
/// checkpoint and its optimizer state) are both staged before either is committed.
pub fn stage(path: &Path, bytes: &[u8]) -> std::io::Result<Staged> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{}.tmp-", name.to_string_lossy()))
        .tempfile_in(parent_of(path))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    Ok(Staged {
        temp: file.into_temp_path(),
        path: path.to_path_buf(),
    })
}

/// Writes `bytes` to `path` atomically (see [`stage`]). Only a regular file (or nothing) at
/// `path` is replaced: a rename would put the new file in place of a folder's entry, a device
/// node or a link. Errors are [`Error::Data`] naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    ensure_replaceable(path)?;
    stage(path, bytes)
        .and_then(Staged::commit)
        .map_err(|e| err(path, format!("cannot write: {e}")))
}

fn err(path: &Path, message: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The folder a file path is written in (`.` for a bare name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// What a path that exists but is not a regular file is, in words (`None` for a regular file
/// or a path that does not exist). Symbolic links are not followed: replacing a link by
/// renaming a file over it would leave the file it points to untouched, which is not what
/// "write to this path" means.
pub fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let t = m.file_type();
    if t.is_file() {
        return None;
    }
    Some(if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        special_kind(&t)
    })
}

#[cfg(unix)]
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "not a regular file"
}

/// Fails unless `path` may be replaced by a new file: it does not exist yet, or it is a
/// regular file.
pub fn ensure_replaceable(path: &Path) -> Result<()> {
    match not_a_regular_file(path) {
        Some(kind) => Err(err(
            path,
            format!("is {kind}, not a regular file: refusing to replace it (give a file path)"),
        )),
        None => Ok(()),
    }
}

/// True when `a` and `b` name the same existing file (through links, `..`, hard links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Proves `dir` takes new files by creating (and removing) one: permissions, a read-only
/// mount or a full quota fail here, before the work, not after it.
pub fn probe_folder(dir: &Path) -> Result<()> {
    probe(dir).map_err(|m| err(dir, m))
}

fn probe(dir: &Path) -> std::result::Result<(), String> {
    match std::fs::metadata(dir) {
        Err(e) => return Err(format!("output folder cannot be used: {e}")),
        Ok(m) if !m.is_dir() => return Err("is not a folder: outputs cannot go in it".into()),
        Ok(_) => {}
    }
    let probe = dir.join(format!(".fer-cbam-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| format!("output folder is not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks, before any work, that `path` can be written as a new file: its folder exists and
/// is writable, the path is not a folder, link or device, and it is none of `inputs` (each a
/// file the same command reads, which writing would destroy).
pub fn check_file(path: &Path, inputs: &[&Path]) -> Result<()> {
    check_target(path, inputs)?;
    let dir = parent_of(path);
    probe(dir).map_err(|m| err(path, format!("cannot be written ({}: {m})", dir.display())))
}

/// [`check_file`] without the folder: for files in an output folder that is created later.
pub fn check_target(path: &Path, inputs: &[&Path]) -> Result<()> {
    if path.file_name().is_none() {
        return Err(err(path, "is not a file path"));
    }
    ensure_replaceable(path)?;
    for input in inputs {
        if same_file(path, input) {
            return Err(err(
                path,
                format!(
                    "is also an input ({}): writing it would destroy what is being read; \
                     write to another path",
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks, before any work, that `dir` can take the command's outputs, without creating it
/// (a run that fails leaves nothing behind): an existing folder must take new files; a missing
/// one must be creatable, its nearest existing ancestor a writable folder. A folder that is
/// also an input file is refused.
pub fn check_folder(dir: &Path, inputs: &[&Path]) -> Result<()> {
    for input in inputs {
        if same_file(dir, input) {
            return Err(err(
                dir,
                format!(
                    "is also an input ({}): write to another folder",
                    input.display()
                ),
            ));
        }
    }
    // Links to folders are fine here: files are created inside, nothing replaces the folder.
    if let Ok(m) = std::fs::metadata(dir) {
        if !m.is_dir() {
            return Err(err(dir, "exists and is not a folder"));
        }
        return probe_folder(dir);
    }
    let mut ancestor = dir.parent();
    let ancestor = loop {
        match ancestor {
            Some(a) if a.as_os_str().is_empty() => break Path::new("."),
            Some(a) if std::fs::symlink_metadata(a).is_ok() => break a,
            Some(a) => ancestor = a.parent(),
            None => break Path::new("."),
        }
    };
    probe(ancestor).map_err(|m| {
        err(
            dir,
            format!("cannot be created ({}: {m})", ancestor.display()),
        )
    })
}
