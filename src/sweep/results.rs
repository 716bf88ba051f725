//! A sweep's results folder, and what each training job in it needs doing.
//!
//! ```text
//! results/<sweep>/
//!   sweep.lock             while a sweep process works here (see `lock`)
//!   spec.toml              the resolved spec: extends flattened, overrides folded in
//!   plan.json              every run and job of the last invocation, with full configs
//!   summary.json           how each job ended, after each invocation
//!   jobs/<job-id>.toml     a job's training config (what its child was given)
//!   jobs/<job-id>/         its run directory (`ddpm-lab train` layout)
//!   logs/<job-id>.log      its child's stderr, appended per attempt
//!   runs/<run-id>/         run.json (job, weights, swept values), config.toml
//!   attic/                 job folders moved aside by --force or a restart, and
//!                          plan-<time>/: an earlier plan's spec, plan, report,
//!                          tables and charts, moved aside when the spec changed
//! ```
//!
//! A job's folder is named by the hash of its training config, so a job whose
//! config changed is a new job, and a completed one is never trained twice.

use super::plan::{Job, Plan, PlannedRun};
use crate::train::status::{write_json_atomic, RunState, RunStatus};
use serde::Serialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The folder of one sweep.
#[derive(Debug, Clone)]
pub struct SweepDir {
    pub root: PathBuf,
}

impl SweepDir {
    pub fn new(results: &Path, name: &str) -> SweepDir {
        SweepDir {
            root: results.join(name),
        }
    }
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.root.join("jobs").join(id)
    }
    pub fn job_config(&self, id: &str) -> PathBuf {
        self.root.join("jobs").join(format!("{id}.toml"))
    }
    pub fn job_log(&self, id: &str) -> PathBuf {
        self.root.join("logs").join(format!("{id}.log"))
    }
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.root.join("runs").join(id)
    }
    pub fn attic(&self) -> PathBuf {
        self.root.join("attic")
    }
}

/// Where a job stands on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// No folder yet.
    New,
    Completed {
        step: u64,
    },
    /// Stopped by a signal, or its process died while running (a stale
    /// `running`): resumable from its last checkpoint.
    Interrupted {
        step: u64,
        checkpoint: bool,
    },
    Failed {
        step: u64,
        reason: String,
        checkpoint: bool,
    },
    /// A folder without a readable status.json (a start that died early).
    Unknown,
    /// Another live process (a `ddpm-lab train` by hand) is training it: left
    /// alone, even by --force and --rerun-failed.
    Busy {
        step: u64,
        pid: u32,
    },
}

impl JobState {
    pub fn read(dir: &Path, hash: &str) -> JobState {
        if !dir.exists() {
            return JobState::New;
        }
        let Some(s) = RunStatus::read(dir) else {
            return JobState::Unknown;
        };
        let checkpoint = s.last_checkpoint.is_some();
        match s.state {
            RunState::Completed if s.config_hash == hash => JobState::Completed { step: s.step },
            // A completed folder with another hash cannot happen (the folder is
            // named by the hash) unless edited by hand: treat it as unknown.
            RunState::Completed => JobState::Unknown,
            RunState::Interrupted => JobState::Interrupted {
                step: s.step,
                checkpoint,
            },
            RunState::Running if !super::lock::alive(s.pid) || s.pid == std::process::id() => {
                JobState::Interrupted {
                    step: s.step,
                    checkpoint,
                }
            }
            // Someone is training it right now outside this sweep.
            RunState::Running => JobState::Busy {
                step: s.step,
                pid: s.pid,
            },
            RunState::Failed => JobState::Failed {
                step: s.step,
                reason: s.reason,
                checkpoint,
            },
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobState::New => "new",
            JobState::Completed { .. } => "completed",
            JobState::Interrupted { .. } => "interrupted",
            JobState::Failed { .. } => "failed",
            JobState::Unknown => "unknown",
            JobState::Busy { .. } => "busy",
        }
    }
}

