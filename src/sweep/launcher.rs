//! Where a sweep's jobs run: here, as child processes (`local`, the
//! default), or on a Slurm cluster as one job array (`slurm`). The spec's
//! `[launcher]` table says which and with what resources; `--launcher` and
//! the `--slurm-*` flags override it key by key.

use crate::config::Problem;
use serde::{Deserialize, Serialize};

/// Who runs the jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LauncherKind {
    /// Child processes on this machine's GPUs, or its CPU.
    #[default]
    Local,
    /// A Slurm job array, one array task per training job.
    Slurm,
}

/// The `[launcher]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Launcher {
    pub kind: LauncherKind,
    /// `--partition`; empty: the cluster's default.
    pub partition: String,
    /// GPUs each array task asks for (`--gres=gpu:N`); 0 trains on the CPU.
    pub gpus_per_job: u32,
    pub cpus_per_job: u32,
    /// `--mem`, e.g. "32G"; empty: the partition's default.
    pub mem: String,
    /// `--time`, e.g. "24:00:00"; empty: the partition's default.
    pub time: String,
    /// Array tasks running at once (`--array=…%N`).
    pub max_parallel: u32,
    pub account: String,
    pub qos: String,
    /// More sbatch options, each as written, e.g. "--constraint=a100".
    pub extra: Vec<String>,
    /// Seconds before the time limit (or a preemption) at which Slurm sends
    /// USR1, so a task checkpoints and is requeued.
    pub signal_grace_s: u32,
}

impl Default for Launcher {
    fn default() -> Self {
        Launcher {
            kind: LauncherKind::Local,
            partition: String::new(),
            gpus_per_job: 1,
            cpus_per_job: 8,
            mem: String::new(),
            time: String::new(),
            max_parallel: 16,
            account: String::new(),
            qos: String::new(),
            extra: vec![],
            signal_grace_s: 120,
        }
    }
}

/// The keys of `[launcher]`.
pub const KEYS: [&str; 11] = [
    "kind",
    "partition",
    "gpus_per_job",
    "cpus_per_job",
    "mem",
    "time",
    "max_parallel",
    "account",
    "qos",
    "extra",
    "signal_grace_s",
];

/// What is wrong with the value of `[launcher]` key `key`, or None.
pub fn value_problem(key: &str, v: &toml::Value) -> Option<String> {
    let whole = |min: i64, what: &str| {
        (!v.as_integer()
            .is_some_and(|n| n >= min && n <= u32::MAX as i64))
        .then(|| format!("= {v}: {what}"))
    };
    let text = |ok: fn(&str) -> bool, what: &str| match v.as_str() {
        Some(s) if ok(s) => None,
        _ => Some(format!("= {v}: {what}")),
    };
    match key {
        "kind" => text(|s| s == "local" || s == "slurm", "allowed: local, slurm"),
        "partition" | "account" | "qos" => {
            text(plain_word, "a Slurm name (letters, digits, - _ .), or \"\" for the default")
        }
        "gpus_per_job" => whole(0, "a whole number of GPUs ≥ 0 (0 trains on the CPU)"),
        "cpus_per_job" => whole(1, "a whole number of CPU cores ≥ 1"),
        "max_parallel" => whole(1, "a whole number of array tasks ≥ 1 running at once"),
        "signal_grace_s" => whole(10, "seconds ≥ 10 before the time limit at which a task checkpoints"),
        "mem" => text(memory, "Slurm memory such as \"32G\" or \"8000M\", or \"\" for the default"),
        "time" => text(
            time_limit,
            "a Slurm time limit: \"MM\", \"HH:MM:SS\", \"D-HH\" or \"D-HH:MM:SS\", or \"\" for the default",
        ),
        "extra" => match v.as_array() {
            Some(a) if a.iter().all(|x| x.as_str().is_some_and(|s| s.starts_with("--"))) => None,
            _ => Some(format!(
                "= {v}: a list of sbatch options as written, e.g. [\"--constraint=a100\"]"
            )),
        },
        _ => Some(format!("unknown key; [launcher] has {}", KEYS.join(", "))),
    }
}

