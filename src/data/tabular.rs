//! Tabular data (`data.source = "tabular"`): a CSV or Parquet file read with
//! polars. `data.columns` are modelled (e.g. daily returns of several assets),
//! `data.condition_columns` condition the model (e.g. macro variables, for the
//! chapter's scenario generation). Each column is scaled on the train split:
//! `standardize` ((x − mean)/std) or `minmax` (to [−1, 1], as the chapter
//! suggests for returns); the fitted statistics are saved with the run
//! (`data_stats.json`) so samples can be mapped back to the original units.
//! Rows are time-ordered, so the split is chronological: the first
//! (1 − `data.test_fraction`) of the rows train, the rest test.

use super::error::DataError;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scaling {
    /// (x − mean)/std, std over the train rows (population std; 1 where it is 0).
    Standardize,
    /// Linear map of the train rows' [min, max] to [−1, 1].
    Minmax,
}

/// x_scaled = (x − shift)/scale, per column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub column: String,
    pub scaling: Scaling,
    pub shift: f64,
    pub scale: f64,
}

impl ColumnStats {
    pub fn fit(column: &str, scaling: Scaling, xs: &[f64]) -> Self {
        let n = xs.len().max(1) as f64;
        let (shift, scale) = match scaling {
            Scaling::Standardize => {
                let mean = xs.iter().sum::<f64>() / n;
                let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
                (mean, var.sqrt())
            }
            Scaling::Minmax => {
                let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                ((lo + hi) / 2.0, (hi - lo) / 2.0)
            }
        };
        ColumnStats {
            column: column.to_string(),
            scaling,
            shift,
            scale: if scale > 0.0 && scale.is_finite() {
                scale
            } else {
                1.0
            },
        }
    }
    pub fn apply(&self, x: f64) -> f64 {
        (x - self.shift) / self.scale
    }
    pub fn invert(&self, y: f64) -> f64 {
        y * self.scale + self.shift
    }
}

/// A tabular split, scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Row-major [rows, columns.len()].
    pub values: Vec<f32>,
    /// Row-major [rows, condition_columns.len()] (empty when there are none).
    pub condition: Vec<f32>,
    pub rows: usize,
    /// Statistics of the modelled columns, then of the condition columns.
    pub stats: Vec<ColumnStats>,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct TabularSpec<'a> {
    pub columns: &'a [String],
    pub condition_columns: &'a [String],
    pub scaling: Scaling,
    pub drop_nulls: bool,
    pub test_fraction: f64,
}

fn read_frame(path: &Path) -> Result<DataFrame, DataError> {
    if !path.exists() {
        return Err(DataError::not_found(
            path,
            "data.path must name a CSV or Parquet file",
        ));
    }
    if !path.is_file() {
        return Err(DataError::format(
            path,
            "is not a file: data.path must name a CSV or Parquet file",
        ));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let df = if ext == "parquet" {
        let f = std::fs::File::open(path).map_err(DataError::io(path))?;
        ParquetReader::new(f).finish()
    } else {
        // Types from every row, not the first 100: a column of whole numbers
        // with a 1.5 further down is a float column, not a parse error.
        CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(None)
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
    };
    let df = df.map_err(|e| {
        DataError::format(
            path,
            format!(
                "cannot read it as {} ({e})",
                if ext == "parquet" {
                    "Parquet"
                } else {
                    "CSV with a header row"
                }
            ),
        )
    })?;
    if df.height() == 0 {
        return Err(DataError::format(path, "has no data rows"));
    }
    Ok(df)
}

/// Read, check, clean, split and scale. Returns (train, test).
pub fn load(path: &Path, spec: &TabularSpec) -> Result<(Table, Table), DataError> {
    let df = read_frame(path)?;
    let cols = used_columns(path, &df, spec)?;
    let keep = usable_rows(path, &cols, df.height(), spec.drop_nulls)?;
    let (train_rows, test_rows) = chronological_split(&keep, spec.test_fraction);
    let stats = fit_on_train(spec, &cols, train_rows);
    let k = spec.columns.len();
    Ok((
        scaled(&cols, &stats, k, train_rows),
        scaled(&cols, &stats, k, test_rows),
    ))
}

/// The modelled columns, then the condition columns, as f64 (`None` where
/// null), each checked to exist and to be numeric.
fn used_columns(
    path: &Path,
    df: &DataFrame,
    spec: &TabularSpec,
) -> Result<Vec<Vec<Option<f64>>>, DataError> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    if spec.columns.is_empty() {
        return Err(DataError::format(
            path,
            format!(
                "data.columns is empty: name the modelled columns; the file has {}",
                names.join(", ")
            ),
        ));
    }
    spec.columns
        .iter()
        .chain(spec.condition_columns)
        .map(|name| numeric_column(path, df, name, &names))
        .collect()
}