/// What to do with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Train from scratch into a fresh folder.
    Train,
    /// Continue from the last checkpoint.
    Resume,
    /// Move the old folder to the attic, then train from scratch.
    Restart,
    /// Completed already.
    SkipCompleted,
    /// Failed before, and --rerun-failed was not given.
    SkipFailed,
    /// Trained, but its evaluation is missing or incomplete: evaluate only.
    Evaluate,
    /// Another process is training it now.
    SkipBusy,
}

impl Action {
    pub fn trains(self) -> bool {
        matches!(self, Action::Train | Action::Resume | Action::Restart)
    }
    /// Whether a child process runs for it (training, evaluation or both).
    pub fn runs(self) -> bool {
        self.trains() || self == Action::Evaluate
    }
}

/// The flags that change what happens to existing jobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub rerun_failed: bool,
    pub force: bool,
}

/// Decide what to do with a job in `state`.
pub fn decide(state: &JobState, policy: Policy) -> Action {
    if policy.force {
        return match state {
            JobState::Busy { .. } => Action::SkipBusy,
            JobState::New => Action::Train,
            _ => Action::Restart,
        };
    }
    match state {
        JobState::Busy { .. } => Action::SkipBusy,
        JobState::New => Action::Train,
        JobState::Completed { .. } => Action::SkipCompleted,
        JobState::Interrupted {
            checkpoint: true, ..
        } => Action::Resume,
        JobState::Interrupted { .. } | JobState::Unknown => Action::Restart,
        JobState::Failed { .. } if !policy.rerun_failed => Action::SkipFailed,
        JobState::Failed {
            checkpoint: true, ..
        } => Action::Resume,
        JobState::Failed { .. } => Action::Restart,
    }
}

/// What a sweep folder holds about its plan (rather than its jobs): moved
/// aside together when the spec changes, so a new plan never overwrites the
/// previous plan's report.
pub const PLAN_FILES: [&str; 7] = [
    "spec.toml",
    "plan.json",
    "summary.json",
    "report.md",
    "report.html",
    "tables",
    "charts",
];

/// When the resolved spec differs from the `spec.toml` an earlier invocation
/// wrote, move that invocation's plan, summary, report, tables and charts to
/// `attic/plan-<time>/` and return where; None when it is the same spec or
/// the folder is new. Job folders stay: jobs shared with the new plan are reused.
pub fn retire_changed_plan(dir: &SweepDir, spec_text: &str) -> io::Result<Option<PathBuf>> {
    let old = dir.root.join("spec.toml");
    match fs::read_to_string(&old) {
        Ok(t) if t != spec_text => {}
        _ => return Ok(None),
    }
    let to = unique(&dir.attic(), "plan")?;
    fs::create_dir_all(&to)?;
    for name in PLAN_FILES {
        let from = dir.root.join(name);
        if from.exists() {
            fs::rename(&from, to.join(name))?;
        }
    }
    Ok(Some(to))
}

/// A new path `<attic>/<stem>-<unix time>[-n]` (the attic is created).
fn unique(attic: &Path, stem: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(attic)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut to = attic.join(format!("{stem}-{stamp}"));
    let mut n = 1;
    while to.exists() {
        to = attic.join(format!("{stem}-{stamp}-{n}"));
        n += 1;
    }
    Ok(to)
}

/// Move a job folder into the attic under a name that says when.
pub fn retire(dir: &SweepDir, job: &str) -> io::Result<PathBuf> {
    let to = unique(&dir.attic(), job)?;
    fs::rename(dir.job_dir(job), &to)?;
    Ok(to)
}

/// What `runs/<id>/run.json` holds.
#[derive(Debug, Serialize)]
pub struct RunRecord<'a> {
    pub id: &'a str,
    pub job: &'a str,
    /// `raw` or `ema-<decay>`: the weights this run is evaluated with.
    pub weights: &'a str,
    /// The training folder, relative to this run's folder.
    pub job_dir: String,
    pub swept: serde_json::Map<String, serde_json::Value>,
}

/// The swept values as a JSON object (in axis order).
pub fn swept_json(run: &PlannedRun) -> serde_json::Map<String, serde_json::Value> {
    run.assignment
        .iter()
        .map(|(k, v)| {
            let j = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
            (k.clone(), j)
        })
        .collect()
}

