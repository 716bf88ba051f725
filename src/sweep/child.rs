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
use super::progress::SweepProgress;
use super::results::{retire, Action, SweepDir};
use super::schedule::{Executor, Task};
use crate::train::status::{RunState, RunStatus};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Set on Ctrl-C or SIGTERM: start nothing new, stop the children.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// The pids of the running children.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(vec![]);

/// Lines of a failed job's stderr kept for its report.
pub const STDERR_TAIL: usize = 12;

/// Ask every running child to checkpoint and stop (SIGTERM).
pub fn stop_children() {
    STOP.store(true, Ordering::SeqCst);
    let pids = CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for pid in pids {
        // SAFETY: sending a signal to a pid we spawned and have not reaped.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ended {
    Completed,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct JobOutcome {
    pub ended: Ended,
    /// The child's exit code (None if a signal killed it, or it never started).
    pub exit_code: Option<i32>,
    /// Why it failed or stopped.
    pub reason: String,
    pub stderr_tail: Vec<String>,
    pub step: u64,
    pub wall_s: f64,
    pub device: String,
}

/// One job as the executor sees it.
#[derive(Debug, Clone)]
pub struct JobTicket {
    pub id: String,
    pub action: Action,
    /// Evaluate after training (or only evaluate, for `Action::Evaluate`).
    pub evaluate: bool,
    /// The weight sets to evaluate.
    pub eval_weights: Vec<String>,
    pub total_steps: u64,
    /// A short description for progress lines (its runs).
    pub label: String,
}

/// Runs jobs as children of this same binary.
pub struct ProcessExecutor<'a> {
    pub exe: PathBuf,
    pub dir: SweepDir,
    pub jobs: Vec<JobTicket>,
    pub progress: &'a SweepProgress,
}

impl ProcessExecutor<'_> {
    fn fail(&self, slot: &Slot, reason: String) -> JobOutcome {
        JobOutcome {
            ended: Ended::Failed,
            exit_code: None,
            reason,
            stderr_tail: vec![],
            step: 0,
            wall_s: 0.0,
            device: slot.label(),
        }
    }
}

