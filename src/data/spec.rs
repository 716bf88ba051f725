//! What the data of a run is: the `[data]` section of a run config (its
//! source and how to read it), and the shape of one sample, known without
//! loading anything. The config tree holds [`DataConfig`]; the data
//! modules read it.

use serde::{Deserialize, Serialize};

/// Where training data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// Generated 2-D distributions (`data.toy`).
    Toy,
    /// Generated images of Gaussian blobs, labelled by quadrant: for smoke tests and benchmarks.
    Synthetic,
    /// MNIST IDX files (plain or gzip) in `data.path` (default `data/mnist`, built by `ddpm-lab data mnist`).
    Mnist,
    /// The CIFAR-10 binary version in `data.path`.
    Cifar10,
    /// PNG/JPEG images under `data.path`; classes from subfolder names.
    Folder,
    /// A CSV or Parquet file `data.path`; `data.columns` modelled, `data.condition_columns` conditioning.
    Tabular,
}

/// The generated 2-D distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ToyKind {
    /// 8 Gaussians (σ = 0.2) on a circle of radius 2; labelled by Gaussian (8 classes).
    EightGaussians,
    /// Two interleaved half circles with noise σ = 0.1; labelled by moon (2 classes).
    TwoMoons,
    /// A 2-D Swiss roll; unlabelled.
    SwissRoll,
    /// The 8 filled squares of a 4×4 checkerboard on [−2, 2]²; labelled by half (x < 0 or ≥ 0).
    Checkerboard,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub source: DataSource,
    /// Which 2-D distribution, for `source = "toy"`.
    pub toy: ToyKind,
    /// How many samples a generated source makes.
    pub n_samples: usize,
    /// [C, H, W] of `source = "synthetic"`.
    pub shape: Vec<i64>,
    /// Condition the model on the source's class labels.
    pub labels: bool,
    /// Condition the model on the source's continuous condition vector
    /// (toy: eight-gaussians' centre direction, swiss-roll's position along the roll).
    pub vector_condition: bool,
    /// Seed of the generated data (the training seed is `train.seed`).
    pub seed: u64,
    /// The file or folder of `mnist`, `cifar10`, `folder` and `tabular` (mnist: `data/mnist` when empty).
    pub path: String,
    /// Side of the (square) images: resample with area averaging (mnist, cifar10,
    /// synthetic; at most the native size) or resize and centre-crop (folder),
    /// then round to the 8-bit grid. 0 = native.
    pub resolution: i64,
    /// Random horizontal flips of training images (as Ho et al. did on CIFAR-10).
    pub flip: bool,
    /// `rgb` or `grayscale` (folder).
    pub color: super::folder::ColorMode,
    /// Share of the data held out as the test split (folder: a seeded choice; tabular: the last rows).
    pub test_fraction: f64,
    /// Modelled columns (tabular).
    pub columns: Vec<String>,
    /// Conditioning columns (tabular); the model is conditioned on them when listed.
    pub condition_columns: Vec<String>,
    /// Per-column scaling (tabular): `minmax` (to [−1, 1]) or `standardize`.
    pub scaling: super::tabular::Scaling,
    /// Drop rows with missing values in the used columns (tabular), instead of an error.
    pub drop_nulls: bool,
    /// How batches reach the trainer: `auto`, `device` (the dataset on the
    /// training device) or `prefetch` (host memory, a background thread).
    pub loader: super::LoaderKind,
}

impl DataConfig {
    /// Whether the model is conditioned on a continuous vector.
    pub fn uses_vector_condition(&self) -> bool {
        self.vector_condition
            || (self.source == DataSource::Tabular && !self.condition_columns.is_empty())
    }

    /// `data.path`, with the MNIST default.
    pub fn resolved_path(&self) -> std::path::PathBuf {
        if self.path.is_empty() && self.source == DataSource::Mnist {
            std::path::PathBuf::from("data/mnist")
        } else {
            std::path::PathBuf::from(&self.path)
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Toy,
            toy: ToyKind::EightGaussians,
            n_samples: 10_000,
            shape: vec![1, 28, 28],
            labels: false,
            vector_condition: false,
            seed: 0,
            path: String::new(),
            resolution: 0,
            flip: false,
            color: super::folder::ColorMode::Rgb,
            test_fraction: 0.2,
            columns: vec![],
            condition_columns: vec![],
            scaling: super::tabular::Scaling::Minmax,
            drop_nulls: false,
            loader: super::LoaderKind::Auto,
        }
    }
}

/// The shape of one data sample and its labels, as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataShape {
    /// [D] for vectors, [C, H, W] for images.
    pub sample: Vec<i64>,
    /// Number of classes, if the source has labels.
    pub num_classes: Option<i64>,
    /// Width of the condition vector, if the source has one.
    pub cond_dim: Option<i64>,
}

impl DataShape {
    pub fn is_image(&self) -> bool {
        self.sample.len() == 3
    }
}

/// What a source yields, without loading it.
pub fn data_shape(d: &DataConfig) -> DataShape {
    match d.source {
        DataSource::Toy => DataShape {
            sample: vec![2],
            num_classes: super::toy::num_classes(d.toy),
            cond_dim: super::toy::condition_dim(d.toy),
        },
        DataSource::Synthetic => {
            let mut sample = d.shape.clone();
            if d.resolution > 0 && sample.len() == 3 {
                sample[1] = d.resolution;
                sample[2] = d.resolution;
            }
            DataShape {
                sample,
                num_classes: Some(super::synthetic::NUM_CLASSES),
                cond_dim: None,
            }
        }
        DataSource::Mnist | DataSource::Cifar10 => {
            let (c, native) = if d.source == DataSource::Mnist {
                (1, 28)
            } else {
                (3, 32)
            };
            let r = if d.resolution > 0 {
                d.resolution
            } else {
                native
            };
            DataShape {
                sample: vec![c, r, r],
                num_classes: Some(10),
                cond_dim: None,
            }
        }
        DataSource::Folder => DataShape {
            sample: vec![d.color.channels(), d.resolution, d.resolution],
            // Known once the folder is listed (class subfolders).
            num_classes: None,
            cond_dim: None,
        },
        DataSource::Tabular => DataShape {
            sample: vec![d.columns.len() as i64],
            num_classes: None,
            cond_dim: (!d.condition_columns.is_empty()).then_some(d.condition_columns.len() as i64),
        },
    }
}
