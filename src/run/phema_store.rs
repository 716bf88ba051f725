//! Post-hoc EMA weights of a trained run: which of its power-EMA snapshots
//! (`snapshots/phema/step-N/`, written by the trainer under
//! `ema.mode = "power"`) a target profile is built from, with which
//! coefficients ([`super::phema::solve`]), and the combined tensors. This is
//! how a `phema-<σ>` weight set that was not tracked is loaded, and what
//! `inspect ema` prints.
//!
//! The profile at step N is built from the snapshots at steps ≤ N only:
//! later ones contain training that step N had not seen.

use super::checkpoint::{self, CheckpointError, CheckpointState};
use super::phema::{self, PhemaError, Profile, Solution};
use super::{RunDir, Weights};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Why post-hoc EMA weights cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PhemaStoreError {
    #[error("{}: no post-hoc EMA snapshots under snapshots/phema/; phema-<σ> weights need a run trained with ema.mode = \"power\"", .run.display())]
    NotPower { run: PathBuf },
    #[error("step {step} is past the last post-hoc EMA snapshot (step {last}) of {}: pick a target step ≤ {last}", .run.display())]
    TargetPastLast { run: PathBuf, step: u64, last: u64 },
    #[error("ema.snapshot_every: {} has {count} post-hoc EMA snapshot(s) at or before step {step}; the reconstruction needs at least 2 (snapshot more often, or pick a later step)", .run.display())]
    TooFewSnapshots {
        run: PathBuf,
        step: u64,
        count: usize,
    },
    #[error("{}: {error}", .run.display())]
    Solve { run: PathBuf, error: PhemaError },
    #[error("post-hoc EMA snapshot {}: {what}", .dir.display())]
    Snapshot { dir: PathBuf, what: String },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl PhemaStoreError {
    /// Whether what the user asked for is what is wrong (exit 2); an
    /// unreadable snapshot is a failure.
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            PhemaStoreError::Checkpoint(_) | PhemaStoreError::Snapshot { .. }
        )
    }
}

/// A reconstruction: the snapshot files it combines and how.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    pub target: Profile,
    /// One per coefficient: the tracked profile and the folder holding it.
    pub inputs: Vec<Profile>,
    pub dirs: Vec<PathBuf>,
    pub solution: Solution,
}

/// The snapshot steps of a run, oldest first.
pub fn snapshot_steps(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    checkpoint::list(&RunDir::new(run_dir).phema_snapshots())
}

/// The coefficients that build `target` from the run's snapshots.
pub fn plan(run_dir: &Path, target: Profile) -> Result<Reconstruction, PhemaStoreError> {
    let run = || run_dir.to_path_buf();
    let all = snapshot_steps(run_dir);
    let Some((last, _)) = all.last() else {
        return Err(PhemaStoreError::NotPower { run: run() });
    };
    if target.step > *last {
        return Err(PhemaStoreError::TargetPastLast {
            run: run(),
            step: target.step,
            last: *last,
        });
    }
    let used: Vec<&(u64, PathBuf)> = all.iter().filter(|(s, _)| *s <= target.step).collect();
    if used.len() < 2 {
        return Err(PhemaStoreError::TooFewSnapshots {
            run: run(),
            step: target.step,
            count: used.len(),
        });
    }
    let (mut inputs, mut dirs) = (vec![], vec![]);
    for (step, dir) in used {
        for std_rel in tracked_in(dir)? {
            inputs.push(Profile {
                step: *step,
                std_rel,
            });
            dirs.push(dir.clone());
        }
    }
    let solution = phema::solve(&inputs, target)
        .map_err(|error| PhemaStoreError::Solve { run: run(), error })?;
    Ok(Reconstruction {
        target,
        inputs,
        dirs,
        solution,
    })
}

/// The σ_rel of each EMA a snapshot holds, from its state.json.
fn tracked_in(dir: &Path) -> Result<Vec<f64>, PhemaStoreError> {
    let bad = |what: String| PhemaStoreError::Snapshot {
        dir: dir.to_path_buf(),
        what,
    };
    let text = std::fs::read_to_string(dir.join("state.json"))
        .map_err(|e| bad(format!("cannot read state.json ({e})")))?;
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| bad(format!("state.json does not parse ({e})")))?;
    state
        .files
        .iter()
        .map(|(name, _, _)| {
            let stem = name.trim_end_matches(".safetensors");
            match stem.parse::<Weights>().ok().and_then(Weights::std_rel) {
                Some(s) => Ok(s),
                None => Err(bad(format!("{name} is not a phema-<σ> file"))),
            }
        })
        .collect()
}

