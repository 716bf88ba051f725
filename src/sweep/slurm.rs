//! A sweep on a Slurm cluster: the same plan as a local sweep, handed to
//! Slurm as one job array (a task per training job that is not done and not
//! already queued) and a report job that waits for it. Slurm queues, places
//! and accounts; ddpm-lab decides what the jobs are, and reads back what
//! happened from the run folders and `squeue`.
//!
//! Files, under `results/<sweep>/slurm/`:
//!
//! ```text
//! array.sbatch          the last array's script (what --dry-run prints)
//! report.sbatch         the report job's script
//! jobs-<n>.json         submission n's job ids, in array-index order
//! submissions.json      every submission: array id, report id, its job list
//! logs/<array>_<i>.log  each task's output, appended across requeues
//! ```

use super::launcher::Launcher;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("`{command}` could not be run ({error}); is this a Slurm login node? `sbatch`, `squeue` and `scontrol` must be on PATH")]
    Missing {
        command: String,
        error: std::io::Error,
    },
    #[error("`{command}` failed (exit {code}): {stderr}")]
    Failed {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error("`{command}` printed {out:?}, not a job id")]
    NoJobId { command: String, out: String },
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {error}; it is ddpm-lab's own record of what was submitted: move it aside to start over", .path.display())]
    Record {
        path: PathBuf,
        error: serde_json::Error,
    },
}

/// One `sweep --launcher slurm` that submitted an array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub array_id: String,
    pub report_id: String,
    /// The job list its tasks index (`jobs-<n>.json`).
    pub jobs_file: String,
    pub jobs: Vec<String>,
    /// Seconds since the Unix epoch.
    pub submitted_at: u64,
}

/// What the task script needs to run this same binary there.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEnv {
    /// This binary, by absolute path.
    pub exe: PathBuf,
    /// The folder of the libtorch this process loaded, for LD_LIBRARY_PATH.
    pub torch_lib: Option<PathBuf>,
    /// Where the tasks start (the submitting shell's folder): relative
    /// paths in the spec mean the same there.
    pub workdir: PathBuf,
    /// The sweep's folder, absolute.
    pub sweep_dir: PathBuf,
}

