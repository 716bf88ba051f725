//! The report's tables, as Polars data frames, written as Parquet and CSV
//! under `results/<sweep>/tables/`:
//!
//! * `runs`: one row per planned run — its swept values, seed, status (and
//!   why it failed), wall time, final training loss and final metrics (with
//!   `<metric>_se`, the standard error of an estimate that has one, and for
//!   bits/dim `bpd_estimator` and `bpd_variance`);
//! * `curves`: the training log, with the loss smoothed by a centred moving
//!   average (`[report] smoothing`);
//! * `timestep_profile`: the per-timestep loss of each run's weights at
//!   every evaluation step (and of the raw weights, to compare);
//! * `eval`: every evaluation row of each run's weights;
//! * `summary`: each variant's final metrics over seeds — n, mean, std and
//!   the 95% Student-t interval of the mean.
//!
//! A run's "final" metric is its value at the last evaluated step, at the
//! run's own guidance scale (metrics without guidance, like bits/dim, as
//! they are).

use super::collect::{variant_label, RunData, SweepData};
use super::stats::{smooth, summarize, Summary};
use super::ReportError;
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// The final value of each metric of a run (plus `final_loss`), by name.
pub fn final_metrics(r: &RunData) -> BTreeMap<String, (f64, Option<f64>)> {
    let mut out = BTreeMap::new();
    if let Some(last) = r.log.last() {
        out.insert("final_loss".to_string(), (last.loss, None));
    }
    let g = r.config.eval.guidance_scale;
    let mine: Vec<_> = r
        .eval
        .iter()
        .filter(|m| m.guidance.is_none_or(|x| x == g))
        .collect();
    if let Some(step) = mine.iter().map(|m| m.step).max() {
        for m in mine.iter().filter(|m| m.step == step) {
            out.insert(m.metric.clone(), (m.value, m.stderr));
        }
    }
    out
}

/// The metrics of a variant over its runs: name → values (one per run that has it).
pub fn variant_values(runs: &[&RunData]) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in runs {
        for (k, (v, _)) in final_metrics(r) {
            out.entry(k).or_default().push(v);
        }
    }
    out
}

/// Runs grouped by variant, in the order variants first appear.
pub fn by_variant(s: &SweepData) -> Vec<(String, Vec<&RunData>)> {
    let mut out: Vec<(String, Vec<&RunData>)> = vec![];
    for r in &s.runs {
        let label = variant_label(&r.variant());
        match out.iter_mut().find(|(l, _)| *l == label) {
            Some((_, v)) => v.push(r),
            None => out.push((label, vec![r])),
        }
    }
    out
}

/// One row of `summary`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub variant: String,
    pub metric: String,
    pub stats: Summary,
    /// Runs of the variant, and how many have the metric.
    pub runs: usize,
}

/// Each variant × metric over the completed runs' final values.
pub fn summary_rows(s: &SweepData) -> Vec<SummaryRow> {
    let mut out = vec![];
    for (variant, runs) in by_variant(s) {
        let done: Vec<&RunData> = runs.iter().copied().filter(|r| r.completed()).collect();
        for (metric, values) in variant_values(&done) {
            out.push(SummaryRow {
                variant: variant.clone(),
                metric,
                stats: summarize(&values),
                runs: runs.len(),
            });
        }
    }
    out
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The run, variant and seed columns of rows that each belong to a run.
fn run_columns<'a>(runs: impl Iterator<Item = &'a RunData> + Clone) -> Vec<Column> {
    vec![
        Column::new(
            "run".into(),
            runs.clone().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "variant".into(),
            runs.clone()
                .map(|r| variant_label(&r.variant()))
                .collect::<Vec<_>>(),
        ),
        Column::new("seed".into(), runs.map(|r| r.seed()).collect::<Vec<_>>()),
    ]
}

fn frame(height: usize, cols: Vec<Column>) -> PolarsResult<DataFrame> {
    DataFrame::new(height, cols)
}

