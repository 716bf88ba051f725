//! Evaluating a trained run: every evaluation point (snapshot) × every weight
//! set, into long-format tables under the run's `eval/` folder.
//!
//! `timestep_loss.parquet`: step, weights, bin, t_lo, t_hi, loss_unweighted,
//! loss_weighted, checkpoint — one row per bin. Work already in the table is
//! kept and not redone, so an evaluation can be stopped and run again, and a
//! longer training adds only its new points.

use super::timestep_loss::Probe;
use super::trained::{self, TrainedError};
use polars::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Trained(#[from] TrainedError),
    #[error("{0}")]
    Input(String),
    #[error("{path}: {msg}")]
    Table { path: String, msg: String },
}

impl EvalError {
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            EvalError::Input(_) | EvalError::Trained(TrainedError::Input(_))
        )
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub run_dir: PathBuf,
    /// Weight sets; empty = every one the run has.
    pub weights: Vec<String>,
    /// Where the tables go (default: `<run_dir>/eval`).
    pub out: PathBuf,
    pub device: Device,
}

/// One row of `timestep_loss.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestepRow {
    pub step: u64,
    pub weights: String,
    pub bin: usize,
    pub t_lo: i64,
    pub t_hi: i64,
    pub loss_unweighted: f64,
    pub loss_weighted: f64,
    pub checkpoint: String,
}

fn table_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Table {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// Read `timestep_loss.parquet` (missing: no rows).
pub fn read_timestep_rows(path: &Path) -> Result<Vec<TimestepRow>, EvalError> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let df = ParquetReader::new(File::open(path).map_err(|e| table_err(path, e))?)
        .finish()
        .map_err(|e| table_err(path, e))?;
    let col = |name: &str| df.column(name).map_err(|e| table_err(path, e));
    let steps = col("step")?.u64().map_err(|e| table_err(path, e))?.clone();
    let weights = col("weights")?
        .str()
        .map_err(|e| table_err(path, e))?
        .clone();
    let bins = col("bin")?.u64().map_err(|e| table_err(path, e))?.clone();
    let lo = col("t_lo")?.i64().map_err(|e| table_err(path, e))?.clone();
    let hi = col("t_hi")?.i64().map_err(|e| table_err(path, e))?.clone();
    let lu = col("loss_unweighted")?
        .f64()
        .map_err(|e| table_err(path, e))?
        .clone();
    let lw = col("loss_weighted")?
        .f64()
        .map_err(|e| table_err(path, e))?
        .clone();
    let ck = col("checkpoint")?
        .str()
        .map_err(|e| table_err(path, e))?
        .clone();
    Ok((0..df.height())
        .map(|i| TimestepRow {
            step: steps.get(i).unwrap_or(0),
            weights: weights.get(i).unwrap_or("").to_string(),
            bin: bins.get(i).unwrap_or(0) as usize,
            t_lo: lo.get(i).unwrap_or(0),
            t_hi: hi.get(i).unwrap_or(0),
            loss_unweighted: lu.get(i).unwrap_or(f64::NAN),
            loss_weighted: lw.get(i).unwrap_or(f64::NAN),
            checkpoint: ck.get(i).unwrap_or("").to_string(),
        })
        .collect())
}

fn write_timestep_rows(path: &Path, rows: &[TimestepRow]) -> Result<(), EvalError> {
    let n = rows.len();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new(
                "step".into(),
                rows.iter().map(|r| r.step).collect::<Vec<_>>(),
            ),
            Column::new(
                "weights".into(),
                rows.iter().map(|r| r.weights.as_str()).collect::<Vec<_>>(),
            ),
            Column::new(
                "bin".into(),
                rows.iter().map(|r| r.bin as u64).collect::<Vec<_>>(),
            ),
            Column::new(
                "t_lo".into(),
                rows.iter().map(|r| r.t_lo).collect::<Vec<_>>(),
            ),
            Column::new(
                "t_hi".into(),
                rows.iter().map(|r| r.t_hi).collect::<Vec<_>>(),
            ),
            Column::new(
                "loss_unweighted".into(),
                rows.iter().map(|r| r.loss_unweighted).collect::<Vec<_>>(),
            ),
            Column::new(
                "loss_weighted".into(),
                rows.iter().map(|r| r.loss_weighted).collect::<Vec<_>>(),
            ),
            Column::new(
                "checkpoint".into(),
                rows.iter()
                    .map(|r| r.checkpoint.as_str())
                    .collect::<Vec<_>>(),
            ),
        ],
    )
    .map_err(|e| table_err(path, e))?;
    let tmp = path.with_extension("parquet.tmp");
    ParquetWriter::new(File::create(&tmp).map_err(|e| table_err(path, e))?)
        .finish(&mut df)
        .map_err(|e| table_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| table_err(path, e))
}

