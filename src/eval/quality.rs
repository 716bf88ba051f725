//! Sample quality: generated samples against the held-out split of the run's
//! data, with the statistics that fit the data.
//!
//! * Labelled images: the evaluator network's features give `fd_<evaluator>`,
//!   `is_<evaluator>` (with its standard error over 10 splits),
//!   `precision_<evaluator>` and `recall_<evaluator>` (k = 3, on equally many
//!   real and generated samples), and for class-conditional runs
//!   `class_accuracy_<evaluator>`, the share of samples the evaluator
//!   classifies as the label they were drawn for.
//! * Any images, when `eval.inception` names the TorchScript Inception-v3:
//!   `fid` on its 2048-d pool features.
//! * Vectors (2-D toys, tabular rows), in the data's original units: the
//!   statistics of [`super::lowdim`]; the ACF of squared values for tabular
//!   data, whose rows are in time order; and for class-conditional eight
//!   Gaussians the exact class metrics of [`super::eight_gaussians`].
//!
//! Beside them, what they are measured against: the Fréchet distance of as
//! many real training images as samples (the floor a perfect model would
//! score at that sample count) and the evaluator's held-out accuracy.
//!
//! The real side is computed once per run (and, for the networks, cached per
//! dataset beside the evaluator), so every checkpoint, weight set and
//! guidance scale is compared against exactly the same reference.

use super::evaluator::{self, Evaluator, TrainOptions};
use super::frechet::{frechet_distance, FeatureStats};
use super::inception::Inception;
use super::lowdim::{self, Columns};
use super::precision_recall::{precision_recall, K};
use crate::config::run::{DataSource, RunConfig, ToyKind};
use crate::data::Dataset;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One number, with its standard error where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub stderr: Option<f64>,
}

impl Metric {
    pub fn new(name: impl Into<String>, value: f64) -> Metric {
        Metric {
            name: name.into(),
            value,
            stderr: None,
        }
    }
}

/// Why reference statistics or sample metrics could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// The evaluator network could not be loaded or trained.
    #[error(transparent)]
    Evaluator(#[from] super::evaluator::EvaluatorError),
    /// The Inception network `eval.inception` names cannot be loaded: the
    /// user's file.
    #[error(transparent)]
    Inception(super::inception::InceptionError),
    /// The Inception network failed on the data (libtorch).
    #[error(transparent)]
    Features(super::inception::InceptionError),
    /// The reference cache's folder could not be made.
    #[error("{}: {error}", .path.display())]
    CacheFolder {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
    /// The reference cache could not be written.
    #[error("{}: {error}", .path.display())]
    Cache {
        path: std::path::PathBuf,
        error: tch::TchError,
    },
}

impl QualityError {
    /// Whether what the user gave is what is wrong (exit 2); a cache that
    /// cannot be written (a full disk) is not.
    pub fn is_bad_input(&self) -> bool {
        match self {
            QualityError::Evaluator(e) => e.is_bad_input(),
            QualityError::Inception(_) => true,
            QualityError::Features(_)
            | QualityError::CacheFolder { .. }
            | QualityError::Cache { .. } => false,
        }
    }
}

pub struct NetworkReference {
    evaluator: Evaluator,
    stats: FeatureStats,
    features: Tensor,
}

/// The real side of every comparison for one run.
pub enum Reference {
    Images {
        network: Option<Box<NetworkReference>>,
        inception: Option<(Inception, FeatureStats)>,
        /// Why there is no evaluator network, to say once.
        note: Option<String>,
    },
    Vectors {
        real: Columns,
        names: Vec<String>,
        time_ordered: bool,
        /// The test rows' condition vectors (model units), for
        /// vector-conditional runs: samples are drawn for these.
        conditions: Option<Tensor>,
        stats: Option<Vec<crate::data::tabular::ColumnStats>>,
        /// Class-conditional eight Gaussians: the exact class metrics of
        /// [`super::eight_gaussians`] apply.
        exact_classes: bool,
    },
}

fn save_named(path: &Path, named: &[(String, Tensor)]) -> Result<(), QualityError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, &tmp)
        .and_then(|_| std::fs::rename(&tmp, path).map_err(tch::TchError::Io))
        .map_err(|error| QualityError::Cache {
            path: path.to_path_buf(),
            error,
        })
}

fn load_named(path: &Path) -> Option<Vec<(String, Tensor)>> {
    Tensor::read_safetensors(path).ok()
}