/// The reconstructed tensors, one per parameter name, in f32:
/// Σ_i x_i θ̂_i accumulated in f64.
pub fn combine(r: &Reconstruction) -> Result<Vec<(String, Tensor)>, PhemaStoreError> {
    let mut sum: Vec<(String, Tensor)> = vec![];
    let mut i = 0;
    while i < r.inputs.len() {
        let dir = &r.dirs[i];
        let (_, data) = checkpoint::read(dir)?;
        // Every profile of this folder (they are consecutive in `inputs`).
        while i < r.inputs.len() && &r.dirs[i] == dir {
            let stem = Weights::phema(r.inputs[i].std_rel).to_string();
            let Some((_, tensors)) = data.files.iter().find(|(f, _)| *f == stem) else {
                return Err(PhemaStoreError::Snapshot {
                    dir: dir.clone(),
                    what: format!("no {stem}.safetensors"),
                });
            };
            let x = r.solution.coefficients[i];
            if sum.is_empty() {
                sum = tensors
                    .iter()
                    .map(|(n, t)| (n.clone(), t.to_kind(Kind::Double).zeros_like()))
                    .collect();
            }
            for (name, acc) in &mut sum {
                let Some((_, t)) = tensors.iter().find(|(n, _)| n == name) else {
                    return Err(PhemaStoreError::Snapshot {
                        dir: dir.clone(),
                        what: format!("{stem} has no tensor {name}"),
                    });
                };
                let _ = acc.g_add_(&(t.to_kind(Kind::Double) * x));
            }
            i += 1;
        }
    }
    Ok(sum
        .into_iter()
        .map(|(n, t)| (n, t.to_kind(Kind::Float)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::checkpoint::{CheckpointData, FORMAT_VERSION};

    fn state(step: u64) -> CheckpointState {
        CheckpointState {
            format_version: FORMAT_VERSION,
            step,
            ema_steps: step,
            ema_decays: vec![],
            sampler: crate::diffusion::SamplerState::Uniform,
            config_hash: "h".into(),
            parameters: 2,
            files: vec![],
            wall_time_s: 0.0,
        }
    }

    /// Snapshots at `steps` whose every parameter holds the value the
    /// closed form gives for θ_τ = τ (the power EMA of θ_τ = τ at step t).
    fn fake_run(steps: &[u64]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = RunDir::new(dir.path()).phema_snapshots();
        for &t in steps {
            let files = [0.05, 0.10]
                .iter()
                .map(|&s| {
                    let g = phema::std_rel_to_exp(s).unwrap();
                    let v: f64 = (1..=t)
                        .map(|tau| tau as f64 * phema::step_weight(t, g, tau))
                        .sum();
                    let w = Tensor::from_slice(&[v as f32, 2.0 * v as f32]);
                    (Weights::phema(s).to_string(), vec![("w".to_string(), w)])
                })
                .collect();
            checkpoint::write(&root, &CheckpointData { files }, state(t)).unwrap();
        }
        dir
    }

    #[test]
    fn a_reconstruction_combines_the_snapshots_up_to_its_step() {
        let run = fake_run(&[100, 200, 300, 400]);
        let target = Profile {
            step: 300,
            std_rel: 0.10,
        };
        let r = plan(run.path(), target).unwrap();
        assert_eq!(r.inputs.len(), 6, "three snapshots of two profiles");
        let w = combine(&r).unwrap();
        let g = phema::std_rel_to_exp(0.10).unwrap();
        let want: f64 = (1..=300)
            .map(|tau| tau as f64 * phema::step_weight(300, g, tau))
            .sum();
        let got = w[0].1.double_value(&[0]);
        assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
        assert!((w[0].1.double_value(&[1]) - 2.0 * got).abs() < 1e-3);
    }

    #[test]
    fn bad_targets_name_what_to_change() {
        let run = fake_run(&[100, 200]);
        let e = plan(
            run.path(),
            Profile {
                step: 250,
                std_rel: 0.1,
            },
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("past the last post-hoc EMA snapshot (step 200)"),
            "{e}"
        );
        let e = plan(
            run.path(),
            Profile {
                step: 150,
                std_rel: 0.1,
            },
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("ema.snapshot_every: "), "{e}");
        let e = plan(
            run.path(),
            Profile {
                step: 200,
                std_rel: 0.3,
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("σ_rel = 0.3: must be in (0, 0.28]"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = plan(
            empty.path(),
            Profile {
                step: 1,
                std_rel: 0.1,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("ema.mode = \"power\""), "{e}");
        assert!(e.is_bad_input());
    }
}
