//! CIFAR-10 as the user downloaded it, in either of its two distributions:
//!
//! * the binary version: `data_batch_1.bin` … `data_batch_5.bin` (train) and
//!   `test_batch.bin` (test), each a run of records of 1 label byte and 3,072
//!   pixel bytes;
//! * the Python version (what torchvision downloads): `data_batch_1` …
//!   `data_batch_5` and `test_batch`, each a dict pickled by Python 2 with
//!   `data`, a numpy uint8 array [N, 3072], and `labels`, a list of ints 0–9.
//!
//! The files may sit in the folder `data.path` names, in its
//! `cifar-10-batches-bin/` or `cifar-10-batches-py/` subfolder, or in the
//! archive itself (`cifar-10-binary.tar.gz`, `cifar-10-python.tar.gz`) when
//! `data.path` names that. Both versions store an image channel-major (1,024
//! red, 1,024 green, 1,024 blue bytes), which is what [`read_split`] returns.
//!
//! The pickles are decoded by `serde-pickle`, which never runs Python code: an
//! object it cannot build (numpy's array) comes back as the state numpy saved
//! for it, (version, shape, dtype, Fortran order, raw bytes).

use super::error::DataError;
use serde_pickle::{DeOptions, HashableValue, Value};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const RECORD: usize = 1 + 3 * 32 * 32;
/// Pixels per image.
const PIXELS: usize = 3 * 32 * 32;
/// The files' names without the binary version's `.bin`.
pub const TRAIN_BASES: [&str; 5] = [
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
];
pub const TEST_BASE: &str = "test_batch";

/// Which of CIFAR-10's distributions a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Binary,
    Python,
}

impl Version {
    fn file(self, base: &str) -> String {
        match self {
            Version::Binary => format!("{base}.bin"),
            Version::Python => base.to_string(),
        }
    }
}

const EXPECTED: &str = "expected CIFAR-10's binary version (data_batch_1.bin … data_batch_5.bin, test_batch.bin) or its Python version (data_batch_1 … data_batch_5, test_batch, as torchvision downloads it), in data.path or its cifar-10-batches-bin/ or cifar-10-batches-py/ folder; data.path may also name cifar-10-binary.tar.gz or cifar-10-python.tar.gz";

/// The folder holding the files, and their version: `dir` itself, else its
/// `cifar-10-batches-bin/` or `cifar-10-batches-py/`, the first whose test
/// batch exists (the binary version first); `dir` as the binary version when
/// none does, so the error names the file a user most likely meant.
fn folder(dir: &Path) -> (PathBuf, Version) {
    let candidates = [
        (dir.to_path_buf(), Version::Binary),
        (dir.to_path_buf(), Version::Python),
        (dir.join("cifar-10-batches-bin"), Version::Binary),
        (dir.join("cifar-10-batches-py"), Version::Python),
    ];
    candidates
        .into_iter()
        .find(|(d, v)| d.join(v.file(TEST_BASE)).is_file())
        .unwrap_or((dir.to_path_buf(), Version::Binary))
}

/// Pixels [N·3·32·32] (channel-major per image) and labels [N] of one split.
pub fn read_split(path: &Path, test: bool) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let bases: Vec<&str> = if test {
        vec![TEST_BASE]
    } else {
        TRAIN_BASES.to_vec()
    };
    let (mut pixels, mut labels) = (vec![], vec![]);
    let mut add = |(px, l): (Vec<u8>, Vec<u8>)| {
        pixels.extend(px);
        labels.extend(l);
    };
    if path.is_file() {
        let (version, mut files) = from_archive(path, &bases)?;
        for base in bases {
            let name = version.file(base);
            let shown = PathBuf::from(format!("{}:{name}", path.display()));
            let Some(bytes) = files.remove(base) else {
                return Err(DataError::format(
                    &shown,
                    format!("missing from the archive; {EXPECTED}"),
                ));
            };
            add(parse(version, &shown, &bytes)?);
        }
    } else {
        let (dir, version) = folder(path);
        for base in bases {
            let file = dir.join(version.file(base));
            if !file.exists() {
                return Err(DataError::not_found(&file, EXPECTED));
            }
            let bytes = std::fs::read(&file).map_err(DataError::io(&file))?;
            add(parse(version, &file, &bytes)?);
        }
    }
    Ok((pixels, labels))
}

