//! Training one run: flat parameter buffers, AdamW, EMAs, mixed precision,
//! checkpoints, logs and the loop that ties them together.

pub mod checkpoint;
pub mod cuda_graph;
pub mod ema;
pub mod flat;
pub mod log;
pub mod optim;
pub mod precision;
pub mod status;
pub mod trainer;

pub use trainer::{train, Outcome, StepLoop, TrainError, TrainOptions};
