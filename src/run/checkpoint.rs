//! Checkpoints: everything needed to resume a run exactly.
//!
//! `checkpoints/step-000001000/` holds:
//! * `raw.safetensors`: the raw weights, one tensor per parameter name (loadable
//!   with `safetensors.torch.load_file`);
//! * `ema-<decay>.safetensors`: each EMA's usable weights, likewise;
//! * `optimizer.safetensors`: flat AdamW moments and step, the loss scaler, and
//!   each EMA's raw shadow;
//! * `state.json`: the step, the EMA step count, the timestep sampler's state,
//!   the size and SHA-256 of every file, and the training-config hash.
//!
//! Data order and random draws need no state: they are pure functions of the
//! seed and the step ([`crate::rng`]).
//!
//! A checkpoint is written to a temporary folder and renamed into place, so a
//! crash (even `kill -9`) leaves either the whole checkpoint or none of it.

use crate::diffusion::SamplerState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

pub const FORMAT_VERSION: u32 = 1;

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format_version: u32,
    pub step: u64,
    pub ema_steps: u64,
    pub ema_decays: Vec<f64>,
    pub sampler: SamplerState,
    pub config_hash: String,
    pub parameters: i64,
    /// file name → (bytes, sha256 hex).
    pub files: Vec<(String, u64, String)>,
    pub wall_time_s: f64,
}

/// A problem with a checkpoint on disk.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "checkpoint {path}: {what}. Delete that folder to fall back to the previous checkpoint"
    )]
    Corrupt { path: PathBuf, what: String },
    #[error("writing checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {source}")]
    Tensor {
        path: PathBuf,
        #[source]
        source: tch::TchError,
    },
}

/// The tensors of one checkpoint, grouped by file.
#[derive(Debug)]
pub struct CheckpointData {
    /// file stem (`raw`, `ema-0.9999`, `optimizer`) → named tensors.
    pub files: Vec<(String, Vec<(String, Tensor)>)>,
}

impl CheckpointData {
    /// The bytes its tensors take (the files add a small header each).
    pub fn bytes(&self) -> u64 {
        self.files
            .iter()
            .flat_map(|(_, tensors)| tensors)
            .map(|(_, t)| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64)
            .sum()
    }
}

/// Fail with [`std::io::ErrorKind::StorageFull`] when the file system of
/// `dir` has less free space than `bytes` (plus a margin for the headers and
/// state.json). libtorch's own write error on a full disk carries only the
/// OS's text; checking first gives a full disk its kind, and writes nothing.
pub fn ensure_space(dir: &Path, bytes: u64) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs fills the zeroed struct we own from a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    let need = bytes + (1 << 20);
    if free < need {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!(
                "{} MB needed, {} MB free",
                need.div_ceil(1 << 20),
                free / (1 << 20)
            ),
        ));
    }
    Ok(())
}

pub fn dir_name(step: u64) -> String {
    format!("step-{step:09}")
}

/// Whether `root` holds a checkpoint (or snapshot) of `step`: one with its
/// state.json (a folder is renamed into place whole, with it).
pub fn is_written(root: &Path, step: u64) -> bool {
    root.join(dir_name(step)).join("state.json").exists()
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        h.update(&buf[..k]);
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((n, hex))
}

/// Write a checkpoint atomically under `root` (the run's `checkpoints/`).
pub fn write(
    root: &Path,
    data: &CheckpointData,
    mut state: CheckpointState,
) -> Result<PathBuf, CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    fs::create_dir_all(root).map_err(io(root))?;
    ensure_space(root, data.bytes()).map_err(io(root))?;
    let final_dir = root.join(dir_name(state.step));
    let tmp = root.join(format!(
        ".tmp-{}-{}",
        dir_name(state.step),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // A write that fails (a full disk, say) takes its half-written folder with it.
    fill_and_rename(&tmp, &final_dir, data, &mut state).inspect_err(|_| {
        let _ = fs::remove_dir_all(&tmp);
    })?;
    Ok(final_dir)
}

/// Write the files and state.json into `tmp`, then rename it to `final_dir`.
fn fill_and_rename(
    tmp: &Path,
    final_dir: &Path,
    data: &CheckpointData,
    state: &mut CheckpointState,
) -> Result<(), CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CheckpointError::Io { path, source }
    };
    state.files.clear();
    for (stem, tensors) in &data.files {
        let name = format!("{stem}.safetensors");
        let path = tmp.join(&name);
        let cpu: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.to_device(Device::Cpu).contiguous()))
            .collect();
        Tensor::write_safetensors(&cpu, &path).map_err(|source| CheckpointError::Tensor {
            path: path.clone(),
            source,
        })?;
        let (bytes, sha) = sha256_file(&path).map_err(io(&path))?;
        state.files.push((name, bytes, sha));
    }
    let json = serde_json::to_string_pretty(&*state).expect("state serializes"); // ok: plain data
    let state_path = tmp.join("state.json");
    fs::write(&state_path, json).map_err(io(&state_path))?;
    if final_dir.exists() {
        fs::remove_dir_all(final_dir).map_err(io(final_dir))?;
    }
    fs::rename(tmp, final_dir).map_err(io(final_dir))
}

