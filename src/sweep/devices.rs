//! The devices a sweep runs on, and the slots they offer.
//!
//! CUDA devices are counted by a child process (`ddpm-lab inspect devices
//! --count`), so the sweep's own process never initialises CUDA and never holds
//! a context (and its memory) on GPU 0 while the jobs run. Each device offers
//! `--jobs-per-device` slots; a job in a slot sees only its GPU
//! (`CUDA_VISIBLE_DEVICES`), mapped through the parent's own
//! `CUDA_VISIBLE_DEVICES` if it has one. Without GPUs, `--cpu-jobs` slots share
//! the cores' threads.

use std::path::Path;
use std::process::Command;

/// A `--devices` value that names no device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--devices {given}: {part:?} is not a device; use auto, cpu, cuda (all GPUs) or a list like cuda:0,cuda:2")]
pub struct DeviceParseError {
    /// The whole value.
    pub given: String,
    /// The part of it that is not a device.
    pub part: String,
}

/// A `--devices` request this machine cannot meet: the user's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DevicesError {
    #[error("--devices cuda: this machine has no CUDA device; use --devices cpu")]
    NoCuda,
    #[error("--devices cuda:{ordinal}: this machine has {count} CUDA device(s); use {} or cpu", if *.count == 0 { "--devices cpu".to_string() } else { format!("cuda:0…cuda:{}", .count - 1) })]
    NoSuchCuda { ordinal: usize, count: usize },
}

/// What `--devices` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRequest {
    /// Every CUDA device found, else the CPU.
    Auto,
    Cpu,
    /// These CUDA ordinals (as this process would number them).
    Cuda(Vec<usize>),
}

impl DeviceRequest {
    /// Parse `auto`, `cpu`, `cuda` (all of them) or `cuda:0,cuda:2`.
    pub fn parse(s: &str) -> Result<DeviceRequest, DeviceParseError> {
        let s = s.trim();
        match s {
            "auto" => return Ok(DeviceRequest::Auto),
            "cpu" => return Ok(DeviceRequest::Cpu),
            _ => {}
        }
        let mut ids = vec![];
        for part in s.split(',') {
            let part = part.trim();
            let id = part
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .or_else(|| (part == "cuda").then_some(usize::MAX));
            match id {
                Some(usize::MAX) if s == "cuda" => return Ok(DeviceRequest::Cuda(vec![])),
                Some(i) if i != usize::MAX => {
                    if !ids.contains(&i) {
                        ids.push(i);
                    }
                }
                _ => {
                    return Err(DeviceParseError {
                        given: s.to_string(),
                        part: part.to_string(),
                    })
                }
            }
        }
        Ok(DeviceRequest::Cuda(ids))
    }
}

/// Where a slot's job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDevice {
    Cpu,
    /// A CUDA device: its ordinal here, and the value of `CUDA_VISIBLE_DEVICES`
    /// that shows the job just that device.
    Cuda {
        ordinal: usize,
        visible: String,
    },
}

/// One place a job can run; a device has `jobs_per_device` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub index: usize,
    pub device: SlotDevice,
    /// CPU threads the job's libtorch may use.
    pub threads: usize,
}

impl Slot {
    /// How the job names its device (it sees one GPU, as `cuda:0`).
    pub fn train_device(&self) -> &'static str {
        match self.device {
            SlotDevice::Cpu => "cpu",
            SlotDevice::Cuda { .. } => "cuda:0",
        }
    }

    /// How people name it: `cpu` or `cuda:N`.
    pub fn label(&self) -> String {
        match &self.device {
            SlotDevice::Cpu => "cpu".into(),
            SlotDevice::Cuda { ordinal, .. } => format!("cuda:{ordinal}"),
        }
    }

    /// The CPU threads a job runs with here: `configured`, its config's
    /// `train.threads`, when the user set one; else (0, automatic) this
    /// slot's share of the cores.
    pub fn threads_for(&self, configured: usize) -> usize {
        if configured > 0 {
            configured
        } else {
            self.threads
        }
    }
}

/// The CPU threads of the jobs that run at once, when they add up to more
/// than the cores: a note saying so and what to lower (silent
/// oversubscription slows every job down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oversubscribed {
    /// Threads of the thirstiest job.
    pub per_job: usize,
    /// Jobs that run at once.
    pub at_once: usize,
    pub cores: usize,
    /// Whether `per_job` is a `train.threads` the user set (else the slots' share).
    pub user_set: bool,
    /// Whether the jobs run on the CPU (`--cpu-jobs`) rather than on GPUs.
    pub cpu: bool,
}