/// The batch files among `bases` in a tar archive (gzip-compressed or not),
/// by base name, and their version (the archive's first batch file decides).
fn from_archive(
    path: &Path,
    bases: &[&str],
) -> Result<(Version, HashMap<String, Vec<u8>>), DataError> {
    let file = std::fs::File::open(path).map_err(DataError::io(path))?;
    let mut buffered = std::io::BufReader::new(file);
    // Peek at gzip's magic bytes without consuming them.
    let gz = std::io::BufRead::fill_buf(&mut buffered)
        .map_err(DataError::io(path))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let not_tar = |e: std::io::Error| {
        DataError::format(
            path,
            format!("not a readable tar archive ({e}); {EXPECTED}"),
        )
    };
    let mut archive = tar::Archive::new(reader);
    let (mut version, mut found) = (None, HashMap::new());
    for entry in archive.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let (base, v) = match name.strip_suffix(".bin") {
            Some(b) => (b.to_string(), Version::Binary),
            None => (name.clone(), Version::Python),
        };
        if !bases.contains(&base.as_str()) || version.is_some_and(|seen| seen != v) {
            continue;
        }
        version = Some(v);
        let mut bytes = vec![];
        entry.read_to_end(&mut bytes).map_err(not_tar)?;
        found.insert(base, bytes);
    }
    match version {
        Some(v) => Ok((v, found)),
        None => Err(DataError::format(
            path,
            format!("holds none of CIFAR-10's batch files; {EXPECTED}"),
        )),
    }
}

fn parse(version: Version, path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    match version {
        Version::Binary => parse_binary(path, bytes),
        Version::Python => parse_python(path, bytes),
    }
}

fn parse_binary(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::format(
            path,
            format!("{} bytes is not a multiple of 3,073 (1 label byte + 3,072 pixels per image): truncated, or not the binary version", bytes.len()),
        ));
    }
    let (mut pixels, mut labels) = (vec![], vec![]);
    for rec in bytes.chunks(RECORD) {
        check_label(path, rec[0] as i64)?;
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((pixels, labels))
}

fn check_label(path: &Path, label: i64) -> Result<(), DataError> {
    if (0..=9).contains(&label) {
        Ok(())
    } else {
        Err(DataError::format(
            path,
            format!("label {label} is not a class 0–9"),
        ))
    }
}

