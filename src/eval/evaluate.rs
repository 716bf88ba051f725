//! Evaluating a trained run: every evaluation point (snapshot) × every weight
//! set (× every guidance scale, for samples), into the run's `eval/` folder:
//!
//! * `timestep_loss.parquet`: step, weights, bin, t_lo, t_hi,
//!   loss_unweighted, loss_weighted, checkpoint — one row per bin;
//! * `eval_metrics.parquet` ([`super::metrics_table`]): bits/dim (images) and
//!   the sample-quality metrics ([`super::quality`]);
//! * `samples/step-<N>_<weights>_g<scale>.png` (images) or `.parquet`
//!   (vectors, original units): the samples the metrics were computed on.
//!
//! Work already in the tables is kept and not redone, so an evaluation can be
//! stopped and run again, and a longer training adds only its new points.

use super::held_out::HeldOut;
use super::metrics_table::{self, MetricRow};
use super::quality::Reference;
use super::samples::{self, Condition};
use super::timestep_loss::Probe;
use super::trained::{self, TrainedError, TrainedModel};
use crate::config::RunConfig;
use crate::diffusion::likelihood::{mean_and_stderr, Estimate, Likelihood};
use crate::diffusion::sampling::SamplingOptions;
use crate::diffusion::NoiseSchedule;
use crate::run::records::EvalDone;
use crate::run::{atomic, identity, EvalDir, Weights};
use polars::prelude::*;
use std::fs::File;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

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
    pub weights: Vec<Weights>,
    /// Where the tables go (default: `<run_dir>/eval`).
    pub out: PathBuf,
    pub device: Device,
    /// The cache of evaluator networks and reference statistics.
    pub evaluators: PathBuf,
    /// Skip bits/dim and the sample-quality metrics (only the per-timestep loss).
    pub loss_only: bool,
}

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
    let cells: Vec<String> = col("weights")?
        .str()
        .map_err(|e| table_err(path, e))?
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect();
    let weights = metrics_table::parse_weights(path, &cells).map_err(EvalError::Input)?;
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
            weights: weights[i],
            bin: bins.get(i).unwrap_or(0) as usize,
            t_lo: lo.get(i).unwrap_or(0),
            t_hi: hi.get(i).unwrap_or(0),
            loss_unweighted: lu.get(i).unwrap_or(f64::NAN),
            loss_weighted: lw.get(i).unwrap_or(f64::NAN),
            checkpoint: ck.get(i).unwrap_or("").to_string(),
        })
        .collect())
}

/// Write `timestep_loss.parquet` atomically.
pub fn write_timestep_rows(path: &Path, rows: &[TimestepRow]) -> Result<(), EvalError> {
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
                rows.iter()
                    .map(|r| r.weights.to_string())
                    .collect::<Vec<_>>(),
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
    atomic::write_with(path, |tmp| {
        ParquetWriter::new(File::create(tmp)?)
            .finish(&mut df)
            .map(|_| ())
    })
    .map_err(|e: PolarsError| table_err(path, e))
}

