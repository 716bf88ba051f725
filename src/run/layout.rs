//! Every path a run folder and a sweep folder have, in one place.
//!
//! A run folder (what `ddpm-lab train --out` makes, and each sweep job's
//! `jobs/<job>/`):
//!
//! ```text
//! config.toml          the resolved config it was trained with
//! status.json          its state (see `status`)
//! train.log            human-readable lines (the records as `step N/M loss …`)
//! metrics.jsonl        one training record per log interval (tail it);
//! metrics.parquet      the same, rewritten at every checkpoint
//! data_stats.json      a tabular source's column scaling
//! checkpoints/step-N/  what a resume needs (the newest few)
//! snapshots/step-N/    the weights at each evaluation point, kept for good
//! snapshots/phema/step-N/  the power-function EMAs (ema.mode = "power"), for post-hoc EMA
//! eval/                the evaluation tables, samples and done.json
//! tb/                  TensorBoard events: training; tb/<weights>/: evaluation
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
//! runs/<run>/          run.json (job, weights, swept values), config.toml,
//!                      tb/: TensorBoard events (the job's training and
//!                      this run's evaluation)
//! report.md, report.html, tables/, charts/
//! slurm/               a cluster submission's scripts, job lists and task logs
//! attic/               job folders moved aside by --force or a restart, and
//!                      plan-<time>/: an earlier plan's files, moved aside when
//!                      the spec changed
//! ```
//!
//! A job's folder is named by its training hash, so a job whose config
//! changed is a new job, and a completed one is never trained twice.

use super::checkpoint;
use super::records::EvalDone;
use super::{EvalKeys, Weights};
use crate::config::run::EvalConfig;
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
    /// Snapshots of the power-function EMAs (`ema.mode = "power"`), every
    /// `ema.snapshot_every` steps: what post-hoc EMA reconstructs from.
    pub fn phema_snapshots(&self) -> PathBuf {
        self.snapshots().join("phema")
    }
    /// The TensorBoard event files (`output.tensorboard`): the training
    /// records here, each weight set's evaluation in `tb/<weights>/`.
    pub fn tensorboard(&self) -> PathBuf {
        self.root.join("tb")
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

    /// What `done.json` records (nothing when it is missing or from a
    /// version that did not record evaluation keys).
    pub fn read_done(&self) -> EvalDone {
        match super::atomic::read_json::<EvalDone>(&self.done()) {
            Ok(Some(done)) => done,
            _ => EvalDone::default(),
        }
    }

    /// How this folder's finished evaluations stand against evaluating `run`
    /// now with `weights` and the settings `eval`.
    pub fn freshness(&self, run: &RunDir, weights: &[Weights], eval: &EvalConfig) -> Freshness {
        let points = run.eval_points();
        let done = self.read_done();
        let key = EvalKeys::of(eval).combined();
        let wanted = || {
            points
                .iter()
                .flat_map(|(s, _)| weights.iter().map(move |w| (*s, *w)))
        };
        if !points.is_empty() && wanted().all(|(s, w)| done.covers(s, w, &key)) {
            return Freshness::Done;
        }
        // The last settings that covered a wanted point, if any did.
        let before = done.done.iter().rev().find(|d| {
            d.eval_key != key
                && wanted().any(|(s, w)| s == d.step && w == d.weights)
                && !done.covers(d.step, d.weights, &key)
        });
        match before.and_then(|d| done.settings.get(&d.eval_key)) {
            Some(old) => Freshness::Stale {
                changes: super::eval_key::why_stale(old, eval),
            },
            None => Freshness::Missing,
        }
    }

    /// For a reader of the tables (the report): when `weights` was
    /// evaluated only under settings other than `eval`, what changed.
    pub fn stale_for(&self, weights: Weights, eval: &EvalConfig) -> Option<Vec<String>> {
        let done = self.read_done();
        let key = EvalKeys::of(eval).combined();
        let of_weights = || done.done.iter().filter(|d| d.weights == weights);
        if of_weights().any(|d| d.eval_key == key) {
            return None;
        }
        let old = of_weights().next_back()?;
        let settings = done.settings.get(&old.eval_key)?;
        Some(super::eval_key::why_stale(settings, eval))
    }

    /// The file stem of the samples drawn at (step, weights, guidance) with
    /// the sample settings of key `samples_key`, under [`EvalDir::samples`].
    pub fn sample_stem(step: u64, weights: Weights, guidance: f64, samples_key: &str) -> String {
        let key = &samples_key[..samples_key.len().min(8)];
        format!("step-{step}_{weights}_g{guidance}_{key}")
    }
}

/// Whether an evaluation folder has what is asked of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Freshness {
    /// Every point and weight set, under the settings asked for.
    Done,
    /// Some are not evaluated at all (a new run, a longer one, a new weight set).
    Missing,
    /// Some were evaluated, but with other settings: these changed.
    Stale { changes: Vec<String> },
}

