//! Evaluation: everything computed from a trained run's checkpoints —
//! samples, and (being built) per-timestep loss, bits/dim and sample-quality
//! metrics.

pub mod evaluate;
pub mod output;
pub mod samples;
pub mod timestep_loss;
pub mod trained;
