//! The typed records one module writes and another reads. Each is a serde
//! struct, so renaming a field is a compile error on both sides rather than a
//! silently blank report.
//!
//! * [`PlanFile`]: a sweep folder's `plan.json` (and `sweep --dry-run --json`);
//! * [`RunRecord`]: `runs/<run>/run.json`, a run's job and weight set;
//! * [`Summary`]: `summary.json`, how each job of the last invocation ended;
//! * [`LogRecord`]: one line of a run's `metrics.jsonl`;
//! * [`ProgressLine`]: one line a child process (train, eval) writes on
//!   stdout for its parent sweep, its failure reason included;
//! * [`EvalDone`]: an evaluation folder's `done.json`.

use super::status::JobState;
use super::weights::Weights;
use crate::config::RunConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The swept values of a run, by axis key, in axis order.
pub type Swept = serde_json::Map<String, serde_json::Value>;

/// `plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    pub name: String,
    pub description: String,
    /// The spec file the plan came from.
    pub spec: String,
    /// The sweep folder.
    pub results: String,
    /// The `--set` overrides, as given.
    pub sets: Vec<String>,
    /// The slots jobs ran on (`cuda:0`, `cpu`).
    pub devices: Vec<String>,
    pub estimated_wall_s: f64,
    pub runs: Vec<PlanRun>,
    pub jobs: Vec<PlanJob>,
}

/// One run of `plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRun {
    pub id: String,
    /// The id of the job that trains it.
    pub job: String,
    /// The weight set it is evaluated with.
    pub weights: Weights,
    pub swept: Swept,
    /// Its whole config: the job's training config plus its own `eval.*`.
    pub config: RunConfig,
}

/// One training job of `plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanJob {
    pub id: String,
    /// The full training hash (the id is its first 8 characters).
    pub hash: String,
    /// The ids of its runs.
    pub runs: Vec<String>,
    #[serde(flatten)]
    pub cost: JobCost,
    /// Its state when planned.
    pub state: JobState,
    /// Its evaluations: one per distinct `eval.*` settings among its runs.
    pub evals: Vec<EvalTask>,
    /// What the sweep does with it (`train`, `skip (completed)`, …).
    pub will: String,
    pub config: RunConfig,
}

/// What a job costs, as the planner estimates it (in `plan.json`, and the
/// sweep's own view of each job).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JobCost {
    pub steps: u64,
    pub batch_size: i64,
    pub parameters: i64,
    pub macs_per_sample: f64,
    /// Training MACs still to do (all of them for a new job).
    pub macs: f64,
    /// Estimated seconds on its kind of slot: training and evaluation.
    pub est_s: f64,
    /// The evaluation's share of `est_s`.
    pub eval_est_s: f64,
}

/// One evaluation of a job: with the `eval.*` settings of run `run` (whose
/// folder `runs/<run>/` is the handle `ddpm-lab eval` is given), for these
/// weight sets (raw always among them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalTask {
    pub run: String,
    pub weights: Vec<Weights>,
}

/// `runs/<run>/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub job: String,
    /// The weight set this run is evaluated with.
    pub weights: Weights,
    /// The training folder, relative to this run's folder.
    pub job_dir: String,
    pub swept: Swept,
}

/// How one job ended in an invocation (or why it did not run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    pub job: String,
    pub runs: Vec<String>,
    pub state: JobState,
    pub step: u64,
    pub steps: u64,
    pub device: String,
    pub wall_s: f64,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub stderr_tail: Vec<String>,
    /// Whether it trained (or evaluated) in this invocation.
    pub trained: bool,
}

/// `summary.json`: the end of a sweep invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub results: String,
    pub jobs: Vec<JobReport>,
    pub failed: usize,
    /// Jobs that other processes were training, left alone.
    pub busy: usize,
    pub interrupted: bool,
    pub trained: usize,
}

/// One line of `metrics.jsonl`: a training log interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub step: u64,
    /// The weighted training loss (what is optimized), averaged over the interval.
    pub loss: f64,
    /// The plain MSE of the prediction target, averaged over the interval.
    pub loss_unweighted: f64,
    /// Unweighted loss per quarter of [0, T) (improved-diffusion's q0–q3); None where no sample fell.
    pub loss_q: [Option<f64>; 4],
    /// Global gradient norm before clipping (unscaled), averaged over the interval.
    pub grad_norm: f64,
    pub lr: f64,
    /// Each EMA's decay in force at this step, keyed by its weight set's name.
    pub ema_decay: BTreeMap<String, f64>,
    pub loss_scale: f64,
    /// Steps skipped by the fp16 loss scaler in the interval.
    pub skipped_steps: u64,
    pub images_per_s: f64,
    /// Share of the interval's wall time spent waiting for data.
    pub data_wait_frac: f64,
    pub wall_time_s: f64,
}

/// A line a child writes on stdout for its parent (`--progress-jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ProgressLine {
    /// Training reached `step` of `total`.
    Step { step: u64, total: u64 },
    /// A training log record: the interval's loss (None when not finite) and speed.
    Record {
        step: u64,
        total: u64,
        loss: Option<f64>,
        images_per_s: f64,
    },
    /// An evaluation finished a piece of work.
    Eval { message: String },
    /// The child is about to exit with an error: why, as the user reads it.
    Failed { reason: String },
}

