//! Reading a sweep folder back: the plan (every run that should exist), and
//! for each run what its job left behind — status, training log,
//! per-timestep losses and evaluation metrics. A partial sweep reads fine:
//! what is missing is recorded as missing, never dropped.

use crate::config::RunConfig;
use crate::eval::evaluate::{read_timestep_rows, TimestepRow};
use crate::eval::metrics_table::{self, MetricRow};
use crate::run::records::{LogRecord, PlanFile, PlanRun};
use crate::run::{EvalDir, JobState, RunStatus, SweepDir, Weights};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("{0}")]
    Input(String),
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
    pub wall_time_s: f64,
    pub device: String,
    pub log: Vec<LogRecord>,
    /// The per-timestep loss of this run's weights and of the raw weights.
    pub timestep: Vec<TimestepRow>,
    /// The job's evaluation rows for this run's weights (every guidance scale).
    pub eval: Vec<MetricRow>,
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
#[derive(Debug, Clone)]
pub struct SweepData {
    pub name: String,
    pub description: String,
    pub root: PathBuf,
    /// The resolved spec (spec.toml).
    pub spec_text: String,
    pub devices: Vec<String>,
    pub runs: Vec<RunData>,
    /// Run folders under `runs/` that the current plan does not have (from
    /// an earlier version of the spec): listed, not aggregated.
    pub orphans: Vec<String>,
    /// Evaluation tables that exist but cannot be read (each once, with why):
    /// their rows are missing from the report, which says so.
    pub unreadable: Vec<String>,
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
    let text = std::fs::read_to_string(&plan_path).map_err(|e| {
        CollectError::Input(format!(
            "{}: cannot read it ({e}); give a sweep folder (results/<sweep>) that `ddpm-lab sweep` has planned",
            plan_path.display()
        ))
    })?;
    let plan: PlanFile = serde_json::from_str(&text).map_err(|e| {
        CollectError::Input(format!(
            "{}: not a sweep plan this version can read ({e}); run `ddpm-lab sweep` on its spec again to rewrite it",
            plan_path.display()
        ))
    })?;
    if plan.runs.is_empty() {
        return Err(CollectError::Input(format!(
            "{}: lists no runs, so there is nothing to report; give a sweep folder (results/<sweep>) that `ddpm-lab sweep` has planned",
            plan_path.display()
        )));
    }
    let read_run = |r: &PlanRun| read_run(&sweep, r);
    let read: Vec<(RunData, Vec<String>)> = plan.runs.par_iter().map(read_run).collect();
    let mut unreadable: Vec<String> = vec![];
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
        devices: plan.devices,
        runs,
    })
}

/// One planned run and what its job left; with the tables and files that
/// exist but cannot be read (each with why).
fn read_run(sweep: &SweepDir, r: &PlanRun) -> (RunData, Vec<String>) {
    let job = sweep.job(&r.job);
    let mut unreadable = vec![];
    let status = RunStatus::read_checked(&job.root).unwrap_or_else(|e| {
        unreadable.push(format!("the job's status ({e})"));
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
    let timestep = read_timestep_rows(&eval_dir.timestep_loss())
        .unwrap_or_else(|e| {
            unreadable.push(e.to_string());
            vec![]
        })
        .into_iter()
        .filter(|t| t.weights == weights || t.weights == Weights::Raw)
        .collect();
    let eval = metrics_table::read(&eval_dir.metrics())
        .unwrap_or_else(|e| {
            unreadable.push(e.to_string());
            vec![]
        })
        .into_iter()
        .filter(|m| m.weights == weights)
        .collect();
    let data = RunData {
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
        device,
        log: read_log(&job.metrics_jsonl()),
        timestep,
        eval,
    };
    (data, unreadable)
}