/// What an evaluation did.
#[derive(Debug, Clone, Default)]
pub struct EvalReport {
    /// (step, weights) pairs evaluated now.
    pub evaluated: Vec<(u64, Weights)>,
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
        let mut chosen: Vec<Weights> = Vec::new();
        for &given in &opts.weights {
            if !all.contains(&given) {
                return Err(EvalError::Input(format!(
                    "--weights {given}: the run has {}",
                    crate::run::weights::join(&all)
                )));
            }
            if !chosen.contains(&given) {
                chosen.push(given);
            }
        }
        chosen
    };
    claim_out(&opts.out, &opts.run_dir, &cfg)?;
    let eval_dir = EvalDir::new(&opts.out);
    let path = eval_dir.timestep_loss();
    let mpath = eval_dir.metrics();
    let mut rows = read_timestep_rows(&path)?;
    let mut mrows = metrics_table::read(&mpath).map_err(EvalError::Input)?;
    let mut report = EvalReport::default();
    // The held-out split, read once: the probe, bits/dim and the reference
    // statistics all come from it.
    let test = crate::data::load(&cfg.data, crate::data::Split::Test)
        .map_err(|e| EvalError::Input(format!("the held-out split: {e}")))?;
    let probe = Probe::new(&cfg, &test, opts.device)
        .map_err(|e| EvalError::Input(format!("building the held-out probe: {e}")))?;
    let images = crate::config::data_shape(&cfg).sample.len() == 3;
    let bpd_data =
        images.then(|| HeldOut::first(&cfg, &test, cfg.eval.bpd_images as i64, opts.device));
    let sampling = cfg.eval.sampling_options(images);
    let tag = sampler_tag(&cfg, &sampling);
    let scales = cfg.eval.scales();
    let run = opts
        .run_dir
        .canonicalize()
        .unwrap_or(opts.run_dir.clone())
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Built on first need: the reference statistics.
    let mut reference: Option<Reference> = None;
    for (step, dir) in &points {
        for &w in &weights {
            let rel = dir
                .strip_prefix(&opts.run_dir)
                .unwrap_or(dir)
                .display()
                .to_string();
            let has = |m: &[MetricRow], g: Option<f64>, sampler: &str| {
                m.iter().any(|r| {
                    r.step == *step && r.weights == w && r.guidance == g && r.sampler == sampler
                })
            };
            let need_loss = !rows.iter().any(|r| r.step == *step && r.weights == w);
            let need_bpd = !opts.loss_only && images && !has(&mrows, None, "");
            let need_scales: Vec<f64> = if opts.loss_only {
                vec![]
            } else {
                scales
                    .iter()
                    .copied()
                    .filter(|g| !has(&mrows, Some(*g), &tag))
                    .collect()
            };
            if !need_loss && !need_bpd && need_scales.is_empty() {
                report.kept += 1;
                continue;
            }
            let tm = trained::load(&opts.run_dir, Some(*step), w, opts.device)?;
            if need_loss {
                let curve = probe.evaluate(&tm.model);
                rows.extend(curve.into_iter().map(|b| TimestepRow {
                    step: *step,
                    weights: w,
                    bin: b.bin,
                    t_lo: b.t_lo,
                    t_hi: b.t_hi,
                    loss_unweighted: b.unweighted,
                    loss_weighted: b.weighted,
                    checkpoint: rel.clone(),
                }));
                rows.sort_by(|a, b| {
                    (a.step, a.weights.to_string(), a.bin).cmp(&(
                        b.step,
                        b.weights.to_string(),
                        b.bin,
                    ))
                });
                // Written after every piece of work: a stop loses at most one.
                write_timestep_rows(&path, &rows)?;
                progress(&format!("step {step} {w}: per-timestep loss"));
            }
            let row =
                |metric: String, value: f64, stderr: Option<f64>, g: Option<f64>, sampler: &str| {
                    MetricRow {
                        run: run.clone(),
                        step: *step,
                        weights: w,
                        guidance: g,
                        sampler: sampler.to_string(),
                        metric,
                        value,
                        stderr,
                        checkpoint: rel.clone(),
                    }
                };
            if let Some(data) = bpd_data.as_ref().filter(|_| need_bpd) {
                let (bpd, prior, decoder) = bits_per_dim(&cfg, &tm, data, opts.device)?;
                mrows.push(row("bpd".into(), bpd.0, Some(bpd.1), None, ""));
                mrows.push(row("bpd_prior".into(), prior.0, Some(prior.1), None, ""));
                mrows.push(row(
                    "bpd_decoder".into(),
                    decoder.0,
                    Some(decoder.1),
                    None,
                    "",
                ));
                metrics_table::write(&mpath, &mrows).map_err(EvalError::Input)?;
                progress(&format!(
                    "step {step} {w}: {:.4} ± {:.4} bits/dim",
                    bpd.0, bpd.1
                ));
            }
            for g in need_scales {
                if reference.is_none() {
                    let r =
                        Reference::build(&cfg, &test, &opts.evaluators, opts.device, &mut progress)
                            .map_err(|e| EvalError::Input(e.to_string()))?;
                    if let Some(n) = r.note() {
                        progress(n);
                    }
                    if let Some(info) = r.evaluator_info() {
                        progress(&format!(
                            "evaluator {}: held-out accuracy {:.2}% ({} test images)",
                            info.name,
                            info.test_accuracy * 100.0,
                            info.test_images
                        ));
                        if let Some(w) = info.near_chance() {
                            progress(&format!("warning: {w}"));
                        }
                    }
                    reference = Some(r);
                }
                let Some(r) = reference.as_ref() else {
                    continue;
                };
                let n = cfg.eval.num_samples as i64;
                let condition = r.condition(tm.num_classes, n);
                let labels = match &condition {
                    Condition::Labels(l) => Some(l.clone()),
                    _ => None,
                };
                let guidance_ok = g == 1.0 || !matches!(condition, Condition::None);
                if !guidance_ok {
                    progress(&format!(
                        "step {step} {w}: guidance {g} skipped: the run has no condition"
                    ));
                    continue;
                }
                let x = samples::draw(
                    &tm,
                    &sampling,
                    g,
                    &condition,
                    n,
                    cfg.train.seed ^ SAMPLE_SEED,
                    opts.device,
                )
                .map_err(EvalError::Input)?;
                let metrics = r
                    .metrics(&x, labels.as_deref(), cfg.train.seed)
                    .map_err(|e| EvalError::Input(e.to_string()))?;
                write_samples(
                    &cfg,
                    r.stats(),
                    &x,
                    labels.as_deref(),
                    &opts.out,
                    *step,
                    w,
                    g,
                )?;
                let summary: Vec<String> = metrics
                    .iter()
                    .take(4)
                    .map(|m| format!("{} {:.4}", m.name, m.value))
                    .collect();
                for m in metrics {
                    mrows.push(row(m.name, m.value, m.stderr, Some(g), &tag));
                }
                metrics_table::write(&mpath, &mrows).map_err(EvalError::Input)?;
                progress(&format!(
                    "step {step} {w} guidance {g} ({tag}): {}",
                    summary.join(", ")
                ));
            }
            report.evaluated.push((*step, w));
        }
    }
    let done = EvalDone {
        steps: points.iter().map(|(s, _)| *s).collect(),
        weights: weights.clone(),
    };
    atomic::write_json(&eval_dir.done(), &done).map_err(|e| table_err(&opts.out, e))?;
    Ok(report)
}

