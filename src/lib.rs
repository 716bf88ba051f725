//! ddpm-lab: declarative DDPM training experiments.
//!
//! The library holds everything; `src/main.rs` only parses the command line and
//! maps errors to exit codes. Data flows one way:
//! spec → validated config → plan → scheduler → trainer → evaluation → report.

// Every function in src/ stays within about 100 lines (clippy.toml sets the
// bound; `just lint`, and so CI, denies warnings).
#![warn(clippy::too_many_lines)]

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod diffusion;
pub mod eval;
pub mod exit;
pub mod export;
pub mod model;
pub mod panics;
pub mod report;
pub mod rng;
pub mod run;
pub mod sweep;
pub mod tensorboard;
pub mod train;