/// `runs`.
pub fn runs_table(s: &SweepData) -> PolarsResult<DataFrame> {
    let n = s.runs.len();
    let str_col = |name: &str, f: &dyn Fn(&RunData) -> String| {
        Column::new(name.into(), s.runs.iter().map(f).collect::<Vec<_>>())
    };
    let mut cols = vec![
        str_col("run", &|r| r.id.clone()),
        str_col("job", &|r| r.job.clone()),
        str_col("variant", &|r| variant_label(&r.variant())),
        str_col("weights", &|r| r.weights.to_string()),
    ];
    for axis in s.axes() {
        cols.push(Column::new(
            axis.as_str().into(),
            s.runs
                .iter()
                .map(|r| {
                    r.swept
                        .iter()
                        .find(|(k, _)| *k == axis)
                        .map(|(_, v)| json_text(v))
                })
                .collect::<Vec<_>>(),
        ));
    }
    cols.push(Column::new(
        "seed".into(),
        s.runs.iter().map(|r| r.seed()).collect::<Vec<_>>(),
    ));
    cols.push(str_col("state", &|r| {
        crate::report::collect::state_label(r.state).to_string()
    }));
    cols.push(str_col("reason", &|r| r.reason.clone()));
    cols.push(Column::new(
        "wall_time_s".into(),
        s.runs.iter().map(|r| r.wall_time_s).collect::<Vec<_>>(),
    ));
    cols.push(str_col("device", &|r| r.device.clone()));
    let finals: Vec<BTreeMap<String, (f64, Option<f64>)>> =
        s.runs.iter().map(final_metrics).collect();
    let mut names: Vec<String> = finals.iter().flat_map(|f| f.keys().cloned()).collect();
    names.sort();
    names.dedup();
    for name in names {
        cols.push(Column::new(
            name.as_str().into(),
            finals
                .iter()
                .map(|f| f.get(&name).map(|v| v.0))
                .collect::<Vec<_>>(),
        ));
        // The standard error of an estimate (bits/dim over images and drawn
        // timesteps, an IS analogue over splits), beside its value.
        let se: Vec<Option<f64>> = finals
            .iter()
            .map(|f| f.get(&name).and_then(|v| v.1))
            .collect();
        if se.iter().any(Option::is_some) {
            cols.push(Column::new(format!("{name}_se").as_str().into(), se));
        }
    }
    if finals.iter().any(|f| f.contains_key("bpd")) {
        let method: Vec<Option<(String, String)>> = s
            .runs
            .iter()
            .zip(&finals)
            .map(|(r, f)| f.contains_key("bpd").then(|| bpd_method(&r.config)))
            .collect();
        let col = |name: &str, pick: fn(&(String, String)) -> &str| {
            Column::new(
                name.into(),
                method
                    .iter()
                    .map(|m| m.as_ref().map(pick))
                    .collect::<Vec<_>>(),
            )
        };
        cols.push(col("bpd_estimator", |m| &m.0));
        cols.push(col("bpd_variance", |m| &m.1));
    }
    frame(n, cols)
}

/// How a run's bits/dim was estimated and the variance of its bound, from its
/// config (its rows are under that config's evaluation key): e.g.
/// (`stratified (decoder + 100 strata)`, `fixed-small`).
pub fn bpd_method(cfg: &crate::config::RunConfig) -> (String, String) {
    let t = cfg.diffusion.timesteps;
    let estimate =
        crate::diffusion::likelihood::Estimate::from_timesteps(cfg.eval.bpd_timesteps, t);
    (
        estimate.describe(t),
        cfg.eval.bpd_variance.name().to_string(),
    )
}

/// `curves`.
pub fn curves_table(s: &SweepData, window: usize) -> PolarsResult<DataFrame> {
    // One job's log serves all its runs: one curve per job and variant.
    let mut run = vec![];
    let mut variant = vec![];
    let mut seed = vec![];
    let mut step = vec![];
    let mut loss = vec![];
    let mut loss_s = vec![];
    let mut unw = vec![];
    let mut unw_s = vec![];
    let mut grad = vec![];
    let mut lr = vec![];
    for r in &s.runs {
        let l: Vec<f64> = r.log.iter().map(|x| x.loss).collect();
        let u: Vec<f64> = r.log.iter().map(|x| x.loss_unweighted).collect();
        let (ls, us) = (smooth(&l, window), smooth(&u, window));
        for (i, rec) in r.log.iter().enumerate() {
            run.push(r.id.clone());
            variant.push(variant_label(&r.variant()));
            seed.push(r.seed());
            step.push(rec.step);
            loss.push(rec.loss);
            loss_s.push(ls[i]);
            unw.push(rec.loss_unweighted);
            unw_s.push(us[i]);
            grad.push(rec.grad_norm);
            lr.push(rec.lr);
        }
    }
    frame(
        run.len(),
        vec![
            Column::new("run".into(), run),
            Column::new("variant".into(), variant),
            Column::new("seed".into(), seed),
            Column::new("step".into(), step),
            Column::new("loss".into(), loss),
            Column::new("loss_smoothed".into(), loss_s),
            Column::new("loss_unweighted".into(), unw),
            Column::new("loss_unweighted_smoothed".into(), unw_s),
            Column::new("grad_norm".into(), grad),
            Column::new("lr".into(), lr),
        ],
    )
}

