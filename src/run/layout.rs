//! Every path a run folder and a sweep folder have, in one place.
//!
//! A run folder (what `ddpm-lab train --out` makes, and each sweep job's
//! `jobs/<job>/`):
//!
//! ```text
//! config.toml          the resolved config it was trained with
//! status.json          its state (see `status`)
//! train.log            human-readable lines
//! metrics.jsonl        one training record per log interval (tail it);
//! metrics.parquet      the same, rewritten at every checkpoint
//! data_stats.json      a tabular source's column scaling
//! checkpoints/step-N/  what a resume needs (the newest few)
//! snapshots/step-N/    the weights at each evaluation point, kept for good
//! eval/                the evaluation tables, samples and done.json
//! ```
//!
//! A sweep folder (`results/<sweep>/`):
//!
//! ```text
//! sweep.lock           while a sweep process works here
//! spec.toml            the resolved spec: extends flattened, overrides folded in
//! plan.json            every run and job of the last invocation, with full configs
//! summary.json         how each job ended, after each invocation
//! jobs/<job>.toml      a job's training config (what its child was given)
//! jobs/<job>/          its run folder
//! logs/<job>.log       its child's stderr, appended per attempt
//! runs/<run>/          run.json (job, weights, swept values), config.toml
//! report.md, report.html, tables/, charts/
//! attic/               job folders moved aside by --force or a restart, and
//!                      plan-<time>/: an earlier plan's files, moved aside when
//!                      the spec changed
//! ```
//!
//! A job's folder is named by its training hash, so a job whose config
//! changed is a new job, and a completed one is never trained twice.

use super::checkpoint;
use super::records::EvalDone;
use super::Weights;
use std::path::{Path, PathBuf};

/// The folder of one trained (or training) run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn train_log(&self) -> PathBuf {
        self.root.join("train.log")
    }
    pub fn metrics_jsonl(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn metrics_parquet(&self) -> PathBuf {
        self.root.join("metrics.parquet")
    }
    pub fn data_stats(&self) -> PathBuf {
        self.root.join("data_stats.json")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    /// The default evaluation folder.
    pub fn eval(&self) -> PathBuf {
        self.root.join("eval")
    }

    /// Every saved weight state, oldest first: the evaluation-point
    /// snapshots, and any checkpoint at a step with no snapshot.
    pub fn saved_steps(&self) -> Vec<(u64, PathBuf)> {
        let mut all = checkpoint::list(&self.snapshots());
        for (s, p) in checkpoint::list(&self.checkpoints()) {
            if !all.iter().any(|(k, _)| *k == s) {
                all.push((s, p));
            }
        }
        all.sort();
        all
    }

    /// The evaluation points: the snapshots, or (for a run trained before
    /// snapshots existed) the checkpoints.
    pub fn eval_points(&self) -> Vec<(u64, PathBuf)> {
        let snaps = checkpoint::list(&self.snapshots());
        if snaps.is_empty() {
            checkpoint::list(&self.checkpoints())
        } else {
            snaps
        }
    }
}

/// An evaluation folder (a run's `eval/`, or `ddpm-lab eval --out`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvalDir {
    pub root: PathBuf,
}

impl EvalDir {
    pub fn new(root: impl Into<PathBuf>) -> EvalDir {
        EvalDir { root: root.into() }
    }
    pub fn timestep_loss(&self) -> PathBuf {
        self.root.join("timestep_loss.parquet")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("eval_metrics.parquet")
    }
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
    /// Which weight sets and points a finished evaluation covered.
    pub fn done(&self) -> PathBuf {
        self.root.join("done.json")
    }
    /// Which run the folder's rows belong to.
    pub fn owner(&self) -> PathBuf {
        self.root.join("evaluated_run.json")
    }