impl TaskEnv {
    /// This process's binary, libtorch and folder.
    pub fn here(sweep_dir: &Path) -> std::io::Result<TaskEnv> {
        let workdir = std::env::current_dir()?;
        Ok(TaskEnv {
            exe: std::env::current_exe()?,
            torch_lib: loaded_torch_lib(),
            sweep_dir: absolute(&workdir, sweep_dir),
            workdir,
        })
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The folder of the `libtorch_cpu.so` this process has mapped.
fn loaded_torch_lib() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// Quote a word for bash (single quotes; a quote inside is closed, escaped
/// and reopened).
pub fn sh(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:%@+,".contains(c))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The `#SBATCH` lines for `l`'s resources (the array's and the report's
/// common part: partition, account, qos).
fn resource_lines(l: &Launcher, with_compute: bool) -> Vec<String> {
    let mut out = vec![];
    let mut opt = |name: &str, v: &str| {
        if !v.is_empty() {
            out.push(format!("#SBATCH --{name}={v}"));
        }
    };
    opt("partition", &l.partition);
    opt("account", &l.account);
    opt("qos", &l.qos);
    if with_compute {
        opt("cpus-per-task", &l.cpus_per_job.to_string());
        if l.gpus_per_job > 0 {
            opt("gres", &format!("gpu:{}", l.gpus_per_job));
        }
        opt("mem", &l.mem);
        opt("time", &l.time);
        for e in &l.extra {
            out.push(format!("#SBATCH {e}"));
        }
    }
    out
}

/// The array script: task i runs `sweep-task` on the i-th job of
/// `jobs_file`. USR1 (sent `signal_grace_s` before the time limit, or on
/// preemption) makes the task checkpoint and stop, then requeues it; the
/// next start resumes from that checkpoint.
pub fn array_script(
    name: &str,
    l: &Launcher,
    env: &TaskEnv,
    jobs_file: &Path,
    tasks: usize,
    rerun_failed: bool,
) -> String {
    let logs = env.sweep_dir.join("slurm/logs");
    let mut lines = vec![
        "#!/usr/bin/env bash".to_string(),
        format!("#SBATCH --job-name={}", sh(&format!("ddpm-{name}"))),
        format!(
            "#SBATCH --array=0-{}%{}",
            tasks.saturating_sub(1),
            l.max_parallel
        ),
        format!(
            "#SBATCH --output={}",
            sh(&logs.join("%A_%a.log").display().to_string())
        ),
        "#SBATCH --open-mode=append".to_string(),
        format!("#SBATCH --signal=B:USR1@{}", l.signal_grace_s),
        "#SBATCH --requeue".to_string(),
    ];
    lines.extend(resource_lines(l, true));
    lines.push(String::new());
    lines.push(
        "# Written by ddpm-lab sweep --launcher slurm: one training job per array task.".into(),
    );
    lines.extend(preamble(env));
    let rerun = if rerun_failed { " --rerun-failed" } else { "" };
    lines.push(format!(
        "{} sweep-task {} --jobs {} --index \"$SLURM_ARRAY_TASK_ID\"{rerun} &",
        sh(&env.exe.display().to_string()),
        sh(&env.sweep_dir.display().to_string()),
        sh(&jobs_file.display().to_string()),
    ));
    lines.extend(
        [
            "task=$!",
            "on_usr1() {",
            "    echo \"ddpm-lab: USR1 (time limit or preemption): checkpointing, then requeueing $SLURM_JOB_ID\" >&2",
            "    kill -TERM \"$task\" 2>/dev/null",
            "    wait \"$task\"",
            "    scontrol requeue \"$SLURM_JOB_ID\"",
            "    exit 0",
            "}",
            "trap on_usr1 USR1",
            "# `wait` returns early when USR1 arrives; the trap then runs and exits.",
            "wait \"$task\"",
        ]
        .map(String::from),
    );
    lines.join("\n") + "\n"
}

/// The report job's script: `ddpm-lab report` on the sweep folder, after
/// the array ends (however its tasks ended).
pub fn report_script(name: &str, l: &Launcher, env: &TaskEnv) -> String {
    let log = env.sweep_dir.join("slurm/logs/report-%j.log");
    let mut lines = vec![
        "#!/usr/bin/env bash".to_string(),
        format!("#SBATCH --job-name={}", sh(&format!("ddpm-{name}-report"))),
        format!("#SBATCH --output={}", sh(&log.display().to_string())),
        "#SBATCH --cpus-per-task=1".to_string(),
    ];
    lines.extend(resource_lines(l, false));
    lines.push(String::new());
    lines.extend(preamble(env));
    lines.push(format!(
        "exec {} report {}",
        sh(&env.exe.display().to_string()),
        sh(&env.sweep_dir.display().to_string())
    ));
    lines.join("\n") + "\n"
}

/// The folder, the libtorch and the devices a task starts with. Slurm sets
/// CUDA_VISIBLE_DEVICES to the task's GPUs; the task gives its children
/// their device explicitly.
fn preamble(env: &TaskEnv) -> Vec<String> {
    let mut out = vec![
        "set -uo pipefail".to_string(),
        format!("cd {}", sh(&env.workdir.display().to_string())),
    ];
    if let Some(lib) = &env.torch_lib {
        out.push(format!(
            "export LD_LIBRARY_PATH={}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}",
            sh(&lib.display().to_string())
        ));
    }
    out
}

fn run(cmd: &mut Command) -> Result<String, SlurmError> {
    let command = format!("{cmd:?}").replace('"', "");
    let o = cmd.output().map_err(|error| SlurmError::Missing {
        command: command.clone(),
        error,
    })?;
    if !o.status.success() {
        return Err(SlurmError::Failed {
            command,
            code: o.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// `sbatch --parsable [args] script`: the new job's id.
pub fn sbatch(script: &Path, args: &[String]) -> Result<String, SlurmError> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable").args(args).arg(script);
    let command = format!("sbatch {}", script.display());
    let out = run(&mut cmd)?;
    // `--parsable` prints `id` or `id;cluster`.
    let id = out
        .lines()
        .last()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("");
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SlurmError::NoJobId { command, out });
    }
    Ok(id.to_string())
}

/// Slurm's state of each array task of `arrays` still in the queue, as
/// (array id, task index, state), e.g. ("123", 4, "PENDING").
pub fn queued_tasks(arrays: &[String]) -> Result<Vec<(String, usize, String)>, SlurmError> {
    if arrays.is_empty() {
        return Ok(vec![]);
    }
    let out = run(Command::new("squeue")
        .args(["-h", "-r", "-o", "%F %K %T", "-j"])
        .arg(arrays.join(",")))
    .or_else(|e| match &e {
        // squeue refuses ids it no longer knows (all finished long ago).
        SlurmError::Failed { stderr, .. } if stderr.contains("Invalid job id") => Ok(String::new()),
        _ => Err(e),
    })?;
    Ok(parse_queue(&out))
}

/// `squeue -h -r -o "%F %K %T"` lines: array job id, task index, state.
pub fn parse_queue(out: &str) -> Vec<(String, usize, String)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (array, index, state) = (w.next()?, w.next()?, w.next()?);
            Some((array.to_string(), index.parse().ok()?, state.to_string()))
        })
        .collect()
}

/// The submissions so far (none when the file is missing).
pub fn read_submissions(path: &Path) -> Result<Vec<Submission>, SlurmError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|error| SlurmError::Record {
            path: path.to_path_buf(),
            error,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(error) => Err(SlurmError::Io {
            path: path.to_path_buf(),
            error,
        }),
    }
}