/// One column as f64; `names` (all the file's columns) for the error when
/// it is not there.
fn numeric_column(
    path: &Path,
    df: &DataFrame,
    name: &str,
    names: &[String],
) -> Result<Vec<Option<f64>>, DataError> {
    let col = df.column(name).map_err(|_| {
        DataError::format(
            path,
            format!(
                "has no column {name:?}; its columns are: {}",
                names.join(", ")
            ),
        )
    })?;
    if !col.dtype().is_primitive_numeric() {
        let first_bad = first_non_number(col);
        return Err(DataError::format(
            path,
            format!("column {name:?} is not numeric (read as {}; e.g. {first_bad:?}); model only numeric columns", col.dtype()),
        ));
    }
    let f = col
        .cast(&DataType::Float64)
        .map_err(|e| DataError::format(path, format!("column {name:?}: {e}")))?;
    let ca = f
        .f64()
        .map_err(|e| DataError::format(path, format!("column {name:?}: {e}")))?;
    Ok(ca.iter().collect())
}

/// The first value of a non-numeric column that does not read as a number
/// (empty when there is none), to show in the error.
fn first_non_number(col: &Column) -> String {
    col.cast(&DataType::String)
        .ok()
        .and_then(|c| {
            c.str().ok().and_then(|s| {
                s.iter()
                    .flatten()
                    .find(|v| v.trim().parse::<f64>().is_err())
                    .map(|v| v.to_string())
            })
        })
        .unwrap_or_default()
}

/// The rows (of `n`) with a finite value in every used column: an error
/// when some are not and `drop_nulls` is off, or when fewer than 2 remain.
fn usable_rows(
    path: &Path,
    cols: &[Vec<Option<f64>>],
    n: usize,
    drop_nulls: bool,
) -> Result<Vec<usize>, DataError> {
    // Nulls (and NaN) in any used column.
    let bad_row = |r: usize| cols.iter().any(|c| c[r].is_none_or(|v| !v.is_finite()));
    let bad: Vec<usize> = (0..n).filter(|&r| bad_row(r)).collect();
    if !bad.is_empty() && !drop_nulls {
        return Err(DataError::format(
            path,
            format!("{} row(s) have missing or non-finite values in the used columns (first at data row {}); set data.drop_nulls = true to drop them", bad.len(), bad[0] + 1),
        ));
    }
    let keep: Vec<usize> = (0..n).filter(|&r| !bad_row(r)).collect();
    if keep.len() < 2 {
        return Err(DataError::format(
            path,
            format!(
                "{} usable row(s): need at least 2 (one to train, one to test)",
                keep.len()
            ),
        ));
    }
    Ok(keep)
}

/// (train, test): the first (1 − `test_fraction`) of the rows train, the
/// rest test, each side at least one row (`keep` has at least 2).
fn chronological_split(keep: &[usize], test_fraction: f64) -> (&[usize], &[usize]) {
    let n_train =
        (((1.0 - test_fraction) * keep.len() as f64).round() as usize).clamp(1, keep.len() - 1);
    keep.split_at(n_train)
}

/// Each used column's scaling, fitted on the train rows.
fn fit_on_train(
    spec: &TabularSpec,
    cols: &[Vec<Option<f64>>],
    train_rows: &[usize],
) -> Vec<ColumnStats> {
    spec.columns
        .iter()
        .chain(spec.condition_columns)
        .zip(cols)
        .map(|(name, c)| {
            let xs: Vec<f64> = train_rows.iter().map(|&r| c[r].unwrap_or(0.0)).collect();
            ColumnStats::fit(name, spec.scaling, &xs)
        })
        .collect()
}

