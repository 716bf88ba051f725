//! A stop request that long work polls: set by a signal handler (Ctrl-C,
//! SIGTERM) for the whole process, or by a test for one call. A trainer
//! finishes its step, checkpoints and returns; a sweep starts nothing new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

/// A shared flag: clones see the same stop.
#[derive(Debug, Clone, Default)]
pub struct StopToken(Arc<AtomicBool>);

static PROCESS: LazyLock<StopToken> = LazyLock::new(StopToken::default);

impl StopToken {
    /// A fresh token, not stopped.
    pub fn new() -> StopToken {
        StopToken::default()
    }
    /// The token a signal handler sets for the whole process.
    pub fn process() -> StopToken {
        PROCESS.clone()
    }
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// The flag itself, for code that polls an `AtomicBool`.
    pub fn flag(&self) -> &AtomicBool {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_stop_and_fresh_tokens_do_not() {
        let a = StopToken::new();
        let b = a.clone();
        let other = StopToken::new();
        b.stop();
        assert!(a.is_stopped() && a.flag().load(Ordering::SeqCst));
        assert!(!other.is_stopped());
    }
}
