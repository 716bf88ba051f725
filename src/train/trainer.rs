//! One DDPM training run (chapter §2–5): algorithm 2.1 with the configured
//! target, loss weighting, timestep sampler, CFG dropout, AdamW, clipping,
//! EMAs and precision; checkpoints, logs and status in the run directory.
//!
//! # Speed
//! Parameters and gradients live in two flat buffers ([`super::flat`]), so the
//! optimizer, EMAs, clipping and unscaling are a few ops per step, whatever the
//! model's size. Nothing in a step makes the host wait for the device: uniform
//! and stratified timesteps are drawn on the device, metrics accumulate in
//! device tensors, the fp16 skip decision stays on the device, and a non-finite
//! loss is recorded on the device. The host reads them every `train.log_every`
//! steps. (The `importance` and `loss-aware` samplers read per-sample losses
//! back every step: they need them.) Because of that, the step's device work
//! can be recorded once as a CUDA graph and replayed (`train.cuda_graph`,
//! [`super::cuda_graph`]): the per-step numbers it needs (learning rate, EMA
//! weights, step index) are device tensors the host fills before each step.
//!
//! # Determinism
//! At every step the random generators are re-seeded from (seed, step), and the
//! data order is a function of (seed, step) too ([`crate::rng`]), so a run
//! stopped and resumed from a checkpoint ends with the same weights as one that
//! never stopped: bit for bit on the CPU (same thread count); on a GPU up to the
//! rounding of non-deterministic CUDA kernels.

use super::cuda_graph::WARMUP_STEPS;
use super::error::{io_err, TrainError};
use super::log::MetricsLog;
use super::progress::{Progress, TextLog};
use super::resume::{prepare_dir, restore_latest};
use super::state::{device_name, write_checkpoint, write_snapshot, Run};
use super::step::Accum;
use crate::config::run::RunConfig;
use crate::run::checkpoint;
use crate::run::status::{JobState, RunStatus};
use crate::run::{atomic, identity, RunDir, StopToken};
use crate::tensorboard::{EventWriter, TbError};
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub run_dir: PathBuf,
    pub resume: bool,
    /// Plain log lines instead of a progress bar.
    pub quiet: bool,
    /// Progress as [`crate::run::records::ProgressLine`]s on stdout, for a
    /// parent process (the sweep runner).
    pub progress_jsonl: bool,
    /// Checked before every step: once set, checkpoint and stop.
    pub stop: StopToken,
    /// Folders for the TensorBoard event files (`output.tensorboard`);
    /// empty: `<run_dir>/tb`. A sweep names its runs' folders here.
    pub tensorboard: Vec<PathBuf>,
}

/// How a run ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Completed { step: u64, already: bool },
    Interrupted { step: u64 },
}

/// Train one run into `opts.run_dir`.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<Outcome, TrainError> {
    let latest = prepare_dir(cfg, opts)?;
    // Build everything (data included) before the run directory exists, so bad
    // data leaves nothing behind.
    let mut run = Run::build(cfg, latest.is_none())?;
    create_run_dir(&opts.run_dir)?;
    let mut s = Session::open(cfg, opts, &mut run, latest.is_some())?;
    if s.start >= s.total && latest.is_some() {
        s.status.state = JobState::Completed;
        s.write_status()?;
        return Ok(Outcome::Completed {
            step: s.start,
            already: true,
        });
    }
    s.begin(&run, &opts.tensorboard)?;
    run_loop(&mut s, &mut run, opts)
}

fn create_run_dir(dir: &Path) -> Result<(), TrainError> {
    fs::create_dir_all(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied
        | std::io::ErrorKind::ReadOnlyFilesystem
        | std::io::ErrorKind::NotADirectory => super::error::RunDirError::CannotCreate {
            path: dir.to_path_buf(),
            error: e,
        }
        .into(),
        _ => TrainError::Io {
            context: format!("creating {}", dir.display()),
            error: e,
        },
    })
}

/// One invocation's bookkeeping: the run folder, its status, logs and
/// clock. Every way a run ends goes through it, so the status on disk always
/// says how.
struct Session<'a> {
    cfg: &'a RunConfig,
    layout: RunDir,
    hash: String,
    start: u64,
    total: u64,
    started: Instant,
    /// Training wall time before this invocation.
    prior_wall: f64,
    status: RunStatus,
    text: TextLog,
    metrics: Option<MetricsLog>,
    progress: Option<Progress>,
    /// The TensorBoard writer: None when off, or after it failed (the run
    /// goes on without it, and says so once).
    tb: Option<EventWriter>,
}

