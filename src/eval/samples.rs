//! Drawing samples from a trained run: its denoiser, guided or not, through
//! a sampler, with the condition the user asked for.

use super::trained::TrainedModel;
use crate::diffusion::sampling::{
    adds_noise, respace, sample_with, NoiseSource, SamplerKind, SamplingOptions,
};
use crate::diffusion::NoiseSchedule;
use crate::model::embedding::Conditioning;
use crate::model::guidance::Guided;
use tch::{Device, Kind, Tensor};

/// Why samples could not be drawn: each names the flag or the run's setting
/// at fault, so every one is the user's input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error("the run's schedule: {error}")]
    Schedule {
        error: crate::diffusion::schedule::ScheduleError,
    },
    #[error("--guidance {guidance}: guidance needs a condition (--label or --condition)")]
    GuidanceWithoutCondition { guidance: f64 },
    #[error("--guidance {guidance}: the run was trained with train.p_uncond = 0, so it never learned the unconditional prediction guidance needs")]
    GuidanceUntrained { guidance: f64 },
    #[error("--label: this run is not class-conditional")]
    NotClassConditional,
    #[error("--label {label}: the run has classes 0…{}", .classes - 1)]
    LabelOutOfRange { label: i64, classes: i64 },
    #[error("condition vectors [{n}, {width}] expected, got {got:?}")]
    ConditionVectors { n: i64, width: i64, got: Vec<i64> },
    #[error("--condition: this run has no condition vector")]
    NoConditionVector,
    #[error("--condition: the run's condition has {width} values, got {got}")]
    ConditionWidth { width: i64, got: usize },
    #[error("--noise: the tensor is {got:?}; give x_T as {x_t:?}, or x_T and the noise of each of the {steps} reverse steps as [{}, {}]", .steps + 1, join(.x_t))]
    NoiseShape {
        got: Vec<i64>,
        x_t: Vec<i64>,
        steps: usize,
    },
    #[error("--noise holds x_T only, but this draw adds noise at its reverse steps ({sampler}); give [{}, {}] (x_T, then each step's noise), or draw with --sampler ddim --eta 0", .steps + 1, join(.x_t))]
    NoiseSteps {
        x_t: Vec<i64>,
        steps: usize,
        sampler: &'static str,
    },
}