impl std::fmt::Display for Oversubscribed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = if self.user_set {
            format!("train.threads = {}", self.per_job)
        } else {
            format!("{} thread(s) per job", self.per_job)
        };
        let (jobs, flag) = if self.cpu {
            ("CPU jobs", "--cpu-jobs")
        } else {
            ("jobs", "--jobs-per-device")
        };
        let fix = match (self.user_set, self.at_once > 1) {
            (true, true) => format!("train.threads or {flag}"),
            (true, false) => "train.threads".to_string(),
            (false, _) => flag.to_string(),
        };
        write!(
            f,
            "{per} × {} {jobs} at a time = {} threads on {} cores: the jobs will oversubscribe; lower {fix}",
            self.at_once,
            self.per_job * self.at_once,
            self.cores
        )
    }
}

/// Whether the jobs to run, each asking for its `configured` `train.threads`
/// (0 = the slot's share), oversubscribe `cores` when run on `slots`.
pub fn oversubscribed(
    slots: &[Slot],
    configured: &[usize],
    cores: usize,
) -> Option<Oversubscribed> {
    let slot = slots.first()?;
    let at_once = slots.len().min(configured.len());
    let per_job = configured
        .iter()
        .map(|&c| slot.threads_for(c))
        .max()
        .unwrap_or(0);
    (per_job * at_once > cores).then(|| Oversubscribed {
        per_job,
        at_once,
        cores,
        user_set: configured.iter().any(|&c| c > 0 && c == per_job),
        cpu: slot.device == SlotDevice::Cpu,
    })
}