/// One batch of the Python version: a dict with `data` (numpy uint8 [N, 3072],
/// C order) and `labels` (N ints), keys as Python 2 `str` (bytes) or, in a file
/// pickled again by Python 3, `str`.
fn parse_python(path: &Path, bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let bad = |what: String| DataError::format(path, what);
    let value =
        serde_pickle::value_from_slice(bytes, DeOptions::new().replace_unresolved_globals())
            .map_err(|e| {
                bad(format!(
                    "not a readable pickle ({e}): truncated, or not CIFAR-10's Python version"
                ))
            })?;
    let Value::Dict(dict) = value else {
        return Err(bad(
            "holds no dict: not a batch of CIFAR-10's Python version".into(),
        ));
    };
    let get = |key: &str| {
        dict.get(&HashableValue::Bytes(key.as_bytes().to_vec()))
            .or_else(|| dict.get(&HashableValue::String(key.to_string())))
            .ok_or_else(|| {
                bad(format!(
                    "the pickled dict has no \"{key}\" entry: not a batch of CIFAR-10's Python version"
                ))
            })
    };
    let array_err = || {
        bad("\"data\" is not a uint8 numpy array of shape [N, 3072] in C order, as CIFAR-10's Python version pickles it (a file saved again with pickle protocol 5 is not read: save it with protocol 2–4)".into())
    };
    // numpy's __reduce__ state: (version, shape, dtype, is_fortran, raw bytes).
    let (n, raw) = match get("data")? {
        Value::Tuple(state) if state.len() == 5 => {
            let shape = match &state[1] {
                Value::Tuple(s) | Value::List(s) => s.as_slice(),
                _ => return Err(array_err()),
            };
            match (shape, &state[3], &state[4]) {
                ([Value::I64(n), Value::I64(w)], Value::Bool(false), Value::Bytes(raw))
                    if *n >= 0 && *w as usize == PIXELS && raw.len() == *n as usize * PIXELS =>
                {
                    (*n as usize, raw)
                }
                _ => return Err(array_err()),
            }
        }
        _ => return Err(array_err()),
    };
    let labels = match get("labels")? {
        Value::List(l) if l.len() == n => l,
        _ => {
            return Err(bad(format!(
                "\"labels\" is not a list of {n} class numbers (one per row of \"data\")"
            )))
        }
    };
    let mut out = Vec::with_capacity(n);
    for l in labels {
        let Value::I64(k) = l else {
            return Err(bad(format!("label {l:?} is not a class 0–9")));
        };
        check_label(path, *k)?;
        out.push(*k as u8);
    }
    Ok((raw.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write a small CIFAR-10 folder: `n` records per file, pixel value = label·10 + channel.
    pub fn write_fake(dir: &Path, n: usize) {
        for base in TRAIN_BASES.iter().chain([&TEST_BASE]) {
            let mut bytes = vec![];
            for i in 0..n {
                let label = (i % 10) as u8;
                bytes.push(label);
                for c in 0..3u8 {
                    bytes.extend(std::iter::repeat_n(label * 10 + c, 1024));
                }
            }
            std::fs::write(dir.join(Version::Binary.file(base)), bytes).unwrap();
        }
    }

    #[test]
    fn reads_records_channel_major() {
        let dir = tempfile::tempdir().unwrap();
        write_fake(dir.path(), 7);
        let (px, labels) = read_split(dir.path(), false).unwrap();
        assert_eq!(labels.len(), 35);
        assert_eq!(px.len(), 35 * 3072);
        // Image 3 has label 3: red plane 30, green 31, blue 32.
        let img = &px[3 * 3072..4 * 3072];
        assert_eq!((img[0], img[1024], img[2048]), (30, 31, 32));
        let (_, test_labels) = read_split(dir.path(), true).unwrap();
        assert_eq!(test_labels.len(), 7);
    }

    #[test]
    fn bad_lengths_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_fake(dir.path(), 2);
        std::fs::write(dir.path().join("data_batch_3.bin"), vec![0u8; RECORD + 5]).unwrap();
        let e = read_split(dir.path(), false).unwrap_err().to_string();
        assert!(
            e.contains("data_batch_3.bin") && e.contains("not a multiple of 3,073"),
            "{e}"
        );
        std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
        let e = read_split(dir.path(), true).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin: not found"), "{e}");
        assert!(e.contains("cifar-10-python.tar.gz"), "{e}");
    }

    /// tests/fixtures/cifar10-py: numpy-pickled batches of 2 images (make.py).
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cifar10-py")
    }

    /// What make.py wrote into batch `b` (0 = test): pixel j of image i is
    /// (31·b + 7·i + j) mod 256, its label (3·i + b) mod 10.
    fn expected(b: usize) -> (Vec<u8>, Vec<u8>) {
        let px = (0..2)
            .flat_map(|i| (0..PIXELS).map(move |j| ((31 * b + 7 * i + j) % 256) as u8))
            .collect();
        let labels = (0..2).map(|i| ((3 * i + b) % 10) as u8).collect();
        (px, labels)
    }

    fn expected_split(test: bool) -> (Vec<u8>, Vec<u8>) {
        let batches: Vec<usize> = if test { vec![0] } else { (1..=5).collect() };
        let (mut px, mut labels) = (vec![], vec![]);
        for b in batches {
            let (p, l) = expected(b);
            px.extend(p);
            labels.extend(l);
        }
        (px, labels)
    }

    #[test]
    fn reads_the_python_version_as_numpy_pickles_it() {
        for test in [false, true] {
            assert_eq!(read_split(&fixture(), test).unwrap(), expected_split(test));
        }
        // Found in a cifar-10-batches-py/ subfolder too.
        let dir = tempfile::tempdir().unwrap();
        let py = dir.path().join("cifar-10-batches-py");
        std::fs::create_dir_all(&py).unwrap();
        for base in TRAIN_BASES.iter().chain([&TEST_BASE]) {
            std::fs::copy(fixture().join(base), py.join(base)).unwrap();
        }
        assert_eq!(
            read_split(dir.path(), false).unwrap(),
            expected_split(false)
        );
    }

    /// A tar archive of `files` (name → bytes) under `top/`, gzip-compressed or not.
    fn archive(path: &Path, top: &str, files: &[(String, Vec<u8>)], gz: bool) {
        let file = std::fs::File::create(path).unwrap();
        let w: Box<dyn std::io::Write> = if gz {
            Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(file)
        };
        let mut b = tar::Builder::new(w);
        for (name, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("{top}/{name}"), &bytes[..])
                .unwrap();
        }
        b.into_inner().unwrap().flush().unwrap();
    }

    #[test]
    fn reads_both_versions_from_their_archives() {
        let dir = tempfile::tempdir().unwrap();
        let py: Vec<(String, Vec<u8>)> = TRAIN_BASES
            .iter()
            .chain([&TEST_BASE])
            .map(|b| (b.to_string(), std::fs::read(fixture().join(b)).unwrap()))
            .chain([("batches.meta".to_string(), b"not read".to_vec())])
            .collect();
        let tgz = dir.path().join("cifar-10-python.tar.gz");
        archive(&tgz, "cifar-10-batches-py", &py, true);
        for test in [false, true] {
            assert_eq!(read_split(&tgz, test).unwrap(), expected_split(test));
        }
        // The binary version, as a plain tar.
        let bin_dir = dir.path().join("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        write_fake(&bin_dir, 3);
        let bin: Vec<(String, Vec<u8>)> = TRAIN_BASES
            .iter()
            .chain([&TEST_BASE])
            .map(|b| {
                let name = Version::Binary.file(b);
                let bytes = std::fs::read(bin_dir.join(&name)).unwrap();
                (name, bytes)
            })
            .collect();
        let tar = dir.path().join("cifar-10-binary.tar");
        archive(&tar, "cifar-10-batches-bin", &bin, false);
        assert_eq!(
            read_split(&tar, false).unwrap(),
            read_split(&bin_dir, false).unwrap()
        );
        // An archive without a train batch names it; one without any, says so.
        let short = dir.path().join("short.tar.gz");
        archive(&short, "x", &py[1..], true);
        let e = read_split(&short, false).unwrap_err().to_string();
        assert!(
            e.contains("short.tar.gz:data_batch_1: missing from the archive"),
            "{e}"
        );
        let none = dir.path().join("none.tar.gz");
        archive(&none, "x", &py[6..], true);
        let e = read_split(&none, true).unwrap_err().to_string();
        assert!(e.contains("holds none of CIFAR-10's batch files"), "{e}");
        let junk = dir.path().join("junk.tar.gz");
        std::fs::write(&junk, b"\x1f\x8bnot gzip at all").unwrap();
        let e = read_split(&junk, true).unwrap_err().to_string();
        assert!(e.contains("not a readable tar archive"), "{e}");
    }

    #[test]
    fn bad_python_batches_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        for base in TRAIN_BASES.iter().chain([&TEST_BASE]) {
            std::fs::copy(fixture().join(base), dir.path().join(base)).unwrap();
        }
        let good = std::fs::read(fixture().join(TEST_BASE)).unwrap();
        let test = dir.path().join(TEST_BASE);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() / 2].to_vec(), "not a readable pickle"),
            // Protocol 2: a pickled list [1].
            (b"\x80\x02]q\x00K\x01a.".to_vec(), "holds no dict"),
            // {b"labels": []}: no data.
            (
                b"\x80\x02}q\x00U\x06labelsq\x01]q\x02s.".to_vec(),
                "no \"data\" entry",
            ),
            // {b"data": [], b"labels": []}: data is not numpy's array.
            (
                b"\x80\x02}q\x00(U\x04dataq\x01]q\x02U\x06labelsq\x03]q\x04u.".to_vec(),
                "not a uint8 numpy array",
            ),
        ];
        for (bytes, want) in cases {
            std::fs::write(&test, &bytes).unwrap();
            let e = read_split(dir.path(), true).unwrap_err().to_string();
            assert!(
                e.contains("test_batch: ") && e.contains(want),
                "{want}: {e}"
            );
        }
        // A label out of range: the first label's BININT1 byte (K) set to 12.
        let at = good.windows(3).position(|w| w == b"]q\x04").unwrap();
        let mut bad = good.clone();
        let k = at + 3 + bad[at + 3..].iter().position(|&b| b == b'K').unwrap();
        bad[k + 1] = 12;
        std::fs::write(&test, &bad).unwrap();
        let e = read_split(dir.path(), true).unwrap_err().to_string();
        assert!(e.contains("label 12 is not a class 0–9"), "{e}");
    }
}
