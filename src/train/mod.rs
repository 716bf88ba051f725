//! Training one run: flat parameter buffers, AdamW, EMAs, mixed precision,
//! checkpoints, logs and the loop that ties them together.

pub mod cuda_graph;
pub mod ema;
pub mod error;
pub mod flat;
pub mod log;
pub mod optim;
pub mod power_ema;
pub mod precision;
mod progress;
mod resume;
mod state;
mod step;
pub mod trainer;

pub use error::{RunDirError, TrainError};
pub use state::prepare_device;
pub use trainer::{train, Outcome, StepLoop, TrainOptions};
