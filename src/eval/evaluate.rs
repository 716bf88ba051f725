//! Evaluating a trained run: every evaluation point (snapshot) × every weight
//! set (× every guidance scale, for samples), into the run's `eval/` folder:
//!
//! * `timestep_loss.parquet`: step, weights, bin, t_lo, t_hi,
//!   loss_unweighted, loss_weighted, checkpoint, eval_key — one row per bin;
//! * `eval_metrics.parquet` ([`crate::run::metrics_table`]): bits/dim (images)
//!   and the sample-quality metrics ([`super::quality`]);
//! * `samples/step-<N>_<weights>_g<scale>_<key>.png` (images) or `.parquet`
//!   (vectors, original units): the samples the metrics were computed on;
//! * `done.json`: the (step, weight set, evaluation key) triples finished.
//!
//! Work already in the tables under the same settings (the same
//! [`crate::run::eval_key`]) is kept and not redone, so an evaluation can be
//! stopped and run again, and a longer training adds only its new points.
//! Rows computed with other settings stay in the tables, under their own key,
//! and are recomputed with the settings asked for now.

use super::held_out::HeldOut;
use super::quality::{Metric, Reference};
use super::samples::{self, Condition};
use super::tensorboard::TbSink;
use super::timestep_loss::Probe;
use super::trained::{self, TrainedError, TrainedModel, WeightsSource};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::diffusion::likelihood::{mean_and_stderr, Estimate, Likelihood};
use crate::diffusion::sampling::NoiseSource;
use crate::diffusion::sampling::SamplingOptions;
use crate::diffusion::NoiseSchedule;
use crate::run::eval_key::metric_part;
use crate::run::metrics_table::{self, MetricRow, TableError};
use crate::run::timestep_table::{read_timestep_rows, write_timestep_rows, TimestepRow};
use crate::run::{atomic, identity, EvalDir, EvalKeys, EvalPart, RunDir, Weights};
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Trained(#[from] TrainedError),
    #[error("{} has no snapshot or checkpoint to evaluate; train it first", .run.display())]
    NothingToEvaluate { run: PathBuf },
    /// `--weights` names a set the run does not have.
    #[error("--weights {weights}: the run has {}{}", crate::run::weights::join(.have), if .weights.std_rel().is_some() { " (phema-<σ_rel> needs a run trained with ema.mode = \"power\" and σ_rel in (0, 0.28])" } else { "" })]
    UnknownWeights {
        weights: Weights,
        have: Vec<Weights>,
    },
    /// `--out` holds another run's evaluation.
    #[error("--out {}: holds the evaluation of another run ({other_run}, config {other_hash}; this run's is {hash}); give each run its own folder (the default is RUN_DIR/eval)", .out.display())]
    OtherRunsFolder {
        out: PathBuf,
        other_run: String,
        other_hash: String,
        hash: String,
    },
    #[error("--out {}: is a file; name a folder for the evaluation tables (the default is RUN_DIR/eval)", .out.display())]
    OutIsFile { out: PathBuf },
    /// The run's held-out split cannot be loaded.
    #[error("the held-out split: {error}")]
    HeldOut { error: crate::data::DataError },
    /// The run's schedule or weighting cannot be built for the probe.
    #[error("building the held-out probe: {error}")]
    Probe {
        error: super::timestep_loss::ProbeError,
    },
    #[error("the run's schedule: {error}")]
    Schedule {
        error: crate::diffusion::schedule::ScheduleError,
    },
    /// Samples cannot be drawn as the run's config asks.
    #[error(transparent)]
    Draw(#[from] samples::DrawError),
    /// Reading or writing one of the tables (a full disk, a damaged file).
    #[error(transparent)]
    Table(#[from] TableError),
    /// Writing another output: the folder, its owner file, done.json.
    #[error("{}: {error}", .path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Writing the samples behind the metrics.
    #[error("{}: {error}", .path.display())]
    Samples {
        path: PathBuf,
        error: super::output::OutputError,
    },
    /// Reference statistics or sample metrics (the evaluator network, the
    /// Inception network, their caches).
    #[error(transparent)]
    Quality(#[from] super::quality::QualityError),
}

impl EvalError {
    /// Whether what the user gave (a flag, the run, its config or its data)
    /// is what is wrong (exit 2); a table, sample or folder that cannot be
    /// written (a full disk) is not.
    pub fn is_bad_input(&self) -> bool {
        match self {
            EvalError::NothingToEvaluate { .. }
            | EvalError::UnknownWeights { .. }
            | EvalError::OtherRunsFolder { .. }
            | EvalError::OutIsFile { .. }
            | EvalError::HeldOut { .. }
            | EvalError::Probe { .. }
            | EvalError::Schedule { .. } => true,
            EvalError::Trained(e) => e.is_bad_input(),
            EvalError::Draw(e) => e.is_bad_input(),
            EvalError::Quality(e) => e.is_bad_input(),
            EvalError::Table(_) | EvalError::Write { .. } | EvalError::Samples { .. } => false,
        }
    }
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub run_dir: PathBuf,
    /// Weight sets; empty = every one the run has.
    pub weights: Vec<Weights>,
    /// Who named them: `--weights`, or the run (its config, its default).
    pub named_by: WeightsSource,
    /// Where the tables go (default: `<run_dir>/eval`).
    pub out: PathBuf,
    pub device: Device,
    /// The cache of evaluator networks and reference statistics.
    pub evaluators: PathBuf,
    /// Skip bits/dim and the sample-quality metrics (only the per-timestep loss).
    pub loss_only: bool,
    /// The `[eval]` settings to use instead of the run's own (a sweep run's,
    /// when its job is evaluated through the run's folder).
    pub settings: Option<crate::config::run::EvalConfig>,
    /// Where each weight set's TensorBoard events go (`output.tensorboard`);
    /// empty: `<run_dir>/tb/<weights>/` for every weight set evaluated.
    pub tensorboard: Vec<(Weights, PathBuf)>,
}

fn write_err(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    |error| EvalError::Write {
        path: path.to_path_buf(),
        error,
    }
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
    let started = std::time::Instant::now();
    let mut cfg = trained::run_config(&opts.run_dir)?;
    if let Some(settings) = &opts.settings {
        cfg.eval = settings.clone();
    }
    let points = RunDir::new(&opts.run_dir).eval_points();
    if points.is_empty() {
        return Err(EvalError::NothingToEvaluate {
            run: opts.run_dir.clone(),
        });
    }
    let weights = choose_weights(&cfg, &opts.weights)?;
    claim_out(&opts.out, &opts.run_dir, &cfg)?;
    let eval_dir = EvalDir::new(&opts.out);
    let tables = Tables::read(&eval_dir)?;
    let mut evaluation = Evaluation::new(opts, cfg, tables)?;
    evaluation.tb = TbSink::new(tensorboard_targets(opts, &evaluation.cfg, &weights));
    let mut report = EvalReport::default();
    for (step, dir) in &points {
        for &w in &weights {
            if evaluation.point(*step, dir, w, &mut progress)? {
                report.evaluated.push((*step, w));
            } else {
                report.kept += 1;
            }
        }
    }
    let tb = std::mem::replace(&mut evaluation.tb, TbSink::new(vec![]));
    if let Some(e) = tb.close() {
        progress(&format!(
            "warning: {e}; the tables are written all the same"
        ));
    }
    // Evaluations with other settings keep their entries.
    let mut done = eval_dir.read_done();
    done.wall_s += started.elapsed().as_secs_f64();
    let key = evaluation.keys.combined();
    for (step, _) in &points {
        for &w in &weights {
            done.add(*step, w, &key, &evaluation.cfg.eval);
        }
    }
    atomic::write_json(&eval_dir.done(), &done).map_err(write_err(&opts.out))?;
    Ok(report)
}

/// Where each weight set's TensorBoard events go: none when
/// `output.tensorboard` is off, the folders given, or else
/// `<run_dir>/tb/<weights>/` for each set evaluated.
fn tensorboard_targets(
    opts: &EvalOptions,
    cfg: &RunConfig,
    weights: &[Weights],
) -> Vec<(Weights, PathBuf)> {
    if !cfg.output.tensorboard {
        return vec![];
    }
    if !opts.tensorboard.is_empty() {
        return opts.tensorboard.clone();
    }
    let root = RunDir::new(&opts.run_dir).tensorboard();
    weights
        .iter()
        .map(|w| (*w, root.join(w.to_string())))
        .collect()
}

/// The weight sets to evaluate: those given (each once, in the order
/// given), or, with none given, every one the run has.
fn choose_weights(cfg: &RunConfig, given: &[Weights]) -> Result<Vec<Weights>, EvalError> {
    let all = trained::weight_sets(cfg);
    if given.is_empty() {
        return Ok(all);
    }
    let mut chosen: Vec<Weights> = Vec::new();
    for &w in given {
        if !w.held_by(&cfg.ema) {
            return Err(EvalError::UnknownWeights {
                weights: w,
                have: all,
            });
        }
        if !chosen.contains(&w) {
            chosen.push(w);
        }
    }
    Ok(chosen)
}

/// The two tables, as found at the start and grown as work finishes. Each
/// is written after every piece of work: a stop loses at most one.
struct Tables {
    loss_path: PathBuf,
    loss: Vec<TimestepRow>,
    metrics_path: PathBuf,
    metrics: Vec<MetricRow>,
}

impl Tables {
    fn read(dir: &EvalDir) -> Result<Tables, TableError> {
        let (loss_path, metrics_path) = (dir.timestep_loss(), dir.metrics());
        Ok(Tables {
            loss: read_timestep_rows(&loss_path)?,
            metrics: metrics_table::read(&metrics_path)?,
            loss_path,
            metrics_path,
        })
    }

    /// Rows under another evaluation key do not count: they were computed
    /// with other settings.
    fn has_loss(&self, p: &Point) -> bool {
        let key = p.keys.get(EvalPart::TimestepLoss);
        self.loss
            .iter()
            .any(|r| r.step == p.step && r.weights == p.weights && r.eval_key == key)
    }

    fn has_metrics(&self, p: &Point, guidance: Option<f64>, sampler: &str) -> bool {
        let key = p.keys.get(metric_part(guidance));
        self.metrics.iter().any(|r| {
            r.step == p.step
                && r.weights == p.weights
                && r.guidance == guidance
                && r.sampler == sampler
                && r.eval_key == key
        })
    }

    fn add_loss(&mut self, rows: impl IntoIterator<Item = TimestepRow>) -> Result<(), TableError> {
        self.loss.extend(rows);
        self.loss.sort_by(|a, b| {
            (a.step, a.weights.to_string(), a.bin).cmp(&(b.step, b.weights.to_string(), b.bin))
        });
        write_timestep_rows(&self.loss_path, &self.loss)
    }

    fn add_metrics(&mut self, rows: impl IntoIterator<Item = MetricRow>) -> Result<(), TableError> {
        self.metrics.extend(rows);
        metrics_table::write(&self.metrics_path, &self.metrics)
    }
}

/// One (evaluation point, weight set), as its rows name it.
struct Point {
    /// The run folder's name.
    run: String,
    step: u64,
    weights: Weights,
    /// The saved state's folder, relative to the run directory.
    checkpoint: String,
    /// The keys of the settings its rows are computed with.
    keys: EvalKeys,
}

impl Point {
    fn row(
        &self,
        metric: String,
        value: f64,
        stderr: Option<f64>,
        guidance: Option<f64>,
        sampler: &str,
    ) -> MetricRow {
        MetricRow {
            run: self.run.clone(),
            step: self.step,
            weights: self.weights,
            guidance,
            sampler: sampler.to_string(),
            metric,
            value,
            stderr,
            checkpoint: self.checkpoint.clone(),
            eval_key: self.keys.get(metric_part(guidance)).to_string(),
        }
    }
}

/// What the loop over (evaluation point, weight set) shares: the run, the
/// tables, the held-out data, how to sample, and the reference statistics.
struct Evaluation<'a> {
    opts: &'a EvalOptions,
    cfg: RunConfig,
    /// The run folder's name, for the metric rows.
    run: String,
    /// Who named the weight sets: `--weights`, or the run's config.
    named_by: WeightsSource,
    tables: Tables,
    test: Dataset,
    probe: Probe,
    /// Images only: the held-out images bits/dim is computed on.
    bpd_data: Option<HeldOut>,
    sampling: SamplingOptions,
    /// The sampler as the metric rows name it.
    tag: String,
    scales: Vec<f64>,
    /// Built on first need.
    reference: Option<Reference>,
    /// The floor of the sample metrics at this sample count and the
    /// evaluator's accuracy (the same at every point): on first need.
    floor: Option<Vec<Metric>>,
    /// The evaluation keys of `cfg.eval`, which every row carries.
    keys: EvalKeys,
    /// The TensorBoard events of what is computed now.
    tb: TbSink,
}

impl<'a> Evaluation<'a> {
    /// Read the held-out split once: the probe, bits/dim and the reference
    /// statistics all come from it.
    fn new(opts: &'a EvalOptions, cfg: RunConfig, tables: Tables) -> Result<Self, EvalError> {
        let test = crate::data::load(&cfg.data, crate::data::Split::Test)
            .map_err(|error| EvalError::HeldOut { error })?;
        let probe =
            Probe::new(&cfg, &test, opts.device).map_err(|error| EvalError::Probe { error })?;
        let images = crate::config::data_shape(&cfg).sample.len() == 3;
        let bpd_data =
            images.then(|| HeldOut::first(&cfg, &test, cfg.eval.bpd_images as i64, opts.device));
        let sampling = cfg.eval.sampling_options(images);
        let run = opts
            .run_dir
            .canonicalize()
            .unwrap_or(opts.run_dir.clone())
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Evaluation {
            opts,
            run,
            named_by: opts.named_by,
            tables,
            test,
            probe,
            bpd_data,
            tag: sampler_tag(&cfg, &sampling),
            sampling,
            scales: cfg.eval.scales(),
            keys: EvalKeys::of(&cfg.eval),
            cfg,
            reference: None,
            floor: None,
            tb: TbSink::new(vec![]),
        })
    }

    /// Compute what the tables lack for `weights` at the evaluation point
    /// `step` (saved in `dir`): false when they lack nothing.
    fn point(
        &mut self,
        step: u64,
        dir: &Path,
        weights: Weights,
        progress: &mut dyn FnMut(&str),
    ) -> Result<bool, EvalError> {
        let p = Point {
            run: self.run.clone(),
            step,
            weights,
            checkpoint: dir
                .strip_prefix(&self.opts.run_dir)
                .unwrap_or(dir)
                .display()
                .to_string(),
            keys: self.keys.clone(),
        };
        let need_loss = !self.tables.has_loss(&p);
        let need_bpd = !self.opts.loss_only
            && self.bpd_data.is_some()
            && !self.tables.has_metrics(&p, None, "");
        let need_scales: Vec<f64> = match self.opts.loss_only {
            true => vec![],
            false => self
                .scales
                .iter()
                .copied()
                .filter(|g| !self.tables.has_metrics(&p, Some(*g), &self.tag))
                .collect(),
        };
        if !need_loss && !need_bpd && need_scales.is_empty() {
            return Ok(false);
        }
        let (run_dir, device) = (&self.opts.run_dir, self.opts.device);
        let tm = trained::load(run_dir, Some(step), weights, self.named_by, device)?;
        if need_loss {
            self.timestep_loss(&p, &tm, progress)?;
        }
        if need_bpd {
            self.bits_per_dim(&p, &tm, progress)?;
        }
        for g in need_scales {
            self.sample_quality(&p, &tm, g, progress)?;
        }
        Ok(true)
    }

    /// The per-timestep loss on the held-out probe.
    fn timestep_loss(
        &mut self,
        p: &Point,
        tm: &TrainedModel,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), EvalError> {
        let curve = self.probe.evaluate(&tm.model);
        self.tables
            .add_loss(curve.into_iter().map(|b| TimestepRow {
                step: p.step,
                weights: p.weights,
                bin: b.bin,
                t_lo: b.t_lo,
                t_hi: b.t_hi,
                loss_unweighted: b.unweighted,
                loss_weighted: b.weighted,
                loss_eps: b.eps_equivalent,
                checkpoint: p.checkpoint.clone(),
                eval_key: p.keys.timestep_loss.clone(),
            }))?;
        progress(&format!("step {} {}: per-timestep loss", p.step, p.weights));
        Ok(())
    }

    /// Bits/dim of the held-out images, with its prior and decoder terms.
    fn bits_per_dim(
        &mut self,
        p: &Point,
        tm: &TrainedModel,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), EvalError> {
        let Some(data) = &self.bpd_data else {
            return Ok(());
        };
        let (bpd, prior, decoder) = bits_per_dim(&self.cfg, tm, data, self.opts.device)?;
        let rows = [
            p.row("bpd".into(), bpd.0, Some(bpd.1), None, ""),
            p.row("bpd_prior".into(), prior.0, Some(prior.1), None, ""),
            p.row("bpd_decoder".into(), decoder.0, Some(decoder.1), None, ""),
        ];
        self.tb.rows(p.step, p.weights, &rows);
        self.tables.add_metrics(rows)?;
        progress(&format!(
            "step {} {}: {:.4} ± {:.4} bits/dim",
            p.step, p.weights, bpd.0, bpd.1
        ));
        Ok(())
    }

    /// Samples at guidance scale `g`, their metrics against the reference
    /// statistics, and the samples themselves under `samples/`.
    fn sample_quality(
        &mut self,
        p: &Point,
        tm: &TrainedModel,
        g: f64,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(), EvalError> {
        let r = reference(
            &mut self.reference,
            &self.cfg,
            &self.test,
            self.opts,
            progress,
        )?;
        let n = self.cfg.eval.num_samples as i64;
        let condition = r.condition(tm.num_classes, n);
        let labels = match &condition {
            Condition::Labels(l) => Some(l.clone()),
            _ => None,
        };
        if g != 1.0 && matches!(condition, Condition::None) {
            progress(&format!(
                "step {} {}: guidance {g} skipped: the run has no condition",
                p.step, p.weights
            ));
            return Ok(());
        }
        let seed = self.cfg.train.seed ^ SAMPLE_SEED;
        let (sampling, device) = (&self.sampling, self.opts.device);
        let x = samples::draw(
            tm,
            sampling,
            g,
            &condition,
            n,
            NoiseSource::Seed(seed),
            device,
            &mut |_, _| {},
        )?;
        let mut metrics = r.metrics(&x, labels.as_deref(), self.cfg.train.seed)?;
        if self.floor.is_none() {
            self.floor = Some(floor(r, &self.cfg, n)?);
        }
        metrics.extend(self.floor.iter().flatten().cloned());
        let out = &self.opts.out;
        let labels = labels.as_deref();
        let stem = EvalDir::sample_stem(p.step, p.weights, g, &p.keys.samples);
        write_samples(&self.cfg, r.stats(), &x, labels, out, &stem)?;
        if x.dim() == 4 {
            let png = EvalDir::new(out).samples().join(format!("{stem}.png"));
            self.tb.grid(p.step, p.weights, g, &png);
        }
        let summary: Vec<String> = metrics
            .iter()
            .take(4)
            .map(|m| format!("{} {:.4}", m.name, m.value))
            .collect();
        let tag = &self.tag;
        let rows: Vec<MetricRow> = metrics
            .into_iter()
            .map(|m| p.row(m.name, m.value, m.stderr, Some(g), tag))
            .collect();
        self.tb.rows(p.step, p.weights, &rows);
        self.tables.add_metrics(rows)?;
        progress(&format!(
            "step {} {} guidance {g} ({tag}): {}",
            p.step,
            p.weights,
            summary.join(", ")
        ));
        Ok(())
    }
}

/// The reference statistics, built on first need (saying once what could
/// not be measured, and how good the evaluator network is).
fn reference<'r>(
    slot: &'r mut Option<Reference>,
    cfg: &RunConfig,
    test: &Dataset,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<&'r Reference, EvalError> {
    let r = match slot.take() {
        Some(r) => r,
        None => {
            let r = Reference::build(cfg, test, &opts.evaluators, opts.device, &mut *progress)?;
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
            r
        }
    };
    Ok(slot.insert(r))
}

/// The sample metrics' floor: the first `n` real training images against
/// the held-out reference (none when the training split cannot be read).
fn floor(r: &Reference, cfg: &RunConfig, n: i64) -> Result<Vec<Metric>, EvalError> {
    let Ok(train) = crate::data::load(&cfg.data, crate::data::Split::Train) else {
        return Ok(vec![]);
    };
    let n = n.min(train.x.size()[0]);
    Ok(r.floor(&train.x.narrow(0, 0, n))?)
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
    let schedule =
        NoiseSchedule::new(d.schedule_config()).map_err(|error| EvalError::Schedule { error })?;
    let lik = Likelihood::new(
        &schedule,
        d.prediction,
        cfg.eval.bpd_variance,
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
fn write_samples(
    cfg: &RunConfig,
    stats: Option<&[crate::data::tabular::ColumnStats]>,
    x: &Tensor,
    labels: Option<&[i64]>,
    out: &Path,
    stem: &str,
) -> Result<(), EvalError> {
    let dir = EvalDir::new(out).samples();
    std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
    let output_err = |error| EvalError::Samples {
        path: dir.join(stem),
        error,
    };
    if x.dim() == 4 {
        let k = (cfg.eval.grid_images as i64).min(x.size()[0]);
        let cols = (k as f64).sqrt().ceil() as usize;
        super::output::write_png_grid(&x.narrow(0, 0, k), cols, &dir.join(format!("{stem}.png")))
            .map_err(output_err)
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
        .map_err(output_err)
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
            return Err(EvalError::OtherRunsFolder {
                out: out.to_path_buf(),
                other_run: other.run_dir,
                other_hash: other.config_hash,
                hash: owner.config_hash,
            });
        }
        return Ok(());
    }
    if out.exists() && !out.is_dir() {
        return Err(EvalError::OutIsFile {
            out: out.to_path_buf(),
        });
    }
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    // A folder from before this file existed is taken to be this run's.
    atomic::write_json(&file, &owner).map_err(write_err(&file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bpd_row() -> MetricRow {
        MetricRow {
            run: "r".into(),
            step: 10,
            weights: Weights::Raw,
            guidance: None,
            sampler: String::new(),
            metric: "bpd".into(),
            value: 3.25,
            stderr: Some(0.01),
            checkpoint: "snapshots/step-10".into(),
            eval_key: EvalKeys::of(&Default::default()).bits_per_dim,
        }
    }

    fn loss_row() -> TimestepRow {
        TimestepRow {
            step: 10,
            weights: Weights::Raw,
            bin: 0,
            t_lo: 0,
            t_hi: 20,
            loss_unweighted: 0.5,
            loss_weighted: 0.5,
            loss_eps: 0.25,
            checkpoint: "snapshots/step-10".into(),
            eval_key: EvalKeys::of(&Default::default()).timestep_loss,
        }
    }

    #[test]
    fn a_reference_cache_that_cannot_be_written_is_a_failure_not_bad_input() {
        use super::super::evaluator::EvaluatorError;
        use super::super::quality::QualityError;
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let cache = EvalError::from(QualityError::Cache {
            path: "results/.evaluators/x/reference-test.safetensors".into(),
            error: tch::TchError::Io(full()),
        });
        assert!(!cache.is_bad_input(), "{cache}");
        assert!(cache
            .to_string()
            .starts_with("results/.evaluators/x/reference-test.safetensors: "));
        let folder = EvalError::from(QualityError::CacheFolder {
            path: "results/.evaluators/x".into(),
            error: full(),
        });
        assert!(!folder.is_bad_input(), "{folder}");
        let io = EvalError::from(QualityError::from(EvaluatorError::Io {
            path: "results/.evaluators/x".into(),
            error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        }));
        assert!(!io.is_bad_input(), "{io}");
        assert!(
            io.to_string().starts_with("results/.evaluators/x: "),
            "{io}"
        );
        let input = EvalError::from(QualityError::from(EvaluatorError::Unlabelled {
            split: "training",
        }));
        assert!(input.is_bad_input(), "{input}");
        assert!(
            input
                .to_string()
                .starts_with("the evaluator network is a classifier and needs class labels; the training split has none"),
            "{input}"
        );
    }

    #[test]
    fn outputs_that_cannot_be_written_are_failures_and_the_users_mistakes_are_bad_input() {
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let write = EvalError::Write {
            path: "out/done.json".into(),
            error: full(),
        };
        assert!(!write.is_bad_input(), "{write}");
        assert!(write.to_string().starts_with("out/done.json: "), "{write}");
        let samples = EvalError::Samples {
            path: "out/samples/step-10_raw_g1".into(),
            error: super::super::output::OutputError::Io {
                path: "out/samples/step-10_raw_g1.png".into(),
                error: full(),
            },
        };
        assert!(!samples.is_bad_input(), "{samples}");
        assert!(
            samples.to_string().starts_with(
                "out/samples/step-10_raw_g1: writing out/samples/step-10_raw_g1.png: "
            ),
            "{samples}"
        );
        let out = EvalError::OutIsFile {
            out: "results/x".into(),
        };
        assert!(out.is_bad_input(), "{out}");
        assert_eq!(
            out.to_string(),
            "--out results/x: is a file; name a folder for the evaluation tables (the default is RUN_DIR/eval)"
        );
        let held_out = EvalError::HeldOut {
            error: crate::data::DataError::format("data/x.csv", "no rows"),
        };
        assert!(held_out.is_bad_input(), "{held_out}");
        assert_eq!(
            held_out.to_string(),
            "the held-out split: data/x.csv: no rows"
        );
        // The held-out split's error is kept, typed.
        assert!(matches!(
            held_out,
            EvalError::HeldOut {
                error: crate::data::DataError::Format { .. }
            }
        ));
        let draw = EvalError::from(samples::DrawError::LabelOutOfRange {
            label: 8,
            classes: 8,
        });
        assert!(draw.is_bad_input(), "{draw}");
        assert_eq!(draw.to_string(), "--label 8: the run has classes 0…7");
        let none = EvalError::NothingToEvaluate {
            run: "runs/a".into(),
        };
        assert!(none.is_bad_input(), "{none}");
        assert_eq!(
            none.to_string(),
            "runs/a has no snapshot or checkpoint to evaluate; train it first"
        );
    }

    #[test]
    fn a_table_that_cannot_be_written_or_read_is_a_failure_not_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        // The evaluation folder is a file: no table can be written under it
        // (as a full disk would refuse), whoever runs the test.
        let file = tmp.path().join("a-file");
        std::fs::write(&file, "not a folder").unwrap();
        let under_file = EvalDir::new(&file);
        let mut tables = Tables {
            loss_path: under_file.timestep_loss(),
            loss: vec![],
            metrics_path: under_file.metrics(),
            metrics: vec![],
        };
        let writes: [(EvalError, PathBuf); 2] = [
            (
                tables.add_metrics([bpd_row()]).unwrap_err().into(),
                under_file.metrics(),
            ),
            (
                tables.add_loss([loss_row()]).unwrap_err().into(),
                under_file.timestep_loss(),
            ),
        ];
        for (e, path) in writes {
            assert!(!e.is_bad_input(), "{e}");
            assert!(matches!(e, EvalError::Table(_)), "{e:?}");
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        // A damaged table: a failure too.
        let dir = EvalDir::new(tmp.path());
        std::fs::write(dir.metrics(), "not parquet").unwrap();
        let e: EvalError = Tables::read(&dir).map(|_| ()).unwrap_err().into();
        assert!(!e.is_bad_input(), "{e}");
        // What the user gave stays bad input.
        let cfg = RunConfig::default();
        let e = choose_weights(&cfg, &[Weights::ema(0.5)]).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
    }

    #[test]
    fn tables_round_trip_and_know_what_they_hold() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = EvalDir::new(tmp.path());
        let mut tables = Tables::read(&dir).unwrap();
        let p = Point {
            run: "r".into(),
            step: 10,
            weights: Weights::Raw,
            checkpoint: "snapshots/step-10".into(),
            keys: EvalKeys::of(&Default::default()),
        };
        assert!(!tables.has_loss(&p) && !tables.has_metrics(&p, None, ""));
        tables.add_loss([loss_row()]).unwrap();
        tables
            .add_metrics([p.row("bpd".into(), 3.25, Some(0.01), None, "")])
            .unwrap();
        let again = Tables::read(&dir).unwrap();
        assert!(again.has_loss(&p) && again.has_metrics(&p, None, ""));
        assert!(!again.has_metrics(&p, Some(1.0), "ddpm-100"));
        assert_eq!(again.loss, [loss_row()]);
        assert_eq!(again.metrics, [bpd_row()]);
        // Rows of other settings are not what this point asks for.
        let other = crate::config::run::EvalConfig {
            timestep_bins: 5,
            bpd_images: 7,
            ..Default::default()
        };
        let q = Point {
            keys: EvalKeys::of(&other),
            ..p
        };
        assert!(!again.has_loss(&q) && !again.has_metrics(&q, None, ""));
    }
}
