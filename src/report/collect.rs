//! Reading a sweep folder back: the plan (every run that should exist), and
//! for each run what its job left behind — status, training log,
//! per-timestep losses and evaluation metrics. A partial sweep reads fine:
//! what is missing is recorded as missing, never dropped.

use crate::config::RunConfig;
use crate::eval::evaluate::{read_timestep_rows, TimestepRow};
use crate::eval::metrics_table::{self, MetricRow};
use crate::train::log::LogRecord;
use crate::train::status::{RunState, RunStatus};
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
    /// `raw` or `ema-<decay>`.
    pub weights: String,
    /// The swept values, in axis order (`seed` included).
    pub swept: Vec<(String, serde_json::Value)>,
    pub config: RunConfig,
    /// `completed`, `failed`, `interrupted`, `running` or `missing` (never started).
    pub state: String,
    pub reason: String,
    pub wall_time_s: f64,
    pub device: String,
    pub log: Vec<LogRecord>,
    /// The per-timestep loss of this run's weights and of the raw weights.
    pub timestep: Vec<TimestepRow>,
    /// The job's evaluation rows for this run's weights (every guidance scale).
    pub eval: Vec<MetricRow>,
}

impl RunData {
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
    let plan_path = root.join("plan.json");
    let text = std::fs::read_to_string(&plan_path).map_err(|e| {
        CollectError::Input(format!(
            "{}: cannot read it ({e}); give a sweep folder (results/<sweep>) that `ddpm-lab sweep` has planned",
            plan_path.display()
        ))
    })?;
    let plan: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CollectError::Input(format!("{}: not a sweep plan ({e})", plan_path.display()))
    })?;
    let runs = match plan["runs"].as_array() {
        Some(runs) if !runs.is_empty() => runs.clone(),
        _ => {
            return Err(CollectError::Input(format!(
                "{}: lists no runs, so there is nothing to report; give a sweep folder (results/<sweep>) that `ddpm-lab sweep` has planned",
                plan_path.display()
            )))
        }
    };
    let read_run = |r: &serde_json::Value| -> Result<(RunData, Vec<String>), CollectError> {
        let id = r["id"].as_str().unwrap_or("").to_string();
        let job = r["job"].as_str().unwrap_or("").to_string();
        let weights = r["weights"].as_str().unwrap_or("raw").to_string();
        let swept: Vec<(String, serde_json::Value)> = r["swept"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let config: RunConfig = serde_json::from_value(r["config"].clone()).map_err(|e| {
            CollectError::Input(format!(
                "{}: run {id} has a config this version cannot read ({e})",
                plan_path.display()
            ))
        })?;
        let job_dir = root.join("jobs").join(&job);
        let status = RunStatus::read(&job_dir);
        let (state, reason, wall, device) = match &status {
            Some(s) => (
                match s.state {
                    RunState::Running => "running",
                    RunState::Completed => "completed",
                    RunState::Failed => "failed",
                    RunState::Interrupted => "interrupted",
                }
                .to_string(),
                s.reason.clone(),
                s.wall_time_s,
                s.device.clone(),
            ),
            None => ("missing".to_string(), String::new(), 0.0, String::new()),
        };
        let eval_dir = job_dir.join("eval");
        let mut unreadable = vec![];
        let timestep = read_timestep_rows(&eval_dir.join("timestep_loss.parquet"))
            .unwrap_or_else(|e| {
                unreadable.push(e.to_string());
                vec![]
            })
            .into_iter()
            .filter(|t| t.weights == weights || t.weights == "raw")
            .collect();
        let eval = metrics_table::read(&eval_dir.join(metrics_table::FILE))
            .unwrap_or_else(|e| {
                unreadable.push(e);
                vec![]
            })
            .into_iter()
            .filter(|m| m.weights == weights)
            .collect();
        Ok((
            RunData {
                id,
                job,
                weights,
                swept,
                config,
                state,
                reason,
                wall_time_s: wall,
                device,
                log: read_log(&job_dir.join("metrics.jsonl")),
                timestep,
                eval,
            },
            unreadable,
        ))
    };
    let read: Vec<(RunData, Vec<String>)> = runs
        .par_iter()
        .map(read_run)
        .collect::<Result<Vec<_>, _>>()?;
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
    let mut orphans: Vec<String> = walkdir::WalkDir::new(root.join("runs"))
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
        name: plan["name"].as_str().unwrap_or("").to_string(),
        description: plan["description"].as_str().unwrap_or("").to_string(),
        root: root.to_path_buf(),
        spec_text: std::fs::read_to_string(root.join("spec.toml")).unwrap_or_default(),
        devices: plan["devices"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        runs,
    })
}
