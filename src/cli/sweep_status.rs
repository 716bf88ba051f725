//! The Slurm side of `ddpm-lab sweep`: submitting (`--launcher slurm`),
//! `sweep status DIR`, and `sweep-task`, which one array task runs.

use super::sweep::SweepCmd;
use crate::exit::{bad_input, Classified, Pending, Stopped};
use crate::sweep::devices::DeviceRequest;
use crate::sweep::launcher::Launcher;
use crate::sweep::results::Policy;
use crate::sweep::runner::{self, Planned, SweepOptions};
use crate::sweep::submit::{self, SubmitError};
use clap::Args;
use std::path::{Path, PathBuf};

fn submit_err(e: SubmitError) -> anyhow::Error {
    match e {
        SubmitError::Sweep(e) => e.into_cli(),
        e => anyhow::Error::new(e),
    }
}

/// Submit the planned sweep as a job array and a report job; with
/// `--dry-run`, print the array's script and size instead.
pub fn submit(p: &Planned, l: &Launcher, cmd: &SweepCmd) -> anyhow::Result<()> {
    let s = submit::submit(p, l, cmd.rerun_failed, cmd.dry_run).map_err(submit_err)?;
    let name = &p.spec.name;
    for (job, state, task) in &s.queued {
        eprintln!(
            "[sweep] {name}: job {job} is {} in Slurm (task {task}): left alone",
            state.to_lowercase()
        );
    }
    if cmd.dry_run {
        print!("{}", s.script);
        eprintln!(
            "[sweep] {name}: would submit an array of {} task(s) ({} job(s) completed, {} queued), then a report job; nothing submitted (--dry-run)",
            s.jobs.len(),
            s.completed,
            s.queued.len()
        );
        return Ok(());
    }
    match (&s.array_id, &s.report_id) {
        (Some(array), Some(report)) => {
            eprintln!(
                "[sweep] {name}: submitted array {array} ({} task(s), at most {} at once) and report job {report} (after the array)",
                s.jobs.len(),
                l.max_parallel
            );
            eprintln!(
                "[sweep] watch it: squeue -j {array},{report}   or   ddpm-lab sweep status {}",
                p.dir.root.display()
            );
        }
        _ => eprintln!(
            "[sweep] {name}: nothing to submit: {} job(s) completed, {} queued or running in Slurm",
            s.completed,
            s.queued.len()
        ),
    }
    Ok(())
}

/// Plan the sweep a folder holds, from its resolved spec; the plan and the
/// options it was made with.
fn plan_folder(
    dir: &Path,
    only_job: Option<String>,
    policy: Policy,
) -> anyhow::Result<(Planned, SweepOptions)> {
    let spec = crate::run::SweepDir::at(dir).spec();
    if !spec.exists() {
        return Err(bad_input(format!(
            "{}: not a sweep folder (no spec.toml); give results/<sweep>",
            dir.display()
        )));
    }
    let results = dir
        .canonicalize()
        .map_err(bad_input)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let opts = SweepOptions {
        spec,
        sets: vec![],
        results,
        devices: DeviceRequest::Auto,
        jobs_per_device: 1,
        cpu_jobs: 1,
        policy,
        quiet: true,
        no_eval: false,
        exe: std::env::current_exe()?,
        hardware: None,
        only_job,
    };
    let p = runner::prepare(&opts).map_err(|e| e.into_cli())?;
    Ok((p, opts))
}

/// `ddpm-lab sweep status DIR`: a line per job; exit 0, 1 or 3.
pub fn status(dir: &Path) -> anyhow::Result<()> {
    let (p, _) = plan_folder(dir, None, Policy::default())?;
    let (lines, arrays) = submit::status(&p).map_err(submit_err)?;
    println!(
        "{:<10} {:>4}  {:<12} {:>15}  slurm",
        "job", "runs", "state", "steps"
    );
    for l in &lines {
        let slurm = l.slurm.as_ref().map_or("-".to_string(), |(s, t)| {
            format!("{} ({t})", s.to_lowercase())
        });
        let state = if l.done {
            "completed"
        } else {
            l.state.as_str()
        };
        println!(
            "{:<10} {:>4}  {:<12} {:>15}  {slurm}",
            l.job,
            l.runs,
            state,
            format!("{}/{}", l.step, l.total)
        );
    }
    if !arrays.is_empty() {
        println!("arrays: {}", arrays.join(", "));
    }
    match submit::status_code(&lines) {
        0 => Ok(()),
        3 => Err(Pending(format!(
            "{} of {} job(s) queued or running in Slurm",
            lines.iter().filter(|l| l.slurm.is_some()).count(),
            lines.len()
        ))
        .into()),
        _ => anyhow::bail!(
            "{} of {} job(s) failed or stopped (see results/<sweep>/slurm/logs/); submit again to resume them, with --rerun-failed for the failed ones",
            lines.iter().filter(|l| !l.done).count(),
            lines.len()
        ),
    }
}

#[derive(Debug, Args)]
pub struct SweepTaskCmd {
    /// The sweep folder (results/<sweep>), planned from its spec.toml.
    pub dir: PathBuf,
    /// The submission's job list (results/<sweep>/slurm/jobs-<n>.json).
    #[arg(long)]
    pub jobs: PathBuf,
    /// This task's index in the list ($SLURM_ARRAY_TASK_ID).
    #[arg(long)]
    pub index: usize,
    /// Train a job that failed before again (from its last checkpoint).
    #[arg(long)]
    pub rerun_failed: bool,
}

/// `ddpm-lab sweep-task`: train, then evaluate, one job of a sweep folder,
/// on the devices Slurm gave this task. SIGTERM (which the array script
/// sends on USR1) checkpoints and exits 130 for the requeue.
pub fn task(cmd: SweepTaskCmd) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&cmd.jobs)
        .map_err(|e| bad_input(format!("{}: {e}", cmd.jobs.display())))?;
    let jobs: Vec<String> = serde_json::from_str(&text)
        .map_err(|e| bad_input(format!("{}: {e}", cmd.jobs.display())))?;
    let Some(job) = jobs.get(cmd.index).cloned() else {
        return Err(bad_input(format!(
            "--index {}: {} lists {} job(s)",
            cmd.index,
            cmd.jobs.display(),
            jobs.len()
        )));
    };
    let policy = Policy {
        rerun_failed: cmd.rerun_failed,
        force: false,
    };
    let (p, opts) = plan_folder(&cmd.dir, Some(job.clone()), policy)?;
    if !p.jobs.iter().any(|j| j.id == job) {
        return Err(bad_input(format!(
            "job {job} is not in the plan of {}: its spec changed since the submission; submit again",
            cmd.dir.display()
        )));
    }
    let _ = ctrlc::set_handler(crate::sweep::child::stop_children);
    let exec = crate::sweep::child::ProcessExecutor {
        exe: std::env::current_exe()?,
        dir: p.dir.clone(),
    };
    let summary = runner::execute(&p, &opts, &exec, &crate::run::StopToken::process())
        .map_err(|e| e.into_cli())?;
    eprint!("{}", runner::summary_text(&summary));
    if summary.interrupted {
        return Err(Stopped(format!(
            "job {job} checkpointed and stopped; a requeued task resumes it"
        ))
        .into());
    }
    if summary.failed > 0 {
        anyhow::bail!(
            "job {job} failed (its log: {}/logs/{job}.log)",
            p.dir.root.display()
        );
    }
    Ok(())
}
