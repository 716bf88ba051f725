//! The run contract: what the trainer, the evaluator, the sweep and the
//! report agree on, in one place so that none of them imports another.
//!
//! * [`identity`]: each config key's role, and the training and resume hashes;
//! * [`eval_key`]: which `eval.*` settings each evaluation number depends on;
//! * [`handle`]: the folder a user names (a run, a job, a sweep run) and what it stands for;
//! * [`weights`]: the [`Weights`] of a trained run (`raw`, `ema-<decay>`,
//!   `phema-<σ_rel>`);
//! * [`phema`], [`phema_store`]: post-hoc EMA, the least-squares solve and
//!   the weights it builds from a run's power-EMA snapshots;
//! * [`layout`]: every path of a run folder and a sweep folder;
//! * [`status`]: the one [`JobState`], `status.json` and process liveness;
//! * [`records`]: the typed files passed between modules (plan, run record,
//!   summary, log record, progress line, done.json);
//! * [`report_settings`]: a spec's `[report]` table (smoothing, the exercise,
//!   its prediction and claims), which the sweep checks and the report reads;
//! * [`checkpoint`]: the checkpoint and snapshot format;
//! * [`metrics_table`], [`timestep_table`]: the evaluation tables eval writes
//!   and the report reads;
//! * [`atomic`]: writes a reader never sees half of;
//! * [`stop`]: the stop request long work polls.
//!
//! It depends on config/ and the domain modules only.

pub mod atomic;
pub mod checkpoint;
pub mod eval_key;
pub mod handle;
pub mod identity;
pub mod layout;
pub mod metrics_table;
pub mod phema;
pub mod phema_store;
pub mod records;
pub mod report_settings;
pub mod status;
pub mod stop;
pub mod timestep_table;
pub mod weights;

pub use eval_key::{EvalKeys, EvalPart};
pub use identity::{resume_hash, role, training_hash, KeyRole};
pub use layout::{EvalDir, Freshness, RunDir, SweepDir};
pub use status::{JobState, Observed, RunStatus};
pub use stop::StopToken;
pub use weights::Weights;