const SAMPLE_SEED: u64 = 0x5A3F_E7A1;

/// The sampler as recorded in the table: `ddpm-<T>`, `ddim-<steps>`, `ddim-<steps>-eta<η>`.
fn sampler_tag(cfg: &RunConfig, s: &SamplingOptions) -> String {
    let t = cfg.diffusion.timesteps;
    match s.sampler {
        crate::config::run::SamplerKind::Ddpm => format!("ddpm-{t}"),
        crate::config::run::SamplerKind::Ddim => {
            let steps = if s.steps == 0 { t } else { s.steps.min(t) };
            if s.eta == 0.0 {
                format!("ddim-{steps}")
            } else {
                format!("ddim-{steps}-eta{}", s.eta)
            }
        }
    }
}

const BPD_BATCH: i64 = 250;

/// (bpd, prior, decoder) as (mean, standard error) over the images.
/// Conditional runs: log p(x | c) with
/// each image's own condition.
type MeanSe = (f64, f64);
fn bits_per_dim(
    cfg: &RunConfig,
    tm: &TrainedModel,
    data: &HeldOut,
    device: Device,
) -> Result<(MeanSe, MeanSe, MeanSe), EvalError> {
    let d = &cfg.diffusion;
    let schedule = NoiseSchedule::new(d.schedule_config())
        .map_err(|e| EvalError::Input(format!("the run's schedule: {e}")))?;
    let lik = Likelihood::new(
        &schedule,
        d.prediction,
        cfg.eval.variance,
        cfg.eval.clip_x0.unwrap_or(true),
        Estimate::from_timesteps(cfg.eval.bpd_timesteps, d.timesteps),
        cfg.train.seed,
        device,
    );
    let n = data.x.size()[0];
    let mut all = Vec::with_capacity(n as usize);
    let mut start = 0;
    while start < n {
        let len = BPD_BATCH.min(n - start);
        let cond = data.conditioning(start, len);
        let mut model = |x: &Tensor, t: &Tensor| tm.model.forward(x, t, &cond, false);
        all.extend(lik.bound(&data.x.narrow(0, start, len), start as u64, &mut model));
        start += len;
    }
    let pick = |f: fn(&crate::diffusion::likelihood::ImageBound) -> f64| {
        mean_and_stderr(&all.iter().map(f).collect::<Vec<_>>())
    };
    Ok((pick(|b| b.total), pick(|b| b.prior), pick(|b| b.decoder)))
}

