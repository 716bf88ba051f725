//! The folder a user names on the command line, and what it stands for.
//!
//! `sample`, `eval`, `export` and `inspect run` take any of:
//! * a run folder of `ddpm-lab train` (config.toml, status.json, checkpoints);
//! * a sweep's job folder, `results/<sweep>/jobs/<job>/` (the same layout);
//! * a sweep's run folder, `results/<sweep>/runs/<run>/` (the ids the plan
//!   and the report print): its `run.json` names the job that holds the
//!   weights and the weight set the run reads, and its `config.toml` holds
//!   the run's own `eval.*` settings.
//!
//! A sweep folder itself names many runs, so it is refused with the way to
//! list them.

use super::records::{PlanFile, RunRecord};
use super::{identity, RunDir, RunStatus, SweepDir, Weights};
use crate::config::RunConfig;
use std::path::{Path, PathBuf};

/// What a named folder is.
#[derive(Debug, Clone, PartialEq)]
pub enum FolderKind {
    /// A folder with weights: `ddpm-lab train --out`, or a sweep's `jobs/<job>/`.
    Trained,
    /// A sweep's `runs/<run>/`.
    SweepRun { run: String, job: String },
    /// A sweep's folder.
    Sweep,
}

/// A folder the user named, opened.
#[derive(Debug, Clone)]
pub struct RunHandle {
    pub kind: FolderKind,
    /// The folder with the weights, the status and the evaluation tables.
    pub trained: RunDir,
    /// The config to sample and evaluate with: the trained folder's, with a
    /// sweep run's own `eval.*` settings.
    pub config: RunConfig,
    /// The weight set the folder names (a sweep run's), if any.
    pub weights: Option<Weights>,
}

/// Why a folder is not something to sample or evaluate.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("{}: no such folder; give a run folder (ddpm-lab train --out), or a sweep's results/<sweep>/runs/<run>/ or jobs/<job>/", .0.display())]
    Missing(PathBuf),
    #[error("{}: a sweep folder holds many runs; give one of them, e.g. {}/runs/{first}/ (`ddpm-lab inspect run {}` lists them)", .path.display(), .path.display(), .path.display())]
    Sweep { path: PathBuf, first: String },
    #[error("{}: not a ddpm-lab run (no config.toml, run.json or plan.json); give a run folder (ddpm-lab train --out), or a sweep's results/<sweep>/runs/<run>/ or jobs/<job>/", .0.display())]
    NotARun(PathBuf),
    #[error("{}: cannot read it ({error}); the sweep that wrote it may be from another version: run `ddpm-lab sweep` on its spec again", .path.display())]
    RecordUnreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a run record this version can read ({error}); run `ddpm-lab sweep` on its spec again to rewrite it", .path.display())]
    BadRecord {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{}: cannot read it ({error}); give a run directory written by `ddpm-lab train` or a sweep's jobs/<id>/", .path.display())]
    ConfigUnreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a ddpm-lab run config ({error})", .path.display())]
    BadConfig {
        path: PathBuf,
        error: toml::de::Error,
    },
    #[error("{}: its job {} is not there; the sweep has not trained it yet: run `ddpm-lab sweep` on its spec", .run.display(), .job.display())]
    NoJob { run: PathBuf, job: PathBuf },
    #[error("{}: differs from the config its job {} was trained with (training hash {run_hash}, the job's {job_hash}); run `ddpm-lab sweep` on its spec again to rewrite it", .path.display(), .job.display())]
    NotItsJob {
        path: PathBuf,
        job: PathBuf,
        run_hash: String,
        job_hash: String,
    },
}

/// What `path` is, without reading more than its marker files.
pub fn kind(path: &Path) -> Result<FolderKind, HandleError> {
    if !path.is_dir() {
        return Err(HandleError::Missing(path.to_path_buf()));
    }
    let record = path.join("run.json");
    if record.is_file() {
        let r = read_record(&record)?;
        return Ok(FolderKind::SweepRun {
            run: r.id,
            job: r.job,
        });
    }
    if RunDir::new(path).config().is_file() || RunDir::new(path).status().is_file() {
        return Ok(FolderKind::Trained);
    }
    if SweepDir::at(path).plan().is_file() {
        return Ok(FolderKind::Sweep);
    }
    Err(HandleError::NotARun(path.to_path_buf()))
}

fn read_record(path: &Path) -> Result<RunRecord, HandleError> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(error) => return Err(HandleError::RecordUnreadable { path, error }),
    };
    serde_json::from_str(&text).map_err(|error| HandleError::BadRecord { path, error })
}

fn read_config(path: &Path) -> Result<RunConfig, HandleError> {
    let path = path.to_path_buf();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(error) => return Err(HandleError::ConfigUnreadable { path, error }),
    };
    toml::from_str(&text).map_err(|error| HandleError::BadConfig { path, error })
}

/// The first run a sweep folder's plan lists (for the message that refuses it).
fn first_run(sweep: &Path) -> String {
    std::fs::read_to_string(SweepDir::at(sweep).plan())
        .ok()
        .and_then(|t| serde_json::from_str::<PlanFile>(&t).ok())
        .and_then(|p| p.runs.into_iter().next())
        .map_or_else(|| "<run>".to_string(), |r| r.id)
}

