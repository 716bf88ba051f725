//! Where a training job stands: the one [`JobState`] every module uses, the
//! `status.json` a trainer keeps in its run folder ([`RunStatus`]), how a
//! sweep reads a folder back ([`Observed`]), and whether the process a status
//! names is still training ([`still_training`]).
//!
//! `status.json` is written atomically at start, at every checkpoint and at
//! the end, so a reader never sees half a file.

use super::atomic;
use super::layout::RunDir;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The state of a training job. `status.json` records the four a trainer
/// knows (running, completed, failed, interrupted); the others describe a
/// folder as a sweep or a report finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Planned, but its folder holds no status yet.
    New,
    Running,
    Completed,
    Failed,
    /// Stopped by a signal, or its process died while running: resumable.
    Interrupted,
    /// Another live process is training it: left alone.
    Busy,
    /// A folder whose status.json is missing or unreadable, or belongs to
    /// another config.
    Unknown,
    /// This sweep stopped before it started the job.
    NotStarted,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::New => "new",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Interrupted => "interrupted",
            JobState::Busy => "busy",
            JobState::Unknown => "unknown",
            JobState::NotStarted => "not-started",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What `status.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: JobState,
    /// Why it failed or stopped; empty when running or completed.
    pub reason: String,
    pub step: u64,
    pub total_steps: u64,
    pub wall_time_s: f64,
    pub device: String,
    pub pid: u32,
    /// The training hash ([`super::identity::training_hash`]).
    pub config_hash: String,
    /// The latest checkpoint's folder name, if any.
    pub last_checkpoint: Option<String>,
}

impl RunStatus {
    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        atomic::write_json(&RunDir::new(run_dir).status(), self)
    }

    /// The status of `run_dir`: None when there is none or it cannot be read.
    pub fn read(run_dir: &Path) -> Option<RunStatus> {
        Self::read_checked(run_dir).ok().flatten()
    }

    /// The status of `run_dir`: None when there is none; an error naming
    /// the file when it exists but cannot be read.
    pub fn read_checked(run_dir: &Path) -> Result<Option<RunStatus>, String> {
        atomic::read_json(&RunDir::new(run_dir).status())
    }
}

/// Whether a process with this pid exists.
pub fn alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let r = unsafe { libc::kill(pid as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether `pid` is a live `ddpm-lab train` process: alive, and (where /proc
/// tells) training, so a reused pid of another program does not hold a run
/// that was killed.
pub fn still_training(pid: u32) -> bool {
    alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split(|&b| b == 0).any(|arg| arg == b"train"))
            .unwrap_or(true)
}

/// A job folder as a sweep finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// New, Completed, Interrupted (a stale `running` included), Failed,
    /// Busy or Unknown.
    pub state: JobState,
    pub step: u64,
    /// Whether it has a checkpoint to resume from.
    pub checkpoint: bool,
    /// Why it failed (Failed only).
    pub reason: String,
    /// The process training it (Busy only).
    pub pid: u32,
}

impl Observed {
    fn new(state: JobState) -> Observed {
        Observed {
            state,
            step: 0,
            checkpoint: false,
            reason: String::new(),
            pid: 0,
        }
    }

    /// Read the job folder `dir`, whose training hash should be `hash`.
    pub fn read(dir: &Path, hash: &str) -> Observed {
        if !dir.exists() {
            return Observed::new(JobState::New);
        }
        let Some(s) = RunStatus::read(dir) else {
            return Observed::new(JobState::Unknown);
        };
        let state = match s.state {
            // A completed folder with another hash cannot happen (the folder
            // is named by the hash) unless edited by hand.
            JobState::Completed if s.config_hash != hash => JobState::Unknown,
            // Its process died, or it is this process's own (from before an
            // exec). Any live pid counts as busy: a sweep never takes a folder
            // that something may still be writing.
            JobState::Running if s.pid == std::process::id() || !alive(s.pid) => {
                JobState::Interrupted
            }
            JobState::Running => JobState::Busy,
            other => other,
        };
        Observed {
            state,
            step: s.step,
            checkpoint: s.last_checkpoint.is_some(),
            reason: if state == JobState::Failed {
                s.reason
            } else {
                String::new()
            },
            pid: if state == JobState::Busy { s.pid } else { 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: JobState, pid: u32) -> RunStatus {
        RunStatus {
            state,
            reason: "why".into(),
            step: 40,
            total_steps: 100,
            wall_time_s: 1.0,
            device: "cpu".into(),
            pid,
            config_hash: "abc".into(),
            last_checkpoint: Some("step-000000040".into()),
        }
    }

    #[test]
    fn a_running_status_whose_process_is_gone_is_interrupted_and_a_live_one_busy() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        status(JobState::Running, child.id())
            .write(dir.path())
            .unwrap();
        let seen = Observed::read(dir.path(), "abc");
        assert_eq!(
            (seen.state, seen.step, seen.checkpoint),
            (JobState::Interrupted, 40, true)
        );
        status(JobState::Completed, 1).write(dir.path()).unwrap();
        assert_eq!(Observed::read(dir.path(), "abc").state, JobState::Completed);
        assert_eq!(Observed::read(dir.path(), "other").state, JobState::Unknown);
        // A live process other than this one: busy.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        status(JobState::Running, sleeper.id())
            .write(dir.path())
            .unwrap();
        let busy = Observed::read(dir.path(), "abc");
        // still_training also asks /proc whether the process trains.
        let mut trainer = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "train"])
            .spawn()
            .unwrap();
        let sleeper_trains = still_training(sleeper.id());
        // Until its exec completes, /proc shows the parent's command line.
        let trainer_trains = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            still_training(trainer.id())
        });
        for c in [&mut sleeper, &mut trainer] {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert_eq!((busy.state, busy.pid), (JobState::Busy, sleeper.id()));
        assert!(!sleeper_trains, "sleep does not train");
        assert!(trainer_trains, "sh … train does");
        assert_eq!(
            Observed::read(&dir.path().join("nope"), "abc").state,
            JobState::New
        );
    }

    #[test]
    fn a_corrupt_status_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunStatus::read_checked(dir.path()), Ok(None));
        std::fs::write(dir.path().join("status.json"), "{\"state\": \"runn").unwrap();
        let e = RunStatus::read_checked(dir.path()).unwrap_err();
        assert!(e.contains("status.json"), "{e}");
        assert_eq!(Observed::read(dir.path(), "abc").state, JobState::Unknown);
    }

    #[test]
    fn states_serialize_as_their_names() {
        for s in [JobState::New, JobState::NotStarted, JobState::Busy] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