/// Count CUDA devices in a child process of `exe`. Any failure means none.
pub fn count_cuda(exe: &Path) -> usize {
    let out = Command::new(exe)
        .args(["inspect", "devices", "--count"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        _ => 0,
    }
}

/// The slots for a request, given how many CUDA devices there are, the
/// parent's `CUDA_VISIBLE_DEVICES` and the number of cores.
pub fn slots(
    request: &DeviceRequest,
    cuda_count: usize,
    parent_visible: Option<&str>,
    jobs_per_device: usize,
    cpu_jobs: usize,
    cores: usize,
) -> Result<Vec<Slot>, DevicesError> {
    let gpus: Vec<usize> = match request {
        DeviceRequest::Cpu => vec![],
        DeviceRequest::Auto => (0..cuda_count).collect(),
        DeviceRequest::Cuda(ids) if ids.is_empty() => {
            if cuda_count == 0 {
                return Err(DevicesError::NoCuda);
            }
            (0..cuda_count).collect()
        }
        DeviceRequest::Cuda(ids) => {
            if let Some(bad) = ids.iter().find(|&&i| i >= cuda_count) {
                return Err(DevicesError::NoSuchCuda {
                    ordinal: *bad,
                    count: cuda_count,
                });
            }
            ids.clone()
        }
    };
    let visible_list: Option<Vec<String>> = parent_visible
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let mut out = vec![];
    if gpus.is_empty() {
        let n = cpu_jobs.max(1);
        let threads = (cores / n).max(1);
        for _ in 0..n {
            out.push(Slot {
                index: out.len(),
                device: SlotDevice::Cpu,
                threads,
            });
        }
        return Ok(out);
    }
    let per = jobs_per_device.max(1);
    let threads = (cores / (gpus.len() * per)).max(1);
    // Device-major: each device's first slot before any second slot, so a
    // short sweep spreads over devices before doubling up.
    for _ in 0..per {
        for &g in &gpus {
            let visible = match &visible_list {
                Some(list) => list.get(g).cloned().unwrap_or_else(|| g.to_string()),
                None => g.to_string(),
            };
            out.push(Slot {
                index: out.len(),
                device: SlotDevice::Cuda {
                    ordinal: g,
                    visible,
                },
                threads,
            });
        }
    }
    Ok(out)
}

/// One line about the slots, e.g. `cuda:0, cuda:1 × 2 jobs each (4 threads per job)`.
pub fn describe(slots: &[Slot]) -> String {
    let mut labels: Vec<String> = vec![];
    for s in slots {
        let l = s.label();
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    let per = slots.len() / labels.len().max(1);
    let threads = slots.first().map_or(1, |s| s.threads);
    if labels == ["cpu"] {
        format!(
            "cpu: {} job(s) at a time, {threads} thread(s) each",
            slots.len()
        )
    } else {
        format!(
            "{} × {per} job(s) each ({threads} CPU thread(s) per job)",
            labels.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!(DeviceRequest::parse("cpu"), Ok(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("auto"), Ok(DeviceRequest::Auto));
        assert_eq!(
            DeviceRequest::parse("cuda"),
            Ok(DeviceRequest::Cuda(vec![]))
        );
        assert_eq!(
            DeviceRequest::parse("cuda:0,cuda:2"),
            Ok(DeviceRequest::Cuda(vec![0, 2]))
        );
        let e = DeviceRequest::parse("gpu0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--devices gpu0: \"gpu0\" is not a device; use auto, cpu, cuda (all GPUs) or a list like cuda:0,cuda:2"
        );
    }

    #[test]
    fn gpu_slots_are_device_major_and_map_through_the_parents_visible_devices() {
        let s = slots(
            &DeviceRequest::Cuda(vec![0, 2]),
            4,
            Some("4,5,6,7"),
            2,
            1,
            16,
        )
        .unwrap();
        assert_eq!(s.len(), 4);
        let labels: Vec<String> = s.iter().map(|s| s.label()).collect();
        assert_eq!(labels, ["cuda:0", "cuda:2", "cuda:0", "cuda:2"]);
        assert_eq!(
            s[1].device,
            SlotDevice::Cuda {
                ordinal: 2,
                visible: "6".into()
            }
        );
        assert!(s
            .iter()
            .all(|s| s.threads == 4 && s.train_device() == "cuda:0"));
        let e = slots(&DeviceRequest::Cuda(vec![3]), 2, None, 1, 1, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--devices cuda:3: this machine has 2 CUDA device(s); use cuda:0…cuda:1 or cpu"
        );
        let e = slots(&DeviceRequest::Cuda(vec![1]), 0, None, 1, 1, 2).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--devices cuda:1: this machine has 0 CUDA device(s); use --devices cpu or cpu"
        );
        let e = slots(&DeviceRequest::Cuda(vec![]), 0, None, 1, 1, 2).unwrap_err();
        assert_eq!(e, DevicesError::NoCuda);
        assert!(e.to_string().contains("no CUDA device"), "{e}");
    }

    #[test]
    fn without_gpus_cpu_jobs_share_the_cores() {
        let s = slots(&DeviceRequest::Auto, 0, None, 2, 3, 8).unwrap();
        assert_eq!(s.len(), 3);
        assert!(s
            .iter()
            .all(|s| s.device == SlotDevice::Cpu && s.threads == 2));
        assert!(describe(&s).contains("3 job(s) at a time, 2 thread(s) each"));
        let s = slots(&DeviceRequest::Cpu, 8, None, 2, 1, 2).unwrap();
        assert_eq!(s.len(), 1, "--devices cpu ignores the GPUs");
    }

    #[test]
    fn a_users_train_threads_wins_and_zero_takes_the_slots_share() {
        let s = slots(&DeviceRequest::Cpu, 0, None, 1, 2, 8).unwrap();
        assert_eq!(s[0].threads, 4);
        assert_eq!(s[0].threads_for(1), 1, "train.threads = 1 is kept");
        assert_eq!(s[0].threads_for(6), 6, "even above the share");
        assert_eq!(s[0].threads_for(0), 4, "0 (auto) is the slot's share");
    }

    #[test]
    fn threads_beyond_the_cores_are_named_with_what_to_lower() {
        let cpu = slots(&DeviceRequest::Cpu, 0, None, 1, 2, 4).unwrap();
        let o = oversubscribed(&cpu, &[8, 0, 8], 4).unwrap();
        assert_eq!(
            o.to_string(),
            "train.threads = 8 × 2 CPU jobs at a time = 16 threads on 4 cores: the jobs will oversubscribe; lower train.threads or --cpu-jobs"
        );
        assert_eq!(oversubscribed(&cpu, &[0, 0], 4), None, "the share fits");
        assert_eq!(oversubscribed(&cpu, &[2, 1], 4), None, "2 × 2 = 4 fits");
        let one = oversubscribed(&cpu, &[8], 4).unwrap();
        assert_eq!(one.at_once, 1, "one job to run: one at a time");
        assert!(one.to_string().ends_with("lower train.threads"), "{one}");
        // More CPU jobs than cores: one thread each still oversubscribes.
        let many = slots(&DeviceRequest::Cpu, 0, None, 1, 4, 2).unwrap();
        let o = oversubscribed(&many, &[0; 6], 2).unwrap();
        assert_eq!(
            o.to_string(),
            "1 thread(s) per job × 4 CPU jobs at a time = 4 threads on 2 cores: the jobs will oversubscribe; lower --cpu-jobs"
        );
        let gpu = slots(&DeviceRequest::Auto, 2, None, 2, 1, 16).unwrap();
        let o = oversubscribed(&gpu, &[8; 4], 16).unwrap();
        assert!(
            o.to_string()
                .ends_with("lower train.threads or --jobs-per-device"),
            "{o}"
        );
    }
}