/// Open a folder the user named.
pub fn open(path: &Path) -> Result<RunHandle, HandleError> {
    match kind(path)? {
        FolderKind::Trained => {
            let trained = RunDir::new(path);
            let config = read_config(&trained.config())?;
            Ok(RunHandle {
                kind: FolderKind::Trained,
                trained,
                config,
                weights: None,
            })
        }
        FolderKind::Sweep => Err(HandleError::Sweep {
            path: path.to_path_buf(),
            first: first_run(path),
        }),
        FolderKind::SweepRun { run, job } => open_sweep_run(path, run, job),
    }
}

/// A sweep's `runs/<run>/`: the job's weights, the run's settings.
fn open_sweep_run(path: &Path, run: String, job: String) -> Result<RunHandle, HandleError> {
    let record = read_record(&path.join("run.json"))?;
    let trained = RunDir::new(path.join(&record.job_dir));
    if !trained.config().is_file() {
        return Err(HandleError::NoJob {
            run: path.to_path_buf(),
            job: trained.root,
        });
    }
    let config_path = path.join("config.toml");
    let config = read_config(&config_path)?;
    let job_config = read_config(&trained.config())?;
    let (run_hash, job_hash) = (
        identity::training_hash(&config),
        identity::training_hash(&job_config),
    );
    // The status records the hash the weights were trained under.
    let trained_hash = RunStatus::read(&trained.root)
        .map(|s| s.config_hash)
        .filter(|h| !h.is_empty())
        .unwrap_or(job_hash);
    if run_hash != trained_hash {
        return Err(HandleError::NotItsJob {
            path: config_path,
            job: trained.root,
            run_hash,
            job_hash: trained_hash,
        });
    }
    Ok(RunHandle {
        kind: FolderKind::SweepRun { run, job },
        trained,
        config,
        weights: Some(record.weights),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::records::Swept;

    fn sweep_with_one_run(root: &Path, job_trained: bool) -> (PathBuf, RunConfig) {
        let sweep = SweepDir::at(root);
        let mut cfg = RunConfig::default();
        cfg.ema.decays = vec![0.9];
        let job = sweep.job("abcd1234");
        std::fs::create_dir_all(&job.root).unwrap();
        if job_trained {
            std::fs::write(job.config(), cfg.to_toml()).unwrap();
        }
        let run = sweep.run_dir("decay-0.9-abcd12");
        std::fs::create_dir_all(&run).unwrap();
        let record = RunRecord {
            id: "decay-0.9-abcd12".into(),
            job: "abcd1234".into(),
            weights: Weights::ema(0.9),
            job_dir: "../../jobs/abcd1234".into(),
            swept: Swept::new(),
        };
        std::fs::write(
            run.join("run.json"),
            serde_json::to_string(&record).unwrap(),
        )
        .unwrap();
        let mut own = cfg.clone();
        own.eval.num_samples = 37;
        std::fs::write(run.join("config.toml"), own.to_toml()).unwrap();
        (run, own)
    }

    #[test]
    fn a_sweep_run_folder_opens_its_jobs_weights_with_its_own_settings() {
        let dir = tempfile::tempdir().unwrap();
        let (run, own) = sweep_with_one_run(dir.path(), true);
        let h = open(&run).unwrap();
        assert_eq!(h.weights, Some(Weights::ema(0.9)));
        assert_eq!(h.config.eval.num_samples, 37);
        assert_eq!(h.config, own);
        assert_eq!(
            h.trained.root.canonicalize().unwrap(),
            SweepDir::at(dir.path())
                .job_dir("abcd1234")
                .canonicalize()
                .unwrap()
        );
        assert!(matches!(h.kind, FolderKind::SweepRun { ref job, .. } if job == "abcd1234"));
        // The job folder itself is a trained folder.
        let j = open(&SweepDir::at(dir.path()).job_dir("abcd1234")).unwrap();
        assert_eq!(j.kind, FolderKind::Trained);
        assert_eq!(j.weights, None);
    }

    #[test]
    fn folders_that_are_not_one_run_are_refused_with_the_way_on() {
        let dir = tempfile::tempdir().unwrap();
        let (run, _) = sweep_with_one_run(dir.path(), false);
        let e = open(&run).unwrap_err().to_string();
        assert!(e.contains("the sweep has not trained it yet"), "{e}");
        std::fs::write(SweepDir::at(dir.path()).plan(), "{}").unwrap();
        let e = open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("a sweep folder holds many runs"), "{e}");
        let e = open(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("no such folder"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = open(empty.path()).unwrap_err().to_string();
        assert!(e.contains("not a ddpm-lab run"), "{e}");
    }

    #[test]
    fn damaged_records_and_configs_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (run, _) = sweep_with_one_run(dir.path(), true);
        std::fs::write(run.join("config.toml"), "train = 3").unwrap();
        let e = open(&run).unwrap_err();
        assert!(matches!(e, HandleError::BadConfig { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("config.toml: not a ddpm-lab run config"),
            "{e}"
        );
        std::fs::write(run.join("run.json"), "{").unwrap();
        let e = open(&run).unwrap_err();
        assert!(matches!(e, HandleError::BadRecord { .. }), "{e:?}");
        assert!(e.to_string().contains("run.json: not a run record"), "{e}");
    }

    #[test]
    fn a_run_whose_training_keys_differ_from_its_job_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (run, mut own) = sweep_with_one_run(dir.path(), true);
        own.train.lr *= 2.0;
        std::fs::write(run.join("config.toml"), own.to_toml()).unwrap();
        let e = open(&run).unwrap_err().to_string();
        assert!(e.contains("differs from the config its job"), "{e}");
    }
}