/// The samples behind the metrics: a PNG grid (images) or a Parquet table in
/// original units (vectors), under `<out>/samples/`.
#[allow(clippy::too_many_arguments)]
fn write_samples(
    cfg: &RunConfig,
    stats: Option<&[crate::data::tabular::ColumnStats]>,
    x: &Tensor,
    labels: Option<&[i64]>,
    out: &Path,
    step: u64,
    weights: Weights,
    guidance: f64,
) -> Result<(), EvalError> {
    let dir = EvalDir::new(out).samples();
    std::fs::create_dir_all(&dir).map_err(|e| table_err(&dir, e))?;
    let stem = format!("step-{step}_{weights}_g{guidance}");
    let write_err = |e: super::output::OutputError| EvalError::Table {
        path: dir.join(&stem).display().to_string(),
        msg: e.to_string(),
    };
    if x.dim() == 4 {
        let k = (cfg.eval.grid_images as i64).min(x.size()[0]);
        let cols = (k as f64).sqrt().ceil() as usize;
        super::output::write_png_grid(&x.narrow(0, 0, k), cols, &dir.join(format!("{stem}.png")))
            .map_err(write_err)
    } else {
        let names = super::quality::column_names(cfg);
        let extra: Vec<(String, Vec<i64>)> = labels
            .map(|l| vec![("label".to_string(), l.to_vec())])
            .unwrap_or_default();
        super::output::write_vectors(
            x,
            &names,
            stats,
            &extra,
            &dir.join(format!("{stem}.parquet")),
        )
        .map_err(write_err)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct EvalOwner {
    run_dir: String,
    /// The run's config hash without `train.steps` (a resumed, longer run
    /// is the same run).
    config_hash: String,
}

/// Make `out` this run's evaluation folder, or say whose it is: a second
/// run's evaluation never lands among the first's rows (or reads them as
/// its own).
fn claim_out(out: &Path, run_dir: &Path, cfg: &crate::config::RunConfig) -> Result<(), EvalError> {
    let owner = EvalOwner {
        run_dir: run_dir.display().to_string(),
        config_hash: identity::resume_hash(cfg),
    };
    let file = EvalDir::new(out).owner();
    if let Some(other) = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| serde_json::from_str::<EvalOwner>(&t).ok())
    {
        if other.config_hash != owner.config_hash {
            return Err(EvalError::Input(format!(
                "--out {}: holds the evaluation of another run ({}, config {}; this run's is {}); give each run its own folder (the default is RUN_DIR/eval)",
                out.display(),
                other.run_dir,
                other.config_hash,
                owner.config_hash
            )));
        }
        return Ok(());
    }
    if out.exists() && !out.is_dir() {
        return Err(EvalError::Input(format!(
            "--out {}: is a file; name a folder for the evaluation tables (the default is RUN_DIR/eval)",
            out.display()
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| table_err(out, e))?;
    // A folder from before this file existed is taken to be this run's.
    atomic::write_json(&file, &owner).map_err(|e| table_err(&file, e))
}

/// Whether `out` holds a finished evaluation covering `weights` and every
/// evaluation point the run has now.
pub fn is_done(run_dir: &Path, out: &Path, weights: &[Weights]) -> bool {
    let Ok(Some(done)) = atomic::read_json::<EvalDone>(&EvalDir::new(out).done()) else {
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
