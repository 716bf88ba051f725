//! Training metrics: a record every `train.log_every` steps, appended line by
//! line to `metrics.jsonl` (tail it) and rewritten as `metrics.parquet` (polars)
//! at every checkpoint, so a crash loses at most one interval. On resume, records
//! after the checkpoint's step are dropped, so the files never hold a step twice.

pub use crate::run::records::LogRecord;
use crate::run::RunDir;
use polars::prelude::*;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

pub struct MetricsLog {
    dir: PathBuf,
    pub records: Vec<LogRecord>,
    jsonl: File,
}

impl MetricsLog {
    /// Open the log of `dir`. With `resume_step`, keep the records up to that step;
    /// otherwise start empty.
    pub fn open(dir: &Path, resume_step: Option<u64>) -> std::io::Result<Self> {
        let path = RunDir::new(dir).metrics_jsonl();
        let mut records = vec![];
        if let (Some(step), Ok(f)) = (resume_step, File::open(&path)) {
            for line in BufReader::new(f).lines() {
                // A line cut short by a crash is dropped with everything after it.
                match serde_json::from_str::<LogRecord>(&line?) {
                    Ok(r) if r.step <= step => records.push(r),
                    _ => break,
                }
            }
        }
        let mut jsonl = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        for r in &records {
            writeln!(
                jsonl,
                "{}",
                serde_json::to_string(r).expect("record serializes")
            )?; // ok: plain data
        }
        jsonl.flush()?;
        Ok(MetricsLog {
            dir: dir.to_path_buf(),
            records,
            jsonl,
        })
    }

    pub fn push(&mut self, r: LogRecord) -> std::io::Result<()> {
        writeln!(
            self.jsonl,
            "{}",
            serde_json::to_string(&r).expect("record serializes")
        )?; // ok: plain data
        self.jsonl.flush()?;
        self.records.push(r);
        Ok(())
    }

    /// The records as a polars table, one column per field (`loss_q0`…, `ema_decay_<name>`).
    pub fn frame(&self) -> PolarsResult<DataFrame> {
        let r = &self.records;
        let f = |name: &str, get: &dyn Fn(&LogRecord) -> f64| -> Column {
            Column::new(name.into(), r.iter().map(get).collect::<Vec<f64>>())
        };
        let q = |i: usize| -> Column {
            Column::new(
                format!("loss_q{i}").into(),
                r.iter().map(|x| x.loss_q[i]).collect::<Vec<Option<f64>>>(),
            )
        };
        let mut cols = vec![
            Column::new(
                "step".into(),
                r.iter().map(|x| x.step).collect::<Vec<u64>>(),
            ),
            f("loss", &|x| x.loss),
            f("loss_unweighted", &|x| x.loss_unweighted),
            q(0),
            q(1),
            q(2),
            q(3),
            f("grad_norm", &|x| x.grad_norm),
            f("lr", &|x| x.lr),
            f("loss_scale", &|x| x.loss_scale),
            Column::new(
                "skipped_steps".into(),
                r.iter().map(|x| x.skipped_steps).collect::<Vec<u64>>(),
            ),
            f("images_per_s", &|x| x.images_per_s),
            f("data_wait_frac", &|x| x.data_wait_frac),
            f("wall_time_s", &|x| x.wall_time_s),
        ];
        let names: Vec<String> = r
            .first()
            .map(|x| x.ema_decay.keys().cloned().collect())
            .unwrap_or_default();
        for name in names {
            let vals: Vec<f64> = r
                .iter()
                .map(|x| x.ema_decay.get(&name).copied().unwrap_or(f64::NAN))
                .collect();
            cols.push(Column::new(format!("ema_decay_{name}").into(), vals));
        }
        DataFrame::new(r.len(), cols)
    }

    /// Rewrite `metrics.parquet` atomically.
    pub fn flush_parquet(&self) -> Result<(), PolarsError> {
        let mut df = self.frame()?;
        crate::run::atomic::write_with(&RunDir::new(&self.dir).metrics_parquet(), |tmp| {
            ParquetWriter::new(File::create(tmp)?)
                .finish(&mut df)
                .map(|_| ())
        })
    }
}

/// Read a run's `metrics.parquet` back (for reports and tests).
pub fn read_parquet(path: &Path) -> PolarsResult<DataFrame> {
    ParquetReader::new(File::open(path)?).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: u64) -> LogRecord {
        LogRecord {
            step,
            loss: step as f64,
            loss_unweighted: 1.0,
            loss_q: [Some(1.0), Some(2.0), None, Some(4.0)],
            grad_norm: 0.5,
            lr: 1e-3,
            ema_decay: [(crate::run::Weights::ema(0.9).to_string(), 0.9)]
                .into_iter()
                .collect(),
            loss_scale: 1.0,
            skipped_steps: 0,
            images_per_s: 100.0,
            data_wait_frac: 0.01,
            wall_time_s: 1.0,
        }
    }

    #[test]
    fn jsonl_and_parquet_hold_the_records_and_resume_drops_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), None).unwrap();
        for s in [10, 20, 30] {
            log.push(rec(s)).unwrap();
        }
        log.flush_parquet().unwrap();
        let df = read_parquet(&dir.path().join("metrics.parquet")).unwrap();
        assert_eq!(df.height(), 3);
        assert!(df.column("ema_decay_ema-0.9").is_ok());
        let steps: Vec<u64> = df
            .column("step")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(steps, vec![10, 20, 30]);
        drop(log);
        // Resume from step 20: the record of step 30 goes.
        let log = MetricsLog::open(dir.path(), Some(20)).unwrap();
        assert_eq!(
            log.records.iter().map(|r| r.step).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(log.records[1], rec(20), "records round-trip through JSON");
        let text = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
    }
}
