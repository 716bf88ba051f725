//! Sweeps: a TOML spec of axes over run-config keys, expanded into runs.
//! (So far: the spec's axes and their expansion; planning, scheduling and the
//! `sweep` command build on these.)

pub mod expand;

pub use expand::{expand, Assignment, Axes, ExpandError};
