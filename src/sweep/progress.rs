//! What a sweep shows while it runs: on a terminal, an indicatif multi-progress
//! view (the whole sweep, and one bar per running job with its step, loss,
//! it/s and ETA, fed by the children's JSON progress lines); elsewhere (CI, a
//! log file), plain lines: each job's start and end, and its progress every
//! quarter of its steps; with `--quiet`, none of it (the summary stays).

use super::executor::JobOutcome;
use crate::run::JobState;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct SweepProgress {
    /// Bars, when drawing to a terminal.
    multi: Option<(MultiProgress, ProgressBar)>,
    bars: Mutex<HashMap<usize, ProgressBar>>,
    /// Plain mode: each running job's id and the last quarter reported.
    quarters: Mutex<HashMap<usize, (String, u64)>>,
    jobs: usize,
    done: AtomicUsize,
    quiet: bool,
}

impl SweepProgress {
    /// `jobs`: how many jobs will run. `quiet`: no bars and no progress lines.
    pub fn new(jobs: usize, quiet: bool) -> SweepProgress {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
            let total = m.add(ProgressBar::new(jobs as u64));
            total.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12.bold} [{bar:30.green/white}] {pos}/{len} jobs  {elapsed_precise} {msg}",
                )
                .expect("valid template") // ok: constant template
                .progress_chars("=> "),
            );
            total.set_prefix("sweep");
            total.enable_steady_tick(std::time::Duration::from_millis(500));
            (m, total)
        });
        SweepProgress {
            multi,
            bars: Mutex::new(HashMap::new()),
            quarters: Mutex::new(HashMap::new()),
            jobs,
            done: AtomicUsize::new(0),
            quiet,
        }
    }

    /// A line above the bars (or on stderr).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some((m, _)) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn start(&self, key: usize, id: &str, label: &str, device: &str, total: u64) {
        match &self.multi {
            Some((m, _)) => {
                let b = m.add(ProgressBar::new(total));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12} [{bar:30.cyan/blue}] {pos}/{len} {msg} {per_sec} ETA {eta}",
                    )
                    .expect("valid template") // ok: constant template
                    .progress_chars("=> "),
                );
                b.set_prefix(format!("{id}@{device}"));
                self.bars
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, b);
            }
            None if self.quiet => {}
            None => {
                self.quarters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, (id.to_string(), 0));
                eprintln!("[sweep] start {id} on {device}: {label}, {total} steps");
            }
        }
    }

    /// On a terminal: `f` on job `key`'s bar (if it has one), and true.
    fn on_bar(&self, key: usize, f: impl FnOnce(&ProgressBar)) -> bool {
        if self.multi.is_none() {
            return false;
        }
        if let Some(b) = self
            .bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            f(b);
        }
        true
    }

    pub fn update(&self, key: usize, step: u64, total: u64, loss: Option<f64>) {
        let drawn = self.on_bar(key, |b| {
            b.set_length(total);
            b.set_position(step);
            if let Some(l) = loss.filter(|l| *l >= 0.0) {
                b.set_message(format!("loss {l:.4}"));
            }
        });
        if drawn {
            return;
        }
        // Plain lines come from the log records only, so each has its loss
        // and falls on a logged step (the first at or past each quarter).
        if self.quiet || total == 0 || loss.is_none() {
            return;
        }
        let quarter = step * 4 / total;
        let mut q = self.quarters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, last)) = q.get_mut(&key) {
            if quarter > *last && step < total {
                *last = quarter;
                let loss = loss
                    .filter(|l| *l >= 0.0)
                    .map_or(String::new(), |l| format!(", loss {l:.4}"));
                eprintln!("[sweep] {id}: step {step}/{total}{loss}");
            }
        }
    }

    /// A job's evaluation phase: `what` is the evaluator's latest line. On a
    /// terminal it becomes the job's bar message; in plain mode the phase's
    /// start is a line, and so is a first use that trains the evaluator
    /// network (minutes on a CPU), the one slow step worth a word.
    pub fn evaluating(&self, key: usize, id: &str, what: &str, first: bool) {
        if self.on_bar(key, |b| b.set_message(format!("evaluating: {what}"))) || self.quiet {
            return;
        }
        if first || what.contains("training the evaluator network") {
            eprintln!("[sweep] {id}: evaluating: {what}");
        }
    }

    pub fn finish(&self, key: usize, id: &str, outcome: &JobOutcome) {
        let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        let what = match outcome.ended {
            JobState::Completed => format!("completed at step {}", outcome.step),
            JobState::Interrupted => format!("interrupted at step {}", outcome.step),
            _ => format!("FAILED at step {}: {}", outcome.step, outcome.reason),
        };
        let line = format!(
            "[sweep] {n}/{} {id} on {}: {what} ({:.1}s)",
            self.jobs, outcome.device, outcome.wall_s
        );
        match &self.multi {
            Some((m, total)) => {
                if let Some(b) = self
                    .bars
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key)
                {
                    b.finish_and_clear();
                    m.remove(&b);
                }
                total.inc(1);
                let _ = m.println(line);
            }
            None if self.quiet => {}
            None => eprintln!("{line}"),
        }
    }

    /// Clear the bars (before the summary is printed).
    pub fn close(&self) {
        if let Some((_, total)) = &self.multi {
            total.finish_and_clear();
        }
    }
}
