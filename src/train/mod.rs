//! Training one run: flat parameter buffers, AdamW, EMAs, mixed precision,
//! checkpoints, logs and the loop that ties them together.

pub mod cuda_graph;
pub mod ema;
pub mod error;
pub mod flat;
pub mod log;
pub mod optim;
pub mod precision;
mod progress;
mod resume;
mod state;
mod step;
pub mod trainer;

pub use error::{RunDirError, TrainError};
pub use state::prepare_device;
pub use trainer::{train, Outcome, StepLoop, TrainOptions};

/// The message of a panic caught from a tch call (tch panics on libtorch
/// errors), without libtorch's appended C++ backtrace.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    msg.split("\nException raised")
        .next()
        .unwrap_or("")
        .to_string()
}