/// The given rows, scaled; the first `k` columns are modelled, the rest
/// condition.
fn scaled(cols: &[Vec<Option<f64>>], stats: &[ColumnStats], k: usize, rows: &[usize]) -> Table {
    let mut values = Vec::with_capacity(rows.len() * k);
    let mut condition = vec![];
    for &r in rows {
        for (j, c) in cols.iter().enumerate() {
            let v = stats[j].apply(c[r].unwrap_or(0.0)) as f32;
            if j < k {
                values.push(v)
            } else {
                condition.push(v)
            }
        }
    }
    Table {
        values,
        condition,
        rows: rows.len(),
        stats: stats.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(
        cols: &'a [String],
        cond: &'a [String],
        scaling: Scaling,
        drop: bool,
    ) -> TabularSpec<'a> {
        TabularSpec {
            columns: cols,
            condition_columns: cond,
            scaling,
            drop_nulls: drop,
            test_fraction: 0.25,
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Column types come from every row: 150 whole numbers and then 1.5 is a
    /// float column (polars' default looks at the first 100 rows and failed).
    #[test]
    fn a_float_after_many_whole_numbers_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("late.csv");
        let mut text = "a\n".to_string();
        for i in 0..150 {
            text.push_str(&format!("{}\n", i % 7));
        }
        text.push_str("1.5\n2\n3\n4\n");
        std::fs::write(&csv, text).unwrap();
        let cols = s(&["a"]);
        let spec = TabularSpec {
            test_fraction: 4.0 / 154.0,
            ..spec(&cols, &[], Scaling::Minmax, false)
        };
        let (train, test) = load(&csv, &spec).unwrap();
        assert_eq!((train.rows, test.rows), (150, 4));
        // Train rows span [0, 6] → [−1, 1]; 1.5 maps to 1.5/3 − 1 = −0.5.
        assert!((test.values[0] - -0.5).abs() < 1e-6, "{:?}", test.values);
    }

    #[test]
    fn csv_and_parquet_are_scaled_and_split_chronologically() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("r.csv");
        std::fs::write(
            &csv,
            "date,a,b,macro\n1,1.0,10,0.5\n2,2.0,20,0.6\n3,3.0,30,0.7\n4,4.0,40,0.8\n",
        )
        .unwrap();
        let (cols, cond) = (s(&["a", "b"]), s(&["macro"]));
        let (train, test) = load(&csv, &spec(&cols, &cond, Scaling::Minmax, false)).unwrap();
        assert_eq!((train.rows, test.rows), (3, 1));
        // Minmax on the train rows: a ∈ [1, 3] → [−1, 1].
        assert_eq!(&train.values[..2], &[-1.0, -1.0]);
        assert_eq!(&train.values[4..6], &[1.0, 1.0]);
        assert_eq!(test.values, vec![2.0, 2.0]); // 4 maps past the train range
        assert_eq!(train.condition.len(), 3);
        assert!((train.stats[0].invert(train.values[2] as f64) - 2.0).abs() < 1e-6);
        let (train_s, _) = load(&csv, &spec(&cols, &cond, Scaling::Standardize, false)).unwrap();
        let mean: f32 = (0..3).map(|r| train_s.values[2 * r]).sum::<f32>() / 3.0;
        assert!(mean.abs() < 1e-6);
        // The same table as Parquet gives the same numbers.
        let mut df = CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(csv.clone()))
            .unwrap()
            .finish()
            .unwrap();
        let pq = dir.path().join("r.parquet");
        ParquetWriter::new(std::fs::File::create(&pq).unwrap())
            .finish(&mut df)
            .unwrap();
        assert_eq!(
            load(&pq, &spec(&cols, &cond, Scaling::Minmax, false))
                .unwrap()
                .0,
            train
        );
    }

    #[test]
    fn bad_tables_get_errors_naming_the_file_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        let cols = s(&["a"]);
        std::fs::write(&p, "a,b\n1,x\n2,y\n").unwrap();
        let e = load(&p, &spec(&s(&["b"]), &[], Scaling::Minmax, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.csv") && e.contains("column \"b\" is not numeric") && e.contains("\"x\""),
            "{e}"
        );
        let e = load(&p, &spec(&s(&["zz"]), &[], Scaling::Minmax, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no column \"zz\"; its columns are: a, b"),
            "{e}"
        );
        std::fs::write(&p, "a,b\n1,2\n,3\n4,5\n6,7\n").unwrap();
        let e = load(&p, &spec(&cols, &[], Scaling::Minmax, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 row(s) have missing")
                && e.contains("data row 2")
                && e.contains("drop_nulls"),
            "{e}"
        );
        let (train, test) = load(&p, &spec(&cols, &[], Scaling::Minmax, true)).unwrap();
        assert_eq!(train.rows + test.rows, 3);
        std::fs::write(&p, "").unwrap();
        let e = load(&p, &spec(&cols, &[], Scaling::Minmax, false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.csv"), "{e}");
        std::fs::write(&p, "a,b\n").unwrap();
        let e = load(&p, &spec(&cols, &[], Scaling::Minmax, false))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no data rows") || e.contains("cannot read"),
            "{e}"
        );
    }
}
