//! A trained run, opened for evaluation: its resolved config, its
//! checkpoints, and a denoiser loaded with one weight set (`raw` or
//! `ema-<decay>`) of one checkpoint. Every number computed from it can say
//! which checkpoint and weights it came from.

use crate::config::RunConfig;
use crate::model::{Denoiser, ModelSpec};
use crate::run::checkpoint;
use crate::run::phema::Profile;
use crate::run::phema_store::{self, PhemaStoreError};
use crate::run::{identity, RunDir, RunStatus, Weights};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

#[derive(Debug, thiserror::Error)]
pub enum TrainedError {
    /// The run's `config.toml` cannot be read: not a run directory.
    #[error("{}: cannot read it ({error}); give a run directory written by `ddpm-lab train` or a sweep's jobs/<id>/", .path.display())]
    ConfigUnreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a ddpm-lab run config ({error})", .path.display())]
    NotARunConfig {
        path: PathBuf,
        error: toml::de::Error,
    },
    /// A training key of `config.toml` was edited after training.
    #[error("{}: differs from the config the run was trained with (its hash is {hash}, status.json records {recorded}): a training key was edited after training. Restore it; only eval.* (but eval.bpd_variance of a vlb-weighted run, the σ² its loss was weighted with), output.* and how training is launched or logged may change", .path.display())]
    ConfigEdited {
        path: PathBuf,
        hash: String,
        recorded: String,
    },
    #[error("{} has no checkpoint yet; train it first", .run.display())]
    NoCheckpoint { run: PathBuf },
    #[error("{} has no checkpoint at step {step}; it has {}", .run.display(), join(.have))]
    NoCheckpointAt {
        run: PathBuf,
        step: u64,
        /// The steps it has checkpoints at.
        have: Vec<u64>,
    },
    /// `--weights` names a set the checkpoint does not hold.
    #[error("--weights {weights}: checkpoint {} holds {}; pick one of those", .checkpoint.display(), .have.join(", "))]
    WeightsNotHeld {
        weights: Weights,
        checkpoint: PathBuf,
        have: Vec<String>,
    },
    // Every checkpoint ddpm-lab writes holds raw weights.
    #[error("checkpoint {} holds no raw weights (it holds {}); pass --weights with one of those", .checkpoint.display(), .have.join(", "))]
    NoRawWeights {
        checkpoint: PathBuf,
        have: Vec<String>,
    },
    /// The run's `ema.decays` names a set the checkpoint does not hold: only
    /// without a training-config hash in status.json (a run copied without
    /// it, or from before it), since `ema.decays` is a training key.
    #[error("{}: ema.decays names the weight set {weights}, which checkpoint {} does not hold (it holds {have}): ema.decays differs from the decays the run was trained with. Pass --weights with one of {have}, or restore ema.decays", .config.display(), .checkpoint.display(), have = .have.join(", "))]
    EmaNotHeld {
        config: PathBuf,
        weights: Weights,
        checkpoint: PathBuf,
        have: Vec<String>,
    },
    #[error("checkpoint {} has no tensor {name} in {weights}: it was written by another model", .checkpoint.display())]
    MissingTensor {
        checkpoint: PathBuf,
        name: String,
        weights: Weights,
    },
    #[error("checkpoint {}: {name} is {have:?} but the model wants {want:?}", .checkpoint.display())]
    WrongShape {
        checkpoint: PathBuf,
        name: String,
        have: Vec<i64>,
        want: Vec<i64>,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// A `phema-<σ>` set that had to be reconstructed and could not be.
    #[error(transparent)]
    Phema(#[from] PhemaStoreError),
    /// Building the model failed inside libtorch (tch panics on an
    /// allocation it cannot make, say, for a model too large for memory).
    #[error("libtorch failed building the model of {run}: {message}; this machine may not have the memory for it (try --device cuda, or a smaller model)")]
    Libtorch { run: PathBuf, message: String },
}

impl TrainedError {
    /// Whether what the user gave (the run directory, its config, a flag) is
    /// what is wrong (exit 2); a checkpoint that cannot be read or a model
    /// that cannot be built is a failure.
    pub fn is_bad_input(&self) -> bool {
        match self {
            TrainedError::Phema(e) => e.is_bad_input(),
            _ => !matches!(
                self,
                TrainedError::Checkpoint(_) | TrainedError::Libtorch { .. }
            ),
        }
    }
}

/// Steps as `0, 400, 800`.
fn join(steps: &[u64]) -> String {
    steps
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
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
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => return Err(TrainedError::ConfigUnreadable { path, error }),
    };
    let cfg: RunConfig = match toml::from_str(&text) {
        Ok(cfg) => cfg,
        Err(error) => return Err(TrainedError::NotARunConfig { path, error }),
    };
    // The weights were trained under the config whose hash status.json
    // records; sampling or evaluating them under another (an edited schedule,
    // say) would give numbers that belong to neither.
    if let Some(status) = RunStatus::read(run_dir) {
        let hash = identity::training_hash(&cfg);
        if !status.config_hash.is_empty() && status.config_hash != hash {
            return Err(TrainedError::ConfigEdited {
                path,
                hash,
                recorded: status.config_hash,
            });
        }
    }
    Ok(cfg)
}

/// The weight sets a checkpoint holds: raw, then each EMA.
pub fn weight_sets(cfg: &RunConfig) -> Vec<Weights> {
    Weights::of_run(&cfg.ema)
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
    let (step, dir) = match step {
        None => all
            .last()
            .cloned()
            .ok_or_else(|| TrainedError::NoCheckpoint {
                run: run_dir.to_path_buf(),
            })?,
        Some(s) => all.iter().find(|(k, _)| *k == s).cloned().ok_or_else(|| {
            TrainedError::NoCheckpointAt {
                run: run_dir.to_path_buf(),
                step: s,
                have: all.iter().map(|(k, _)| *k).collect(),
            }
        })?,
    };
    let (_, mut data) = checkpoint::read(&dir)?;
    let stem = weights.to_string();
    // Only a power-EMA set is built when missing; any other is reported below.
    let posthoc_set = weights.std_rel().is_some() && weights.held_by(&config.ema);
    if posthoc_set && !data.files.iter().any(|(f, _)| *f == stem) {
        data.files
            .push((stem.clone(), posthoc(run_dir, step, weights, &data)?));
    }
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
            let Some(src) = data.get(&stem, &name) else {
                return Err(TrainedError::MissingTensor {
                    checkpoint: dir.clone(),
                    name,
                    weights,
                });
            };
            if src.size() != var.size() {
                return Err(TrainedError::WrongShape {
                    checkpoint: dir.clone(),
                    name,
                    have: src.size(),
                    want: var.size(),
                });
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

/// A `phema-<σ>` set that was not tracked, built from the run's power-EMA
/// snapshots up to `step`. At step 0 every EMA is the initial weights.
fn posthoc(
    run_dir: &Path,
    step: u64,
    weights: Weights,
    data: &checkpoint::CheckpointData,
) -> Result<Vec<(String, tch::Tensor)>, TrainedError> {
    // NaN (not a power-EMA set, which the caller rules out) fails the solve.
    let std_rel = weights.std_rel().unwrap_or(f64::NAN);
    if step == 0 {
        if let Some((_, raw)) = data.files.iter().find(|(f, _)| f == "raw") {
            return Ok(raw
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect());
        }
    }
    let r = phema_store::plan(run_dir, Profile { step, std_rel })?;
    Ok(phema_store::combine(&r)?)
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
    let have: Vec<String> = data
        .files
        .iter()
        .map(|(f, _)| f.clone())
        .filter(|f| f != "optimizer")
        .collect();
    let checkpoint = dir.to_path_buf();
    match (named_by, weights) {
        (WeightsSource::Flag, _) => TrainedError::WeightsNotHeld {
            weights,
            checkpoint,
            have,
        },
        (WeightsSource::RunConfig, Weights::Raw) => TrainedError::NoRawWeights { checkpoint, have },
        (WeightsSource::RunConfig, Weights::Ema(_) | Weights::Phema(_)) => {
            TrainedError::EmaNotHeld {
                config: RunDir::new(run_dir).config(),
                weights,
                checkpoint,
                have,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_run_and_flags_are_bad_input_and_a_broken_checkpoint_is_not() {
        let run = || PathBuf::from("runs/a");
        let checkpoint = || PathBuf::from("runs/a/checkpoints/step-800");
        let have = || vec!["raw".to_string(), "ema-0.99".to_string()];
        let cases: Vec<(TrainedError, &str)> = vec![
            (
                TrainedError::ConfigUnreadable {
                    path: "runs/a/config.toml".into(),
                    error: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                "runs/a/config.toml: cannot read it (entity not found); give a run directory written by `ddpm-lab train` or a sweep's jobs/<id>/",
            ),
            (
                TrainedError::NoCheckpoint { run: run() },
                "runs/a has no checkpoint yet; train it first",
            ),
            (
                TrainedError::NoCheckpointAt {
                    run: run(),
                    step: 7,
                    have: vec![0, 400, 800],
                },
                "runs/a has no checkpoint at step 7; it has 0, 400, 800",
            ),
            (
                TrainedError::WeightsNotHeld {
                    weights: Weights::ema(0.5),
                    checkpoint: checkpoint(),
                    have: have(),
                },
                "--weights ema-0.5: checkpoint runs/a/checkpoints/step-800 holds raw, ema-0.99; pick one of those",
            ),
            (
                TrainedError::NoRawWeights {
                    checkpoint: checkpoint(),
                    have: vec!["ema-0.99".into()],
                },
                "checkpoint runs/a/checkpoints/step-800 holds no raw weights (it holds ema-0.99); pass --weights with one of those",
            ),
            (
                TrainedError::EmaNotHeld {
                    config: "runs/a/config.toml".into(),
                    weights: Weights::ema(0.5),
                    checkpoint: checkpoint(),
                    have: have(),
                },
                "runs/a/config.toml: ema.decays names the weight set ema-0.5, which checkpoint runs/a/checkpoints/step-800 does not hold (it holds raw, ema-0.99): ema.decays differs from the decays the run was trained with. Pass --weights with one of raw, ema-0.99, or restore ema.decays",
            ),
            (
                TrainedError::MissingTensor {
                    checkpoint: checkpoint(),
                    name: "out.weight".into(),
                    weights: Weights::Raw,
                },
                "checkpoint runs/a/checkpoints/step-800 has no tensor out.weight in raw: it was written by another model",
            ),
            (
                TrainedError::WrongShape {
                    checkpoint: checkpoint(),
                    name: "out.weight".into(),
                    have: vec![2, 3],
                    want: vec![2, 4],
                },
                "checkpoint runs/a/checkpoints/step-800: out.weight is [2, 3] but the model wants [2, 4]",
            ),
        ];
        for (e, message) in cases {
            assert!(e.is_bad_input(), "{e}");
            assert_eq!(e.to_string(), message);
        }
        let built = TrainedError::Libtorch {
            run: run(),
            message: "out of memory".into(),
        };
        assert!(!built.is_bad_input(), "{built}");
    }

    #[test]
    fn a_config_that_is_not_a_run_config_keeps_its_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "[train\n").unwrap();
        let e = run_config(dir.path()).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(
            matches!(&e, TrainedError::NotARunConfig { path, .. } if path.ends_with("config.toml")),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("config.toml: not a ddpm-lab run config ("),
            "{e}"
        );
        let e = run_config(&dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(&e, TrainedError::ConfigUnreadable { error, .. } if error.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
    }
}