/// Checkpoint folders under `root`, oldest first.
pub fn list(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Delete all but the newest `keep` checkpoints, and leftover temporary folders.
pub fn prune(root: &Path, keep: usize) -> std::io::Result<()> {
    let all = list(root);
    for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
        fs::remove_dir_all(path)?;
    }
    for e in fs::read_dir(root)?.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// Read and verify a checkpoint: every file present, of the recorded size and hash.
pub fn read(dir: &Path) -> Result<(CheckpointState, CheckpointData), CheckpointError> {
    let corrupt = |what: String| CheckpointError::Corrupt {
        path: dir.to_path_buf(),
        what,
    };
    let state_path = dir.join("state.json");
    let text = fs::read_to_string(&state_path)
        .map_err(|e| corrupt(format!("cannot read state.json ({e})")))?;
    let state: CheckpointState = serde_json::from_str(&text)
        .map_err(|e| corrupt(format!("state.json is not a valid checkpoint state ({e})")))?;
    if state.format_version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} (this ddpm-lab reads {FORMAT_VERSION})",
            state.format_version
        )));
    }
    let mut files = vec![];
    for (name, bytes, sha) in &state.files {
        let path = dir.join(name);
        let (n, h) =
            sha256_file(&path).map_err(|e| corrupt(format!("cannot read {name} ({e})")))?;
        if n != *bytes {
            return Err(corrupt(format!(
                "{name} has {n} bytes, expected {bytes} (truncated?)"
            )));
        }
        if h != *sha {
            return Err(corrupt(format!(
                "{name} does not match its SHA-256 (corrupted?)"
            )));
        }
        let tensors =
            Tensor::read_safetensors(&path).map_err(|source| CheckpointError::Tensor {
                path: path.clone(),
                source,
            })?;
        let stem = name.trim_end_matches(".safetensors").to_string();
        files.push((stem, tensors));
    }
    Ok((state, CheckpointData { files }))
}

impl CheckpointData {
    pub fn get(&self, file: &str, name: &str) -> Option<&Tensor> {
        self.files
            .iter()
            .find(|(f, _)| f == file)?
            .1
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn state(step: u64) -> CheckpointState {
        CheckpointState {
            format_version: FORMAT_VERSION,
            step,
            ema_steps: step,
            ema_decays: vec![0.9],
            sampler: SamplerState::Uniform,
            config_hash: "abc".into(),
            parameters: 3,
            files: vec![],
            wall_time_s: 1.0,
        }
    }

    #[test]
    fn a_disk_without_room_is_a_full_disk_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        ensure_space(dir.path(), 1024).unwrap();
        let e = ensure_space(dir.path(), u64::MAX / 4).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        assert!(e.to_string().contains("MB needed"), "{e}");
        // The tensors' bytes: 3 f32 and 2 f32 values here.
        let d = CheckpointData {
            files: vec![(
                "raw".into(),
                vec![
                    ("a".into(), Tensor::zeros([3], (Kind::Float, Device::Cpu))),
                    ("b".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu))),
                ],
            )],
        };
        assert_eq!(d.bytes(), 20);
    }

    fn data() -> CheckpointData {
        CheckpointData {
            files: vec![(
                "raw".into(),
                vec![("w".into(), Tensor::from_slice(&[1.0f32, 2.0, 3.0]))],
            )],
        }
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_folder() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the checkpoint folder goes: the last step of the write fails.
        std::fs::write(dir.path().join(dir_name(5)), "in the way").unwrap();
        let e = write(dir.path(), &data(), state(5)).unwrap_err();
        assert!(e.to_string().starts_with("writing checkpoint"), "{e}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [dir_name(5)]);
    }

    #[test]
    fn written_checkpoints_read_back_and_prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for step in [10, 20, 30] {
            write(dir.path(), &data(), state(step)).unwrap();
        }
        let (s, d) = read(&dir.path().join(dir_name(30))).unwrap();
        assert_eq!(s.step, 30);
        assert!(d
            .get("raw", "w")
            .unwrap()
            .equal(&Tensor::from_slice(&[1.0f32, 2.0, 3.0])));
        assert_eq!(d.get("raw", "w").unwrap().kind(), Kind::Float);
        prune(dir.path(), 2).unwrap();
        let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![20, 30]);
    }

    #[test]
    fn truncated_and_corrupted_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ck = write(dir.path(), &data(), state(5)).unwrap();
        let f = ck.join("raw.safetensors");
        let bytes = fs::read(&f).unwrap();
        fs::write(&f, &bytes[..bytes.len() - 4]).unwrap();
        let e = read(&ck).unwrap_err().to_string();
        assert!(
            e.contains("raw.safetensors") && e.contains("truncated"),
            "{e}"
        );
        assert!(e.contains(&ck.display().to_string()), "{e}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(&f, &flipped).unwrap();
        let e = read(&ck).unwrap_err().to_string();
        assert!(e.contains("SHA-256"), "{e}");
        fs::remove_file(ck.join("state.json")).unwrap();
        let e = read(&ck).unwrap_err().to_string();
        assert!(e.contains("state.json"), "{e}");
    }
}
