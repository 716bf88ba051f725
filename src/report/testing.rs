//! Runs made up for the report's unit tests: completed, with the swept
//! values, seed and final metrics given.

use super::collect::{variant_label, RunData};
use crate::config::RunConfig;
use crate::run::metrics_table::MetricRow;
use crate::run::{JobState, Weights};

/// A completed run of the variant `swept` (key, value) with `seed`, whose
/// final evaluation (step 100) has `metrics`.
pub fn fake_run(
    swept: &[(&str, serde_json::Value)],
    seed: i64,
    metrics: &[(&str, f64)],
) -> RunData {
    let mut sw: Vec<(String, serde_json::Value)> = swept
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    sw.push(("train.seed".into(), seed.into()));
    let id = format!("{}_seed-{seed}", variant_label(&sw[..sw.len() - 1]));
    RunData {
        id: id.clone(),
        job: id.clone(),
        weights: Weights::Raw,
        swept: sw,
        config: RunConfig::default(),
        state: JobState::Completed,
        reason: String::new(),
        wall_time_s: 1.0,
        eval_wall_s: 1.0,
        device: "cpu".into(),
        log: vec![],
        timestep: vec![],
        eval: metrics
            .iter()
            .map(|(m, v)| MetricRow {
                run: id.clone(),
                step: 100,
                weights: Weights::Raw,
                guidance: None,
                sampler: "ddpm".into(),
                metric: m.to_string(),
                value: *v,
                stderr: None,
                checkpoint: "snapshots/step-100".into(),
                eval_key: "k".into(),
            })
            .collect(),
        stale: None,
    }
}

/// `runs` grouped by variant, in the order variants first appear.
pub fn variants<'a>(runs: &[&'a RunData]) -> Vec<(String, Vec<&'a RunData>)> {
    let mut out: Vec<(String, Vec<&RunData>)> = vec![];
    for r in runs {
        let label = variant_label(&r.variant());
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(r),
            None => out.push((label, vec![r])),
        }
    }
    out
}

/// A completed run of job `job` with `weights`, nothing swept and nothing
/// recorded: tests fill in what they need.
pub fn bare_run(job: &str, weights: Weights) -> RunData {
    RunData {
        id: format!("{job}-{weights}"),
        job: job.into(),
        weights,
        swept: vec![],
        config: RunConfig::default(),
        state: JobState::Completed,
        reason: String::new(),
        wall_time_s: 0.0,
        eval_wall_s: 0.0,
        device: String::new(),
        log: vec![],
        timestep: vec![],
        eval: vec![],
        stale: None,
    }
}