/// Values of vectors [N, D] as columns, mapped back through `stats`.
fn to_columns(x: &Tensor, stats: Option<&[crate::data::tabular::ColumnStats]>) -> Columns {
    let d = x.size()[1] as usize;
    let v: Vec<f64> = Vec::try_from(
        x.to_device(Device::Cpu)
            .to_kind(Kind::Double)
            .contiguous()
            .flatten(0, -1),
    )
    .unwrap_or_default();
    let mut cols = lowdim::columns(&v, d);
    if let Some(stats) = stats {
        for (c, s) in cols.iter_mut().zip(stats) {
            c.iter_mut().for_each(|v| *v = s.invert(*v));
        }
    }
    cols
}

impl Reference {
    /// Build (or load from `evaluators`) the reference of a run's data;
    /// `test` is its held-out split.
    pub fn build(
        cfg: &RunConfig,
        test: &Dataset,
        evaluators: &Path,
        device: Device,
        mut progress: impl FnMut(&str),
    ) -> Result<Reference, QualityError> {
        let shape = crate::config::data_shape(cfg).sample;
        if shape.len() != 3 {
            return Ok(Reference::Vectors {
                real: to_columns(&test.x, test.stats.as_deref()),
                names: column_names(cfg),
                time_ordered: cfg.data.source == DataSource::Tabular,
                conditions: test
                    .condition
                    .as_ref()
                    .filter(|_| cfg.data.uses_vector_condition())
                    .map(|c| c.shallow_clone()),
                stats: test.stats.clone(),
                exact_classes: cfg.data.source == DataSource::Toy
                    && cfg.data.toy == ToyKind::EightGaussians
                    && cfg.data.labels,
            });
        }
        let mut note = None;
        let labelled = test.labels.is_some();
        let network = if labelled {
            let ev = evaluator::load_or_train(
                cfg,
                evaluators,
                TrainOptions::default(),
                device,
                &mut progress,
            )?;
            let path = evaluators
                .join(&ev.info.key)
                .join("reference-test.safetensors");
            let (stats, features) = match load_named(&path).and_then(|named| {
                let f = named
                    .iter()
                    .find(|(n, _)| n == "features")?
                    .1
                    .shallow_clone();
                Some((FeatureStats::from_named(&named)?, f))
            }) {
                Some(found) => found,
                None => {
                    let (f, _) = ev.embed(&test.x);
                    let stats = FeatureStats::fit(&f);
                    let mut named = stats.to_named();
                    named.push(("features".into(), f.shallow_clone()));
                    save_named(&path, &named)?;
                    (stats, f)
                }
            };
            Some(Box::new(NetworkReference {
                evaluator: ev,
                stats,
                features,
            }))
        } else {
            note = Some("the data have no class labels, so there is no evaluator network (set eval.inception for FID)".to_string());
            None
        };
        let inception = match cfg.eval.inception.as_str() {
            "" => None,
            p => {
                let net = Inception::load(Path::new(p), device).map_err(QualityError::Inception)?;
                let dir =
                    evaluator::dir_of(evaluators, cfg).unwrap_or_else(|_| evaluators.join("data"));
                std::fs::create_dir_all(&dir).map_err(|error| QualityError::CacheFolder {
                    path: dir.clone(),
                    error,
                })?;
                let path = dir.join(format!("inception-{}-test.safetensors", net.digest));
                let stats = match load_named(&path).and_then(|n| FeatureStats::from_named(&n)) {
                    Some(s) => s,
                    None => {
                        progress("inception features of the held-out split");
                        let f = net.features(&test.x).map_err(QualityError::Features)?;
                        let s = FeatureStats::fit(&f);
                        save_named(&path, &s.to_named())?;
                        s
                    }
                };
                Some((net, stats))
            }
        };
        Ok(Reference::Images {
            network,
            inception,
            note,
        })
    }

    /// What to condition `n` samples on: balanced labels for a
    /// class-conditional run, the test rows' vectors for a vector-conditional
    /// one, nothing otherwise.
    pub fn condition(&self, num_classes: i64, n: i64) -> super::samples::Condition {
        use super::samples::Condition;
        if num_classes > 0 {
            return Condition::Labels((0..n).map(|i| i % num_classes).collect());
        }
        if let Reference::Vectors {
            conditions: Some(c),
            ..
        } = self
        {
            let rows = c.size()[0];
            let idx = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(rows);
            return Condition::Vectors(c.index_select(0, &idx));
        }
        Condition::None
    }

    /// A tabular source's scaling (to map samples back to original units).
    pub fn stats(&self) -> Option<&[crate::data::tabular::ColumnStats]> {
        match self {
            Reference::Vectors { stats, .. } => stats.as_deref(),
            _ => None,
        }
    }

    /// The notes to show once (what could not be measured, and why).
    pub fn note(&self) -> Option<&str> {
        match self {
            Reference::Images { note, .. } => note.as_deref(),
            _ => None,
        }
    }

    /// The evaluator's description, for images with labels.
    pub fn evaluator_info(&self) -> Option<&evaluator::EvaluatorInfo> {
        match self {
            Reference::Images {
                network: Some(n), ..
            } => Some(&n.evaluator.info),
            _ => None,
        }
    }

