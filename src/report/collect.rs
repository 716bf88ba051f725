//! Reading a sweep folder back: the plan (every run that should exist), and
//! for each run what its job left behind — status, training log,
//! per-timestep losses and evaluation metrics. A partial sweep reads fine:
//! what is missing is recorded as missing, never dropped, and a file that
//! exists but cannot be read is recorded with why ([`Unreadable`]), so the
//! report can name it and its fix.

use crate::config::RunConfig;
use crate::run::eval_key::metric_part;
use crate::run::metrics_table::{self, MetricRow};
use crate::run::records::{LogRecord, PlanFile, PlanRun};
use crate::run::timestep_table::{read_timestep_rows, TimestepRow};
use crate::run::{EvalDir, EvalKeys, JobState, RunStatus, SweepDir, Weights};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Why a sweep folder cannot be reported: every variant is a problem with
/// the input (exit code 2). The cause is in the message, not a `#[source]`:
/// `main` prints errors with `{:#}`, which would print it twice.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{}: cannot read it ({error}); give a sweep folder (results/<sweep>) that `ddpm-lab sweep` has planned", path.display())]
    NoPlan {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a sweep plan this version can read ({error}); run `ddpm-lab sweep` on its spec again to rewrite it", path.display())]
    BadPlan {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{}: lists no runs, so there is nothing to report; give a sweep folder (results/<sweep>) that `ddpm-lab sweep` has planned", path.display())]
    NoRuns { path: PathBuf },
}

/// What kind of file a job left that cannot be read: each has its own fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreadableKind {
    /// `eval/timestep_loss.parquet` or `eval/eval_metrics.parquet`: its rows
    /// are left out; evaluating the job anew rewrites it.
    EvalTable,
    /// `status.json`: the job's runs count as `unknown`; a sweep restarts
    /// such a job.
    Status,
}

/// A file that exists but cannot be read, with why (the reader's message,
/// which usually names the path; [`Unreadable::line`] makes sure it does).
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub kind: UnreadableKind,
    pub path: PathBuf,
    pub error: String,
}

impl Unreadable {
    /// The reason, led by the path when the reader's message does not name it.
    pub fn line(&self) -> String {
        let path = self.path.display().to_string();
        if self.error.starts_with(&path) {
            self.error.clone()
        } else {
            format!("{path}: {}", self.error)
        }
    }

    /// The command-line warning: what is wrong and the fix for this kind of
    /// file; `rerun` is how the caller's user evaluates again ("evaluate
    /// again", "run the sweep again").
    pub fn warning(&self, rerun: &str) -> String {
        match self.kind {
            UnreadableKind::EvalTable => format!(
                "{self}; its rows are left out of the report (delete that eval/ folder and {rerun})"
            ),
            UnreadableKind::Status => format!(
                "{self}; its job's runs count as unknown (run the sweep again, which restarts that job, or restore the file)"
            ),
        }
    }
}

/// As the report has always named it (`ddpm-lab report` and `sweep` print it).
impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            UnreadableKind::EvalTable => f.write_str(&self.error),
            UnreadableKind::Status => write!(f, "the job's status ({})", self.error),
        }
    }
}

/// One run as the report sees it.
#[derive(Debug, Clone)]
pub struct RunData {
    pub id: String,
    pub job: String,
    pub weights: Weights,
    /// The swept values, in axis order (`seed` included).
    pub swept: Vec<(String, serde_json::Value)>,
    pub config: RunConfig,
    /// What its job's status.json says; New when there is none (never
    /// started), Unknown when it cannot be read.
    pub state: JobState,
    pub reason: String,
    /// Training seconds (its status.json).
    pub wall_time_s: f64,
    /// Evaluation seconds its job's eval/ folder records (done.json).
    pub eval_wall_s: f64,
    pub device: String,
    pub log: Vec<LogRecord>,
    /// The per-timestep loss of this run's weights and of the raw weights.
    pub timestep: Vec<TimestepRow>,
    /// The job's evaluation rows for this run's weights (every guidance scale).
    pub eval: Vec<MetricRow>,
    /// Its job was evaluated, but not with this run's `eval.*` settings:
    /// what changed (`eval.num_samples 1000 → 37`). Its rows under the old
    /// settings are left out of [`RunData::eval`] and [`RunData::timestep`].
    pub stale: Option<Vec<String>>,
}