impl ProcessExecutor<'_> {
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
    /// kept), each stdout line given to `on_line`.
    fn run_child(
        &self,
        job: &JobTicket,
        slot: &Slot,
        what: &str,
        mut cmd: Command,
        mut on_line: impl FnMut(&str),
    ) -> Result<(std::process::ExitStatus, Vec<String>), String> {
        let log_path = self.dir.job_log(&job.id);
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let _ = writeln!(log, "=== {} {what} on {}: {:?}", job.id, slot.label(), cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.exe.display()))?;
        let pid = child.id();
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
        if STOP.load(Ordering::SeqCst) {
            // A stop arrived between the pick and the spawn.
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let stderr = child.stderr.take().expect("piped"); // ok: piped by command()
        let stdout = child.stdout.take().expect("piped"); // ok: piped by command()
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
                on_line(&line);
            }
            reader.join().unwrap_or_default()
        });
        let status = child.wait();
        CHILDREN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|&p| p != pid);
        let status = status.map_err(|e| format!("waiting for the child: {e}"))?;
        Ok((status, tail.into_iter().collect()))
    }

    /// How a child ended, as (ended, exit code, reason).
    fn judge(
        status: std::process::ExitStatus,
        run_status: Option<&RunStatus>,
        tail: &[String],
    ) -> (Ended, Option<i32>, String) {
        let last_error = tail
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .map(str::to_string);
        match (status.code(), status.signal()) {
            (Some(0), _) => (Ended::Completed, Some(0), String::new()),
            (Some(130), _) => (
                Ended::Interrupted,
                Some(130),
                "stopped by a signal; the next run of the sweep resumes it".into(),
            ),
            (Some(code), _) => {
                let reason = match run_status {
                    Some(r) if r.state == RunState::Failed && !r.reason.is_empty() => {
                        r.reason.clone()
                    }
                    _ => last_error.unwrap_or_else(|| format!("exited with code {code}")),
                };
                (Ended::Failed, Some(code), reason)
            }
            (None, Some(sig)) if STOP.load(Ordering::SeqCst) => (
                Ended::Interrupted,
                None,
                format!("ended by signal {sig} while the sweep stopped"),
            ),
            (None, Some(sig)) => (
                Ended::Failed,
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
            (None, None) => (Ended::Failed, None, "ended without a status".into()),
        }
    }

    fn train(&self, task: &Task, slot: &Slot, job: &JobTicket) -> JobOutcome {
        let out = self.dir.job_dir(&job.id);
        if job.action == Action::Restart && out.exists() {
            match retire(&self.dir, &job.id) {
                Ok(to) => self.progress.println(&format!(
                    "job {}: moved the earlier attempt to {}",
                    job.id,
                    to.display()
                )),
                Err(e) => {
                    return self.fail(slot, format!("moving {} to the attic: {e}", out.display()))
                }
            }
        }
        let mut cmd = self.command(slot);
        cmd.arg("train")
            .arg(self.dir.job_config(&job.id))
            .arg("--out")
            .arg(&out)
            .args(["--device", slot.train_device()])
            .arg("--set")
            .arg(format!("train.threads={}", slot.threads))
            .args(["--quiet", "--progress-jsonl"]);
        if job.action == Action::Resume {
            cmd.arg("--resume");
        }
        let started = Instant::now();
        let ran = self.run_child(job, slot, "train", cmd, |line| {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                let step = v["step"].as_u64().unwrap_or(0);
                let total = v["total"].as_u64().unwrap_or(job.total_steps);
                self.progress
                    .update(task.job, step, total, v["loss"].as_f64());
            }
        });
        let (status, tail) = match ran {
            Ok(r) => r,
            Err(e) => return self.fail(slot, e),
        };
        let run_status = RunStatus::read(&out);
        let (ended, exit_code, reason) = Self::judge(status, run_status.as_ref(), &tail);
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

    /// Evaluate a trained job (`ddpm-lab eval`); a failure becomes the job's.
    fn evaluate(&self, slot: &Slot, job: &JobTicket, trained: JobOutcome) -> JobOutcome {
        let out = self.dir.job_dir(&job.id);
        let mut cmd = self.command(slot);
        // Evaluation is many small ops with host syncs: spinning OpenMP
        // threads only slow it down (and its neighbours).
        if std::env::var_os("OMP_WAIT_POLICY").is_none() {
            cmd.env("OMP_WAIT_POLICY", "passive");
        }
        cmd.arg("eval")
            .arg(&out)
            .arg("--weights")
            .arg(job.eval_weights.join(","))
            .args(["--device", slot.train_device()])
            .arg("--threads")
            .arg(slot.threads.to_string())
            // One cache of evaluator networks for every sweep under the results root.
            .arg("--evaluators")
            .arg(
                self.dir
                    .root
                    .parent()
                    .unwrap_or(&self.dir.root)
                    .join(".evaluators"),
            )
            .arg("--quiet");
        let started = Instant::now();
        let (status, tail) = match self.run_child(job, slot, "eval", cmd, |_| {}) {
            Ok(r) => r,
            Err(e) => return self.fail(slot, e),
        };
        let (ended, exit_code, reason) = Self::judge(status, None, &tail);
        let wall_s = trained.wall_s + started.elapsed().as_secs_f64();
        match ended {
            Ended::Completed => JobOutcome { wall_s, ..trained },
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

impl Executor for ProcessExecutor<'_> {
    type Output = JobOutcome;

    fn run(&self, task: &Task, slot: &Slot) -> JobOutcome {
        let job = &self.jobs[task.job];
        self.progress.start(
            task.job,
            &job.id,
            &job.label,
            &slot.label(),
            job.total_steps,
        );
        let mut outcome = if job.action.trains() {
            self.train(task, slot, job)
        } else {
            JobOutcome {
                ended: Ended::Completed,
                exit_code: Some(0),
                reason: String::new(),
                stderr_tail: vec![],
                step: RunStatus::read(&self.dir.job_dir(&job.id)).map_or(0, |s| s.step),
                wall_s: 0.0,
                device: slot.label(),
            }
        };
        if outcome.ended == Ended::Completed && job.evaluate && !STOP.load(Ordering::SeqCst) {
            self.progress
                .update(task.job, job.total_steps, job.total_steps, None);
            outcome = self.evaluate(slot, job, outcome);
        }
        self.progress.finish(task.job, &job.id, &outcome);
        outcome
    }
}
