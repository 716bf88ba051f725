//! What running one job means to the sweep runner: an [`Executor`] is given
//! a [`JobTicket`] and a slot and returns a [`JobOutcome`]. The real one
//! starts `ddpm-lab train` and `ddpm-lab eval` as child processes
//! ([`super::child::ProcessExecutor`]); the runner's tests use one that only
//! writes the files a trainer would, so skip, resume, failure and stop
//! handling are tested without libtorch work.

use super::devices::Slot;
use super::progress::SweepProgress;
use super::results::Action;
use crate::run::records::EvalTask;
use crate::run::{JobState, StopToken};

/// One job as an executor sees it.
#[derive(Debug, Clone)]
pub struct JobTicket {
    /// Its index in the plan: the key of its progress bar.
    pub key: usize,
    pub id: String,
    pub action: Action,
    /// Evaluate after training (or only evaluate, for `Action::Evaluate`).
    pub evaluate: bool,
    /// Its evaluations (each with one run's settings and its weight sets).
    pub evals: Vec<EvalTask>,
    pub total_steps: u64,
    /// Its config's `train.threads`: the user's (kept), or 0 for the slot's
    /// share of the cores ([`Slot::threads_for`]).
    pub threads: usize,
    /// A short description for progress lines (its runs).
    pub label: String,
    /// Its runs, each with its TensorBoard folder to fill.
    pub runs: Vec<TicketRun>,
}

/// A run of a job, as its TensorBoard folder needs it: the job's training
/// goes to every run's folder, and each run's metrics come from the
/// evaluation with its settings (an index into `evals`), for its weight set.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRun {
    pub id: String,
    pub weights: crate::run::Weights,
    pub eval: usize,
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// Completed, Failed or Interrupted.
    pub ended: JobState,
    /// The child's exit code (None if a signal killed it, or it never started).
    pub exit_code: Option<i32>,
    /// Why it failed or stopped.
    pub reason: String,
    pub stderr_tail: Vec<String>,
    pub step: u64,
    pub wall_s: f64,
    pub device: String,
}

impl JobOutcome {
    /// A job that failed before anything ran (its folder could not be
    /// prepared, the child could not start).
    pub fn failed_to_start(slot: &Slot, reason: String) -> JobOutcome {
        JobOutcome {
            ended: JobState::Failed,
            exit_code: None,
            reason,
            stderr_tail: vec![],
            step: 0,
            wall_s: 0.0,
            device: slot.label(),
        }
    }
}

/// Runs one job on one slot. Called from one thread per slot, so
/// implementations must be `Sync`. Once `stop` is set, a running job should
/// checkpoint and end as interrupted.
pub trait Executor: Sync {
    fn run(
        &self,
        job: &JobTicket,
        slot: &Slot,
        progress: &SweepProgress,
        stop: &StopToken,
    ) -> JobOutcome;
}
