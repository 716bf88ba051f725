//! One DDPM training run (chapter §2–5): algorithm 2.1 with the configured
//! target, loss weighting, timestep sampler, CFG dropout, AdamW, clipping,
//! EMAs and precision; checkpoints, logs and status in the run directory.
//!
//! # Speed
//! Parameters and gradients live in two flat buffers ([`super::flat`]), so the
//! optimizer, EMAs, clipping and unscaling are a few ops per step, whatever the
//! model's size. Nothing in a step makes the host wait for the device: uniform
//! and stratified timesteps are drawn on the device, metrics accumulate in
//! device tensors, the fp16 skip decision stays on the device, and a non-finite
//! loss is recorded on the device. The host reads them every `train.log_every`
//! steps. (The `importance` and `loss-aware` samplers read per-sample losses
//! back every step: they need them.) Because of that, the step's device work
//! can be recorded once as a CUDA graph and replayed (`train.cuda_graph`,
//! [`super::cuda_graph`]): the per-step numbers it needs (learning rate, EMA
//! weights, step index) are device tensors the host fills before each step.
//!
//! # Determinism
//! At every step the random generators are re-seeded from (seed, step), and the
//! data order is a function of (seed, step) too ([`crate::rng`]), so a run
//! stopped and resumed from a checkpoint ends with the same weights as one that
//! never stopped: bit for bit on the CPU (same thread count); on a GPU up to the
//! rounding of non-deterministic CUDA kernels.

use super::cuda_graph::{CudaGraph, SideStream, WARMUP_STEPS};
use super::ema::Ema;
use super::flat::FlatParams;
use super::log::MetricsLog;
use super::optim::{clip_grad_norm, lr_at, AdamW};
use super::precision::{autocast, LossScaler};
use crate::config::run::{EmaMode, LrSchedule, RunConfig};
use crate::config::{self, DeviceChoice};
use crate::data::{self, Batcher};
use crate::diffusion::timesteps::TimestepBatch;
use crate::diffusion::{
    create_sampler, training_losses, Losses, NoiseSchedule, TimestepSampler, TimestepSampling,
};
use crate::model::{Conditioning, Denoiser};
use crate::rng::mix_seed;
use crate::run::checkpoint::{self, CheckpointData, CheckpointState};
use crate::run::records::{LogRecord, ProgressLine};
use crate::run::status::{still_training, JobState, RunStatus};
use crate::run::{atomic, identity, RunDir, StopToken, Weights};
use rand::SeedableRng;
use rand_pcg::Pcg64;
use std::fs::{self, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

const NOISE_TAG: u64 = 0x5EED_0001;
const TIMESTEP_TAG: u64 = 0x5EED_0002;

/// How to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub run_dir: PathBuf,
    pub resume: bool,
    /// Plain log lines instead of a progress bar.
    pub quiet: bool,
    /// Progress as [`ProgressLine`]s on stdout, for a parent process (the
    /// sweep runner).
    pub progress_jsonl: bool,
    /// Checked before every step: once set, checkpoint and stop.
    pub stop: StopToken,
}

/// How a run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed { step: u64, already: bool },
    Interrupted { step: u64 },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    RunDir(String),
    #[error("the loss became NaN or infinite at step {step}; {last}. Lower train.lr, keep train.grad_clip on, or check the data")]
    NonFinite { step: u64, last: String },
    #[error("failed on purpose at step {0} (train.fail_at_step)")]
    Injected(u64),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    // The cause is in the message, not a `#[source]`: `{:#}` would print it twice.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error("{0}")]
    Other(String),
}