    /// Whether this folder holds a finished evaluation of `run` covering
    /// `weights` and every evaluation point the run has now.
    pub fn is_done(&self, run: &RunDir, weights: &[Weights]) -> bool {
        let Ok(Some(done)) = super::atomic::read_json::<EvalDone>(&self.done()) else {
            return false;
        };
        let points = run.eval_points();
        !points.is_empty()
            && points.iter().all(|(s, _)| done.steps.contains(s))
            && weights.iter().all(|w| done.weights.contains(w))
    }
}

/// The files a sweep folder holds about its plan (rather than its jobs):
/// moved aside together when the spec changes, so a new plan never
/// overwrites the previous plan's report.
pub const PLAN_FILES: [&str; 7] = [
    "spec.toml",
    "plan.json",
    "summary.json",
    "report.md",
    "report.html",
    "tables",
    "charts",
];

/// The folder of one sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepDir {
    pub root: PathBuf,
}

impl SweepDir {
    /// `<results>/<name>`.
    pub fn new(results: &Path, name: &str) -> SweepDir {
        SweepDir {
            root: results.join(name),
        }
    }
    /// An existing sweep folder.
    pub fn at(root: impl Into<PathBuf>) -> SweepDir {
        SweepDir { root: root.into() }
    }
    pub fn spec(&self) -> PathBuf {
        self.root.join("spec.toml")
    }
    pub fn plan(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.json")
    }
    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }
    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.jobs().join(id)
    }
    pub fn job(&self, id: &str) -> RunDir {
        RunDir::new(self.job_dir(id))
    }
    pub fn job_config(&self, id: &str) -> PathBuf {
        self.jobs().join(format!("{id}.toml"))
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn job_log(&self, id: &str) -> PathBuf {
        self.logs().join(format!("{id}.log"))
    }
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.runs().join(id)
    }
    /// `runs/<id>/run.json`.
    pub fn run_record(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("run.json")
    }
    pub fn attic(&self) -> PathBuf {
        self.root.join("attic")
    }
    /// The parent of every sweep folder: where the shared evaluator cache lives.
    pub fn results(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweeps_job_is_a_run_folder_under_jobs() {
        let s = SweepDir::new(Path::new("results"), "demo");
        assert_eq!(
            s.job("ab12").status(),
            Path::new("results/demo/jobs/ab12/status.json")
        );
        assert_eq!(
            s.job_config("ab12"),
            Path::new("results/demo/jobs/ab12.toml")
        );
        assert_eq!(
            s.run_record("x-ab12"),
            Path::new("results/demo/runs/x-ab12/run.json")
        );
        assert_eq!(s.results(), Path::new("results"));
        let e = EvalDir::new(s.job("ab12").eval());
        assert_eq!(e.done(), Path::new("results/demo/jobs/ab12/eval/done.json"));
    }

    #[test]
    fn an_evaluation_is_done_when_it_covers_every_point_and_weight_set() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let eval = EvalDir::new(run.eval());
        let raw_ema = [Weights::Raw, Weights::ema(0.9)];
        assert!(!eval.is_done(&run, &raw_ema), "no done.json");
        for step in [0, 50] {
            std::fs::create_dir_all(run.snapshots().join(checkpoint::dir_name(step))).unwrap();
        }
        std::fs::create_dir_all(&eval.root).unwrap();
        let done = |steps: Vec<u64>, weights: Vec<Weights>| {
            crate::run::atomic::write_json(&eval.done(), &EvalDone { steps, weights }).unwrap()
        };
        done(vec![0, 50], raw_ema.to_vec());
        assert!(eval.is_done(&run, &raw_ema));
        assert!(
            !eval.is_done(&run, &[Weights::ema(0.99)]),
            "another weight set"
        );
        // A longer run has a new point: not done.
        std::fs::create_dir_all(run.snapshots().join(checkpoint::dir_name(100))).unwrap();
        assert!(!eval.is_done(&run, &raw_ema));
        done(vec![0, 50, 100], vec![Weights::Raw]);
        assert!(!eval.is_done(&run, &raw_ema));
        assert_eq!(run.eval_points().len(), 3);
    }
}
