//! Running a training job as a child process: `ddpm-lab train <job>.toml
//! --out jobs/<id> --device …`, seeing only its slot's GPU.
//!
//! A child's crash, out-of-memory or NaN ends that child, not the sweep, and
//! its memory goes back to the system when it exits. The child reports
//! progress as JSON lines on stdout; its stderr is appended to
//! `logs/<job>.log` and its last lines kept for the failure report. On Ctrl-C
//! or SIGTERM the sweep forwards SIGTERM to every child, which checkpoints and
//! exits with 130; children also get SIGTERM if the sweep process dies.

use super::devices::{Slot, SlotDevice};
use super::executor::{Executor, JobOutcome, JobTicket};
use super::progress::SweepProgress;
use super::results::Action;
use crate::run::records::ProgressLine;
use crate::run::{JobState, RunStatus, StopToken, SweepDir};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// The pids of the running children.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(vec![]);

/// Lines of a failed job's stderr kept for its report.
pub const STDERR_TAIL: usize = 12;

/// The signal handler of `ddpm-lab sweep`: set the process's stop token
/// (start nothing new) and ask every running child to checkpoint and stop
/// (SIGTERM).
pub fn stop_children() {
    StopToken::process().stop();
    let pids = CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for pid in pids {
        // SAFETY: sending a signal to a pid we spawned and have not reaped.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
}

/// Why a child could not be run to its end (it is reported as the job's
/// failure to start).
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("opening {}: {error}", .path.display())]
    OpenLog {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("starting {}: {error}", .exe.display())]
    Spawn { exe: PathBuf, error: std::io::Error },
    #[error("waiting for the child: {error}")]
    Wait { error: std::io::Error },
}

/// Runs jobs as children of this same binary.
pub struct ProcessExecutor {
    pub exe: PathBuf,
    pub dir: SweepDir,
}

/// What a child said on its progress channel besides progress: its
/// failure reason.
#[derive(Default)]
struct Said {
    failed: Option<String>,
}

impl ProcessExecutor {
    /// A child of this binary on `slot`: only its GPU visible, no
    /// `DDPM_LAB_*` layer (the job's files are the whole truth), stdout and
    /// stderr piped, SIGTERM if this process dies.
    fn command(&self, slot: &Slot) -> Command {
        let mut cmd = Command::new(&self.exe);
        for (k, _) in std::env::vars() {
            if k.starts_with("DDPM_LAB_") {
                cmd.env_remove(k);
            }
        }
        match &slot.device {
            SlotDevice::Cuda { visible, .. } => cmd.env("CUDA_VISIBLE_DEVICES", visible),
            SlotDevice::Cpu => cmd.env("CUDA_VISIBLE_DEVICES", ""),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to send
        // SIGTERM to the child if this process dies first.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        cmd
    }

    /// Run a child to its end: stderr appended to the job's log (its tail
    /// kept), each progress line on stdout given to `on_line`, and its
    /// failure reason, if it reports one, kept.
    fn run_child(
        &self,
        job: &JobTicket,
        slot: &Slot,
        what: &str,
        mut cmd: Command,
        stop: &StopToken,
        mut on_line: impl FnMut(&ProgressLine),
    ) -> Result<(std::process::ExitStatus, Vec<String>, Said), ChildError> {
        let log_path = self.dir.job_log(&job.id);
        let mut log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
        {
            Ok(log) => log,
            Err(error) => {
                return Err(ChildError::OpenLog {
                    path: log_path,
                    error,
                })
            }
        };
        let _ = writeln!(log, "=== {} {what} on {}: {:?}", job.id, slot.label(), cmd);
        let mut child = cmd.spawn().map_err(|error| ChildError::Spawn {
            exe: self.exe.clone(),
            error,
        })?;
        let pid = child.id();
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
        if stop.is_stopped() {
            // A stop arrived between the pick and the spawn.
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let stderr = child.stderr.take().expect("piped"); // ok: piped by command()
        let stdout = child.stdout.take().expect("piped"); // ok: piped by command()
        let mut said = Said::default();
        let tail = std::thread::scope(|scope| {
            let reader = scope.spawn(move || {
                let mut tail: VecDeque<String> = VecDeque::new();
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = writeln!(log, "{line}");
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                tail
            });
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match ProgressLine::parse(&line) {
                    Some(ProgressLine::Failed { reason }) => said.failed = Some(reason),
                    Some(p) => on_line(&p),
                    None => {}
                }
            }
            reader.join().unwrap_or_default()
        });
        let status = child.wait();
        CHILDREN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&p| p != pid);
        let status = status.map_err(|error| ChildError::Wait { error })?;
        Ok((status, tail.into_iter().collect(), said))
    }

