//! What each training job of a sweep needs doing, given what earlier
//! invocations left in its folder (see [`crate::run::layout`] for the
//! folder), and writing the plan's files into it.

use super::plan::{Job, Plan, PlannedRun};
use crate::run::atomic::write_if_changed;
use crate::run::layout::PLAN_FILES;
use crate::run::records::{RunRecord, Swept};
use crate::run::{JobState, Observed, SweepDir};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    /// Trained and evaluated, but with other `eval.*` settings than its runs
    /// ask for now: evaluate again (only).
    Reevaluate,
    /// Another process is training it now.
    SkipBusy,
}

impl Action {
    pub fn trains(self) -> bool {
        matches!(self, Action::Train | Action::Resume | Action::Restart)
    }
    /// Whether a child process runs for it (training, evaluation or both).
    pub fn runs(self) -> bool {
        self.trains() || self.evaluates_only()
    }
    /// Whether it only evaluates (the job is trained already).
    pub fn evaluates_only(self) -> bool {
        matches!(self, Action::Evaluate | Action::Reevaluate)
    }
}

/// The flags that change what happens to existing jobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    pub rerun_failed: bool,
    pub force: bool,
}

/// Decide what to do with a job found as `seen`.
pub fn decide(seen: &Observed, policy: Policy) -> Action {
    match (seen.state, policy.force) {
        (JobState::Busy, _) => Action::SkipBusy,
        (JobState::New, _) => Action::Train,
        (_, true) => Action::Restart,
        (JobState::Completed, _) => Action::SkipCompleted,
        (JobState::Failed, _) if !policy.rerun_failed => Action::SkipFailed,
        (JobState::Interrupted | JobState::Failed, _) if seen.checkpoint => Action::Resume,
        // Interrupted or failed without a checkpoint, an unreadable status,
        // or a `running` status that Observed never yields.
        _ => Action::Restart,
    }
}

/// When the resolved spec differs from the `spec.toml` an earlier invocation
/// wrote, move that invocation's plan, summary, report, tables and charts to
/// `attic/plan-<time>/` and return where; None when it is the same spec or
/// the folder is new. Job folders stay: jobs shared with the new plan are reused.
pub fn retire_changed_plan(dir: &SweepDir, spec_text: &str) -> io::Result<Option<PathBuf>> {
    let old = dir.spec();
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

/// Move a run's TensorBoard folder into the attic (as `tb-<run>-<time>`)
/// before its job trains from scratch, so the new curves do not mix with an
/// earlier attempt's; None when it has none.
pub fn retire_tensorboard(dir: &SweepDir, run: &str) -> io::Result<Option<PathBuf>> {
    let from = dir.run_tensorboard(run);
    if !from.exists() {
        return Ok(None);
    }
    let to = unique(&dir.attic(), &format!("tb-{run}"))?;
    fs::rename(&from, &to)?;
    Ok(Some(to))
}

/// The swept values as a JSON object (in axis order).
pub fn swept_json(run: &PlannedRun) -> Swept {
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
    fs::create_dir_all(dir.jobs())?;
    fs::create_dir_all(dir.logs())?;
    for job in &plan.jobs {
        write_if_changed(&dir.job_config(&job.id), &job.config.to_toml())?;
    }
    for run in &plan.runs {
        let job: &Job = &plan.jobs[run.job];
        let rd = dir.run_dir(&run.id);
        fs::create_dir_all(&rd)?;
        let record = RunRecord {
            id: run.id.clone(),
            job: job.id.clone(),
            weights: run.weights,
            job_dir: format!("../../jobs/{}", job.id),
            swept: swept_json(run),
        };
        let text = serde_json::to_string_pretty(&record).map_err(io::Error::other)?;
        write_if_changed(&dir.run_record(&run.id), &text)?;
        write_if_changed(&rd.join("config.toml"), &run.config.to_toml())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(state: JobState, checkpoint: bool) -> Observed {
        Observed {
            state,
            step: 3,
            checkpoint,
            reason: String::new(),
            pid: 0,
        }
    }

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
        let failed = |checkpoint| seen(JobState::Failed, checkpoint);
        let interrupted = |checkpoint| seen(JobState::Interrupted, checkpoint);
        let completed = seen(JobState::Completed, true);
        let new = seen(JobState::New, false);
        assert_eq!(decide(&new, p), Action::Train);
        assert_eq!(decide(&completed, p), Action::SkipCompleted);
        assert_eq!(decide(&interrupted(true), p), Action::Resume);
        assert_eq!(decide(&interrupted(false), p), Action::Restart);
        assert_eq!(decide(&failed(true), p), Action::SkipFailed);
        assert_eq!(decide(&failed(true), rerun), Action::Resume);
        assert_eq!(decide(&failed(false), rerun), Action::Restart);
        assert_eq!(decide(&completed, force), Action::Restart);
        assert_eq!(decide(&new, force), Action::Train);
        assert_eq!(decide(&seen(JobState::Unknown, false), p), Action::Restart);
        // A job another process is training is never touched.
        let busy = seen(JobState::Busy, true);
        for policy in [p, rerun, force] {
            assert_eq!(decide(&busy, policy), Action::SkipBusy);
        }
    }
}