/// A shape's sizes as `2, 1, 8, 8`.
fn join(shape: &[i64]) -> String {
    shape
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl DrawError {
    /// Whether what the user gave is what is wrong: always, as each names a
    /// flag or the run's own settings (nothing is read or written).
    pub fn is_bad_input(&self) -> bool {
        true
    }
}

/// What to condition on.
#[derive(Debug)]
pub enum Condition {
    /// Nothing (an unconditional model, or the null condition of a conditional one).
    None,
    /// One label per sample.
    Labels(Vec<i64>),
    /// The same condition vector (model units) for every sample.
    Vector(Vec<f32>),
    /// One condition vector (model units) per sample: [n, D].
    Vectors(Tensor),
}

/// `n` samples of the run's data shape: [n, …] in model units ([−1, 1] for images).
///
/// All `n` are drawn as one batch; `on_step(done, total)` is called after
/// each of the sampler's reverse steps is queued (on a GPU, it may run a
/// little ahead of the work).
#[allow(clippy::too_many_arguments)] // one draw's whole request; no two belong together
pub fn draw(
    tm: &TrainedModel,
    opts: &SamplingOptions,
    guidance: f64,
    condition: &Condition,
    n: i64,
    noise: NoiseSource,
    device: Device,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Tensor, DrawError> {
    let cfg = &tm.config;
    let schedule = NoiseSchedule::new(cfg.diffusion.schedule_config())
        .map_err(|error| DrawError::Schedule { error })?;
    let mut shape = vec![n];
    shape.extend(crate::config::data_shape(cfg).sample);
    let cond = conditioning(tm, condition, n, device)?;
    let conditioned = !matches!(condition, Condition::None);
    if guidance != 1.0 && !conditioned {
        return Err(DrawError::GuidanceWithoutCondition { guidance });
    }
    if guidance != 1.0 && cfg.train.p_uncond == 0.0 {
        return Err(DrawError::GuidanceUntrained { guidance });
    }
    let guided = Guided {
        model: &tm.model,
        cond: &cond,
        scale: guidance,
        num_classes: tm.num_classes,
    };
    let total = reverse_steps(cfg.diffusion.timesteps, opts);
    // A given x_T alone becomes [1, B, …].
    let given = match noise {
        NoiseSource::Given(t) => Some(checked_noise(
            t,
            &shape,
            total,
            cfg.diffusion.timesteps,
            opts,
        )?),
        NoiseSource::Seed(_) => None,
    };
    let source = given.as_ref().map_or(noise, NoiseSource::Given);
    let mut done = 0;
    // `sample` calls the model once per reverse step.
    let mut f = |x: &Tensor, t: &Tensor| {
        let out = guided.forward(x, t);
        done += 1;
        on_step(done, total);
        out
    };
    Ok(sample_with(
        &schedule,
        cfg.diffusion.prediction,
        opts,
        &shape,
        source,
        device,
        &mut f,
    ))
}

/// A given noise tensor as [1 + S, B, …] or [1, B, …] (see
/// [`NoiseSource::Given`]), checked against the draw's `shape` ([B, …]) and
/// its `steps` reverse steps; x_T alone may come as [B, …] or [1, B, …].
fn checked_noise(
    t: &Tensor,
    shape: &[i64],
    steps: usize,
    timesteps: usize,
    opts: &SamplingOptions,
) -> Result<Tensor, DrawError> {
    let mut full = vec![steps as i64 + 1];
    full.extend_from_slice(shape);
    if t.size() == full {
        return Ok(t.shallow_clone());
    }
    let mut one = vec![1];
    one.extend_from_slice(shape);
    if t.size() != shape && t.size() != one {
        return Err(DrawError::NoiseShape {
            got: t.size(),
            x_t: shape.to_vec(),
            steps,
        });
    }
    if adds_noise(timesteps, opts) {
        return Err(DrawError::NoiseSteps {
            x_t: shape.to_vec(),
            steps,
            sampler: match opts.sampler {
                SamplerKind::Ddpm => "DDPM",
                SamplerKind::Ddim => "DDIM with η > 0",
            },
        });
    }
    Ok(t.reshape(one.as_slice()))
}

/// The model's conditioning for `condition`, checked against what the run
/// was trained with.
fn conditioning(
    tm: &TrainedModel,
    condition: &Condition,
    n: i64,
    device: Device,
) -> Result<Conditioning, DrawError> {
    let cond_dim = match &tm.spec {
        crate::model::ModelSpec::Unet(c) => c.cond_dim,
        crate::model::ModelSpec::Mlp(c) => c.cond_dim,
    };
    Ok(match condition {
        // A conditional model's unconditional prediction: the null condition.
        Condition::None => Conditioning {
            labels: (tm.num_classes > 0)
                .then(|| Tensor::full([n], tm.num_classes, (Kind::Int64, device))),
            vector: (cond_dim > 0).then(|| Tensor::zeros([n, cond_dim], (Kind::Float, device))),
            vector_dropped: (cond_dim > 0).then(|| Tensor::ones([n], (Kind::Bool, device))),
        },
        Condition::Labels(l) => {
            if tm.num_classes == 0 {
                return Err(DrawError::NotClassConditional);
            }
            if let Some(bad) = l.iter().find(|&&c| c < 0 || c >= tm.num_classes) {
                return Err(DrawError::LabelOutOfRange {
                    label: *bad,
                    classes: tm.num_classes,
                });
            }
            Conditioning::labels(Tensor::from_slice(l).to_device(device))
        }
        Condition::Vectors(v) => {
            if cond_dim == 0 || v.size() != [n, cond_dim] {
                return Err(DrawError::ConditionVectors {
                    n,
                    width: cond_dim,
                    got: v.size(),
                });
            }
            Conditioning {
                vector: Some(v.to_kind(Kind::Float).to_device(device)),
                ..Default::default()
            }
        }
        Condition::Vector(v) => {
            let width = cond_dim;
            if width == 0 {
                return Err(DrawError::NoConditionVector);
            }
            if v.len() as i64 != width {
                return Err(DrawError::ConditionWidth {
                    width,
                    got: v.len(),
                });
            }
            Conditioning {
                vector: Some(
                    Tensor::from_slice(v)
                        .to_kind(Kind::Float)
                        .to_device(device)
                        .unsqueeze(0)
                        .expand([n, width], false)
                        .contiguous(),
                ),
                ..Default::default()
            }
        }
    })
}

/// How many reverse steps a draw with `opts` takes: every timestep for DDPM,
/// the respaced ones for DDIM (as [`sample`] visits them).
pub fn reverse_steps(timesteps: usize, opts: &SamplingOptions) -> usize {
    match opts.sampler {
        SamplerKind::Ddpm => timesteps,
        SamplerKind::Ddim => respace(timesteps, opts.steps).len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::sampling::Variance;

    #[test]
    fn reverse_steps_are_every_timestep_for_ddpm_and_the_respaced_ones_for_ddim() {
        let opts = |sampler, steps| SamplingOptions {
            sampler,
            steps,
            eta: 0.0,
            variance: Variance::FixedLarge,
            clip_x0: true,
        };
        assert_eq!(reverse_steps(100, &opts(SamplerKind::Ddpm, 0)), 100);
        assert_eq!(reverse_steps(100, &opts(SamplerKind::Ddpm, 10)), 100);
        assert_eq!(reverse_steps(100, &opts(SamplerKind::Ddim, 10)), 10);
        assert_eq!(reverse_steps(100, &opts(SamplerKind::Ddim, 0)), 100);
    }

    #[test]
    fn every_draw_error_names_the_flag_or_setting_and_is_bad_input() {
        let cases = [
            (
                DrawError::GuidanceWithoutCondition { guidance: 3.0 },
                "--guidance 3: guidance needs a condition (--label or --condition)",
            ),
            (
                DrawError::GuidanceUntrained { guidance: 2.5 },
                "--guidance 2.5: the run was trained with train.p_uncond = 0, so it never learned the unconditional prediction guidance needs",
            ),
            (
                DrawError::NotClassConditional,
                "--label: this run is not class-conditional",
            ),
            (
                DrawError::LabelOutOfRange {
                    label: 8,
                    classes: 8,
                },
                "--label 8: the run has classes 0…7",
            ),
            (
                DrawError::ConditionVectors {
                    n: 4,
                    width: 2,
                    got: vec![4, 3],
                },
                "condition vectors [4, 2] expected, got [4, 3]",
            ),
            (
                DrawError::NoConditionVector,
                "--condition: this run has no condition vector",
            ),
            (
                DrawError::ConditionWidth { width: 2, got: 3 },
                "--condition: the run's condition has 2 values, got 3",
            ),
            (
                DrawError::NoiseShape {
                    got: vec![4, 1, 8],
                    x_t: vec![4, 1, 8, 8],
                    steps: 50,
                },
                "--noise: the tensor is [4, 1, 8]; give x_T as [4, 1, 8, 8], or x_T and the noise of each of the 50 reverse steps as [51, 4, 1, 8, 8]",
            ),
            (
                DrawError::NoiseSteps {
                    x_t: vec![4, 2],
                    steps: 50,
                    sampler: "DDPM",
                },
                "--noise holds x_T only, but this draw adds noise at its reverse steps (DDPM); give [51, 4, 2] (x_T, then each step's noise), or draw with --sampler ddim --eta 0",
            ),
            (
                DrawError::Schedule {
                    error: crate::diffusion::schedule::ScheduleError::ZeroTimesteps,
                },
                "the run's schedule: timesteps must be at least 1, got 0: set it to the number of diffusion steps T (1000 is standard)",
            ),
        ];
        for (e, message) in cases {
            assert!(e.is_bad_input(), "{e}");
            assert_eq!(e.to_string(), message);
            let cli = crate::exit::Classified::into_cli(e);
            assert_eq!(crate::exit::code_for(&cli), crate::exit::BAD_INPUT);
            assert_eq!(format!("{cli:#}"), message, "printed once");
        }
    }
}