impl ProgressLine {
    /// The line as written (no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a progress line serializes") // ok: plain data
    }

    /// Parse a line; None for anything else a child may print.
    pub fn parse(line: &str) -> Option<ProgressLine> {
        serde_json::from_str(line).ok()
    }
}

/// `done.json` of an evaluation folder: every (step, weight set, evaluation
/// key) a finished evaluation covered, and the `[eval]` section behind each
/// key (so a later plan can say which settings changed). Evaluations with
/// other settings add to it; none removes another's entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalDone {
    pub done: Vec<DonePoint>,
    /// The combined evaluation key → the `[eval]` section that produced it.
    pub settings: std::collections::BTreeMap<String, crate::config::run::EvalConfig>,
    /// Seconds spent evaluating into this folder, over every evaluation.
    #[serde(default)]
    pub wall_s: f64,
}

/// One evaluated (step, weight set) under one evaluation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DonePoint {
    pub step: u64,
    pub weights: Weights,
    pub eval_key: String,
}

impl EvalDone {
    /// Whether (step, weights) was evaluated under `key`.
    pub fn covers(&self, step: u64, weights: Weights, key: &str) -> bool {
        self.done
            .iter()
            .any(|d| d.step == step && d.weights == weights && d.eval_key == key)
    }

    /// Record (step, weights) under `key`, evaluated with `eval`.
    pub fn add(
        &mut self,
        step: u64,
        weights: Weights,
        key: &str,
        eval: &crate::config::run::EvalConfig,
    ) {
        if !self.covers(step, weights, key) {
            self.done.push(DonePoint {
                step,
                weights,
                eval_key: key.to_string(),
            });
        }
        self.settings.insert(key.to_string(), eval.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PlanFile {
        let mut swept = Swept::new();
        swept.insert("ema.decay".into(), serde_json::json!(0.999));
        swept.insert("seed".into(), serde_json::json!(1));
        let mut cfg = RunConfig::default();
        cfg.ema.decays = vec![0.999];
        PlanFile {
            name: "demo".into(),
            description: "two runs".into(),
            spec: "experiments/demo.toml".into(),
            results: "results/demo".into(),
            sets: vec!["train.steps=10".into()],
            devices: vec!["cpu".into()],
            estimated_wall_s: 12.5,
            runs: vec![PlanRun {
                id: "decay-0.999_seed-1-abcdef".into(),
                job: "abcdef12".into(),
                weights: Weights::ema(0.999),
                swept,
                config: cfg.clone(),
            }],
            jobs: vec![PlanJob {
                id: "abcdef12".into(),
                hash: "abcdef1234567890".into(),
                runs: vec!["decay-0.999_seed-1-abcdef".into()],
                cost: JobCost {
                    steps: 10,
                    batch_size: 64,
                    parameters: 1000,
                    macs_per_sample: 2e6,
                    macs: 3e9,
                    est_s: 4.0,
                    eval_est_s: 1.5,
                },
                state: JobState::New,
                evals: vec![EvalTask {
                    run: "decay-0.999_seed-1-abcdef".into(),
                    weights: vec![Weights::ema(0.999), Weights::Raw],
                }],
                will: "train".into(),
                config: cfg,
            }],
        }
    }

    #[test]
    fn a_plan_round_trips_through_json() {
        let p = plan();
        let text = serde_json::to_string_pretty(&p).unwrap();
        assert_eq!(serde_json::from_str::<PlanFile>(&text).unwrap(), p);
        // The field names readers of plan.json (people, scripts) rely on.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["runs"][0]["weights"], Weights::ema(0.999).to_string());
        assert_eq!(v["jobs"][0]["state"], "new");
        assert_eq!(
            v["jobs"][0]["est_s"], 4.0,
            "the cost's fields sit in the job"
        );
        assert_eq!(v["jobs"][0]["evals"][0]["weights"][1], "raw");
        assert_eq!(v["runs"][0]["swept"]["seed"], 1);
    }

    #[test]
    fn a_plan_missing_a_field_is_refused_not_blanked() {
        let mut v = serde_json::to_value(plan()).unwrap();
        v["runs"][0].as_object_mut().unwrap().remove("job");
        let e = serde_json::from_value::<PlanFile>(v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `job`"), "{e}");
    }

    #[test]
    fn progress_lines_are_tagged_and_other_output_is_not_one() {
        let lines = [
            ProgressLine::Step { step: 3, total: 10 },
            ProgressLine::Record {
                step: 5,
                total: 10,
                loss: None,
                images_per_s: 12.0,
            },
            ProgressLine::Eval {
                message: "step 5 raw: per-timestep loss".into(),
            },
            ProgressLine::Failed {
                reason: "the loss became NaN".into(),
            },
        ];
        for l in lines {
            assert_eq!(ProgressLine::parse(&l.to_line()), Some(l));
        }
        assert!(ProgressLine::Failed { reason: "x".into() }
            .to_line()
            .starts_with(r#"{"event":"failed""#));
        assert_eq!(ProgressLine::parse("step 3/10 loss 0.5"), None);
        assert_eq!(ProgressLine::parse(r#"{"step":3,"total":10}"#), None);
    }
}
