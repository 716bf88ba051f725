//! A trained run, opened for evaluation: its resolved config, its
//! checkpoints, and a denoiser loaded with one weight set (`raw` or
//! `ema-<decay>`) of one checkpoint. Every number computed from it can say
//! which checkpoint and weights it came from.

use crate::config::RunConfig;
use crate::model::{Denoiser, ModelSpec};
use crate::run::checkpoint;
use crate::run::{identity, RunDir, RunStatus, Weights};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

#[derive(Debug, thiserror::Error)]
pub enum TrainedError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// Building the model failed inside libtorch (tch panics on an
    /// allocation it cannot make, say, for a model too large for memory).
    #[error("libtorch failed building the model of {run}: {message}; this machine may not have the memory for it (try --device cuda, or a smaller model)")]
    Libtorch { run: PathBuf, message: String },
}

/// A denoiser with the weights of one checkpoint.
pub struct TrainedModel {
    pub config: RunConfig,
    pub spec: ModelSpec,
    pub model: Denoiser,
    /// Owns the weights; dropping it frees them.
    pub vs: nn::VarStore,
    pub step: u64,
    pub weights: Weights,
    /// Class count of the model's label embedding (0 = unconditional).
    pub num_classes: i64,
    pub checkpoint: PathBuf,
}

/// The run's config as it was trained (`config.toml` in the run directory).
pub fn run_config(run_dir: &Path) -> Result<RunConfig, TrainedError> {
    let path = RunDir::new(run_dir).config();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        TrainedError::Input(format!(
            "{}: cannot read it ({e}); give a run directory written by `ddpm-lab train` or a sweep's jobs/<id>/",
            path.display()
        ))
    })?;
    let cfg: RunConfig = toml::from_str(&text).map_err(|e| {
        TrainedError::Input(format!(
            "{}: not a ddpm-lab run config ({e})",
            path.display()
        ))
    })?;
    // The weights were trained under the config whose hash status.json
    // records; sampling or evaluating them under another (an edited schedule,
    // say) would give numbers that belong to neither.
    if let Some(status) = RunStatus::read(run_dir) {
        let hash = identity::training_hash(&cfg);
        if !status.config_hash.is_empty() && status.config_hash != hash {
            return Err(TrainedError::Input(format!(
                "{}: differs from the config the run was trained with (its hash is {hash}, status.json records {}): a training key was edited after training. Restore it; only eval.*, output.* and how training is launched or logged may change",
                path.display(),
                status.config_hash
            )));
        }
    }
    Ok(cfg)
}

/// The weight sets a checkpoint holds: raw, then each EMA.
pub fn weight_sets(cfg: &RunConfig) -> Vec<Weights> {
    Weights::of_run(&cfg.ema.decays)
}

/// Who named the weight set to load. A checkpoint that lacks it is reported
/// in those terms: a flag the user never passed is not named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsSource {
    /// `--weights`.
    Flag,
    /// The run's config (`ema.decays`), for want of `--weights`.
    RunConfig,
}

/// Load `weights` of the saved state at `step` (the latest if None) onto `device`.
pub fn load(
    run_dir: &Path,
    step: Option<u64>,
    weights: Weights,
    named_by: WeightsSource,
    device: Device,
) -> Result<TrainedModel, TrainedError> {
    let config = run_config(run_dir)?;
    let all = RunDir::new(run_dir).saved_steps();
    let steps = || {
        all.iter()
            .map(|(s, _)| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (step, dir) = match step {
        None => all.last().cloned().ok_or_else(|| {
            TrainedError::Input(format!(
                "{} has no checkpoint yet; train it first",
                run_dir.display()
            ))
        })?,
        Some(s) => all.iter().find(|(k, _)| *k == s).cloned().ok_or_else(|| {
            TrainedError::Input(format!(
                "{} has no checkpoint at step {s}; it has {}",
                run_dir.display(),
                steps()
            ))
        })?,
    };
    let (_, data) = checkpoint::read(&dir)?;
    let stem = weights.to_string();
    if !data.files.iter().any(|(f, _)| *f == stem) {
        return Err(missing_weights(run_dir, &dir, &data, weights, named_by));
    }
    // The class count from the checkpoint itself (an image folder's classes
    // are only known from its data).
    let num_classes = data
        .get(&stem, "embedding.label_embedding.weight")
        .map_or(0, |w| w.size()[0] - 1);
    let spec = crate::config::model_spec(&config, (num_classes > 0).then_some(num_classes));
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let vs = nn::VarStore::new(device);
        let model = Denoiser::new(vs.root(), &spec);
        (vs, model)
    }));
    let (mut vs, model) = built.map_err(|payload| TrainedError::Libtorch {
        run: run_dir.to_path_buf(),
        message: crate::panics::panic_message(payload.as_ref()),
    })?;
    tch::no_grad(|| -> Result<(), TrainedError> {
        for (name, mut var) in vs.variables() {
            let src = data.get(&stem, &name).ok_or_else(|| {
                TrainedError::Input(format!(
                    "checkpoint {} has no tensor {name} in {weights}: it was written by another model",
                    dir.display()
                ))
            })?;
            if src.size() != var.size() {
                return Err(TrainedError::Input(format!(
                    "checkpoint {}: {name} is {:?} but the model wants {:?}",
                    dir.display(),
                    src.size(),
                    var.size()
                )));
            }
            var.copy_(src);
        }
        Ok(())
    })?;
    vs.freeze();
    Ok(TrainedModel {
        config,
        spec,
        model,
        vs,
        step,
        weights,
        num_classes,
        checkpoint: dir,
    })
}

/// The checkpoint in `dir` lacks `weights`: say which it holds, and the fix
/// for whoever named the missing set.
fn missing_weights(
    run_dir: &Path,
    dir: &Path,
    data: &checkpoint::CheckpointData,
    weights: Weights,
    named_by: WeightsSource,
) -> TrainedError {
    let have: Vec<&str> = data
        .files
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| *f != "optimizer")
        .collect();
    let have = have.join(", ");
    TrainedError::Input(match (named_by, weights) {
        (WeightsSource::Flag, _) => format!(
            "--weights {weights}: checkpoint {} holds {have}; pick one of those",
            dir.display()
        ),
        // Every checkpoint ddpm-lab writes holds raw weights.
        (WeightsSource::RunConfig, Weights::Raw) => format!(
            "checkpoint {} holds no raw weights (it holds {have}); pass --weights with one of those",
            dir.display()
        ),
        // Only without a training-config hash in status.json (a run copied
        // without it, or from before it), since `ema.decays` is a training key.
        (WeightsSource::RunConfig, Weights::Ema(_)) => format!(
            "{}: ema.decays names the weight set {weights}, which checkpoint {} does not hold (it holds {have}): ema.decays differs from the decays the run was trained with. Pass --weights with one of {have}, or restore ema.decays",
            RunDir::new(run_dir).config().display(),
            dir.display()
        ),
    })
}
