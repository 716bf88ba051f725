//! `ddpm-lab sweep SPEC --launcher slurm`: plan as a local sweep does, then
//! submit one job array for the jobs that are neither done nor already in
//! Slurm's queue, and a report job that runs after it; and `sweep status`,
//! which reads the folder and the queue back.
//!
//! State lives in the run folders, not in this process: submitting again
//! queues only what is missing, and a task started twice for one job (a
//! requeue) resumes from its checkpoint.

use super::launcher::Launcher;
use super::results::{retire, retire_tensorboard, Action};
use super::runner::{write_plan, Planned, SweepError};
use super::slurm::{self, SlurmError, Submission, TaskEnv};
use crate::run::SweepDir;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SubmitError + '_ {
    move |error| SubmitError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// What a submission did (or, with `--dry-run`, would do).
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The jobs in the array, in task order.
    pub jobs: Vec<String>,
    /// Jobs left alone because Slurm has them queued or running: (job, state, task).
    pub queued: Vec<(String, String, String)>,
    pub completed: usize,
    /// The array's script.
    pub script: String,
    /// None for a dry run, or when there was nothing to submit.
    pub array_id: Option<String>,
    pub report_id: Option<String>,
}

/// Plan, pick the jobs, write the scripts and submit (see the module notes).
/// `rerun_failed` and `force` mean what they mean locally; a forced job's
/// earlier attempt moves to the attic here, once, so a requeued task
/// resumes rather than starting over.
pub fn submit(
    p: &Planned,
    l: &Launcher,
    rerun_failed: bool,
    dry_run: bool,
) -> Result<Submitted, SubmitError> {
    let dir = &p.dir;
    let (subs, queued) = submissions_and_queue(dir)?;
    let jobs: Vec<&super::runner::JobView> = p
        .jobs
        .iter()
        .filter(|j| j.action.runs() && !queued.iter().any(|(q, _, _)| *q == j.id))
        .collect();
    let completed = p
        .jobs
        .iter()
        .filter(|j| j.action == Action::SkipCompleted)
        .count();
    let env = TaskEnv::here(&dir.root).map_err(io_at(&dir.root))?;
    let n = subs.len() + 1;
    let jobs_file = env.sweep_dir.join(format!("slurm/jobs-{n}.json"));
    let script = slurm::array_script(&p.spec.name, l, &env, &jobs_file, jobs.len(), rerun_failed);
    let mut out = Submitted {
        jobs: jobs.iter().map(|j| j.id.clone()).collect(),
        queued,
        completed,
        script,
        array_id: None,
        report_id: None,
    };
    if dry_run || jobs.is_empty() {
        return Ok(out);
    }
    write_plan(p)?;
    for j in jobs.iter().filter(|j| j.action == Action::Restart) {
        if dir.job_dir(&j.id).exists() {
            retire(dir, &j.id).map_err(io_at(&dir.job_dir(&j.id)))?;
        }
        for run in &j.runs {
            retire_tensorboard(dir, run).map_err(io_at(&dir.run_tensorboard(run)))?;
        }
    }
    let slurm_dir = dir.slurm();
    std::fs::create_dir_all(slurm_dir.join("logs")).map_err(io_at(&slurm_dir))?;
    let write = |name: &str, text: &str| {
        let path = slurm_dir.join(name);
        crate::run::atomic::write_atomic(&path, text).map_err(io_at(&path))?;
        Ok::<_, SubmitError>(path)
    };
    write(&format!("jobs-{n}.json"), &json(&out.jobs))?;
    let array = write("array.sbatch", &out.script)?;
    let report = write(
        "report.sbatch",
        &slurm::report_script(&p.spec.name, l, &env),
    )?;
    let array_id = slurm::sbatch(&array, &[])?;
    let report_id = slurm::sbatch(&report, &[format!("--dependency=afterany:{array_id}")])?;
    let mut all = subs;
    all.push(Submission {
        array_id: array_id.clone(),
        report_id: report_id.clone(),
        jobs_file: jobs_file.display().to_string(),
        jobs: out.jobs.clone(),
        submitted_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    });
    write("submissions.json", &json(&all))?;
    out.array_id = Some(array_id);
    out.report_id = Some(report_id);
    Ok(out)
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// What `sweep status` says of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLine {
    pub job: String,
    pub runs: usize,
    /// From its folder: completed, failed, interrupted, running, not started…
    pub state: String,
    pub step: u64,
    pub total: u64,
    /// Slurm's state and array task while it is queued (PENDING, RUNNING…).
    pub slurm: Option<(String, String)>,
    /// Done: trained and evaluated.
    pub done: bool,
    pub failed: bool,
}

/// Every job of the planned sweep `p` with its folder's state and Slurm's.
pub fn status(p: &Planned) -> Result<(Vec<JobLine>, Vec<String>), SubmitError> {
    let (subs, queued) = submissions_and_queue(&p.dir)?;
    let lines = p
        .jobs
        .iter()
        .map(|j| JobLine {
            job: j.id.clone(),
            runs: j.runs.len(),
            state: j.seen.state.to_string(),
            step: j.seen.step,
            total: j.cost.steps,
            slurm: queued
                .iter()
                .find(|(q, _, _)| *q == j.id)
                .map(|(_, state, task)| (state.clone(), task.clone())),
            done: j.action == Action::SkipCompleted,
            failed: j.action == Action::SkipFailed,
        })
        .collect();
    Ok((lines, subs.iter().map(|s| s.array_id.clone()).collect()))
}

/// `sweep status`'s exit code: 3 while any job is queued in Slurm, else 0
/// when every job is done, else 1 (failed, or stopped and not queued).
pub fn status_code(lines: &[JobLine]) -> i32 {
    if lines.iter().any(|l| l.slurm.is_some()) {
        3
    } else if lines.iter().all(|l| l.done) {
        0
    } else {
        1
    }
}

/// The folder's submissions so far, and each of their jobs Slurm still
/// has queued or running: (job, state, array task).
#[allow(clippy::type_complexity)]
fn submissions_and_queue(
    dir: &SweepDir,
) -> Result<(Vec<Submission>, Vec<(String, String, String)>), SubmitError> {
    let subs = slurm::read_submissions(&dir.slurm().join("submissions.json"))?;
    let queued = slurm::queued_jobs(&subs)?;
    Ok((subs, queued))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(done: bool, failed: bool, queued: bool) -> JobLine {
        JobLine {
            job: "j".into(),
            runs: 1,
            state: String::new(),
            step: 0,
            total: 10,
            slurm: queued.then(|| ("PENDING".to_string(), "1_0".to_string())),
            done,
            failed,
        }
    }

    #[test]
    fn status_exits_3_while_queued_then_1_for_any_failure_else_0() {
        assert_eq!(
            status_code(&[line(true, false, false), line(false, false, true)]),
            3
        );
        assert_eq!(
            status_code(&[line(true, false, false), line(false, true, true)]),
            3
        );
        assert_eq!(
            status_code(&[line(true, false, false), line(false, true, false)]),
            1
        );
        assert_eq!(
            status_code(&[line(true, false, false), line(false, false, false)]),
            1
        );
        assert_eq!(
            status_code(&[line(true, false, false), line(true, false, false)]),
            0
        );
    }
}