impl<'a> Session<'a> {
    /// Open the folder's log and, when resuming, restore `run` from its
    /// newest readable checkpoint.
    fn open(
        cfg: &'a RunConfig,
        opts: &TrainOptions,
        run: &mut Run,
        resume: bool,
    ) -> Result<Session<'a>, TrainError> {
        let layout = RunDir::new(&opts.run_dir);
        let mut text = TextLog(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(layout.train_log())
                .map_err(io_err("opening train.log"))?,
        );
        let resumed = if resume {
            Some(restore_latest(run, &layout.checkpoints(), &mut text)?)
        } else {
            None
        };
        let hash = identity::training_hash(cfg);
        let start = resumed.as_ref().map_or(0, |r| r.step);
        let prior_wall = resumed.as_ref().map_or(0.0, |r| r.wall_time_s);
        let status = RunStatus {
            state: JobState::Running,
            reason: String::new(),
            step: start,
            total_steps: cfg.train.steps,
            wall_time_s: prior_wall,
            device: device_name(run.device),
            pid: std::process::id(),
            config_hash: hash.clone(),
            last_checkpoint: resumed.map(|r| r.checkpoint),
        };
        Ok(Session {
            cfg,
            layout,
            hash,
            start,
            total: cfg.train.steps,
            started: Instant::now(),
            prior_wall,
            status,
            text,
            metrics: None,
            progress: None,
            tb: None,
        })
    }

    /// Write the config, data statistics and a running status; open the
    /// metrics log and the progress display.
    fn begin(&mut self, run: &Run, tb_dirs: &[PathBuf]) -> Result<(), TrainError> {
        atomic::write_atomic(&self.layout.config(), self.cfg.to_toml())
            .map_err(io_err("writing config.toml"))?;
        if let Some(stats) = &run.data_stats {
            atomic::write_json(&self.layout.data_stats(), stats)
                .map_err(io_err("writing data_stats.json"))?;
        }
        self.write_status()?;
        self.metrics = Some(
            MetricsLog::open(&self.layout.root, Some(self.start))
                .map_err(io_err("opening metrics.jsonl"))?,
        );
        self.open_tensorboard(tb_dirs);
        if self.start == 0 && !self.cfg.model.init_from.is_empty() {
            self.text.line(&format!(
                "initial weights from {} (model.init_from)",
                self.cfg.model.init_from
            ));
        }
        self.text.line(&format!(
            "training {} parameters on {}, steps {}..{}, config hash {}, data loader {:?}",
            run.fp.len(),
            self.status.device,
            self.start,
            self.total,
            self.hash,
            run.batcher.kind()
        ));
        Ok(())
    }

    /// Start the TensorBoard event files (when `output.tensorboard`): a
    /// resumed run marks its restart, so readers drop what a killed process
    /// wrote past the checkpoint, as metrics.jsonl does.
    fn open_tensorboard(&mut self, dirs: &[PathBuf]) {
        if !self.cfg.output.tensorboard {
            return;
        }
        let dirs = match dirs.is_empty() {
            true => vec![self.layout.tensorboard()],
            false => dirs.to_vec(),
        };
        let restart = (self.start > 0).then_some(self.start + 1);
        match EventWriter::create(&dirs, restart) {
            Ok(w) => self.tb = Some(w),
            Err(e) => self.tb_failed(&e),
        }
    }

    fn tb_failed(&mut self, e: &TbError) {
        let line = format!("warning: {e}; training goes on without TensorBoard events");
        self.text.line(&line);
        eprintln!("{line}");
        self.tb = None;
    }

    /// Flush the TensorBoard files (at checkpoints); a failure turns them off.
    fn flush_tensorboard(&mut self) {
        if let Some(Err(e)) = self.tb.as_ref().map(EventWriter::flush) {
            self.tb_failed(&e);
        }
    }

    fn wall(&self) -> f64 {
        self.prior_wall + self.started.elapsed().as_secs_f64()
    }

    fn write_status(&self) -> Result<(), TrainError> {
        self.status
            .write(&self.layout.root)
            .map_err(io_err("writing status.json"))
    }

    fn metrics(&mut self) -> &mut MetricsLog {
        self.metrics.as_mut().expect("opened by begin()") // ok: begin() runs before the loop
    }

    fn finish_progress(&self) {
        if let Some(p) = &self.progress {
            p.finish();
        }
    }

    /// Record `e` as the run's failure at `step` (in train.log and
    /// status.json) and hand it back.
    fn fail(&mut self, e: TrainError, step: u64) -> TrainError {
        self.finish_progress();
        self.text.line(&e.to_string());
        self.status.state = JobState::Failed;
        self.status.reason = e.to_string();
        self.status.step = step;
        self.status.wall_time_s = self.wall();
        let _ = self.status.write(&self.layout.root);
        e
    }

    /// A failure to save: recorded as failed, with how to go on.
    fn saving(&mut self, e: TrainError, step: u64) -> TrainError {
        let e = saving_failed(
            e,
            self.status.last_checkpoint.as_deref(),
            &self.layout.checkpoints(),
        );
        self.fail(e, step)
    }

    /// After `step` steps: the non-finite check, the log record, the
    /// evaluation snapshot and the checkpoint that fall on it.
    fn after_step(&mut self, run: &Run, acc: &mut Accum, step: u64) -> Result<(), TrainError> {
        let t = &self.cfg.train;
        let log_now = step % t.log_every == 0 || step == self.total;
        let ck_now = step % t.checkpoint_every == 0 || step == self.total;
        if log_now || ck_now {
            // The only host synchronisation of the loop.
            if let Some(bad) = acc.first_bad_step() {
                let last = match &self.status.last_checkpoint {
                    Some(c) => format!(
                        "the last good checkpoint is {}",
                        self.layout.checkpoints().join(c).display()
                    ),
                    None => "there is no checkpoint yet".to_string(),
                };
                return Err(self.fail(TrainError::NonFinite { step: bad, last }, bad));
            }
        }
        if log_now {
            let rec = run.record(acc, step, self.wall());
            self.text
                .line(&super::progress::record_line(&rec, self.total));
            if let Some(p) = &self.progress {
                p.record(&rec, self.total);
            }
            if let Some(tb) = &self.tb {
                tb.scalars(step, &crate::tensorboard::tags::training(&rec));
            }
            let pushed = self
                .metrics()
                .push(rec)
                .map_err(io_err("appending to metrics.jsonl"));
            pushed.map_err(|e| self.saving(e, step))?;
            acc.reset();
        }
        if self.cfg.eval.is_point(step, self.total) {
            write_snapshot(run, &self.layout.root, step, &self.hash, self.wall())
                .map_err(|e| self.saving(e, step))?;
        }
        if self.cfg.ema.is_snapshot_step(step, self.total) {
            super::power_ema::write_snapshot(run, &self.layout.root, step, &self.hash, self.wall())
                .map_err(|e| self.saving(e, step))?;
        }
        if ck_now {
            self.checkpoint(run, step)
                .map_err(|e| self.saving(e, step))?;
            self.write_status().map_err(|e| self.saving(e, step))?;
        }
        Ok(())
    }

    /// Write a checkpoint at `step` (unless the last one is there already),
    /// prune old ones, rewrite metrics.parquet; the status (not yet written)
    /// names it.
    fn checkpoint(&mut self, run: &Run, step: u64) -> Result<(), TrainError> {
        let root = self.layout.checkpoints();
        if self.status.last_checkpoint.as_deref() != Some(&checkpoint::dir_name(step)) {
            let ck = write_checkpoint(run, &root, step, &self.hash, self.wall())?;
            checkpoint::prune(&root, self.cfg.train.keep_checkpoints)
                .map_err(io_err("pruning checkpoints"))?;
            self.status.last_checkpoint = Some(ck);
        }
        self.metrics()
            .flush_parquet()
            .map_err(TrainError::Metrics)?;
        self.flush_tensorboard();
        self.status.step = step;
        self.status.wall_time_s = self.wall();
        Ok(())
    }
}