/// Write what the plan says into the folder: job configs and run records.
/// Existing files with the same content are left alone.
pub fn write_plan_files(dir: &SweepDir, plan: &Plan) -> io::Result<()> {
    fs::create_dir_all(dir.root.join("jobs"))?;
    fs::create_dir_all(dir.root.join("logs"))?;
    for job in &plan.jobs {
        write_if_changed(&dir.job_config(&job.id), &job.config.to_toml())?;
    }
    for run in &plan.runs {
        let job: &Job = &plan.jobs[run.job];
        let rd = dir.run_dir(&run.id);
        fs::create_dir_all(&rd)?;
        let record = RunRecord {
            id: &run.id,
            job: &job.id,
            weights: &run.weights,
            job_dir: format!("../../jobs/{}", job.id),
            swept: swept_json(run),
        };
        let text = serde_json::to_string_pretty(&record).expect("plain data"); // ok: plain data
        write_if_changed(&rd.join("run.json"), &text)?;
        write_if_changed(&rd.join("config.toml"), &run.config.to_toml())?;
    }
    Ok(())
}

/// Write `text` to `path` atomically unless it already holds exactly that.
pub fn write_if_changed(path: &Path, text: &str) -> io::Result<()> {
    if fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)
}

/// Write any serializable value as JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    write_json_atomic(path, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_state_and_the_flags() {
        let p = Policy::default();
        let rerun = Policy {
            rerun_failed: true,
            force: false,
        };
        let force = Policy {
            rerun_failed: false,
            force: true,
        };
        let failed = |checkpoint| JobState::Failed {
            step: 3,
            reason: "x".into(),
            checkpoint,
        };
        let interrupted = |checkpoint| JobState::Interrupted {
            step: 3,
            checkpoint,
        };
        assert_eq!(decide(&JobState::New, p), Action::Train);
        assert_eq!(
            decide(&JobState::Completed { step: 9 }, p),
            Action::SkipCompleted
        );
        assert_eq!(decide(&interrupted(true), p), Action::Resume);
        assert_eq!(decide(&interrupted(false), p), Action::Restart);
        assert_eq!(decide(&failed(true), p), Action::SkipFailed);
        assert_eq!(decide(&failed(true), rerun), Action::Resume);
        assert_eq!(decide(&failed(false), rerun), Action::Restart);
        assert_eq!(
            decide(&JobState::Completed { step: 9 }, force),
            Action::Restart
        );
        assert_eq!(decide(&JobState::New, force), Action::Train);
        assert_eq!(decide(&JobState::Unknown, p), Action::Restart);
        // A job another process is training is never touched.
        let busy = JobState::Busy { step: 3, pid: 7 };
        for policy in [p, rerun, force] {
            assert_eq!(decide(&busy, policy), Action::SkipBusy);
        }
    }

    #[test]
    fn a_running_status_whose_process_is_gone_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let status = RunStatus {
            state: RunState::Running,
            reason: String::new(),
            step: 40,
            total_steps: 100,
            wall_time_s: 1.0,
            device: "cpu".into(),
            pid: child.id(),
            config_hash: "abc".into(),
            last_checkpoint: Some("step-000000040".into()),
        };
        status.write(dir.path()).unwrap();
        assert_eq!(
            JobState::read(dir.path(), "abc"),
            JobState::Interrupted {
                step: 40,
                checkpoint: true
            }
        );
        let mut done = status.clone();
        done.state = RunState::Completed;
        done.write(dir.path()).unwrap();
        assert_eq!(
            JobState::read(dir.path(), "abc"),
            JobState::Completed { step: 40 }
        );
        assert_eq!(JobState::read(dir.path(), "other"), JobState::Unknown);
        // A live process other than this one: busy.
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut live = status.clone();
        live.pid = sleeper.id();
        live.write(dir.path()).unwrap();
        let state = JobState::read(dir.path(), "abc");
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert_eq!(
            state,
            JobState::Busy {
                step: 40,
                pid: live.pid
            }
        );
        assert_eq!(
            JobState::read(&dir.path().join("nope"), "abc"),
            JobState::New
        );
    }
}
