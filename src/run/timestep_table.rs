//! `timestep_loss.parquet`: the per-timestep loss of each evaluation point
//! and weight set (chapter §6), one row per bin of [0, T). `eval` writes it;
//! the report reads it.
//!
//! Columns: step, weights, bin, t_lo, t_hi, loss_unweighted, loss_weighted,
//! loss_eps (the ε-equivalent MSE; NaN in tables written before it existed),
//! checkpoint, eval_key (as in [`super::metrics_table`]). Written as Parquet
//! and CSV.

use super::metrics_table::{self, TableError};
use super::Weights;
use polars::prelude::*;
use std::fs::File;
use std::path::Path;

/// One row of `timestep_loss.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestepRow {
    pub step: u64,
    pub weights: Weights,
    pub bin: usize,
    pub t_lo: i64,
    pub t_hi: i64,
    pub loss_unweighted: f64,
    pub loss_weighted: f64,
    /// ‖ε − ε̂‖² with the output turned into ε̂: one unit for ε, x_0 and v.
    pub loss_eps: f64,
    pub checkpoint: String,
    /// The key of the settings that produced it (see [`crate::run::eval_key`]).
    pub eval_key: String,
}

/// Read `timestep_loss.parquet` (missing: no rows).
pub fn read_timestep_rows(path: &Path) -> Result<Vec<TimestepRow>, TableError> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let err = |e: PolarsError| TableError::new(path, e);
    let df = ParquetReader::new(File::open(path).map_err(|e| TableError::new(path, e))?)
        .finish()
        .map_err(err)?;
    let col = |name: &str| df.column(name).map_err(err);
    let steps = col("step")?.u64().map_err(err)?.clone();
    let weights = metrics_table::read_weights(path, &df)?;
    let bins = col("bin")?.u64().map_err(err)?.clone();
    let lo = col("t_lo")?.i64().map_err(err)?.clone();
    let hi = col("t_hi")?.i64().map_err(err)?.clone();
    let lu = col("loss_unweighted")?.f64().map_err(err)?.clone();
    let lw = col("loss_weighted")?.f64().map_err(err)?.clone();
    let le = metrics_table::optional_f64(path, &df, "loss_eps")?;
    let ck = col("checkpoint")?.str().map_err(err)?.clone();
    let keys = metrics_table::optional_str(path, &df, "eval_key")?;
    Ok((0..df.height())
        .map(|i| TimestepRow {
            step: steps.get(i).unwrap_or(0),
            weights: weights[i],
            bin: bins.get(i).unwrap_or(0) as usize,
            t_lo: lo.get(i).unwrap_or(0),
            t_hi: hi.get(i).unwrap_or(0),
            loss_unweighted: lu.get(i).unwrap_or(f64::NAN),
            loss_weighted: lw.get(i).unwrap_or(f64::NAN),
            loss_eps: le[i],
            checkpoint: ck.get(i).unwrap_or("").to_string(),
            eval_key: keys[i].clone(),
        })
        .collect())
}

/// Write `timestep_loss.parquet` atomically.
pub fn write_timestep_rows(path: &Path, rows: &[TimestepRow]) -> Result<(), TableError> {
    let n = rows.len();
    let mut df = DataFrame::new(
        n,
        vec![
            Column::new(
                "step".into(),
                rows.iter().map(|r| r.step).collect::<Vec<_>>(),
            ),
            metrics_table::weights_column(rows.iter().map(|r| r.weights)),
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
                "loss_eps".into(),
                rows.iter().map(|r| r.loss_eps).collect::<Vec<_>>(),
            ),
            Column::new(
                "checkpoint".into(),
                rows.iter()
                    .map(|r| r.checkpoint.as_str())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "eval_key".into(),
                rows.iter().map(|r| r.eval_key.as_str()).collect::<Vec<_>>(),
            ),
        ],
    )
    .map_err(|e| TableError::new(path, e))?;
    metrics_table::write_parquet(path, &mut df)
}
