//! What a training run shows while it runs: an indicatif bar on a terminal,
//! plain lines otherwise, nothing with `--quiet`, or [`ProgressLine`]s on
//! stdout for a parent sweep; and the human-readable `train.log`.

use crate::run::records::{LogRecord, ProgressLine};
use std::fs;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Appends human-readable lines to `train.log`.
pub(super) struct TextLog(pub(super) fs::File);

impl TextLog {
    pub(super) fn line(&mut self, s: &str) {
        let _ = writeln!(self.0, "{s}");
    }
}

/// Prints progress: an indicatif bar on a terminal, plain lines otherwise,
/// nothing with `--quiet`, or JSON lines on stdout for a parent process.
pub(super) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    /// Plain lines (no terminal, not quiet).
    lines: bool,
    /// JSON lines mode: when the last tick line was written.
    jsonl: Option<std::cell::Cell<Instant>>,
}

/// The least time between two JSON progress ticks.
const JSONL_TICK: std::time::Duration = std::time::Duration::from_millis(250);

impl Progress {
    pub(super) fn new(total: u64, start: u64, quiet: bool, jsonl: bool) -> Self {
        if jsonl {
            let p = Progress {
                bar: None,
                lines: false,
                jsonl: Some(std::cell::Cell::new(Instant::now())),
            };
            p.json(&ProgressLine::Step { step: start, total });
            return p;
        }
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30.cyan/blue} step {pos}/{len} {msg} {per_sec} ETA {eta}",
                )
                .expect("valid template"), // ok: constant template
            );
            b.set_position(start);
            b
        });
        Progress {
            lines: !quiet && bar.is_none(),
            bar,
            jsonl: None,
        }
    }
    fn json(&self, line: &ProgressLine) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.to_line());
        let _ = out.flush();
    }
    pub(super) fn tick(&self, step: u64, total: u64) {
        if let Some(b) = &self.bar {
            b.set_position(step);
        }
        if let Some(last) = &self.jsonl {
            if last.get().elapsed() >= JSONL_TICK {
                last.set(Instant::now());
                self.json(&ProgressLine::Step { step, total });
            }
        }
    }
    pub(super) fn record(&self, r: &LogRecord, total: u64) {
        if let Some(last) = &self.jsonl {
            last.set(Instant::now());
            self.json(&ProgressLine::Record {
                step: r.step,
                total,
                loss: r.loss.is_finite().then_some(r.loss),
                images_per_s: r.images_per_s,
            });
            return;
        }
        match &self.bar {
            Some(b) => b.set_message(record_text(r)),
            None if self.lines => eprintln!("{}", record_line(r, total)),
            None => {}
        }
    }
    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// A log record as people read it (the console and `train.log`; the full
/// record is `metrics.jsonl`'s line).
fn record_text(r: &LogRecord) -> String {
    format!(
        "loss {:.4} (unweighted {:.4}) grad_norm {:.3} lr {:.2e} {:.0} img/s",
        r.loss, r.loss_unweighted, r.grad_norm, r.lr, r.images_per_s
    )
}

/// `step N/total` and [`record_text`].
pub(super) fn record_line(r: &LogRecord, total: u64) -> String {
    format!("step {}/{total} {}", r.step, record_text(r))
}
