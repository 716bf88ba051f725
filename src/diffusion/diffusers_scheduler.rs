//! diffusers' `DDPMScheduler` config (`scheduler/scheduler_config.json`) for a
//! schedule, prediction target and reverse variance of ours.
//!
//! The schedules are the same constructions under diffusers' names
//! (`linear`, `scaled_linear`, `squaredcos_cap_v2`, with
//! `rescale_betas_zero_snr`; `tests/schedule_reference.rs` holds them to
//! 1e-6), so the config names the schedule rather than listing the betas.

use super::sampling::Variance;
use super::{Prediction, ScheduleConfig, ScheduleKind};
use serde::{Deserialize, Serialize};

/// `DDPMScheduler`'s keyword arguments; every key is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdpmSchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    pub variance_type: String,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub prediction_type: String,
    pub thresholding: bool,
    pub timestep_spacing: String,
    pub steps_offset: usize,
    pub rescale_betas_zero_snr: bool,
}

impl DdpmSchedulerConfig {
    /// The scheduler that samples as our DDPM sampler does with
    /// `variance` and x̂_0 clipped to [−1, 1] when `clip_x0`.
    pub fn new(
        schedule: &ScheduleConfig,
        prediction: Prediction,
        variance: Variance,
        clip_x0: bool,
    ) -> Self {
        DdpmSchedulerConfig {
            class_name: "DDPMScheduler".into(),
            num_train_timesteps: schedule.timesteps,
            beta_start: schedule.beta_start,
            beta_end: schedule.beta_end,
            beta_schedule: match schedule.schedule {
                ScheduleKind::Linear => "linear",
                ScheduleKind::ScaledLinear => "scaled_linear",
                ScheduleKind::Cosine => "squaredcos_cap_v2",
            }
            .into(),
            trained_betas: None,
            variance_type: match variance {
                Variance::FixedSmall => "fixed_small",
                Variance::FixedLarge => "fixed_large",
            }
            .into(),
            clip_sample: clip_x0,
            clip_sample_range: 1.0,
            prediction_type: match prediction {
                Prediction::Epsilon => "epsilon",
                Prediction::X0 => "sample",
                Prediction::V => "v_prediction",
            }
            .into(),
            thresholding: false,
            // Every timestep, T − 1 down to 0, as our DDPM sampler visits them.
            timestep_spacing: "leading".into(),
            steps_offset: 0,
            rescale_betas_zero_snr: schedule.zero_terminal_snr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_diffusers() {
        let s = ScheduleConfig {
            schedule: ScheduleKind::Cosine,
            timesteps: 200,
            zero_terminal_snr: true,
            ..ScheduleConfig::default()
        };
        let c = DdpmSchedulerConfig::new(&s, Prediction::V, Variance::FixedLarge, false);
        assert_eq!(c.beta_schedule, "squaredcos_cap_v2");
        assert_eq!(c.prediction_type, "v_prediction");
        assert_eq!(c.variance_type, "fixed_large");
        assert_eq!((c.num_train_timesteps, c.clip_sample), (200, false));
        assert!(c.rescale_betas_zero_snr);
        let c = DdpmSchedulerConfig::new(
            &ScheduleConfig::default(),
            Prediction::X0,
            Variance::FixedSmall,
            true,
        );
        assert_eq!(
            (c.beta_schedule.as_str(), c.prediction_type.as_str()),
            ("linear", "sample")
        );
        let text = serde_json::to_string(&c).unwrap();
        assert!(
            text.starts_with("{\"_class_name\":\"DDPMScheduler\""),
            "{text}"
        );
        assert!(text.contains("\"trained_betas\":null"), "{text}");
    }
}