/// Take steps until `total`, a failure, or a stop request.
fn run_loop(s: &mut Session, run: &mut Run, opts: &TrainOptions) -> Result<Outcome, TrainError> {
    s.progress = Some(Progress::new(
        s.total,
        s.start,
        opts.quiet,
        opts.progress_jsonl,
    ));
    let mut acc = Accum::new(run.device);
    if s.start == 0 && s.cfg.eval.is_point(0, s.total) {
        write_snapshot(run, &s.layout.root, 0, &s.hash, s.wall())?;
    }
    let mut step = s.start;
    while step < s.total {
        if opts.stop.is_stopped() {
            break;
        }
        if s.cfg.train.fail_at_step != 0 && step == s.cfg.train.fail_at_step {
            return Err(s.fail(TrainError::Injected(step), step));
        }
        guarded_step(run, step, &mut acc).map_err(|e| s.fail(e, step))?;
        if let Some(at) = run.captured_at.take() {
            s.text.line(&format!(
                "CUDA graph: recorded the step's device work at step {at}, after {WARMUP_STEPS} eager warm-up steps; every later step replays it"
            ));
        }
        step += 1;
        if let Some(p) = &s.progress {
            p.tick(step, s.total);
        }
        s.after_step(run, &mut acc, step)?;
    }
    s.finish_progress();
    if step < s.total {
        return interrupted(s, run, step);
    }
    s.status.state = JobState::Completed;
    s.status.step = step;
    s.status.wall_time_s = s.wall();
    s.write_status()?;
    s.text.line(&format!(
        "completed {step} steps in {:.1}s",
        s.status.wall_time_s
    ));
    Ok(Outcome::Completed {
        step,
        already: false,
    })
}

