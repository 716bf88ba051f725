//! Sweeps: a TOML spec of axes over run-config keys, expanded into runs.
//! (So far: reading a spec, expanding its axes and resolving each run into a
//! validated config; planning, scheduling and the `sweep` command build on
//! these.)

pub mod expand;
pub mod plan;
pub mod spec;

pub use expand::{expand, Assignment, Axes, ExpandError};
pub use plan::{plan, Job, Plan, PlannedRun, EVAL_ONLY_KEYS};
pub use spec::{read, slug, Run, SweepSpec};
