//! Evaluation: everything computed from a trained run's checkpoints —
//! samples, the per-timestep loss, bits/dim and sample-quality metrics.

pub mod eight_gaussians;
pub mod evaluate;
pub mod evaluator;
pub mod frechet;
pub mod held_out;
pub mod inception;
pub mod inception_score;
pub mod lowdim;
pub mod output;
pub mod precision_recall;
pub mod quality;
pub mod samples;
pub mod tensorboard;
pub mod timestep_loss;
pub mod trained;