/// What an evaluation did.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    /// (step, weights) pairs evaluated now.
    pub evaluated: Vec<(u64, String)>,
    /// Pairs found already in the tables.
    pub kept: usize,
}

/// Evaluate a run (see the module notes).
pub fn evaluate(
    opts: &EvalOptions,
    mut progress: impl FnMut(&str),
) -> Result<EvalReport, EvalError> {
    let cfg = trained::run_config(&opts.run_dir)?;
    let points = trained::eval_points(&opts.run_dir);
    if points.is_empty() {
        return Err(EvalError::Input(format!(
            "{} has no snapshot or checkpoint to evaluate; train it first",
            opts.run_dir.display()
        )));
    }
    let all = trained::weight_sets(&cfg);
    let weights = if opts.weights.is_empty() {
        all.clone()
    } else {
        for w in &opts.weights {
            if !all.contains(w) {
                return Err(EvalError::Input(format!(
                    "--weights {w}: the run has {}",
                    all.join(", ")
                )));
            }
        }
        opts.weights.clone()
    };
    std::fs::create_dir_all(&opts.out).map_err(|e| table_err(&opts.out, e))?;
    let path = opts.out.join("timestep_loss.parquet");
    let mut rows = read_timestep_rows(&path)?;
    let mut report = EvalReport::default();
    let probe = Probe::new(&cfg, opts.device)
        .map_err(|e| EvalError::Input(format!("building the held-out probe: {e}")))?;
    for (step, dir) in &points {
        for w in &weights {
            if rows.iter().any(|r| r.step == *step && &r.weights == w) {
                report.kept += 1;
                continue;
            }
            let tm = trained::load(&opts.run_dir, Some(*step), w, opts.device)?;
            let curve = probe.evaluate(&tm.model);
            let rel = dir
                .strip_prefix(&opts.run_dir)
                .unwrap_or(dir)
                .display()
                .to_string();
            rows.extend(curve.into_iter().map(|b| TimestepRow {
                step: *step,
                weights: w.clone(),
                bin: b.bin,
                t_lo: b.t_lo,
                t_hi: b.t_hi,
                loss_unweighted: b.unweighted,
                loss_weighted: b.weighted,
                checkpoint: rel.clone(),
            }));
            rows.sort_by(|a, b| (a.step, &a.weights, a.bin).cmp(&(b.step, &b.weights, b.bin)));
            // Written after every pair: a stop loses at most one pair's work.
            write_timestep_rows(&path, &rows)?;
            progress(&format!("step {step} {w}: per-timestep loss"));
            report.evaluated.push((*step, w.clone()));
        }
    }
    let done = EvalDone {
        steps: points.iter().map(|(s, _)| *s).collect(),
        weights: weights.clone(),
    };
    crate::train::status::write_json_atomic(&opts.out.join(DONE_FILE), &done)
        .map_err(|e| table_err(&opts.out, e))?;
    Ok(report)
}

/// Written when an evaluation has covered every point of the run for these
/// weight sets; the sweep uses it to skip finished evaluations.
pub const DONE_FILE: &str = "done.json";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalDone {
    pub steps: Vec<u64>,
    pub weights: Vec<String>,
}

/// Whether `out` holds a finished evaluation covering `weights` and every
/// evaluation point the run has now.
pub fn is_done(run_dir: &Path, out: &Path, weights: &[String]) -> bool {
    let Some(done) = std::fs::read_to_string(out.join(DONE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<EvalDone>(&t).ok())
    else {
        return false;
    };
    let points: Vec<u64> = trained::eval_points(run_dir)
        .iter()
        .map(|(s, _)| *s)
        .collect();
    !points.is_empty()
        && points.iter().all(|s| done.steps.contains(s))
        && weights.iter().all(|w| done.weights.contains(w))
}