impl TrainError {
    /// Whether the user's input (flags, files) is what is wrong.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, TrainError::RunDir(_) | TrainError::Data(_))
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainError {
    let context = context.into();
    move |source| TrainError::Io { context, source }
}

/// The tensors one step's device work reads. Under a CUDA graph, the ones the
/// graph was recorded with: each step's batch is copied into them.
struct StepInputs {
    x0: Tensor,
    labels: Option<Tensor>,
    condition: Option<Tensor>,
    /// Timesteps and importance weights drawn on the host (the `importance`
    /// and `loss-aware` samplers); None: drawn on the device within the step.
    host_t: Option<(Tensor, Tensor)>,
}

impl StepInputs {
    /// Copy `src`'s values into these tensors (same shapes; no new memory).
    fn copy_from(&mut self, src: &StepInputs) {
        fn copy(dst: &mut Tensor, src: &Tensor) {
            dst.copy_(src);
        }
        tch::no_grad(|| {
            copy(&mut self.x0, &src.x0);
            for (d, s) in [
                (self.labels.as_mut(), src.labels.as_ref()),
                (self.condition.as_mut(), src.condition.as_ref()),
            ] {
                if let (Some(d), Some(s)) = (d, s) {
                    copy(d, s);
                }
            }
            if let (Some((dt, dw)), Some((st, sw))) = (self.host_t.as_mut(), src.host_t.as_ref()) {
                copy(dt, st);
                copy(dw, sw);
            }
        });
    }
}

/// What a step's device work leaves for the host: per-sample losses and
/// their timesteps (the loss-aware sampler's history).
struct StepOutputs {
    /// w(t)·MSE of each sample (before importance weights), for the adaptive samplers.
    weighted: Tensor,
    t: Tensor,
}

impl StepOutputs {
    fn shallow_clone(&self) -> StepOutputs {
        StepOutputs {
            weighted: self.weighted.shallow_clone(),
            t: self.t.shallow_clone(),
        }
    }
}

/// How steps run: eagerly, or (`train.cuda_graph`) a few eager warm-up steps
/// on a side stream, then one capture, then replays.
enum StepMode {
    Eager,
    Warming {
        stream: SideStream,
        done: u64,
    },
    Replaying {
        // Field order is drop order: wait for the device before freeing the graph.
        _stream: SideStream,
        graph: CudaGraph,
        inputs: StepInputs,
        outputs: StepOutputs,
    },
}

/// Everything a step needs.
struct Run {
    /// First, so that it is dropped first: under a CUDA graph, dropping it
    /// waits for the device before any tensor below is freed.
    mode: StepMode,
    cfg: RunConfig,
    device: Device,
    st: crate::diffusion::ScheduleTensors,
    /// Weight on the prediction target's MSE, per t [T].
    weight_table: Tensor,
    sampler: Box<dyn TimestepSampler>,
    batcher: Batcher,
    model: Denoiser,
    _vs: nn::VarStore,
    fp: FlatParams,
    opt: AdamW,
    ema: Ema,
    scaler: LossScaler,
    num_classes: i64,
    timesteps: i64,
    /// A tabular source's scaling, saved beside the run.
    data_stats: Option<Vec<data::tabular::ColumnStats>>,
    /// The step being taken, 0-dim i64 on the device (for the non-finite record).
    step_index: Tensor,
    /// Set at the step whose device work was recorded as a CUDA graph, until
    /// the loop has logged it.
    captured_at: Option<u64>,
}

/// Device-side sums over a log interval.
struct Accum {
    loss: Tensor,
    unweighted: Tensor,
    q_sum: Tensor,
    q_count: Tensor,
    grad_norm: Tensor,
    skipped: Tensor,
    first_bad: Tensor,
    steps: u64,
    data_wait: f64,
    started: Instant,
}

impl Accum {
    fn new(device: Device) -> Self {
        let z = || Tensor::zeros([], (Kind::Float, device));
        Accum {
            loss: z(),
            unweighted: z(),
            q_sum: Tensor::zeros([4], (Kind::Float, device)),
            q_count: Tensor::zeros([4], (Kind::Float, device)),
            grad_norm: z(),
            skipped: z(),
            first_bad: Tensor::full([], -1, (Kind::Int64, device)),
            steps: 0,
            data_wait: 0.0,
            started: Instant::now(),
        }
    }
    /// Start a new interval. In place: a CUDA graph keeps adding into these
    /// same tensors. `first_bad` is kept.
    fn reset(&mut self) {
        tch::no_grad(|| {
            for t in [
                &mut self.loss,
                &mut self.unweighted,
                &mut self.q_sum,
                &mut self.q_count,
                &mut self.grad_norm,
                &mut self.skipped,
            ] {
                let _ = t.zero_();
            }
        });
        self.steps = 0;
        self.data_wait = 0.0;
        self.started = Instant::now();
    }
    /// The first step whose loss was not finite, if any (reads the device).
    fn first_bad_step(&self) -> Option<u64> {
        u64::try_from(self.first_bad.int64_value(&[])).ok()
    }
}

/// The run's training device, with libtorch's thread count and (on CUDA)
/// cuDNN's benchmark mode set for it.
pub(crate) fn prepare_device(cfg: &RunConfig) -> Device {
    let device = DeviceChoice::parse(&cfg.train.device)
        .unwrap_or(DeviceChoice::Auto)
        .resolve();
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    device
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

impl Run {
    fn build(cfg: &RunConfig) -> Result<Self, TrainError> {
        let device = prepare_device(cfg);
        let d = &cfg.diffusion;
        let schedule = NoiseSchedule::new(d.schedule_config())
            .map_err(|e| TrainError::Other(e.to_string()))?;
        let weighting = d
            .loss_weighting()
            .map_err(|e| TrainError::Other(e.to_string()))?;
        let weights = weighting.target_weights(d.prediction, &schedule);
        let weight_table = Tensor::from_slice(&weights)
            .to_kind(Kind::Float)
            .to_device(device);
        let st = schedule.tensors(device);
        let sampler = create_sampler(d.timestep_sampling, d.timesteps, d.loss_aware_bins);
        let dataset = data::load(&cfg.data, data::Split::Train)?;
        if cfg.data.source == config::run::DataSource::Folder && cfg.data.test_fraction > 0.0 {
            // Evaluation decodes the held-out images: one that cannot be read
            // stops the run now, not after training.
            data::load(&cfg.data, data::Split::Test)?;
        }
        let batcher = Batcher::new(
            &dataset,
            device,
            cfg.train.batch_size,
            cfg.train.seed,
            cfg.data.labels,
            cfg.data.uses_vector_condition(),
            cfg.data.loader,
        )
        .with_flip(cfg.data.flip);
        let spec = config::model_spec(cfg, dataset.num_classes);
        tch::manual_seed(mix_seed(cfg.train.seed, u64::MAX, 0x1A17) as i64);
        let vs = nn::VarStore::new(device);
        let model = Denoiser::new(vs.root(), &spec);
        let fp = FlatParams::new(&vs, device, cfg.train.precision.compute_kind());
        let opt = AdamW::new(&cfg.train, &fp.flat);
        let ema = Ema::new(&cfg.ema, &fp.flat);
        let scaler = LossScaler::new(cfg.train.precision, device);
        let num_classes = if cfg.data.labels {
            dataset.num_classes.unwrap_or(0)
        } else {
            0
        };
        let mode = if cfg.train.cuda_graph {
            StepMode::Warming {
                stream: SideStream::enter(device).map_err(|e| TrainError::Other(e.to_string()))?,
                done: 0,
            }
        } else {
            StepMode::Eager
        };
        Ok(Run {
            mode,
            step_index: Tensor::zeros([], (Kind::Int64, device)),
            captured_at: None,
            cfg: cfg.clone(),
            device,
            st,
            weight_table,
            sampler,
            batcher,
            model,
            _vs: vs,
            fp,
            opt,
            ema,
            scaler,
            num_classes,
            timesteps: d.timesteps as i64,
            data_stats: dataset.stats.clone(),
        })
    }

    /// Timesteps drawn on the device (uniform, stratified), within the step.
    fn device_timesteps(&self, batch: i64) -> Tensor {
        let big_t = self.timesteps;
        let opts = (Kind::Int64, self.device);
        match self.cfg.diffusion.timestep_sampling {
            TimestepSampling::Stratified => {
                let u = Tensor::rand([1], (Kind::Double, self.device));
                let t = ((Tensor::arange(batch, (Kind::Double, self.device)) + u)
                    * (big_t as f64 / batch as f64))
                    .floor()
                    .clamp_max((big_t - 1) as f64)
                    .to_kind(Kind::Int64);
                let order = Tensor::randperm(batch, opts);
                t.index_select(0, &order)
            }
            _ => Tensor::randint(big_t, [batch], opts),
        }
    }

    /// Timesteps and importance weights drawn on the host (importance,
    /// loss-aware); None for the samplers that draw on the device.
    fn host_timesteps(&mut self, step: u64, batch: i64) -> Option<(Tensor, Tensor)> {
        match self.cfg.diffusion.timestep_sampling {
            TimestepSampling::Uniform | TimestepSampling::Stratified => None,
            TimestepSampling::Importance | TimestepSampling::LossAware => {
                let mut rng =
                    Pcg64::seed_from_u64(mix_seed(self.cfg.train.seed, step, TIMESTEP_TAG));
                let TimestepBatch { t, weights } = self.sampler.sample(batch as usize, &mut rng);
                let w: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
                Some((
                    Tensor::from_slice(&t).to_device(self.device),
                    Tensor::from_slice(&w).to_device(self.device),
                ))
            }
        }
    }

    /// One optimizer step. Accumulates metrics into `acc`, which must be the
    /// same `Accum` at every step (a CUDA graph adds into its tensors).
    ///
    /// The host part (the batch, host-drawn timesteps, the seed, the learning
    /// rate and EMA weights) runs every step; the device part
    /// ([`Run::device_step`]) runs eagerly or as a replay of its graph.
    fn step(&mut self, step: u64, acc: &mut Accum) -> Result<(), TrainError> {
        let b = self.cfg.train.batch_size;
        let fetch = Instant::now();
        let batch = self.batcher.batch(step);
        acc.data_wait += fetch.elapsed().as_secs_f64();
        tch::manual_seed(mix_seed(self.cfg.train.seed, step, NOISE_TAG) as i64);
        let inputs = StepInputs {
            host_t: self.host_timesteps(step, b),
            x0: batch.x0,
            labels: batch.labels,
            condition: batch.condition,
        };
        self.opt.set_lr(lr_at(&self.cfg.train, step));
        self.ema.advance();
        let _ = tch::no_grad(|| self.step_index.fill_(step as i64));
        let graph_err =
            |e: super::cuda_graph::GraphError| TrainError::Other(format!("at step {step}: {e}"));
        let out = match std::mem::replace(&mut self.mode, StepMode::Eager) {
            StepMode::Eager => self.device_step(&inputs, acc)?,
            StepMode::Warming { stream, done } if done < WARMUP_STEPS => {
                self.mode = StepMode::Warming {
                    stream,
                    done: done + 1,
                };
                self.device_step(&inputs, acc)?
            }
            StepMode::Warming { stream, .. } => {
                // Recording runs nothing: replay once to take this step.
                let (graph, out) =
                    CudaGraph::capture(|| self.device_step(&inputs, acc)).map_err(graph_err)?;
                let outputs = match out {
                    Ok(o) => o,
                    Err(e) => {
                        drop(stream); // wait for the device before the graph goes
                        return Err(e);
                    }
                };
                // Whatever the replay says, the graph goes back into `self.mode`,
                // whose drop order waits for the device before freeing it.
                let replayed = graph.replay();
                let seen = outputs.shallow_clone();
                self.captured_at = Some(step);
                self.mode = StepMode::Replaying {
                    _stream: stream,
                    graph,
                    inputs,
                    outputs,
                };
                replayed.map_err(graph_err)?;
                seen
            }
            StepMode::Replaying {
                _stream,
                graph,
                inputs: mut recorded,
                outputs,
            } => {
                recorded.copy_from(&inputs);
                let replayed = graph.replay();
                let seen = outputs.shallow_clone();
                self.mode = StepMode::Replaying {
                    _stream,
                    graph,
                    inputs: recorded,
                    outputs,
                };
                replayed.map_err(graph_err)?;
                seen
            }
        };
        acc.steps += 1;
        if self.sampler.wants_losses() {
            let losses: Vec<f64> = Vec::<f32>::try_from(out.weighted.to_device(Device::Cpu))
                .unwrap_or_default()
                .into_iter()
                .map(f64::from)
                .collect();
            let ts: Vec<i64> = Vec::try_from(out.t.to_device(Device::Cpu)).unwrap_or_default();
            self.sampler.update(&ts, &losses);
        }
        Ok(())
    }

    /// The step's device work: noising, the forward pass, the weighted loss,
    /// backward, loss scaling, clipping, AdamW, the EMAs and the metric sums.
    /// Nothing here reads a value on the host or depends on the step number
    /// except through device tensors, so a CUDA graph can record it.
    fn device_step(&mut self, inputs: &StepInputs, acc: &Accum) -> Result<StepOutputs, TrainError> {
        let b = self.cfg.train.batch_size;
        let (t, is_weights) = match &inputs.host_t {
            Some((t, w)) => (t.shallow_clone(), Some(w)),
            None => (self.device_timesteps(b), None),
        };
        let x0 = &inputs.x0;
        let noise = x0.randn_like();
        // Classifier-free guidance dropout (chapter §5.2): with probability p_uncond a
        // sample's label becomes the null token and its condition vector the null embedding.
        let p = self.cfg.train.p_uncond;
        let drop = (p > 0.0).then(|| Tensor::rand([b], (Kind::Float, self.device)).lt(p));
        let cond = Conditioning {
            labels: inputs.labels.as_ref().map(|l| match &drop {
                Some(d) => l.masked_fill(d, self.num_classes),
                None => l.shallow_clone(),
            }),
            vector_dropped: inputs
                .condition
                .as_ref()
                .and(drop.as_ref())
                .map(|d| d.shallow_clone()),
            vector: inputs.condition.as_ref().map(|c| c.shallow_clone()),
        };
        let precision = self.cfg.train.precision;
        // w(t)·MSE per sample is the loss the objective weights, and what the
        // adaptive timestep samplers learn from (improved-diffusion feeds its
        // resampler the same, before the importance weights). The model's
        // output is f32, like x_t, whatever the precision.
        let Losses { mse, weighted } = training_losses(
            &self.st,
            self.cfg.diffusion.prediction,
            &self.weight_table,
            x0,
            &t,
            &noise,
            |xt| {
                autocast(precision, self.device, || {
                    self.model.forward(xt, &t, &cond, true)
                })
            },
        );
        let loss = match is_weights {
            Some(iw) => (&weighted * iw).mean(Kind::Float),
            None => weighted.mean(Kind::Float),
        };
        self.fp.zero_grad();
        self.scaler.scale_loss(&loss).f_backward()?;
        self.fp.gather_grad();
        let keep = self.scaler.unscale_and_update(&self.fp.grad);
        let norm = clip_grad_norm(&self.fp.grad, self.cfg.train.grad_clip);
        self.opt.apply(&self.fp.flat, &self.fp.grad, &keep);
        self.fp.publish();
        self.ema.apply(&self.fp.flat);

        tch::no_grad(|| {
            let loss = loss.detach();
            let mse = mse.detach();
            let bad = loss
                .isfinite()
                .logical_not()
                .logical_and(&acc.first_bad.lt(0));
            // A select on the device, not a host-to-device copy: no synchronisation.
            let first_bad = self.step_index.where_self(&bad, &acc.first_bad);
            acc.first_bad.shallow_clone().copy_(&first_bad);
            let _ = acc.loss.shallow_clone().g_add_(&loss);
            let _ = acc
                .unweighted
                .shallow_clone()
                .g_add_(&mse.mean(Kind::Float));
            let q = (&t * 4).floor_divide_scalar(self.timesteps);
            let _ = acc.q_sum.shallow_clone().index_add_(0, &q, &mse);
            let _ = acc
                .q_count
                .shallow_clone()
                .index_add_(0, &q, &mse.ones_like());
            let _ = acc.grad_norm.shallow_clone().g_add_(&norm);
            let _ = acc.skipped.shallow_clone().g_add_(&(-&keep + 1.0));
        });
        Ok(StepOutputs {
            weighted: weighted.detach(),
            t,
        })
    }

    /// The log record of the steps accumulated in `acc`, ending at `step`
    /// (reads the device: the loop's one synchronisation).
    fn record(&self, acc: &Accum, step: u64, wall_time_s: f64) -> LogRecord {
        let n = acc.steps.max(1) as f64;
        let secs = acc.started.elapsed().as_secs_f64().max(1e-9);
        let host = |t: &Tensor| -> Vec<f64> {
            Vec::<f32>::try_from(t.to_device(Device::Cpu))
                .unwrap_or_default()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let (q_sum, q_cnt) = (host(&acc.q_sum), host(&acc.q_count));
        let mut loss_q = [None; 4];
        for i in 0..4.min(q_sum.len()).min(q_cnt.len()) {
            if q_cnt[i] > 0.0 {
                loss_q[i] = Some(q_sum[i] / q_cnt[i]);
            }
        }
        let cfg = &self.cfg;
        LogRecord {
            step,
            loss: acc.loss.double_value(&[]) / n,
            loss_unweighted: acc.unweighted.double_value(&[]) / n,
            loss_q,
            grad_norm: acc.grad_norm.double_value(&[]) / n,
            lr: lr_at(&cfg.train, step.saturating_sub(1)),
            ema_decay: self
                .ema
                .decays
                .iter()
                .zip(self.ema.current_decays())
                .map(|(&d, cur)| (Weights::ema(d).to_string(), cur))
                .collect(),
            loss_scale: self.scaler.scale.double_value(&[]),
            skipped_steps: acc.skipped.double_value(&[]).round() as u64,
            images_per_s: acc.steps as f64 * cfg.train.batch_size as f64 / secs,
            data_wait_frac: (acc.data_wait / secs).min(1.0),
            wall_time_s,
        }
    }

    /// The tensors of a checkpoint.
    fn checkpoint_data(&self) -> CheckpointData {
        let mut files = vec![(
            "raw".to_string(),
            self.fp.named_views(&self.fp.flat.detach()),
        )];
        for (i, &d) in self.ema.decays.iter().enumerate() {
            let w = self.ema.weights(i, &self.fp.flat);
            files.push((Weights::ema(d).to_string(), self.fp.named_views(&w)));
        }
        let mut opt = vec![
            ("exp_avg".to_string(), self.opt.exp_avg.shallow_clone()),
            (
                "exp_avg_sq".to_string(),
                self.opt.exp_avg_sq.shallow_clone(),
            ),
            ("step".to_string(), self.opt.step.shallow_clone()),
            (
                "scaler.scale".to_string(),
                self.scaler.scale.shallow_clone(),
            ),
            (
                "scaler.growth_tracker".to_string(),
                self.scaler.growth_tracker.shallow_clone(),
            ),
        ];
        if self.ema.mode == EmaMode::BiasCorrected {
            for (i, &d) in self.ema.decays.iter().enumerate() {
                opt.push((
                    format!("ema_shadow.{}", Weights::ema(d).to_string()),
                    self.ema.shadows[i].shallow_clone(),
                ));
            }
        }
        files.push(("optimizer".to_string(), opt));
        CheckpointData { files }
    }

    /// Restore from a checkpoint read from `dir`.
    fn restore(
        &mut self,
        dir: &Path,
        state: &CheckpointState,
        data: &CheckpointData,
    ) -> Result<(), TrainError> {
        let mismatch = |what: String| {
            TrainError::Checkpoint(checkpoint::CheckpointError::Corrupt {
                path: dir.to_path_buf(),
                what: format!("{what}; it does not belong to this run's model"),
            })
        };
        let load_flat = |file: &str, target: &Tensor| -> Result<(), TrainError> {
            for (i, name) in self.fp.names.iter().enumerate() {
                let t = data
                    .get(file, name)
                    .ok_or_else(|| mismatch(format!("{file}.safetensors has no {name}")))?;
                let mut view = self.fp.view_of(target, i);
                if t.size() != view.size() {
                    return Err(mismatch(format!(
                        "{name} has shape {:?}, the model {:?}",
                        t.size(),
                        view.size()
                    )));
                }
                tch::no_grad(|| view.copy_(t));
            }
            Ok(())
        };
        load_flat("raw", &self.fp.flat)?;
        self.fp.publish();
        for (i, &d) in self.ema.decays.clone().iter().enumerate() {
            let name = Weights::ema(d).to_string();
            if self.ema.mode == EmaMode::BiasCorrected {
                let t = data
                    .get("optimizer", &format!("ema_shadow.{name}"))
                    .ok_or_else(|| mismatch(format!("no EMA shadow for {name}")))?;
                tch::no_grad(|| self.ema.shadows[i].copy_(t));
            } else {
                let shadow = self.ema.shadows[i].shallow_clone();
                load_flat(&name, &shadow)?;
            }
        }
        let get = |n: &str| {
            data.get("optimizer", n)
                .ok_or_else(|| mismatch(format!("optimizer.safetensors has no {n}")))
        };
        tch::no_grad(|| -> Result<(), TrainError> {
            self.opt.exp_avg.copy_(get("exp_avg")?);
            self.opt.exp_avg_sq.copy_(get("exp_avg_sq")?);
            self.opt.step.copy_(get("step")?);
            self.scaler.scale.copy_(get("scaler.scale")?);
            self.scaler
                .growth_tracker
                .copy_(get("scaler.growth_tracker")?);
            Ok(())
        })?;
        self.ema.steps = state.ema_steps;
        self.sampler
            .load_state(state.sampler.clone())
            .map_err(|e| mismatch(e.to_string()))?;
        Ok(())
    }
}

/// Appends human-readable lines to `train.log`.
/// The trainer's step loop on its own (no run directory, checkpoints,
/// snapshots or progress): every step exactly as [`train`] takes it, with the
/// log record built every `train.log_every` steps. `ddpm-lab bench step`
/// interleaves it with a bare step to price the trainer's extras.
pub struct StepLoop {
    run: Run,
    acc: Accum,
    step: u64,
}

impl StepLoop {
    pub fn new(cfg: &RunConfig) -> Result<Self, TrainError> {
        let run = Run::build(cfg)?;
        let acc = Accum::new(run.device);
        Ok(StepLoop { run, acc, step: 0 })
    }

    /// Trainable parameters.
    pub fn params(&self) -> i64 {
        self.run.fp.len()
    }

    /// One training step; at a logging step, the non-finite check and the
    /// log record (serialized, as `train` writes it).
    pub fn step(&mut self) -> Result<(), TrainError> {
        self.run.step(self.step, &mut self.acc)?;
        self.step += 1;
        if self.step % self.run.cfg.train.log_every == 0 {
            if let Some(step) = self.acc.first_bad_step() {
                return Err(TrainError::NonFinite {
                    step,
                    last: "there is no checkpoint in a benchmark".into(),
                });
            }
            let rec = self.run.record(&self.acc, self.step, 0.0);
            let _ = serde_json::to_string(&rec);
            self.acc.reset();
        }
        Ok(())
    }

    /// Wait for the device (reads the running loss sum).
    pub fn sync(&self) {
        let _ = self.acc.loss.double_value(&[]);
    }
}

struct TextLog(fs::File);

impl TextLog {
    fn line(&mut self, s: &str) {
        let _ = writeln!(self.0, "{s}");
    }
}

/// Prints progress: an indicatif bar on a terminal, plain lines otherwise, or
/// JSON lines on stdout for a parent process.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// JSON lines mode: when the last tick line was written.
    jsonl: Option<std::cell::Cell<Instant>>,
}

/// The least time between two JSON progress ticks.
const JSONL_TICK: std::time::Duration = std::time::Duration::from_millis(250);

impl Progress {
    fn new(total: u64, start: u64, quiet: bool, jsonl: bool) -> Self {
        if jsonl {
            let p = Progress {
                bar: None,
                jsonl: Some(std::cell::Cell::new(Instant::now())),
            };
            p.json(&ProgressLine::Step { step: start, total });
            return p;
        }
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30.cyan/blue} step {pos}/{len} {msg} {per_sec} ETA {eta}",
                )
                .expect("valid template"), // ok: constant template
            );
            b.set_position(start);
            b
        });
        Progress { bar, jsonl: None }
    }
    fn json(&self, line: &ProgressLine) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.to_line());
        let _ = out.flush();
    }
    fn tick(&self, step: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_position(step);
        }
        if let Some(last) = &self.jsonl {
            if last.get().elapsed() >= JSONL_TICK {
                last.set(Instant::now());
                self.json(&ProgressLine::Step { step, total });
            }
        }
    }
    fn record(&self, r: &LogRecord, total: u64) {
        if let Some(last) = &self.jsonl {
            last.set(Instant::now());
            self.json(&ProgressLine::Record {
                step: r.step,
                total,
                loss: r.loss.is_finite().then_some(r.loss),
                images_per_s: r.images_per_s,
            });
            return;
        }
        let text = format!(
            "loss {:.4} (unweighted {:.4}) grad_norm {:.3} lr {:.2e} {:.0} img/s",
            r.loss, r.loss_unweighted, r.grad_norm, r.lr, r.images_per_s
        );
        match &self.bar {
            Some(b) => b.set_message(text),
            None => eprintln!("step {}/{total} {text}", r.step),
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Check the run directory and decide where to start. Returns the checkpoint
/// to resume from, if any.
fn prepare_dir(cfg: &RunConfig, opts: &TrainOptions) -> Result<Option<PathBuf>, TrainError> {
    let dir = &opts.run_dir;
    if dir.exists() && !dir.is_dir() {
        return Err(TrainError::RunDir(format!(
            "{} is a file, not a folder; --out (or output.dir) names the run's folder: choose a new folder path",
            dir.display()
        )));
    }
    let status = RunStatus::read(dir);
    let nonempty = fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !opts.resume {
        if let Some(s) = &status {
            return Err(TrainError::RunDir(format!(
                "{} already holds a run ({:?} at step {}); pass --resume to continue it, or choose another --out",
                dir.display(),
                s.state,
                s.step
            )));
        }
        if nonempty {
            return Err(TrainError::RunDir(format!(
                "{} exists and is not empty; choose another --out (ddpm-lab never overwrites results)",
                dir.display()
            )));
        }
        return Ok(None);
    }
    if let Some(s) = status.as_ref().filter(|s| s.state == JobState::Running) {
        if s.pid != std::process::id() && still_training(s.pid) {
            return Err(TrainError::RunDir(format!(
                "--resume: {} is being trained right now by pid {} (at step {}); wait for it to finish, or stop it (kill {}) and resume then",
                dir.display(),
                s.pid,
                s.step,
                s.pid
            )));
        }
    }
    if status.is_none() {
        return if nonempty {
            Err(TrainError::RunDir(format!(
                "--resume: {} has no status.json, so it is not a ddpm-lab run; check --out",
                dir.display()
            )))
        } else {
            Ok(None)
        };
    }
    let old_text = fs::read_to_string(RunDir::new(dir).config())
        .map_err(io_err(format!("reading {}/config.toml", dir.display())))?;
    let old: RunConfig = toml::from_str(&old_text).map_err(|e| {
        TrainError::RunDir(format!(
            "--resume: {}/config.toml does not parse ({e})",
            dir.display()
        ))
    })?;
    if identity::resume_hash(&old) != identity::resume_hash(cfg) {
        return Err(TrainError::RunDir(format!(
            "--resume: the config differs from the one {} was trained with (only train.steps, the device, threads, logging and checkpoint cadence may change); compare with {}/config.toml",
            dir.display(),
            dir.display()
        )));
    }
    if old.train.steps != cfg.train.steps && cfg.train.lr_schedule == LrSchedule::Cosine {
        return Err(TrainError::RunDir(
            "--resume: train.steps cannot change with lr_schedule = \"cosine\" (the decay depends on it)".into(),
        ));
    }
    Ok(checkpoint::list(&RunDir::new(dir).checkpoints())
        .last()
        .map(|(_, p)| p.clone()))
}

/// Train one run into `opts.run_dir`.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<Outcome, TrainError> {
    let dir = opts.run_dir.clone();
    let latest = prepare_dir(cfg, opts)?;
    // Build everything (data included) before the run directory exists, so bad
    // data leaves nothing behind.
    let mut run = Run::build(cfg)?;
    fs::create_dir_all(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied
        | std::io::ErrorKind::ReadOnlyFilesystem
        | std::io::ErrorKind::NotADirectory => TrainError::RunDir(format!(
            "cannot create the run folder {} ({e}); choose a writable --out (or output.dir)",
            dir.display()
        )),
        _ => TrainError::Io {
            context: format!("creating {}", dir.display()),
            source: e,
        },
    })?;
    let started = Instant::now();
    let layout = RunDir::new(&dir);
    let ck_root = layout.checkpoints();
    let hash = identity::training_hash(cfg);
    let total = cfg.train.steps;

    let mut text = TextLog(
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.train_log())
            .map_err(io_err("opening train.log"))?,
    );

    // Resume: the newest checkpoint that verifies; older ones as fallbacks.
    let mut start = 0u64;
    let mut last_ck: Option<String> = None;
    let mut prior_wall = 0.0;
    if latest.is_some() {
        let mut found = false;
        for (step, path) in checkpoint::list(&ck_root).into_iter().rev() {
            match checkpoint::read(&path) {
                Ok((state, data)) => {
                    run.restore(&path, &state, &data)?;
                    start = step;
                    prior_wall = state.wall_time_s;
                    last_ck = Some(checkpoint::dir_name(step));
                    text.line(&format!("resumed from {}", path.display()));
                    found = true;
                    break;
                }
                Err(e) => {
                    eprintln!("warning: {e}; trying the previous checkpoint");
                    text.line(&format!("skipped unreadable checkpoint: {e}"));
                }
            }
        }
        if !found {
            return Err(TrainError::RunDir(format!(
                "--resume: no readable checkpoint under {}; start a new run with another --out",
                ck_root.display()
            )));
        }
    }
    let device = device_name(run.device);
    let mut status = RunStatus {
        state: JobState::Running,
        reason: String::new(),
        step: start,
        total_steps: total,
        wall_time_s: prior_wall,
        device: device.clone(),
        pid: std::process::id(),
        config_hash: hash.clone(),
        last_checkpoint: last_ck.clone(),
    };
    if start >= total && latest.is_some() {
        status.state = JobState::Completed;
        status.write(&dir).map_err(io_err("writing status.json"))?;
        return Ok(Outcome::Completed {
            step: start,
            already: true,
        });
    }
    atomic::write_atomic(&layout.config(), cfg.to_toml()).map_err(io_err("writing config.toml"))?;
    if let Some(stats) = &run.data_stats {
        atomic::write_json(&RunDir::new(&dir).data_stats(), stats)
            .map_err(io_err("writing data_stats.json"))?;
    }
    status.write(&dir).map_err(io_err("writing status.json"))?;
    let mut metrics =
        MetricsLog::open(&dir, Some(start)).map_err(io_err("opening metrics.jsonl"))?;
    text.line(&format!(
        "training {} parameters on {device}, steps {start}..{total}, config hash {hash}, data loader {:?}",
        run.fp.len(),
        run.batcher.kind()
    ));

    let progress = Progress::new(total, start, opts.quiet, opts.progress_jsonl);
    let mut acc = Accum::new(run.device);
    let wall = |s: &Instant| prior_wall + s.elapsed().as_secs_f64();
    if start == 0 {
        write_snapshot(&run, &dir, 0, &hash, wall(&started))?;
    }
    let fail = |status: &mut RunStatus, e: TrainError, step: u64, secs: f64| -> TrainError {
        status.state = JobState::Failed;
        status.reason = e.to_string();
        status.step = step;
        status.wall_time_s = secs;
        let _ = status.write(&dir);
        e
    };

    let mut step = start;
    // A run that cannot write its logs, snapshots or checkpoints (a full disk,
    // say) is recorded as failed, with how to continue, rather than left
    // "running".
    macro_rules! or_fail {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    progress.finish();
                    let e = saving_failed(e.into(), status.last_checkpoint.as_deref(), &ck_root);
                    text.line(&e.to_string());
                    return Err(fail(&mut status, e, step, wall(&started)));
                }
            }
        };
    }

    while step < total {
        if opts.stop.is_stopped() {
            break;
        }
        if cfg.train.fail_at_step != 0 && step == cfg.train.fail_at_step {
            progress.finish();
            return Err(fail(
                &mut status,
                TrainError::Injected(step),
                step,
                wall(&started),
            ));
        }
        // tch panics on most libtorch errors (CUDA out of memory, say); record them as
        // a failed run rather than dying without a status.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.step(step, &mut acc)));
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(payload) => {
                let msg = super::panic_message(payload.as_ref());
                Some(TrainError::Other(format!(
                    "libtorch failed at step {step}: {msg}"
                )))
            }
        };
        if let Some(e) = error {
            progress.finish();
            text.line(&e.to_string());
            return Err(fail(&mut status, e, step, wall(&started)));
        }
        if let Some(at) = run.captured_at.take() {
            text.line(&format!(
                "CUDA graph: recorded the step's device work at step {at}, after {WARMUP_STEPS} eager warm-up steps; every later step replays it"
            ));
        }
        step += 1;
        progress.tick(step, total);
        let log_now = step % cfg.train.log_every == 0 || step == total;
        let ck_now = step % cfg.train.checkpoint_every == 0 || step == total;
        if log_now || ck_now {
            // The only host synchronisation of the loop.
            if let Some(bad) = acc.first_bad_step() {
                progress.finish();
                let last = match &status.last_checkpoint {
                    Some(c) => format!("the last good checkpoint is {}", ck_root.join(c).display()),
                    None => "there is no checkpoint yet".to_string(),
                };
                let e = TrainError::NonFinite { step: bad, last };
                text.line(&e.to_string());
                return Err(fail(&mut status, e, bad, wall(&started)));
            }
        }
        if log_now {
            let rec = run.record(&acc, step, wall(&started));
            text.line(&serde_json::to_string(&rec).unwrap_or_default());
            progress.record(&rec, total);
            or_fail!(metrics
                .push(rec)
                .map_err(io_err("appending to metrics.jsonl")));
            acc.reset();
        }
        if cfg.eval.is_point(step, total) {
            or_fail!(write_snapshot(&run, &dir, step, &hash, wall(&started)));
        }
        if ck_now {
            let ck = or_fail!(write_checkpoint(
                &run,
                &ck_root,
                step,
                &hash,
                wall(&started)
            ));
            or_fail!(checkpoint::prune(&ck_root, cfg.train.keep_checkpoints)
                .map_err(io_err("pruning checkpoints")));
            or_fail!(metrics
                .flush_parquet()
                .map_err(|e| TrainError::Other(format!("writing metrics.parquet: {e}"))));
            status.step = step;
            status.wall_time_s = wall(&started);
            status.last_checkpoint = Some(ck);
            or_fail!(status.write(&dir).map_err(io_err("writing status.json")));
        }
    }
    progress.finish();
    if step < total {
        // Stopped by a signal: checkpoint where we are.
        if status.last_checkpoint.as_deref() != Some(&checkpoint::dir_name(step)) {
            let ck = write_checkpoint(&run, &ck_root, step, &hash, wall(&started))?;
            checkpoint::prune(&ck_root, cfg.train.keep_checkpoints)
                .map_err(io_err("pruning checkpoints"))?;
            status.last_checkpoint = Some(ck);
        }
        metrics
            .flush_parquet()
            .map_err(|e| TrainError::Other(format!("writing metrics.parquet: {e}")))?;
        status.state = JobState::Interrupted;
        status.reason = "stopped by a signal; resume with --resume".into();
        status.step = step;
        status.wall_time_s = wall(&started);
        status.write(&dir).map_err(io_err("writing status.json"))?;
        text.line(&format!("interrupted at step {step}"));
        return Ok(Outcome::Interrupted { step });
    }
    status.state = JobState::Completed;
    status.step = step;
    status.wall_time_s = wall(&started);
    status.write(&dir).map_err(io_err("writing status.json"))?;
    text.line(&format!(
        "completed {step} steps in {:.1}s",
        status.wall_time_s
    ));
    Ok(Outcome::Completed {
        step,
        already: false,
    })
}