    /// How a child ended, as (ended, exit code, reason): the reason its
    /// status.json records, else the one it reported, else its exit.
    fn judge(
        status: std::process::ExitStatus,
        run_status: Option<&RunStatus>,
        said: Said,
        stop: &StopToken,
    ) -> (JobState, Option<i32>, String) {
        match (status.code(), status.signal()) {
            (Some(0), _) => (JobState::Completed, Some(0), String::new()),
            (Some(130), _) => (
                JobState::Interrupted,
                Some(130),
                "stopped by a signal; the next run of the sweep resumes it".into(),
            ),
            (Some(code), _) => {
                let reason = match run_status {
                    Some(r) if r.state == JobState::Failed && !r.reason.is_empty() => {
                        r.reason.clone()
                    }
                    _ => said
                        .failed
                        .unwrap_or_else(|| format!("exited with code {code}")),
                };
                (JobState::Failed, Some(code), reason)
            }
            (None, Some(sig)) if stop.is_stopped() => (
                JobState::Interrupted,
                None,
                format!("ended by signal {sig} while the sweep stopped"),
            ),
            (None, Some(sig)) => (
                JobState::Failed,
                None,
                format!(
                    "killed by signal {sig}{}",
                    if sig == libc::SIGKILL {
                        " (often the kernel's out-of-memory killer: check `dmesg`, lower train.batch_size or --jobs-per-device)"
                    } else {
                        ""
                    }
                ),
            ),
            (None, None) => (JobState::Failed, None, "ended without a status".into()),
        }
    }

    fn train(
        &self,
        key: usize,
        slot: &Slot,
        job: &JobTicket,
        progress: &SweepProgress,
        stop: &StopToken,
    ) -> JobOutcome {
        let out = self.dir.job_dir(&job.id);
        let mut cmd = self.command(slot);
        cmd.arg("train")
            .arg(self.dir.job_config(&job.id))
            .arg("--out")
            .arg(&out)
            .args(["--device", slot.train_device()])
            // The user's train.threads is kept; 0 (auto) becomes the slot's share.
            .arg("--set")
            .arg(format!("train.threads={}", slot.threads_for(job.threads)))
            .args(["--quiet", "--progress-jsonl"]);
        // The job's training curves go to each of its runs' TensorBoard folders.
        let mut seen: Vec<&str> = vec![];
        for r in &job.runs {
            if !seen.contains(&r.id.as_str()) {
                seen.push(&r.id);
                cmd.arg("--tensorboard")
                    .arg(self.dir.run_tensorboard(&r.id));
            }
        }
        if job.action == Action::Resume {
            cmd.arg("--resume");
        }
        let started = Instant::now();
        let ran = self.run_child(job, slot, "train", cmd, stop, |line| match *line {
            ProgressLine::Step { step, total } => progress.update(key, step, total, None),
            ProgressLine::Record {
                step, total, loss, ..
            } => progress.update(key, step, total, Some(loss.unwrap_or(-1.0))),
            _ => {}
        });
        let (status, tail, said) = match ran {
            Ok(r) => r,
            Err(e) => return JobOutcome::failed_to_start(slot, e.to_string()),
        };
        let run_status = RunStatus::read(&out);
        let (ended, exit_code, reason) = Self::judge(status, run_status.as_ref(), said, stop);
        JobOutcome {
            ended,
            exit_code,
            reason,
            stderr_tail: tail,
            step: run_status.as_ref().map_or(0, |s| s.step),
            wall_s: started.elapsed().as_secs_f64(),
            device: slot.label(),
        }
    }

