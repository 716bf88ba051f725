//! The diffusion math of the chapter: schedules, the forward process, training
//! objectives and timestep samplers. Nothing here knows about models or data.

pub mod diffusers_scheduler;
pub mod likelihood;
pub mod losses;
pub mod objective;
pub mod process;
pub mod sampling;
pub mod schedule;
pub mod timesteps;

pub use losses::{evaluation_losses, training_losses, EvalLosses, Losses};
pub use objective::{LossWeighting, Prediction, WeightingKind};
pub use schedule::{NoiseSchedule, ScheduleConfig, ScheduleKind, ScheduleTensors};
pub use timesteps::{create_sampler, SamplerState, TimestepSampler, TimestepSampling};
