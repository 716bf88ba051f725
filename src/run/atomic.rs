//! Writing a file so that a reader never sees half of it: the content goes to
//! a temporary file beside the target (same folder, so the same file system),
//! which is then renamed over it. A failed write removes its temporary file,
//! so a full disk or a stop leaves the previous version and no litter.

use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};

/// The temporary name `path` is written under: `<name>.tmp-<pid>`, so two
/// processes never share one.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Let `write` fill a temporary file, then rename it to `path`. On an error
/// (from `write` or the rename) the temporary file is removed.
pub fn write_with<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(E::from));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: impl AsRef<[u8]>) -> io::Result<()> {
    write_with(path, |tmp| std::fs::write(tmp, bytes.as_ref()))
}

/// Write `value` as pretty JSON to `path` atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, text)
}

/// Write `text` to `path` atomically unless it already holds exactly that
/// (so an unchanged file keeps its modification time).
pub fn write_if_changed(path: &Path, text: &str) -> io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    write_atomic(path, text)
}

/// Read a JSON file written by [`write_json`]: None when it is missing;
/// an error naming the file when it exists but does not parse as `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_json(&p, &vec![1, 2]).unwrap();
        write_json(&p, &vec![3]).unwrap();
        assert_eq!(
            read_json::<Vec<i32>>(&p).unwrap(),
            Some(vec![3]),
            "the second write wins"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(
            read_json::<Vec<i32>>(&dir.path().join("none")).unwrap(),
            None
        );
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_removes_its_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        write_atomic(&p, "old").unwrap();
        let e: io::Result<()> = write_with(&p, |tmp| {
            std::fs::write(tmp, "half")?;
            Err(io::Error::from(io::ErrorKind::StorageFull))
        });
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert!(!temp_path(&p).exists());
    }

    #[test]
    fn an_unchanged_text_is_not_rewritten_and_a_bad_json_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        write_if_changed(&p, "x = 1\n").unwrap();
        let before = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_if_changed(&p, "x = 1\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), before);
        let e = read_json::<Vec<i32>>(&p).unwrap_err();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
    }
}
