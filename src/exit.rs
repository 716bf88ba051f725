//! Exit codes, after ripgrep: 0 all good, 1 something failed (e.g. some runs of a
//! sweep), 2 the input was wrong. Library errors that mean "the input was wrong"
//! are wrapped in [`BadInput`] at the command-line edge, so `main` can tell them
//! apart without string matching.

/// Everything worked.
pub const SUCCESS: i32 = 0;
/// The input was fine but something failed (a run, a file write, libtorch).
pub const FAILURE: i32 = 1;
/// The input was wrong: a flag, a config value, a file that is not what it should be.
pub const BAD_INPUT: i32 = 2;

/// A run stopped by Ctrl-C or SIGTERM after writing a checkpoint (128 + SIGINT).
pub const INTERRUPTED: i32 = 130;
/// Work is still queued or running elsewhere (`sweep status` on a cluster sweep).
pub const PENDING: i32 = 3;

/// Work that is not finished yet, with what is waiting (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Pending(pub String);

/// A run that stopped on a signal: neither bad input nor a failure.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at step {0}; continue with --resume")]
pub struct Interrupted(pub u64);

/// A command (a sweep) that stopped on a signal, with what to do next (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stopped(pub String);

/// Marks an error as the user's input being wrong (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Wrap any error as bad input, keeping its message.
pub fn bad_input(err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(BadInput(err.to_string()))
}

/// A library error marked as the user's input being wrong (exit code 2),
/// keeping the error itself, which can still be downcast. It prints as the
/// error's own message: input errors name their cause and its fix there.
#[derive(Debug)]
pub struct InputError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InputError {}

/// A library error that knows whether the user's input is what is wrong.
pub trait Classified: std::error::Error + Send + Sync + Sized + 'static {
    fn is_bad_input(&self) -> bool;

    /// The error for the command line: bad input exits 2, anything else 1;
    /// either way the error keeps its type.
    fn into_cli(self) -> anyhow::Error {
        if self.is_bad_input() {
            anyhow::Error::new(InputError(Box::new(self)))
        } else {
            anyhow::Error::new(self)
        }
    }
}

impl Classified for crate::train::TrainError {
    fn is_bad_input(&self) -> bool {
        crate::train::TrainError::is_bad_input(self)
    }
}

impl Classified for crate::sweep::runner::SweepError {
    fn is_bad_input(&self) -> bool {
        crate::sweep::runner::SweepError::is_bad_input(self)
    }
}

impl Classified for crate::eval::evaluate::EvalError {
    fn is_bad_input(&self) -> bool {
        crate::eval::evaluate::EvalError::is_bad_input(self)
    }
}

impl Classified for crate::eval::trained::TrainedError {
    fn is_bad_input(&self) -> bool {
        crate::eval::trained::TrainedError::is_bad_input(self)
    }
}

impl Classified for crate::eval::samples::DrawError {
    fn is_bad_input(&self) -> bool {
        crate::eval::samples::DrawError::is_bad_input(self)
    }
}

impl Classified for crate::eval::output::OutputError {
    fn is_bad_input(&self) -> bool {
        crate::eval::output::OutputError::is_bad_input(self)
    }
}

impl Classified for crate::eval::evaluator::EvaluatorError {
    fn is_bad_input(&self) -> bool {
        crate::eval::evaluator::EvaluatorError::is_bad_input(self)
    }
}

impl Classified for crate::export::diffusers::ExportError {
    fn is_bad_input(&self) -> bool {
        crate::export::diffusers::ExportError::is_bad_input(self)
    }
}

impl Classified for crate::run::handle::HandleError {
    /// Every way a named folder fails to be a run is the user's to fix.
    fn is_bad_input(&self) -> bool {
        true
    }
}

impl Classified for crate::run::phema_store::PhemaStoreError {
    fn is_bad_input(&self) -> bool {
        crate::run::phema_store::PhemaStoreError::is_bad_input(self)
    }
}

impl Classified for crate::report::ReportError {
    fn is_bad_input(&self) -> bool {
        crate::report::ReportError::is_bad_input(self)
    }
}

/// The exit code for an error: 2 if any cause in its chain is [`BadInput`], 130 if
/// it is [`Interrupted`] or [`Stopped`], else 1.
pub fn code_for(err: &anyhow::Error) -> i32 {
    if err
        .chain()
        .any(|e| e.is::<BadInput>() || e.is::<InputError>())
    {
        BAD_INPUT
    } else if err
        .chain()
        .any(|e| e.is::<Interrupted>() || e.is::<Stopped>())
    {
        INTERRUPTED
    } else if err.chain().any(|e| e.is::<Pending>()) {
        PENDING
    } else {
        FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn bad_input_is_found_under_context() {
        let e: anyhow::Result<()> = Err(bad_input("timesteps must be ≥ 1"));
        let e = e.context("reading run.toml").unwrap_err();
        assert_eq!(code_for(&e), BAD_INPUT);
        assert_eq!(code_for(&anyhow::anyhow!("disk full")), FAILURE);
    }

    #[test]
    fn a_classified_error_keeps_its_type_and_message() {
        use crate::train::{RunDirError, TrainError};
        let e = TrainError::from(RunDirError::CosineSteps).into_cli();
        assert_eq!(code_for(&e), BAD_INPUT);
        assert_eq!(
            format!("{e:#}"),
            "--resume: train.steps cannot change with lr_schedule = \"cosine\" (the decay depends on it)"
        );
        let inner = e.downcast_ref::<InputError>().unwrap();
        assert!(inner.0.downcast_ref::<TrainError>().is_some());
        let io = TrainError::Io {
            context: "writing status.json".into(),
            error: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        let e = io.into_cli();
        assert_eq!(code_for(&e), FAILURE, "a full disk is not the user's input");
        assert!(e.downcast_ref::<TrainError>().is_some());
    }
}