/// How the report names a run's state: a planned run whose job never
/// started is `missing` from the numbers.
pub fn state_label(state: JobState) -> &'static str {
    match state {
        JobState::New => "missing",
        other => other.name(),
    }
}

impl RunData {
    pub fn completed(&self) -> bool {
        self.state == JobState::Completed
    }

    /// Whether its job's evaluation left numbers for it: metric rows, or a
    /// per-timestep loss of its own weights (the raw rows a non-raw run
    /// keeps for comparison do not count).
    pub fn evaluated(&self) -> bool {
        !self.eval.is_empty() || self.timestep.iter().any(|t| t.weights == self.weights)
    }

    /// The swept values without the seed: what makes a variant.
    pub fn variant(&self) -> Vec<(String, serde_json::Value)> {
        self.swept
            .iter()
            .filter(|(k, _)| !is_seed_key(k))
            .cloned()
            .collect()
    }

    pub fn seed(&self) -> Option<i64> {
        self.swept
            .iter()
            .find(|(k, _)| is_seed_key(k))
            .and_then(|(_, v)| v.as_i64())
    }
}

/// The completed runs among `runs`.
pub fn completed<'a>(runs: &[&'a RunData]) -> Vec<&'a RunData> {
    runs.iter().copied().filter(|r| r.completed()).collect()
}

/// The first run of each job among `runs` (runs sharing a job share its
/// numbers, so a mean over runs would count that job more than once).
pub fn unique_jobs<'a>(runs: &[&'a RunData]) -> Vec<&'a RunData> {
    let mut seen: Vec<&str> = vec![];
    let mut out = vec![];
    for r in runs {
        if !seen.contains(&r.job.as_str()) {
            seen.push(&r.job);
            out.push(*r);
        }
    }
    out
}

/// The axis keys that are seeds.
pub fn is_seed_key(k: &str) -> bool {
    k == "seed" || k == "seeds" || k == "train.seed"
}

