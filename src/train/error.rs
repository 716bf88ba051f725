//! How a training run can fail, each way with its own type, so the command
//! line can tell the user's mistakes (exit 2) from failures (exit 1), and a
//! full disk is told by the error's kind, never by its text.

use crate::data;
use crate::diffusion::objective::WeightingError;
use crate::diffusion::schedule::ScheduleError;
use crate::run::checkpoint::CheckpointError;
use crate::run::JobState;
use std::path::PathBuf;

/// A problem with the run folder or the request to resume it: the user's input.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    #[error("{} is a file, not a folder; --out (or output.dir) names the run's folder: choose a new folder path", .0.display())]
    IsFile(PathBuf),
    #[error("{} already holds a run ({state} at step {step}); pass --resume to continue it, or choose another --out", .path.display())]
    HoldsRun {
        path: PathBuf,
        state: JobState,
        step: u64,
    },
    #[error("{} exists and is not empty; choose another --out (ddpm-lab never overwrites results)", .0.display())]
    NotEmpty(PathBuf),
    #[error("--resume: {} is being trained right now by pid {pid} (at step {step}); wait for it to finish, or stop it (kill {pid}) and resume then", .path.display())]
    Busy { path: PathBuf, pid: u32, step: u64 },
    #[error("--resume: {} has no status.json, so it is not a ddpm-lab run; check --out", .0.display())]
    NotARun(PathBuf),
    #[error("--resume: {}/config.toml does not parse ({error})", .path.display())]
    BadConfig {
        path: PathBuf,
        error: toml::de::Error,
    },
    #[error("--resume: the config differs from the one {} was trained with (only train.steps, the device, threads, logging and checkpoint cadence may change); compare with {}/config.toml", .0.display(), .0.display())]
    ConfigDiffers(PathBuf),
    #[error("--resume: train.steps cannot change with lr_schedule = \"cosine\" (the decay depends on it)")]
    CosineSteps,
    #[error("--resume: no readable checkpoint under {}; start a new run with another --out", .0.display())]
    NoCheckpoint(PathBuf),
    #[error("cannot create the run folder {} ({error}); choose a writable --out (or output.dir)", .path.display())]
    CannotCreate {
        path: PathBuf,
        error: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    #[error("the loss became NaN or infinite at step {step}; {last}. Lower train.lr, keep train.grad_clip on, or check the data")]
    NonFinite { step: u64, last: String },
    #[error("failed on purpose at step {0} (train.fail_at_step)")]
    Injected(u64),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    // The cause is in the message and not the error's source (a field named
    // `source` would be), so `{:#}` prints it once.
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
    #[error("writing metrics.parquet: {0}")]
    Metrics(polars::error::PolarsError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// A libtorch call that panicked (tch turns most libtorch errors, CUDA
    /// out of memory among them, into panics).
    #[error("libtorch failed {at}: {message}")]
    Libtorch { at: String, message: String },
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// `model.init_from` is not a folder this run can start from.
    #[error(transparent)]
    Import(#[from] crate::model::diffusers_import::ImportError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    Weighting(#[from] WeightingError),
    #[error("ema.std_rel: {0}")]
    Phema(#[from] crate::run::phema::PhemaError),
    #[error(transparent)]
    Graph(super::cuda_graph::GraphError),
    #[error("at step {step}: {error}")]
    GraphStep {
        step: u64,
        error: super::cuda_graph::GraphError,
    },
    /// Logs, a snapshot or a checkpoint could not be saved: training stopped,
    /// and the message says how to go on.
    #[error("{cause}. Training stopped; {} continue with `ddpm-lab train <config> --out <this run> --resume` {from}", if *.disk_full { "the disk is full: free space, then" } else { "fix the cause, then" })]
    Saving {
        cause: Box<TrainError>,
        disk_full: bool,
        /// "from <last checkpoint>", or that there is none.
        from: String,
    },
}

impl TrainError {
    /// Whether the user's input (flags, files) is what is wrong.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            TrainError::RunDir(_) | TrainError::Data(_) | TrainError::Import(_)
        )
    }

    /// Whether the disk is full, by the I/O error's kind.
    pub fn is_disk_full(&self) -> bool {
        let full = |e: &std::io::Error| e.kind() == std::io::ErrorKind::StorageFull;
        match self {
            TrainError::Io { error, .. } => full(error),
            TrainError::Checkpoint(CheckpointError::Io { source, .. }) => full(source),
            TrainError::Metrics(polars::error::PolarsError::IO { error, .. }) => full(error),
            TrainError::Torch(tch::TchError::Io(e)) => full(e),
            _ => false,
        }
    }
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainError {
    let context = context.into();
    move |error| TrainError::Io { context, error }
}