    /// What the sample metrics are measured against, named after them:
    /// `floor_fd_<evaluator>` (and `floor_fid`), the Fréchet distance of
    /// `real` (real training images, as many as the samples) to the
    /// held-out reference, the best a model can score at that sample
    /// count; and `evaluator_accuracy_<evaluator>`, the network's held-out
    /// accuracy. None for vectors.
    pub fn floor(&self, real: &Tensor) -> Result<Vec<Metric>, QualityError> {
        let mut out = vec![];
        if let Reference::Images {
            network, inception, ..
        } = self
        {
            if let Some(net) = network {
                let name = &net.evaluator.info.name;
                let (f, _) = net.evaluator.embed(real);
                out.push(Metric::new(
                    format!("floor_fd_{name}"),
                    frechet_distance(&net.stats, &FeatureStats::fit(&f)),
                ));
                out.push(Metric::new(
                    format!("evaluator_accuracy_{name}"),
                    net.evaluator.info.test_accuracy,
                ));
            }
            if let Some((net, stats)) = inception {
                out.push(Metric::new("floor_fid", fid(net, stats, real)?));
            }
        }
        Ok(out)
    }

    /// Every metric of `samples` ([N, …] in model units); `labels`: the class
    /// each sample was drawn for, if any.
    pub fn metrics(
        &self,
        samples: &Tensor,
        labels: Option<&[i64]>,
        seed: u64,
    ) -> Result<Vec<Metric>, QualityError> {
        let mut out = vec![];
        match self {
            Reference::Vectors {
                real,
                names,
                time_ordered,
                stats,
                exact_classes,
                ..
            } => {
                let gen = to_columns(samples, stats.as_deref());
                for (name, value) in lowdim::all_metrics(real, &gen, names, *time_ordered, seed) {
                    out.push(Metric::new(name, value));
                }
                if let (true, Some(l), [xs, ys]) = (*exact_classes, labels, gen.as_slice()) {
                    for (name, value, stderr) in super::eight_gaussians::metrics(xs, ys, l) {
                        out.push(Metric {
                            name,
                            value,
                            stderr,
                        });
                    }
                }
            }
            Reference::Images {
                network, inception, ..
            } => {
                if let Some(net) = network {
                    let name = &net.evaluator.info.name;
                    let (f, probs) = net.evaluator.embed(samples);
                    out.push(Metric::new(
                        format!("fd_{name}"),
                        frechet_distance(&net.stats, &FeatureStats::fit(&f)),
                    ));
                    let (is, is_se) = super::inception_score::score_splits(&probs, 10);
                    out.push(Metric {
                        name: format!("is_{name}"),
                        value: is,
                        stderr: Some(is_se),
                    });
                    let k = f.size()[0].min(net.features.size()[0]);
                    let (p, r) =
                        precision_recall(&net.features.narrow(0, 0, k), &f.narrow(0, 0, k), K);
                    out.push(Metric::new(format!("precision_{name}"), p));
                    out.push(Metric::new(format!("recall_{name}"), r));
                    if let Some(l) = labels {
                        let acc = evaluator::accuracy_of(&probs, &Tensor::from_slice(l));
                        let n = l.len() as f64;
                        out.push(Metric {
                            name: format!("class_accuracy_{name}"),
                            value: acc,
                            stderr: Some((acc * (1.0 - acc) / n).sqrt()),
                        });
                    }
                }
                if let Some((net, stats)) = inception {
                    out.push(Metric::new("fid", fid(net, stats, samples)?));
                }
            }
        }
        Ok(out)
    }
}

/// The Fréchet distance of `x`'s Inception features to the reference's.
fn fid(net: &Inception, reference: &FeatureStats, x: &Tensor) -> Result<f64, QualityError> {
    let f = net.features(x).map_err(QualityError::Features)?;
    Ok(frechet_distance(reference, &FeatureStats::fit(&f)))
}

/// The names of a vector source's columns: tabular columns, or x, y, x2, …
pub fn column_names(cfg: &RunConfig) -> Vec<String> {
    match cfg.data.source {
        DataSource::Tabular => cfg.data.columns.clone(),
        _ => {
            let d = crate::config::data_shape(cfg)
                .sample
                .first()
                .copied()
                .unwrap_or(0);
            (0..d)
                .map(|i| {
                    ["x", "y"]
                        .get(i as usize)
                        .map_or(format!("x{i}"), |s| s.to_string())
                })
                .collect()
        }
    }
}

/// The default folder of cached evaluators: `results/.evaluators`.
pub fn default_evaluators_dir() -> PathBuf {
    PathBuf::from("results").join(".evaluators")
}
