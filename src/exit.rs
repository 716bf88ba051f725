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

/// The exit code for an error: 2 if any cause in its chain is [`BadInput`], 130 if
/// it is [`Interrupted`] or [`Stopped`], else 1.
pub fn code_for(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.is::<BadInput>()) {
        BAD_INPUT
    } else if err
        .chain()
        .any(|e| e.is::<Interrupted>() || e.is::<Stopped>())
    {
        INTERRUPTED
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
}