    /// Evaluate a trained job: `ddpm-lab eval runs/<run>` for each of its
    /// evaluations, in turn; the first failure becomes the job's.
    fn evaluate(
        &self,
        slot: &Slot,
        job: &JobTicket,
        mut trained: JobOutcome,
        progress: &SweepProgress,
        stop: &StopToken,
    ) -> JobOutcome {
        for (i, task) in job.evals.iter().enumerate() {
            if stop.is_stopped() {
                break;
            }
            let what = format!("with the settings of run {}", task.run);
            progress.evaluating(job.key, &job.id, &what, true);
            trained = self.evaluate_one(slot, job, i, trained, progress, stop);
            if trained.ended != JobState::Completed {
                break;
            }
        }
        trained
    }

    fn evaluate_one(
        &self,
        slot: &Slot,
        job: &JobTicket,
        index: usize,
        trained: JobOutcome,
        progress: &SweepProgress,
        stop: &StopToken,
    ) -> JobOutcome {
        let task = &job.evals[index];
        let mut cmd = self.command(slot);
        // Evaluation is many small ops with host syncs: spinning OpenMP
        // threads only slow it down (and its neighbours).
        if std::env::var_os("OMP_WAIT_POLICY").is_none() {
            cmd.env("OMP_WAIT_POLICY", "passive");
        }
        cmd.arg("eval")
            .arg(self.dir.run_dir(&task.run))
            .arg("--weights")
            .arg(
                task.weights
                    .iter()
                    .map(|w| w.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .args(["--device", slot.train_device()])
            .arg("--threads")
            .arg(slot.threads_for(job.threads).to_string())
            // One cache of evaluator networks for every sweep under the results root.
            .arg("--evaluators")
            .arg(self.dir.results().join(".evaluators"))
            .args(["--quiet", "--progress-jsonl"]);
        // Each run's metrics go to its own TensorBoard folder.
        for r in job.runs.iter().filter(|r| r.eval == index) {
            let dir = self.dir.run_tensorboard(&r.id);
            cmd.arg("--tensorboard")
                .arg(format!("{}={}", r.weights, dir.display()));
        }
        let started = Instant::now();
        let on_line = |line: &ProgressLine| {
            if let ProgressLine::Eval { message } = line {
                progress.evaluating(job.key, &job.id, message, false);
            }
        };
        let (status, tail, said) = match self.run_child(job, slot, "eval", cmd, stop, on_line) {
            Ok(r) => r,
            Err(e) => return JobOutcome::failed_to_start(slot, e.to_string()),
        };
        let (ended, exit_code, reason) = Self::judge(status, None, said, stop);
        let wall_s = trained.wall_s + started.elapsed().as_secs_f64();
        match ended {
            JobState::Completed => JobOutcome { wall_s, ..trained },
            _ => JobOutcome {
                ended,
                exit_code,
                reason: format!("evaluation: {reason}"),
                stderr_tail: tail,
                wall_s,
                ..trained
            },
        }
    }
}

impl Executor for ProcessExecutor {
    fn run(
        &self,
        job: &JobTicket,
        slot: &Slot,
        progress: &SweepProgress,
        stop: &StopToken,
    ) -> JobOutcome {
        let key = job.key;
        let mut outcome = if job.action.trains() {
            self.train(key, slot, job, progress, stop)
        } else {
            JobOutcome {
                ended: JobState::Completed,
                exit_code: Some(0),
                reason: String::new(),
                stderr_tail: vec![],
                step: RunStatus::read(&self.dir.job_dir(&job.id)).map_or(0, |s| s.step),
                wall_s: 0.0,
                device: slot.label(),
            }
        };
        if outcome.ended == JobState::Completed && job.evaluate && !stop.is_stopped() {
            progress.update(key, job.total_steps, job.total_steps, None);
            outcome = self.evaluate(slot, job, outcome, progress, stop);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_cannot_run_says_which_step_failed() {
        let e = ChildError::OpenLog {
            path: "sweeps/s/logs/a.log".into(),
            error: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert!(
            e.to_string().starts_with("opening sweeps/s/logs/a.log: "),
            "{e}"
        );
        let e = ChildError::Spawn {
            exe: "/no/such/ddpm-lab".into(),
            error: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            e.to_string(),
            "starting /no/such/ddpm-lab: entity not found"
        );
        let e = ChildError::Wait {
            error: std::io::Error::from(std::io::ErrorKind::Interrupted),
        };
        assert_eq!(
            e.to_string(),
            "waiting for the child: operation interrupted"
        );
    }
}