/// A failure to save (logs, snapshot, checkpoint), with how to go on: free
/// space when the disk is full, then resume from the last good checkpoint.
fn saving_failed(e: TrainError, last: Option<&str>, ck_root: &Path) -> TrainError {
    let full = match &e {
        TrainError::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    } || {
        let text = e.to_string();
        text.contains("No space left on device") || text.contains("os error 28")
    };
    let from = match last {
        Some(c) => format!("from {}", ck_root.join(c).display()),
        None => "(there is no checkpoint yet, so it starts over)".into(),
    };
    let fix = if full {
        "the disk is full: free space, then"
    } else {
        "fix the cause, then"
    };
    TrainError::Other(format!(
        "{e}. Training stopped; {fix} continue with `ddpm-lab train <config> --out <this run> --resume` {from}"
    ))
}

/// The weights (raw and every EMA) at an evaluation point, into
/// `snapshots/step-N/` (the checkpoint format without the optimizer). Kept for
/// good: evaluation reads them. A snapshot a resumed run passes again is left
/// as it is.
fn write_snapshot(
    run: &Run,
    dir: &Path,
    step: u64,
    hash: &str,
    wall: f64,
) -> Result<(), TrainError> {
    let root = RunDir::new(dir).snapshots();
    if root
        .join(checkpoint::dir_name(step))
        .join("state.json")
        .exists()
    {
        return Ok(());
    }
    let mut data = run.checkpoint_data();
    data.files.retain(|(stem, _)| stem != "optimizer");
    checkpoint::write(&root, &data, checkpoint_state(run, step, hash, wall))?;
    Ok(())
}

