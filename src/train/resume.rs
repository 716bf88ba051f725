//! Where a run starts: a new run folder must be new (ddpm-lab never
//! overwrites results); `--resume` continues a folder trained with the same
//! resume hash from its newest checkpoint that verifies, falling back to
//! older ones, and refuses a folder another live process is training.

use super::error::{RunDirError, TrainError};
use super::progress::TextLog;
use super::state::Run;
use super::trainer::TrainOptions;
use crate::config::run::{LrSchedule, RunConfig};
use crate::run::checkpoint;
use crate::run::status::{still_training, JobState, RunStatus};
use crate::run::{identity, RunDir};
use std::fs;
use std::path::PathBuf;

/// Check the run folder and decide where to start: the checkpoint folder to
/// resume from, if any.
pub(super) fn prepare_dir(
    cfg: &RunConfig,
    opts: &TrainOptions,
) -> Result<Option<PathBuf>, TrainError> {
    let dir = &opts.run_dir;
    if dir.exists() && !dir.is_dir() {
        return Err(RunDirError::IsFile(dir.clone()).into());
    }
    let status = RunStatus::read(dir);
    let nonempty = fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !opts.resume {
        if let Some(s) = &status {
            return Err(RunDirError::HoldsRun {
                path: dir.clone(),
                state: s.state,
                step: s.step,
            }
            .into());
        }
        if nonempty {
            return Err(RunDirError::NotEmpty(dir.clone()).into());
        }
        return Ok(None);
    }
    let Some(status) = status else {
        return if nonempty {
            Err(RunDirError::NotARun(dir.clone()).into())
        } else {
            Ok(None)
        };
    };
    if status.state == JobState::Running
        && status.pid != std::process::id()
        && still_training(status.pid)
    {
        return Err(RunDirError::Busy {
            path: dir.clone(),
            pid: status.pid,
            step: status.step,
        }
        .into());
    }
    let layout = RunDir::new(dir);
    let old_text = fs::read_to_string(layout.config()).map_err(super::error::io_err(format!(
        "reading {}/config.toml",
        dir.display()
    )))?;
    let old: RunConfig = toml::from_str(&old_text).map_err(|error| RunDirError::BadConfig {
        path: dir.clone(),
        error,
    })?;
    if identity::resume_hash(&old) != identity::resume_hash(cfg) {
        return Err(RunDirError::ConfigDiffers(dir.clone()).into());
    }
    if old.train.steps != cfg.train.steps && cfg.train.lr_schedule == LrSchedule::Cosine {
        return Err(RunDirError::CosineSteps.into());
    }
    Ok(checkpoint::list(&layout.checkpoints())
        .last()
        .map(|(_, p)| p.clone()))
}

/// Where a resumed run continues.
pub(super) struct Resumed {
    pub step: u64,
    /// Training wall time before this invocation.
    pub wall_time_s: f64,
    /// The checkpoint's folder name.
    pub checkpoint: String,
}

/// Restore `run` from the newest checkpoint under `ck_root` that verifies,
/// older ones as fallbacks (each skipped one is warned about and logged).
pub(super) fn restore_latest(
    run: &mut Run,
    ck_root: &std::path::Path,
    text: &mut TextLog,
) -> Result<Resumed, TrainError> {
    for (step, path) in checkpoint::list(ck_root).into_iter().rev() {
        match checkpoint::read(&path) {
            Ok((state, data)) => {
                run.restore(&path, &state, &data)?;
                text.line(&format!("resumed from {}", path.display()));
                eprintln!("resumed from step {step} ({})", path.display());
                return Ok(Resumed {
                    step,
                    wall_time_s: state.wall_time_s,
                    checkpoint: checkpoint::dir_name(step),
                });
            }
            Err(e) => {
                eprintln!("warning: {e}; trying the previous checkpoint");
                text.line(&format!("skipped unreadable checkpoint: {e}"));
            }
        }
    }
    Err(RunDirError::NoCheckpoint(ck_root.to_path_buf()).into())
}
