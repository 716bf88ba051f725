//! The state of a training run: the model, its flat parameters, AdamW, the
//! EMAs, the loss scaler, the timestep sampler and the data, built from a
//! config; and what of it a checkpoint or snapshot holds, written and read
//! back ([`crate::run::checkpoint`] is the format).

use super::cuda_graph::SideStream;
use super::ema::Ema;
use super::error::TrainError;
use super::flat::FlatParams;
use super::optim::AdamW;
use super::precision::LossScaler;
use super::step::StepMode;
use crate::config;
use crate::config::run::{DataSource, EmaMode, RunConfig};
use crate::data::{self, Batcher};
use crate::diffusion::{create_sampler, NoiseSchedule, TimestepSampler};
use crate::model::{Denoiser, ModelSpec};
use crate::rng::mix_seed;
use crate::run::checkpoint::{self, CheckpointData, CheckpointState};
use crate::run::{RunDir, Weights};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Everything a step needs.
pub(super) struct Run {
    /// First, so that it is dropped first: under a CUDA graph, dropping it
    /// waits for the device before any tensor below is freed.
    pub(super) mode: StepMode,
    pub(super) cfg: RunConfig,
    pub(super) device: Device,
    pub(super) st: crate::diffusion::ScheduleTensors,
    /// Weight on the prediction target's MSE, per t [T].
    pub(super) weight_table: Tensor,
    pub(super) sampler: Box<dyn TimestepSampler>,
    pub(super) batcher: Batcher,
    pub(super) model: Denoiser,
    pub(super) _vs: nn::VarStore,
    pub(super) fp: FlatParams,
    pub(super) opt: AdamW,
    pub(super) ema: Ema,
    pub(super) scaler: LossScaler,
    pub(super) num_classes: i64,
    pub(super) timesteps: i64,
    /// A tabular source's scaling, saved beside the run.
    pub(super) data_stats: Option<Vec<data::tabular::ColumnStats>>,
    /// The step being taken, 0-dim i64 on the device (for the non-finite record).
    pub(super) step_index: Tensor,
    /// Set at the step whose device work was recorded as a CUDA graph, until
    /// the loop has logged it.
    pub(super) captured_at: Option<u64>,
}

/// The run's training device, with libtorch's thread count and (on CUDA)
/// cuDNN's benchmark mode set for it.
pub fn prepare_device(cfg: &RunConfig) -> Device {
    let device = cfg.train.device.resolve();
    if cfg.train.threads > 0 {
        tch::set_num_threads(cfg.train.threads as i32);
    }
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    device
}

pub(super) fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

impl Run {
    /// Build a run from `cfg`; with `init`, a fresh one (not one about to
    /// be restored from a checkpoint) starts from `model.init_from`'s weights.
    pub(super) fn build(cfg: &RunConfig, init: bool) -> Result<Self, TrainError> {
        let device = prepare_device(cfg);
        let d = &cfg.diffusion;
        let schedule = NoiseSchedule::new(d.schedule_config())?;
        let weighting = d.loss_weighting(cfg.eval.bpd_variance)?;
        let weights = weighting.target_weights(d.prediction, &schedule);
        let weight_table = Tensor::from_slice(&weights)
            .to_kind(Kind::Float)
            .to_device(device);
        let st = schedule.tensors(device);
        let sampler = create_sampler(d.timestep_sampling, d.timesteps, d.loss_aware_bins);
        let dataset = data::load(&cfg.data, data::Split::Train)?;
        if cfg.data.source == DataSource::Folder && cfg.data.test_fraction > 0.0 {
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
        // libtorch reports an allocation it cannot make (a model too large
        // for this machine's memory) by a panic through tch: an error here.
        let libtorch = |payload: Box<dyn std::any::Any + Send>| TrainError::Libtorch {
            at: "building the model, its optimizer state and EMAs".into(),
            message: crate::panics::panic_message(payload.as_ref()),
        };
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let vs = nn::VarStore::new(device);
            let model = Denoiser::new(vs.root(), &spec);
            (vs, model)
        }));
        let (vs, model) = built.map_err(libtorch)?;
        if init && !cfg.model.init_from.is_empty() {
            init_from(&vs, &spec, Path::new(&cfg.model.init_from))?;
        }
        // The flat buffers, AdamW and the EMAs start from the weights now in `vs`.
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let fp = FlatParams::new(&vs, device, cfg.train.precision.compute_kind());
            let opt = AdamW::new(&cfg.train, &fp.flat);
            let ema = Ema::new(&cfg.ema, &fp.flat);
            (fp, opt, ema)
        }));
        let (fp, opt, ema) = built.map_err(libtorch)?;
        let ema = ema?;
        let scaler = LossScaler::new(cfg.train.precision, device);
        let num_classes = if cfg.data.labels {
            dataset.num_classes.unwrap_or(0)
        } else {
            0
        };
        let mode = if cfg.train.cuda_graph {
            StepMode::Warming {
                stream: SideStream::enter(device).map_err(TrainError::Graph)?,
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

    /// The tensors of a checkpoint.
    pub(super) fn checkpoint_data(&self) -> CheckpointData {
        let mut files = vec![(
            "raw".to_string(),
            self.fp.named_views(&self.fp.flat.detach()),
        )];
        for (i, name) in self.ema.names().into_iter().enumerate() {
            let w = self.ema.weights(i, &self.fp.flat);
            files.push((name.to_string(), self.fp.named_views(&w)));
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
                    format!("ema_shadow.{}", Weights::ema(d)),
                    self.ema.shadows[i].shallow_clone(),
                ));
            }
        }
        files.push(("optimizer".to_string(), opt));
        CheckpointData { files }
    }

    /// Restore from a checkpoint read from `dir`.
    pub(super) fn restore(
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
        for (i, name) in self.ema.names().into_iter().enumerate() {
            let name = name.to_string();
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

/// Copy a diffusers UNet2DModel folder's weights into the model of `vs`,
/// after checking that its network is the run's (`model.init_from`).
fn init_from(vs: &nn::VarStore, spec: &ModelSpec, dir: &Path) -> Result<(), TrainError> {
    use crate::model::diffusers_config::Unexpressible;
    use crate::model::diffusers_import::{load_into, ImportError};
    match spec {
        ModelSpec::Unet(unet) => Ok(load_into(vs, unet, dir)?),
        ModelSpec::Mlp(_) => Err(ImportError::Unexpressible(Unexpressible::Mlp).into()),
    }
}

/// The weights (raw and every EMA) at an evaluation point, into
/// `snapshots/step-N/` (the checkpoint format without the optimizer). Kept for
/// good: evaluation reads them. A snapshot a resumed run passes again is left
/// as it is.
pub(super) fn write_snapshot(
    run: &Run,
    dir: &Path,
    step: u64,
    hash: &str,
    wall: f64,
) -> Result<(), TrainError> {
    let root = RunDir::new(dir).snapshots();
    if checkpoint::is_written(&root, step) {
        return Ok(());
    }
    let mut data = run.checkpoint_data();
    data.files.retain(|(stem, _)| stem != "optimizer");
    checkpoint::write(&root, &data, checkpoint_state(run, step, hash, wall))?;
    Ok(())
}

/// The state.json of a checkpoint or snapshot at `step` (`files` are filled
/// in by [`checkpoint::write`]).
pub(super) fn checkpoint_state(run: &Run, step: u64, hash: &str, wall: f64) -> CheckpointState {
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

pub(super) fn write_checkpoint(
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