fn plain_word(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `32G`, `8000M`, `512` (MB): digits and one unit letter.
fn memory(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty() && s.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Slurm's time formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn time_limit(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let num = |p: &str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(num) && parts.iter().all(|p| num(p)) && (1..=3).contains(&parts.len())
}

impl Launcher {
    /// The settings of a `[launcher]` table, or every problem with it, each
    /// under its key (`launcher.mem`).
    pub fn from_table(t: &toml::Table) -> Result<Launcher, Vec<Problem>> {
        let problems: Vec<Problem> = t
            .iter()
            .filter_map(|(k, v)| {
                value_problem(k, v).map(|m| Problem::new(&format!("launcher.{k}"), m))
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        toml::Value::Table(t.clone())
            .try_into()
            .map_err(|e: toml::de::Error| vec![Problem::new("launcher", e.message().to_string())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn the_issue_example_reads_with_every_key() {
        let l = Launcher::from_table(&table(
            "kind = \"slurm\"\npartition = \"gpu\"\ngpus_per_job = 1\ncpus_per_job = 8\nmem = \"32G\"\ntime = \"24:00:00\"\nmax_parallel = 16\naccount = \"lab\"\nqos = \"normal\"\nextra = [\"--constraint=a100\"]\n",
        ))
        .unwrap();
        assert_eq!(l.kind, LauncherKind::Slurm);
        assert_eq!(
            (l.partition.as_str(), l.gpus_per_job, l.cpus_per_job),
            ("gpu", 1, 8)
        );
        assert_eq!((l.mem.as_str(), l.time.as_str()), ("32G", "24:00:00"));
        assert_eq!(l.extra, vec!["--constraint=a100".to_string()]);
        assert_eq!(l.signal_grace_s, 120, "the default");
        assert_eq!(
            Launcher::from_table(&table("")).unwrap(),
            Launcher::default()
        );
    }

    #[test]
    fn each_bad_value_is_named_with_what_is_allowed() {
        let cases = [
            ("kind = \"pbs\"", "launcher.kind", "allowed: local, slurm"),
            ("gpus_per_job = -1", "launcher.gpus_per_job", "≥ 0"),
            ("cpus_per_job = 0", "launcher.cpus_per_job", "≥ 1"),
            ("max_parallel = 1.5", "launcher.max_parallel", "≥ 1"),
            ("mem = \"lots\"", "launcher.mem", "\"32G\""),
            ("mem = \"32GB\"", "launcher.mem", "\"32G\""),
            ("time = \"1 day\"", "launcher.time", "\"HH:MM:SS\""),
            ("time = \"1:2:3:4\"", "launcher.time", "\"HH:MM:SS\""),
            (
                "extra = [\"constraint=a100\"]",
                "launcher.extra",
                "[\"--constraint=a100\"]",
            ),
            (
                "partition = \"gpu; rm\"",
                "launcher.partition",
                "a Slurm name",
            ),
            ("signal_grace_s = 2", "launcher.signal_grace_s", "≥ 10"),
            (
                "gpu_per_job = 1",
                "launcher.gpu_per_job",
                "unknown key; [launcher] has kind, partition, gpus_per_job",
            ),
        ];
        for (text, key, want) in cases {
            let ps = Launcher::from_table(&table(text)).unwrap_err();
            assert_eq!(ps.len(), 1, "{text}: {ps:?}");
            assert_eq!(ps[0].key, key, "{text}");
            assert!(ps[0].message.contains(want), "{text}: {}", ps[0].message);
        }
    }

    #[test]
    fn slurm_time_formats_are_accepted() {
        for ok in [
            "30",
            "30:00",
            "24:00:00",
            "2-00",
            "2-12:00",
            "2-12:00:00",
            "",
        ] {
            assert!(time_limit(ok), "{ok}");
        }
        for bad in ["a", "1:", "-1", "1-2-3", "1:2:3:4"] {
            assert!(!time_limit(bad), "{bad}");
        }
        for ok in ["32G", "8000M", "512", "1t", ""] {
            assert!(memory(ok), "{ok}");
        }
    }
}
