//! CIFAR-10, binary version: `data_batch_1.bin` … `data_batch_5.bin` (train) and
//! `test_batch.bin` (test) in the folder `data.path` names (or its
//! `cifar-10-batches-bin/` subfolder). Each record is 1 label byte, then 3,072
//! pixel bytes in channel-major order (1,024 red, 1,024 green, 1,024 blue).

use super::error::DataError;
use std::path::{Path, PathBuf};

pub const RECORD: usize = 1 + 3 * 32 * 32;
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";

fn folder(dir: &Path) -> PathBuf {
    let nested = dir.join("cifar-10-batches-bin");
    if !dir.join(TEST_FILE).exists() && nested.join(TEST_FILE).exists() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Pixels [N·3·32·32] (channel-major per image) and labels [N] of one split.
pub fn read_split(dir: &Path, test: bool) -> Result<(Vec<u8>, Vec<u8>), DataError> {
    let dir = folder(dir);
    let names: Vec<&str> = if test {
        vec![TEST_FILE]
    } else {
        TRAIN_FILES.to_vec()
    };
    let (mut pixels, mut labels) = (vec![], vec![]);
    for name in names {
        let path = dir.join(name);
        if !path.exists() {
            return Err(DataError::format(
                &path,
                "missing: expected the CIFAR-10 binary version (data_batch_1.bin … data_batch_5.bin, test_batch.bin); point data.path at its folder",
            ));
        }
        let bytes = std::fs::read(&path).map_err(DataError::io(&path))?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(DataError::format(
                &path,
                format!("{} bytes is not a multiple of 3,073 (1 label byte + 3,072 pixels per image): truncated, or not the binary version", bytes.len()),
            ));
        }
        for rec in bytes.chunks(RECORD) {
            if rec[0] > 9 {
                return Err(DataError::format(
                    &path,
                    format!("label {} is not a class 0–9", rec[0]),
                ));
            }
            labels.push(rec[0]);
            pixels.extend_from_slice(&rec[1..]);
        }
    }
    Ok((pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write a small CIFAR-10 folder: `n` records per file, pixel value = label·10 + channel.
    pub fn write_fake(dir: &Path, n: usize) {
        for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
            let mut bytes = vec![];
            for i in 0..n {
                let label = (i % 10) as u8;
                bytes.push(label);
                for c in 0..3u8 {
                    bytes.extend(std::iter::repeat_n(label * 10 + c, 1024));
                }
            }
            std::fs::write(dir.join(name), bytes).unwrap();
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
        std::fs::remove_file(dir.path().join(TEST_FILE)).unwrap();
        let e = read_split(dir.path(), true).unwrap_err().to_string();
        assert!(e.contains("test_batch.bin: missing"), "{e}");
    }
}
