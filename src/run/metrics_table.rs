//! `eval_metrics.parquet`: every evaluation number of a run in long format,
//! one row per (step, weights, guidance, sampler, metric), with the
//! checkpoint it came from.
//!
//! Columns: run, step, weights, guidance (null where guidance does not
//! apply, e.g. bits/dim), sampler (empty where no sampling was involved),
//! metric, value, stderr (null where the number has none), checkpoint,
//! eval_key (the [`crate::run::eval_key`] of the settings that produced the
//! row; empty in tables written before it existed, which makes them stale).
//!
//! Every table is written as Parquet and, beside it, as CSV (the same name
//! with `.csv`) for readers without a Parquet library.

use crate::run::weights::WeightsParseError;
use crate::run::Weights;
use polars::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub run: String,
    pub step: u64,
    pub weights: Weights,
    pub guidance: Option<f64>,
    pub sampler: String,
    pub metric: String,
    pub value: f64,
    pub stderr: Option<f64>,
    pub checkpoint: String,
    /// The key of the settings that produced it (see [`crate::run::eval_key`]).
    pub eval_key: String,
}

pub const FILE: &str = "eval_metrics.parquet";

/// Reading or writing an evaluation table failed: which file, and why. Never
/// the user's input: the tables are ddpm-lab's own output, so a full disk or
/// a damaged file is a failure (exit 1), not a bad flag.
// The cause is in the message and not a `#[source]` (nor a field named
// `source`, which thiserror would take for one): `{:#}` would print it twice.
#[derive(Debug, thiserror::Error)]
#[error("{}: {cause}", path.display())]
pub struct TableError {
    pub path: PathBuf,
    pub cause: TableFault,
}

/// Why a table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TableFault {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Polars(#[from] PolarsError),
    /// A `weights` cell that names no weight set.
    #[error(transparent)]
    Weights(#[from] WeightsParseError),
}

impl TableError {
    pub fn new(path: &Path, cause: impl Into<TableFault>) -> TableError {
        TableError {
            path: path.to_path_buf(),
            cause: cause.into(),
        }
    }
}

fn err(path: &Path, e: impl Into<TableFault>) -> TableError {
    TableError::new(path, e)
}

/// Read the table (missing: no rows).
pub fn read(path: &Path) -> Result<Vec<MetricRow>, TableError> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let df = ParquetReader::new(File::open(path).map_err(|e| err(path, e))?)
        .finish()
        .map_err(|e| err(path, e))?;
    let col = |n: &str| df.column(n).map_err(|e| err(path, e));
    let s = |n: &str| -> Result<Vec<String>, TableError> {
        Ok(col(n)?
            .str()
            .map_err(|e| err(path, e))?
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect())
    };
    let f = |n: &str| -> Result<Vec<Option<f64>>, TableError> {
        Ok(col(n)?.f64().map_err(|e| err(path, e))?.iter().collect())
    };
    let (run, sampler, metric, checkpoint) =
        (s("run")?, s("sampler")?, s("metric")?, s("checkpoint")?);
    let eval_key = optional_str(path, &df, "eval_key")?;
    let steps: Vec<u64> = col("step")?
        .u64()
        .map_err(|e| err(path, e))?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let (guidance, value, stderr) = (f("guidance")?, f("value")?, f("stderr")?);
    let weights = read_weights(path, &df)?;
    Ok((0..df.height())
        .map(|i| MetricRow {
            run: run[i].clone(),
            step: steps[i],
            weights: weights[i],
            guidance: guidance[i],
            sampler: sampler[i].clone(),
            metric: metric[i].clone(),
            value: value[i].unwrap_or(f64::NAN),
            stderr: stderr[i],
            checkpoint: checkpoint[i].clone(),
            eval_key: eval_key[i].clone(),
        })
        .collect())
}

/// A string column that older tables lack: empty cells then.
pub fn optional_str(path: &Path, df: &DataFrame, name: &str) -> Result<Vec<String>, TableError> {
    let Ok(col) = df.column(name) else {
        return Ok(vec![String::new(); df.height()]);
    };
    Ok(col
        .str()
        .map_err(|e| err(path, e))?
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect())
}

