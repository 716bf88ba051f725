//! One optimizer step (chapter §2, algorithm 2.1): `run_step` (the host
//! part: the batch, host-drawn timesteps, seeds, the learning rate and EMA
//! weights) → `forward_backward` (noise, CFG dropout, the model, the weighted
//! loss, backward) → `optimize` (loss scaling, clipping, AdamW, the EMAs and
//! the metric sums). The device part runs eagerly or as a replay of a CUDA
//! graph ([`super::cuda_graph`]); the metric sums stay on the device until
//! the loop reads them at a log step.

use super::cuda_graph::{CudaGraph, SideStream, WARMUP_STEPS};
use super::error::TrainError;
use super::optim::clip_grad_norm;
use super::precision::autocast;
use super::state::Run;
use crate::diffusion::timesteps::{stratified_timesteps, TimestepBatch};
use crate::diffusion::{training_losses, Losses, TimestepSampling};
use crate::model::Conditioning;
use crate::rng::mix_seed;
use crate::run::records::LogRecord;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const NOISE_TAG: u64 = 0x5EED_0001;
const TIMESTEP_TAG: u64 = 0x5EED_0002;

/// What the forward and backward pass leave for the update: timesteps and
/// per-sample losses, and the batch loss.
struct Pass {
    t: Tensor,
    mse: Tensor,
    weighted: Tensor,
    loss: Tensor,
}

/// The tensors one step's device work reads. Under a CUDA graph, the ones the
/// graph was recorded with: each step's batch is copied into them.
pub(super) struct StepInputs {
    pub(super) x0: Tensor,
    pub(super) labels: Option<Tensor>,
    pub(super) condition: Option<Tensor>,
    /// Timesteps and importance weights drawn on the host (the `importance`
    /// and `loss-aware` samplers); None: drawn on the device within the step.
    pub(super) host_t: Option<(Tensor, Tensor)>,
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
pub(super) struct StepOutputs {
    /// w(t)·MSE of each sample (before importance weights), for the adaptive samplers.
    pub(super) weighted: Tensor,
    pub(super) t: Tensor,
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
pub(super) enum StepMode {
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

/// Device-side sums over a log interval.
pub(super) struct Accum {
    pub(super) loss: Tensor,
    pub(super) unweighted: Tensor,
    pub(super) q_sum: Tensor,
    pub(super) q_count: Tensor,
    pub(super) grad_norm: Tensor,
    pub(super) skipped: Tensor,
    pub(super) first_bad: Tensor,
    pub(super) steps: u64,
    pub(super) data_wait: f64,
    pub(super) started: Instant,
}

impl Accum {
    pub(super) fn new(device: Device) -> Self {
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
    pub(super) fn reset(&mut self) {
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
    pub(super) fn first_bad_step(&self) -> Option<u64> {
        u64::try_from(self.first_bad.int64_value(&[])).ok()
    }
}

impl Run {
    /// Timesteps drawn on the device (uniform, stratified), within the step.
    fn device_timesteps(&self, batch: i64) -> Tensor {
        let big_t = self.timesteps;
        let opts = (Kind::Int64, self.device);
        match self.cfg.diffusion.timestep_sampling {
            TimestepSampling::Stratified => {
                let u = Tensor::rand([1], (Kind::Double, self.device));
                let order = Tensor::randperm(batch, opts);
                stratified_timesteps(&u, &order, big_t)
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
    /// ([`Run::forward_backward`], then [`Run::optimize`]) runs eagerly or as a replay of its graph.
    pub(super) fn run_step(&mut self, step: u64, acc: &mut Accum) -> Result<(), TrainError> {
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
        self.opt.set_lr(self.cfg.train.lr_at(step));
        self.ema.advance();
        let _ = tch::no_grad(|| self.step_index.fill_(step as i64));
        let graph_err = |error| TrainError::GraphStep { step, error };
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

    /// The step's device work: the forward pass and the weighted loss,
    /// backward, then the update. Nothing here reads a value on the host or
    /// depends on the step number except through device tensors, so a CUDA
    /// graph can record it.
    fn device_step(&mut self, inputs: &StepInputs, acc: &Accum) -> Result<StepOutputs, TrainError> {
        let pass = self.forward_backward(inputs)?;
        self.optimize(&pass, acc);
        Ok(StepOutputs {
            weighted: pass.weighted.detach(),
            t: pass.t,
        })
    }

    /// Draw the timesteps and noise, drop conditions for CFG, run the model,
    /// and backpropagate the (scaled) weighted loss into the flat gradient.
    fn forward_backward(&mut self, inputs: &StepInputs) -> Result<Pass, TrainError> {
        let b = self.cfg.train.batch_size;
        let (t, is_weights) = match &inputs.host_t {
            Some((t, w)) => (t.shallow_clone(), Some(w)),
            None => (self.device_timesteps(b), None),
        };
        let x0 = &inputs.x0;
        let noise = x0.randn_like();
        let cond = self.cfg_dropout(inputs);
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
        Ok(Pass {
            t,
            mse,
            weighted,
            loss,
        })
    }

    /// Classifier-free guidance dropout (chapter §5.2): with probability
    /// p_uncond a sample's label becomes the null token and its condition
    /// vector the null embedding.
    fn cfg_dropout(&self, inputs: &StepInputs) -> Conditioning {
        let p = self.cfg.train.p_uncond;
        let b = self.cfg.train.batch_size;
        let drop = (p > 0.0).then(|| Tensor::rand([b], (Kind::Float, self.device)).lt(p));
        Conditioning {
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
        }
    }

    /// Unscale and check the gradient (fp16), clip it, take the AdamW step,
    /// publish the weights to the model, update the EMAs, and add the step's
    /// metrics to `acc`.
    fn optimize(&mut self, pass: &Pass, acc: &Accum) {
        let keep = self.scaler.unscale_and_update(&self.fp.grad);
        let norm = clip_grad_norm(&self.fp.grad, self.cfg.train.grad_clip);
        self.opt.apply(&self.fp.flat, &self.fp.grad, &keep);
        self.fp.publish();
        self.ema.apply(&self.fp.flat);
        tch::no_grad(|| {
            let loss = pass.loss.detach();
            let mse = pass.mse.detach();
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
            let q = (&pass.t * 4).floor_divide_scalar(self.timesteps);
            let _ = acc.q_sum.shallow_clone().index_add_(0, &q, &mse);
            let _ = acc
                .q_count
                .shallow_clone()
                .index_add_(0, &q, &mse.ones_like());
            let _ = acc.grad_norm.shallow_clone().g_add_(&norm);
            let _ = acc.skipped.shallow_clone().g_add_(&(-&keep + 1.0));
        });
    }

    /// The log record of the steps accumulated in `acc`, ending at `step`
    /// (reads the device: the loop's one synchronisation).
    pub(super) fn record(&self, acc: &Accum, step: u64, wall_time_s: f64) -> LogRecord {
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
            lr: cfg.train.lr_at(step.saturating_sub(1)),
            ema_decay: self
                .ema
                .names()
                .iter()
                .zip(self.ema.current_decays())
                .map(|(w, cur)| (w.to_string(), cur))
                .collect(),
            loss_scale: self.scaler.scale.double_value(&[]),
            skipped_steps: acc.skipped.double_value(&[]).round() as u64,
            images_per_s: acc.steps as f64 * cfg.train.batch_size as f64 / secs,
            data_wait_frac: (acc.data_wait / secs).min(1.0),
            wall_time_s,
        }
    }
}
