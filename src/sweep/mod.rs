//! Sweeps: a TOML spec of axes over run-config keys, expanded into runs,
//! planned into training jobs, scheduled over the local devices and run as
//! child processes, with skip, resume and failure handling.

pub mod child;
pub mod devices;
pub mod estimate;
pub mod evals;
pub mod executor;
pub mod expand;
pub mod launcher;
pub mod lock;
pub mod plan;
pub mod progress;
pub mod report_check;
pub mod results;
pub mod runner;
pub mod schedule;
pub mod slurm;
pub mod spec;
pub mod submit;

pub use expand::{expand, Assignment, Axes, ExpandError};
pub use plan::{plan, Job, Plan, PlannedRun};
pub use spec::{read, slug, Run, SweepSpec};