/// A float column that older tables lack: NaN for every row then (and for
/// null cells).
pub fn optional_f64(path: &Path, df: &DataFrame, name: &str) -> Result<Vec<f64>, TableError> {
    let Ok(col) = df.column(name) else {
        return Ok(vec![f64::NAN; df.height()]);
    };
    Ok(col
        .f64()
        .map_err(|e| err(path, e))?
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

/// A table's `weights` column, parsed; a cell that names no weight set is
/// an error naming the file.
fn parse_weights(path: &Path, cells: &[String]) -> Result<Vec<Weights>, TableError> {
    cells
        .iter()
        .map(|c| c.parse::<Weights>().map_err(|e| err(path, e)))
        .collect()
}

/// Read the `weights` column of the table at `path`, parsed.
pub fn read_weights(path: &Path, df: &DataFrame) -> Result<Vec<Weights>, TableError> {
    let cells: Vec<String> = df
        .column("weights")
        .and_then(|c| c.str().cloned())
        .map_err(|e| err(path, e))?
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect();
    parse_weights(path, &cells)
}

/// The `weights` column of a table, spelled as the weight sets print.
pub fn weights_column(weights: impl Iterator<Item = Weights>) -> Column {
    Column::new(
        "weights".into(),
        weights.map(|w| w.to_string()).collect::<Vec<_>>(),
    )
}

/// Write the table atomically.
pub fn write(path: &Path, rows: &[MetricRow]) -> Result<(), TableError> {
    let strs = |f: fn(&MetricRow) -> &str| rows.iter().map(f).collect::<Vec<_>>();
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new("run".into(), strs(|r| r.run.as_str())),
            Column::new(
                "step".into(),
                rows.iter().map(|r| r.step).collect::<Vec<_>>(),
            ),
            weights_column(rows.iter().map(|r| r.weights)),
            Column::new(
                "guidance".into(),
                rows.iter().map(|r| r.guidance).collect::<Vec<_>>(),
            ),
            Column::new("sampler".into(), strs(|r| r.sampler.as_str())),
            Column::new("metric".into(), strs(|r| r.metric.as_str())),
            Column::new(
                "value".into(),
                rows.iter().map(|r| r.value).collect::<Vec<_>>(),
            ),
            Column::new(
                "stderr".into(),
                rows.iter().map(|r| r.stderr).collect::<Vec<_>>(),
            ),
            Column::new("checkpoint".into(), strs(|r| r.checkpoint.as_str())),
            Column::new("eval_key".into(), strs(|r| r.eval_key.as_str())),
        ],
    )
    .map_err(|e| err(path, e))?;
    write_parquet(path, &mut df)
}

/// Write `df` to `path` atomically, as Parquet, and beside it as CSV. A
/// file that cannot be made (or renamed into place) is a [`TableFault::Io`].
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), TableError> {
    crate::run::atomic::write_with(path, |tmp| -> Result<(), TableFault> {
        ParquetWriter::new(File::create(tmp)?).finish(df)?;
        Ok(())
    })
    .map_err(|e| err(path, e))?;
    let csv = path.with_extension("csv");
    crate::run::atomic::write_with(&csv, |tmp| -> Result<(), TableFault> {
        CsvWriter::new(File::create(tmp)?).finish(df)?;
        Ok(())
    })
    .map_err(|e| err(&csv, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_their_nulls() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(FILE);
        assert!(read(&p).unwrap().is_empty());
        let rows = vec![
            MetricRow {
                run: "r".into(),
                step: 10,
                weights: Weights::ema(0.999),
                guidance: None,
                sampler: String::new(),
                metric: "bpd".into(),
                value: 3.25,
                stderr: Some(0.01),
                checkpoint: "snapshots/step-10".into(),
                eval_key: "0123abcd".into(),
            },
            MetricRow {
                run: "r".into(),
                step: 10,
                weights: Weights::Raw,
                guidance: Some(3.0),
                sampler: "ddim-50".into(),
                metric: "fd_mnist-cnn".into(),
                value: 12.5,
                stderr: None,
                checkpoint: "snapshots/step-10".into(),
                eval_key: "0123abcd".into(),
            },
        ];
        write(&p, &rows).unwrap();
        assert_eq!(read(&p).unwrap(), rows);
        // The CSV beside it holds the same rows.
        let csv = std::fs::read_to_string(p.with_extension("csv")).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.lines().next().unwrap().ends_with(",eval_key"), "{csv}");
        assert!(csv.contains("ddim-50,fd_mnist-cnn,12.5"), "{csv}");
    }

    #[test]
    fn a_write_under_a_file_names_the_table_and_its_cause() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let p = file.join(FILE);
        let e = write(&p, &[]).unwrap_err();
        assert_eq!(e.path, p);
        assert!(matches!(e.cause, TableFault::Io(_)), "{e:?}");
        assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
        std::fs::write(dir.path().join(FILE), "not parquet").unwrap();
        assert!(read(&dir.path().join(FILE)).is_err());
    }
}