/// The folder name of a run's evaluator network in the evaluator cache
/// (`<results>/.evaluators/<key>/`): `<source>-<channels>x<res>-<hash>`, the
/// hash covering the source's path (or the generated data's settings).
/// None for data that are not images (they have no evaluator network).
pub fn evaluator_key(cfg: &crate::config::RunConfig) -> Option<String> {
    use crate::config::run::DataSource;
    use sha2::{Digest, Sha256};
    let d = &cfg.data;
    let shape = crate::config::data_shape(cfg).sample;
    if shape.len() != 3 {
        return None;
    }
    let what = match d.source {
        DataSource::Synthetic => format!("synthetic {:?} {} {}", d.shape, d.n_samples, d.seed),
        DataSource::Folder => format!(
            "{} {} {:?} {}",
            std::fs::canonicalize(d.resolved_path())
                .unwrap_or(d.resolved_path())
                .display(),
            d.seed,
            d.color,
            d.test_fraction
        ),
        _ => std::fs::canonicalize(d.resolved_path())
            .unwrap_or(d.resolved_path())
            .display()
            .to_string(),
    };
    let hash = Sha256::digest(what.as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let source = serde_json::to_value(d.source)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "data".into());
    Some(format!("{source}-{}x{}-{hex}", shape[0], shape[1]))
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
    /// `runs/<id>/tb/`: the run's TensorBoard events, so `tensorboard
    /// --logdir results/<sweep>` lists each run under its id.
    pub fn run_tensorboard(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("tb")
    }
    /// `runs/<id>/run.json`.
    pub fn run_record(&self, id: &str) -> PathBuf {
        self.run_dir(id).join("run.json")
    }
    /// `slurm/`: what a cluster submission wrote (scripts, job lists,
    /// submissions.json, the tasks' logs).
    pub fn slurm(&self) -> PathBuf {
        self.root.join("slurm")
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
    fn an_evaluation_is_done_when_it_covers_every_point_and_weight_set_under_its_settings() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let eval = EvalDir::new(run.eval());
        let settings = EvalConfig::default();
        let fresh = |w: &[Weights], e: &EvalConfig| eval.freshness(&run, w, e);
        let raw_ema = [Weights::Raw, Weights::ema(0.9)];
        assert_eq!(fresh(&raw_ema, &settings), Freshness::Missing, "no points");
        for step in [0, 50] {
            std::fs::create_dir_all(run.snapshots().join(checkpoint::dir_name(step))).unwrap();
        }
        std::fs::create_dir_all(&eval.root).unwrap();
        assert_eq!(
            fresh(&raw_ema, &settings),
            Freshness::Missing,
            "no done.json"
        );
        let key = EvalKeys::of(&settings).combined();
        let mut done = EvalDone::default();
        for s in [0, 50] {
            for w in raw_ema {
                done.add(s, w, &key, &settings);
            }
        }
        crate::run::atomic::write_json(&eval.done(), &done).unwrap();
        assert_eq!(fresh(&raw_ema, &settings), Freshness::Done);
        assert_eq!(fresh(&[Weights::ema(0.99)], &settings), Freshness::Missing);
        // Other sample settings: stale, naming what changed.
        let mut fewer = settings.clone();
        fewer.num_samples = 37;
        assert_eq!(
            fresh(&raw_ema, &fewer),
            Freshness::Stale {
                changes: vec!["eval.num_samples 1000 → 37".into()]
            }
        );
        // A guidance scale is not a setting of the numbers: still done.
        let mut scales = settings.clone();
        scales.guidance_scales = vec![1.0, 2.0];
        assert_eq!(fresh(&raw_ema, &scales), Freshness::Done);
        // Once evaluated with the new settings too, both are done.
        let fewer_key = EvalKeys::of(&fewer).combined();
        for s in [0, 50] {
            for w in raw_ema {
                done.add(s, w, &fewer_key, &fewer);
            }
        }
        crate::run::atomic::write_json(&eval.done(), &done).unwrap();
        assert_eq!(fresh(&raw_ema, &fewer), Freshness::Done);
        assert_eq!(fresh(&raw_ema, &settings), Freshness::Done);
        // A longer run has a new point: missing, not stale.
        std::fs::create_dir_all(run.snapshots().join(checkpoint::dir_name(100))).unwrap();
        assert_eq!(fresh(&raw_ema, &settings), Freshness::Missing);
        assert_eq!(run.eval_points().len(), 3);
    }

    #[test]
    fn a_weight_set_evaluated_only_under_other_settings_is_stale_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let eval = EvalDir::new(dir.path());
        let asked = EvalConfig::default();
        assert_eq!(
            eval.stale_for(Weights::Raw, &asked),
            None,
            "nothing evaluated"
        );
        let mut other = asked.clone();
        other.sampler = crate::diffusion::sampling::SamplerKind::Ddim;
        let mut done = EvalDone::default();
        done.add(10, Weights::Raw, &EvalKeys::of(&other).combined(), &other);
        crate::run::atomic::write_json(&eval.done(), &done).unwrap();
        assert_eq!(
            eval.stale_for(Weights::Raw, &asked),
            Some(vec!["eval.sampler \"ddim\" → \"ddpm\"".to_string()])
        );
        assert_eq!(eval.stale_for(Weights::ema(0.9), &asked), None);
        done.add(10, Weights::Raw, &EvalKeys::of(&asked).combined(), &asked);
        crate::run::atomic::write_json(&eval.done(), &done).unwrap();
        assert_eq!(
            eval.stale_for(Weights::Raw, &asked),
            None,
            "also under these"
        );
    }

    #[test]
    fn a_done_json_of_the_older_format_reads_as_nothing_done() {
        let dir = tempfile::tempdir().unwrap();
        let eval = EvalDir::new(dir.path());
        std::fs::write(eval.done(), r#"{"steps":[0,50],"weights":["raw"]}"#).unwrap();
        assert_eq!(eval.read_done(), EvalDone::default());
    }
}