/// The state.json of a checkpoint or snapshot at `step` (`files` are filled
/// in by [`checkpoint::write`]).
fn checkpoint_state(run: &Run, step: u64, hash: &str, wall: f64) -> CheckpointState {
    CheckpointState {
        format_version: checkpoint::FORMAT_VERSION,
        step,
        ema_steps: run.ema.steps,
        ema_decays: run.ema.decays.clone(),
        sampler: run.sampler.state(),
        config_hash: hash.to_string(),
        parameters: run.fp.len(),
        files: vec![],
        wall_time_s: wall,
    }
}

fn write_checkpoint(
    run: &Run,
    root: &Path,
    step: u64,
    hash: &str,
    wall: f64,
) -> Result<String, TrainError> {
    checkpoint::write(
        root,
        &run.checkpoint_data(),
        checkpoint_state(run, step, hash, wall),
    )?;
    Ok(checkpoint::dir_name(step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_says_to_free_space_and_resume() {
        let root = Path::new("/runs/x/checkpoints");
        let full = TrainError::Io {
            context: "appending to metrics.jsonl".into(),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        let e = saving_failed(full, Some("step-000000100"), root).to_string();
        assert!(e.starts_with("appending to metrics.jsonl: "), "{e}");
        assert!(
            e.contains("the disk is full: free space, then continue with `ddpm-lab train <config> --out <this run> --resume` from /runs/x/checkpoints/step-000000100"),
            "{e}"
        );
        // libtorch's own write errors carry the OS text only.
        let torch = TrainError::Other("writing raw.safetensors: No space left on device".into());
        let e = saving_failed(torch, None, root).to_string();
        assert!(
            e.contains("the disk is full")
                && e.contains("(there is no checkpoint yet, so it starts over)"),
            "{e}"
        );
        let other = TrainError::Other("writing metrics.parquet: boom".into());
        assert!(saving_failed(other, None, root)
            .to_string()
            .contains("fix the cause, then"));
    }
}