/// A variant as text: `key=value, key=value` (`base` when nothing is swept).
pub fn variant_label(v: &[(String, serde_json::Value)]) -> String {
    if v.is_empty() {
        return "base".into();
    }
    v.iter()
        .map(|(k, val)| {
            let short = k.rsplit('.').next().unwrap_or(k);
            let val = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{short}={val}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A whole sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepData {
    pub name: String,
    pub description: String,
    pub root: PathBuf,
    /// The resolved spec (spec.toml).
    pub spec_text: String,
    /// The spec file the sweep was planned from (what `ddpm-lab sweep` was given).
    pub spec_path: String,
    pub devices: Vec<String>,
    pub runs: Vec<RunData>,
    /// Run folders under `runs/` that the current plan does not have (from
    /// an earlier version of the spec): listed, not aggregated.
    pub orphans: Vec<String>,
    /// Evaluation tables and job statuses that exist but cannot be read
    /// (each once, with why): the report says what is missing and the fix.
    pub unreadable: Vec<Unreadable>,
}

impl SweepData {
    /// Swept keys in axis order (seed excluded).
    pub fn axes(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for r in &self.runs {
            for (k, _) in r.variant() {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        out
    }
}

fn read_log(path: &Path) -> Vec<LogRecord> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<LogRecord>(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Read `results/<sweep>/` (as `ddpm-lab sweep` wrote it).
pub fn collect(root: &Path) -> Result<SweepData, CollectError> {
    let sweep = SweepDir::at(root);
    let plan_path = sweep.plan();
    let text = std::fs::read_to_string(&plan_path).map_err(|error| CollectError::NoPlan {
        path: plan_path.clone(),
        error,
    })?;
    let plan: PlanFile = serde_json::from_str(&text).map_err(|error| CollectError::BadPlan {
        path: plan_path.clone(),
        error,
    })?;
    if plan.runs.is_empty() {
        return Err(CollectError::NoRuns { path: plan_path });
    }
    let read_run = |r: &PlanRun| read_run(&sweep, r);
    let read: Vec<(RunData, Vec<Unreadable>)> = plan.runs.par_iter().map(read_run).collect();
    let mut unreadable: Vec<Unreadable> = vec![];
    let mut runs = Vec::with_capacity(read.len());
    for (r, bad) in read {
        for b in bad {
            if !unreadable.contains(&b) {
                unreadable.push(b);
            }
        }
        runs.push(r);
    }
    let planned: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    let mut orphans: Vec<String> = walkdir::WalkDir::new(sweep.runs())
        .min_depth(2)
        .max_depth(2)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() == "run.json")
        .filter_map(|e| {
            let id = e
                .path()
                .parent()?
                .file_name()?
                .to_string_lossy()
                .into_owned();
            (!planned.contains(&id.as_str())).then_some(id)
        })
        .collect();
    orphans.sort();
    Ok(SweepData {
        orphans,
        unreadable,
        name: plan.name,
        description: plan.description,
        root: root.to_path_buf(),
        spec_text: std::fs::read_to_string(sweep.spec()).unwrap_or_default(),
        spec_path: plan.spec,
        devices: plan.devices,
        runs,
    })
}

/// One planned run and what its job left; with the tables and files that
/// exist but cannot be read (each with why).
fn read_run(sweep: &SweepDir, r: &PlanRun) -> (RunData, Vec<Unreadable>) {
    let job = sweep.job(&r.job);
    let mut unreadable = vec![];
    let bad = |kind, path: PathBuf, error: String| Unreadable { kind, path, error };
    let status = RunStatus::read_checked(&job.root).unwrap_or_else(|e| {
        unreadable.push(bad(UnreadableKind::Status, job.status(), e));
        Some(RunStatus {
            state: JobState::Unknown,
            reason: "its status.json cannot be read".into(),
            step: 0,
            total_steps: 0,
            wall_time_s: 0.0,
            device: String::new(),
            pid: 0,
            config_hash: String::new(),
            last_checkpoint: None,
        })
    });
    let (state, reason, wall, device) = match status {
        Some(s) => (s.state, s.reason, s.wall_time_s, s.device),
        None => (JobState::New, String::new(), 0.0, String::new()),
    };
    let eval_dir = EvalDir::new(job.eval());
    let weights = r.weights;
    // Only rows computed with this run's evaluation settings are its numbers.
    let keys = EvalKeys::of(&r.config.eval);
    let stale = eval_dir.stale_for(weights, &r.config.eval);
    let (ts_path, metrics_path) = (eval_dir.timestep_loss(), eval_dir.metrics());
    let timestep = read_timestep_rows(&ts_path)
        .unwrap_or_else(|e| {
            unreadable.push(bad(
                UnreadableKind::EvalTable,
                ts_path.clone(),
                e.to_string(),
            ));
            vec![]
        })
        .into_iter()
        .filter(|t| t.weights == weights || t.weights == Weights::Raw)
        .filter(|t| t.eval_key == keys.timestep_loss)
        .collect();
    let eval = metrics_table::read(&metrics_path)
        .unwrap_or_else(|e| {
            unreadable.push(bad(
                UnreadableKind::EvalTable,
                metrics_path.clone(),
                e.to_string(),
            ));
            vec![]
        })
        .into_iter()
        .filter(|m| m.weights == weights)
        .filter(|m| m.eval_key == keys.get(metric_part(m.guidance)))
        .collect();
    let mut data = RunData {
        id: r.id.clone(),
        job: r.job.clone(),
        weights,
        swept: r
            .swept
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        config: r.config.clone(),
        state,
        reason,
        wall_time_s: wall,
        eval_wall_s: eval_dir.read_done().wall_s,
        device,
        log: read_log(&job.metrics_jsonl()),
        timestep,
        eval,
        stale,
    };
    let derived = super::derived::rows(&data);
    data.eval.extend(derived);
    (data, unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_keeps_its_message_and_names_its_path() {
        let table = Unreadable {
            kind: UnreadableKind::EvalTable,
            path: PathBuf::from("/s/jobs/j/eval/eval_metrics.parquet"),
            error: "/s/jobs/j/eval/eval_metrics.parquet: parquet: bad footer".into(),
        };
        assert_eq!(table.to_string(), table.error);
        assert_eq!(table.line(), table.error, "the path is not said twice");
        let status = Unreadable {
            kind: UnreadableKind::Status,
            path: PathBuf::from("/s/jobs/j/status.json"),
            error: "EOF while parsing a string".into(),
        };
        assert_eq!(
            status.to_string(),
            "the job's status (EOF while parsing a string)"
        );
        assert_eq!(
            status.line(),
            "/s/jobs/j/status.json: EOF while parsing a string"
        );
    }
}
