//! `status.json` of a run directory: what state the run is in, and why.
//! Written atomically (temporary file, then rename) at start, at every
//! checkpoint and at the end, so a reader never sees half a file.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    Running,
    Completed,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: RunState,
    /// Why it failed or stopped; empty when running or completed.
    pub reason: String,
    pub step: u64,
    pub total_steps: u64,
    pub wall_time_s: f64,
    pub device: String,
    pub pid: u32,
    /// The training-config hash (see `trainer::config_hash`).
    pub config_hash: String,
    /// The latest checkpoint's folder name, if any.
    pub last_checkpoint: Option<String>,
}

/// Write `value` as JSON to `path` atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let text = serde_json::to_string_pretty(value).expect("plain data serializes"); // ok: plain data
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

impl RunStatus {
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        write_json_atomic(&run_dir.join("status.json"), self)
    }

    pub fn read(run_dir: &Path) -> Option<RunStatus> {
        let text = std::fs::read_to_string(run_dir.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }
}
