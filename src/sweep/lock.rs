//! The lock on a sweep's results folder: one sweep process at a time.
//!
//! `sweep.lock` holds the owner's pid and start time. It is created atomically
//! (written under a temporary name, then hard-linked into place, which fails
//! if a lock exists), so two sweeps cannot both believe they own the folder. A
//! lock whose process is gone is stale and is taken over. The lock is removed
//! when its owner drops it.

use crate::run::status::alive;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "sweep.lock";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    /// Seconds since the Unix epoch.
    pub since: u64,
    pub command: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} is locked by another sweep (pid {pid}, running for {age}); wait for it to finish or stop it (kill {pid}); a lock whose process is gone is taken over automatically")]
    Held { path: String, pid: u32, age: String },
    #[error("locking {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; dropping it releases the folder.
#[derive(Debug)]
pub struct SweepLock {
    path: PathBuf,
    pid: u32,
    /// The pid of a stale lock this one replaced, if any.
    pub took_over: Option<u32>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn age(since: u64) -> String {
    super::runner::human_secs(now().saturating_sub(since) as f64)
}

/// Take the lock on `dir` (created if missing).
pub fn acquire(dir: &Path) -> Result<SweepLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    let me = std::process::id();
    let info = LockInfo {
        pid: me,
        since: now(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let tmp = dir.join(format!(".{LOCK_FILE}.{me}"));
    fs::write(&tmp, serde_json::to_string(&info).expect("plain data")).map_err(io)?; // ok: plain data
    let mut took_over = None;
    let result = loop {
        match fs::hard_link(&tmp, &path) {
            Ok(()) => break Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder: Option<LockInfo> = fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                match holder {
                    Some(h) if h.pid != me && alive(h.pid) => {
                        break Err(LockError::Held {
                            path: dir.display().to_string(),
                            pid: h.pid,
                            age: age(h.since),
                        })
                    }
                    stale if took_over.is_none() => {
                        // Gone (or unreadable, or ours from before): take it over.
                        took_over = Some(stale.map_or(0, |h| h.pid));
                        let _ = fs::remove_file(&path);
                    }
                    _ => break Err(io(e)),
                }
            }
            Err(e) => break Err(io(e)),
        }
    };
    let _ = fs::remove_file(&tmp);
    result.map(|()| SweepLock {
        path,
        pid: me,
        took_over,
    })
}

impl Drop for SweepLock {
    fn drop(&mut self) {
        // Only remove the lock if it is still ours.
        let ours = fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<LockInfo>(&t).ok())
            .is_some_and(|h| h.pid == self.pid);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_lock(dir: &Path, pid: u32) {
        let info = LockInfo {
            pid,
            since: now() - 300,
            command: "ddpm-lab sweep x.toml".into(),
        };
        fs::write(dir.join(LOCK_FILE), serde_json::to_string(&info).unwrap()).unwrap();
    }

    #[test]
    fn a_live_holder_is_named_and_a_dead_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // A live process that is not us: a child that sleeps.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        write_lock(dir.path(), child.id());
        let e = acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "locked by another sweep (pid {}, running for 5min)",
                child.id()
            )),
            "{e}"
        );
        assert!(e.contains(&format!("kill {}", child.id())), "{e}");
        child.kill().unwrap();
        child.wait().unwrap();
        // Its process is gone now: the lock is stale.
        let lock = acquire(dir.path()).unwrap();
        assert_eq!(lock.took_over, Some(child.id()));
        let info: LockInfo =
            serde_json::from_str(&fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(info.pid, std::process::id());
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists(), "released on drop");
    }

    #[test]
    fn a_fresh_folder_locks_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("results/demo");
        let lock = acquire(&sub).unwrap();
        assert_eq!(lock.took_over, None);
        assert!(sub.join(LOCK_FILE).exists());
        assert!(alive(std::process::id()));
    }
}
