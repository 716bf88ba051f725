//! An evaluation's TensorBoard output: each weight set's metrics and sample
//! grids, at the step they were evaluated, in the folder its run's events
//! live in. Only what is computed now is written, so evaluating again
//! adds nothing twice.

use crate::run::metrics_table::MetricRow;
use crate::run::Weights;
use crate::tensorboard::{tags, EventWriter, TbError};
use std::path::{Path, PathBuf};

/// Where each weight set's events go, opened on first use (an evaluation
/// that finds everything done makes no files).
pub struct TbSink {
    targets: Vec<Target>,
    /// The first failure: the sink stops writing after it.
    error: Option<TbError>,
}

struct Target {
    weights: Weights,
    dir: PathBuf,
    writer: Option<EventWriter>,
}

impl TbSink {
    /// A sink writing weight set w's events to each folder paired with w.
    pub fn new(targets: Vec<(Weights, PathBuf)>) -> TbSink {
        TbSink {
            targets: targets
                .into_iter()
                .map(|(weights, dir)| Target {
                    weights,
                    dir,
                    writer: None,
                })
                .collect(),
            error: None,
        }
    }

    /// The writers for `weights`, opened if need be.
    fn writers(&mut self, weights: Weights) -> Vec<&EventWriter> {
        if self.error.is_some() {
            return vec![];
        }
        for t in self.targets.iter_mut().filter(|t| t.weights == weights) {
            if t.writer.is_none() {
                match EventWriter::create(std::slice::from_ref(&t.dir), None) {
                    Ok(w) => t.writer = Some(w),
                    Err(e) => {
                        self.error = Some(e);
                        return vec![];
                    }
                }
            }
        }
        self.targets
            .iter()
            .filter(|t| t.weights == weights)
            .filter_map(|t| t.writer.as_ref())
            .collect()
    }

    /// Metric rows of one (step, weight set), as scalars.
    pub fn rows(&mut self, step: u64, weights: Weights, rows: &[MetricRow]) {
        let values: Vec<(String, f64)> = rows
            .iter()
            .map(|r| (tags::evaluation(r), r.value))
            .collect();
        for w in self.writers(weights) {
            w.scalars(step, &values);
        }
    }

    /// A sample grid (a PNG file) at guidance scale `g`.
    pub fn grid(&mut self, step: u64, weights: Weights, g: f64, png: &Path) {
        let bytes = match std::fs::read(png) {
            Ok(b) => b,
            Err(error) => {
                self.error.get_or_insert(TbError::Io {
                    path: png.to_path_buf(),
                    error,
                });
                return;
            }
        };
        let what = png.display().to_string();
        let mut failed = None;
        for w in self.writers(weights) {
            if let Err(e) = w.png(step, &tags::samples(g), bytes.clone(), &what) {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            self.error.get_or_insert(e);
        }
    }

    /// Flush and close every file; the first failure, if any.
    pub fn close(mut self) -> Option<TbError> {
        for t in &mut self.targets {
            if let Some(w) = t.writer.take() {
                if let Err(e) = w.close() {
                    self.error.get_or_insert(e);
                }
            }
        }
        self.error
    }
}