/// One step, with a panic from libtorch (tch panics on most libtorch errors,
/// CUDA out of memory among them) turned into an error, so the run is
/// recorded as failed rather than dying without a status.
fn guarded_step(run: &mut Run, step: u64, acc: &mut Accum) -> Result<(), TrainError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.run_step(step, acc)))
        .unwrap_or_else(|payload| {
            Err(TrainError::Libtorch {
                at: format!("at step {step}"),
                message: crate::panics::panic_message(payload.as_ref()),
            })
        })
}

/// Stopped by a signal: checkpoint where we are, and say so.
fn interrupted(s: &mut Session, run: &Run, step: u64) -> Result<Outcome, TrainError> {
    s.checkpoint(run, step)?;
    s.status.state = JobState::Interrupted;
    s.status.reason = "stopped by a signal; resume with --resume".into();
    s.write_status()?;
    s.text.line(&format!("interrupted at step {step}"));
    Ok(Outcome::Interrupted { step })
}

/// A failure to save (logs, snapshot, checkpoint), with how to go on: free
/// space when the disk is full, then resume from the last good checkpoint.
fn saving_failed(e: TrainError, last: Option<&str>, ck_root: &Path) -> TrainError {
    let from = match last {
        Some(c) => format!("from {}", ck_root.join(c).display()),
        None => "(there is no checkpoint yet, so it starts over)".into(),
    };
    TrainError::Saving {
        disk_full: e.is_disk_full(),
        cause: Box::new(e),
        from,
    }
}

/// The trainer's step loop on its own (no run directory, checkpoints,
/// snapshots or progress): every step exactly as [`train`] takes it, with the
/// log record built every `train.log_every` steps. `ddpm-lab bench step`
/// interleaves it with a bare step to price the trainer's extras.
pub struct StepLoop {
    run: Run,
    acc: Accum,
    step: u64,
}

impl StepLoop {
    pub fn new(cfg: &RunConfig) -> Result<Self, TrainError> {
        let run = Run::build(cfg, true)?;
        let acc = Accum::new(run.device);
        Ok(StepLoop { run, acc, step: 0 })
    }

    /// Trainable parameters.
    pub fn params(&self) -> i64 {
        self.run.fp.len()
    }

    /// One training step; at a logging step, the non-finite check and the
    /// log record (serialized, as `train` writes it).
    pub fn step(&mut self) -> Result<(), TrainError> {
        self.run.run_step(self.step, &mut self.acc)?;
        self.step += 1;
        if self.step % self.run.cfg.train.log_every == 0 {
            if let Some(step) = self.acc.first_bad_step() {
                return Err(TrainError::NonFinite {
                    step,
                    last: "there is no checkpoint in a benchmark".into(),
                });
            }
            let rec = self.run.record(&self.acc, self.step, 0.0);
            let _ = serde_json::to_string(&rec);
            self.acc.reset();
        }
        Ok(())
    }

    /// Wait for the device (reads the running loss sum).
    pub fn sync(&self) {
        let _ = self.acc.loss.double_value(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::checkpoint::CheckpointError;

    #[test]
    fn a_full_disk_says_to_free_space_and_resume() {
        let root = Path::new("/runs/x/checkpoints");
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let enospc = std::fs::write("/dev/full", b"x").unwrap_err();
        assert_eq!(enospc.kind(), std::io::ErrorKind::StorageFull);
        let full = TrainError::Io {
            context: "appending to metrics.jsonl".into(),
            error: enospc,
        };
        let e = saving_failed(full, Some("step-000000100"), root).to_string();
        assert!(e.starts_with("appending to metrics.jsonl: "), "{e}");
        assert!(
            e.contains("the disk is full: free space, then continue with `ddpm-lab train <config> --out <this run> --resume` from /runs/x/checkpoints/step-000000100"),
            "{e}"
        );
        // A checkpoint write is told by its I/O error's kind too.
        let ck = TrainError::Checkpoint(CheckpointError::Io {
            path: root.join("step-000000200"),
            source: std::io::Error::from(std::io::ErrorKind::StorageFull),
        });
        let e = saving_failed(ck, None, root).to_string();
        assert!(
            e.contains("the disk is full")
                && e.contains("(there is no checkpoint yet, so it starts over)"),
            "{e}"
        );
        // Any other cause: fix it. The text of an error never decides.
        let other = TrainError::Io {
            context: "writing metrics.parquet".into(),
            error: std::io::Error::other("No space left on device"),
        };
        assert!(saving_failed(other, None, root)
            .to_string()
            .contains("fix the cause, then"));
    }
}