/// Each job still in Slurm's queue with its state and array task
/// (`123_4`), from the submissions' job lists.
pub fn queued_jobs(subs: &[Submission]) -> Result<Vec<(String, String, String)>, SlurmError> {
    let arrays: Vec<String> = subs.iter().map(|s| s.array_id.clone()).collect();
    let mut out = vec![];
    for (array, index, state) in queued_tasks(&arrays)? {
        if let Some(job) = subs
            .iter()
            .find(|s| s.array_id == array)
            .and_then(|s| s.jobs.get(index))
        {
            out.push((job.clone(), state, format!("{array}_{index}")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> TaskEnv {
        TaskEnv {
            exe: "/opt/ddpm lab/ddpm-lab".into(),
            torch_lib: Some("/venv/torch/lib".into()),
            workdir: "/home/me/proj".into(),
            sweep_dir: "/home/me/proj/results/s".into(),
        }
    }

    #[test]
    fn the_array_script_asks_for_the_resources_and_runs_one_job_per_task() {
        let l = Launcher {
            partition: "gpu".into(),
            gpus_per_job: 2,
            mem: "32G".into(),
            time: "24:00:00".into(),
            max_parallel: 4,
            extra: vec!["--constraint=a100".into()],
            ..Launcher::default()
        };
        let s = array_script(
            "s",
            &l,
            &env(),
            Path::new("/home/me/proj/results/s/slurm/jobs-1.json"),
            5,
            true,
        );
        for want in [
            "#SBATCH --array=0-4%4",
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --requeue",
            "#SBATCH --partition=gpu",
            "#SBATCH --gres=gpu:2",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --mem=32G",
            "#SBATCH --time=24:00:00",
            "#SBATCH --constraint=a100",
            "#SBATCH --output=/home/me/proj/results/s/slurm/logs/%A_%a.log",
            "cd /home/me/proj\n",
            "export LD_LIBRARY_PATH=/venv/torch/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}",
            "'/opt/ddpm lab/ddpm-lab' sweep-task /home/me/proj/results/s --jobs /home/me/proj/results/s/slurm/jobs-1.json --index \"$SLURM_ARRAY_TASK_ID\" --rerun-failed &",
            "trap on_usr1 USR1",
            "scontrol requeue \"$SLURM_JOB_ID\"",
        ] {
            assert!(s.contains(want), "{want}\n{s}");
        }
        assert!(
            !s.contains("--account"),
            "empty keys are left to the cluster"
        );
        let cpu = Launcher {
            gpus_per_job: 0,
            ..Launcher::default()
        };
        let s = array_script("s", &cpu, &env(), Path::new("j.json"), 1, false);
        assert!(!s.contains("--gres") && s.contains("--array=0-0%16"), "{s}");
        assert!(!s.contains("--rerun-failed"));
    }

    #[test]
    fn the_report_script_runs_report_on_the_folder() {
        let s = report_script("s", &Launcher::default(), &env());
        assert!(
            s.contains("exec '/opt/ddpm lab/ddpm-lab' report /home/me/proj/results/s\n"),
            "{s}"
        );
        assert!(s.contains("#SBATCH --output=/home/me/proj/results/s/slurm/logs/report-%j.log"));
    }

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(sh("a/b-c_1.toml"), "a/b-c_1.toml");
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), "'it'\\''s'");
        assert_eq!(sh(""), "''");
    }

    #[test]
    fn squeue_lines_give_array_index_and_state() {
        let q = parse_queue("123 0 RUNNING\n123 4 PENDING\nbad line\n124 N/A PENDING\n");
        assert_eq!(
            q,
            vec![
                ("123".to_string(), 0, "RUNNING".to_string()),
                ("123".to_string(), 4, "PENDING".to_string())
            ]
        );
    }
}