/// `timestep_profile`.
pub fn timestep_table(s: &SweepData) -> PolarsResult<DataFrame> {
    let rows: Vec<(&RunData, &crate::run::timestep_table::TimestepRow)> = s
        .runs
        .iter()
        .flat_map(|r| r.timestep.iter().map(move |t| (r, t)))
        .collect();
    let mut cols = run_columns(rows.iter().map(|(r, _)| *r));
    cols.extend([
        Column::new(
            "weights".into(),
            rows.iter()
                .map(|(_, t)| t.weights.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "step".into(),
            rows.iter().map(|(_, t)| t.step).collect::<Vec<_>>(),
        ),
        Column::new(
            "bin".into(),
            rows.iter().map(|(_, t)| t.bin as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "t_lo".into(),
            rows.iter().map(|(_, t)| t.t_lo).collect::<Vec<_>>(),
        ),
        Column::new(
            "t_hi".into(),
            rows.iter().map(|(_, t)| t.t_hi).collect::<Vec<_>>(),
        ),
        Column::new(
            "loss_unweighted".into(),
            rows.iter()
                .map(|(_, t)| t.loss_unweighted)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "loss_weighted".into(),
            rows.iter()
                .map(|(_, t)| t.loss_weighted)
                .collect::<Vec<_>>(),
        ),
    ]);
    frame(rows.len(), cols)
}

/// `eval`.
pub fn eval_table(s: &SweepData) -> PolarsResult<DataFrame> {
    let rows: Vec<(&RunData, &crate::run::metrics_table::MetricRow)> = s
        .runs
        .iter()
        .flat_map(|r| r.eval.iter().map(move |m| (r, m)))
        .collect();
    let mut cols = run_columns(rows.iter().map(|(r, _)| *r));
    cols.extend([
        Column::new(
            "step".into(),
            rows.iter().map(|(_, m)| m.step).collect::<Vec<_>>(),
        ),
        Column::new(
            "weights".into(),
            rows.iter()
                .map(|(_, m)| m.weights.to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "guidance".into(),
            rows.iter().map(|(_, m)| m.guidance).collect::<Vec<_>>(),
        ),
        Column::new(
            "sampler".into(),
            rows.iter()
                .map(|(_, m)| m.sampler.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "metric".into(),
            rows.iter()
                .map(|(_, m)| m.metric.as_str())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "value".into(),
            rows.iter().map(|(_, m)| m.value).collect::<Vec<_>>(),
        ),
        Column::new(
            "stderr".into(),
            rows.iter().map(|(_, m)| m.stderr).collect::<Vec<_>>(),
        ),
        Column::new(
            "checkpoint".into(),
            rows.iter()
                .map(|(_, m)| m.checkpoint.as_str())
                .collect::<Vec<_>>(),
        ),
    ]);
    frame(rows.len(), cols)
}

/// `summary`.
pub fn summary_table(rows: &[SummaryRow]) -> PolarsResult<DataFrame> {
    let nan = |v: f64| if v.is_finite() { Some(v) } else { None };
    frame(
        rows.len(),
        vec![
            Column::new(
                "variant".into(),
                rows.iter().map(|r| r.variant.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "metric".into(),
                rows.iter().map(|r| r.metric.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "n".into(),
                rows.iter().map(|r| r.stats.n as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "runs".into(),
                rows.iter().map(|r| r.runs as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "mean".into(),
                rows.iter().map(|r| nan(r.stats.mean)).collect::<Vec<_>>(),
            ),
            Column::new(
                "std".into(),
                rows.iter().map(|r| nan(r.stats.std)).collect::<Vec<_>>(),
            ),
            Column::new(
                "ci95".into(),
                rows.iter().map(|r| nan(r.stats.ci95)).collect::<Vec<_>>(),
            ),
            Column::new(
                "ci95_lo".into(),
                rows.iter()
                    .map(|r| nan(r.stats.mean - r.stats.ci95))
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "ci95_hi".into(),
                rows.iter()
                    .map(|r| nan(r.stats.mean + r.stats.ci95))
                    .collect::<Vec<_>>(),
            ),
        ],
    )
}

/// Write `df` as `<dir>/<name>.parquet` and `.csv`, each atomically.
pub fn write_table(dir: &Path, name: &str, df: &mut DataFrame) -> Result<(), ReportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ReportError::Write { path, error }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for ext in ["parquet", "csv"] {
        let path = dir.join(format!("{name}.{ext}"));
        let tmp = dir.join(format!(".{name}.{ext}.tmp"));
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let res = match ext {
            "parquet" => ParquetWriter::new(file).finish(df).map(|_| ()),
            _ => CsvWriter::new(file).finish(df),
        };
        res.map_err(|error| ReportError::TableFile {
            path: path.clone(),
            error,
        })?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}
