//! The evaluator network: a small CNN classifier trained on the run's own
//! labelled images, whose penultimate features stand in for Inception's where
//! Inception makes no sense (28×28 digits) or is not at hand.
//!
//! Architecture (`cnn`): three 3×3 conv blocks (32, 64, 64 channels; batch
//! norm, ReLU; 2×2 max-pool after the first two), adaptive average pooling to
//! 4×4, a 128-unit ReLU layer (the features) and a linear classifier. Trained
//! with Adam (1e-3, batch 128) and random shifts of up to 2 pixels, from a
//! fixed seed.
//!
//! One evaluator per dataset: the key is the source, its path, resolution and
//! channels. It is cached under `<evaluators>/<key>/` (weights as
//! safetensors, `evaluator.json` with its held-out accuracy), written to a
//! temporary folder and renamed, so a stopped training leaves nothing behind
//! and concurrent evaluations never read half a file. Reference statistics of
//! the real data are cached beside it.

use crate::config::run::{DataSource, RunConfig};
use crate::data::{self, Dataset, Split};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// Width of the feature layer.
pub const FEATURES: i64 = 128;
const WEIGHTS_FILE: &str = "weights.safetensors";
const INFO_FILE: &str = "evaluator.json";

#[derive(Debug, thiserror::Error)]
pub enum EvaluatorError {
    /// The run's data are not images.
    #[error("the evaluator network needs image data; data.source = {} has samples of shape {shape:?}", source_name(*.data))]
    NotImages { data: DataSource, shape: Vec<i64> },
    /// A split has no class labels to train the classifier on.
    #[error("the evaluator network is a classifier and needs class labels; the {split} split has none (for an image folder, set data.labels = true and put each class in its own subfolder)")]
    Unlabelled { split: &'static str },
    #[error("evaluator training needs at least one epoch")]
    NoEpochs,
    /// The run's data could not be loaded.
    #[error("the evaluator's data: {error}")]
    Data { error: crate::data::DataError },
    /// libtorch could not build the optimizer.
    #[error("optimizer: {error}")]
    Optimizer { error: tch::TchError },
    /// The cache folder or a file in it could not be read or written.
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The weights could not be written to the cache.
    #[error("{}: {error}", .path.display())]
    SaveWeights { path: PathBuf, error: tch::TchError },
    /// The cached description does not parse: a damaged cache.
    #[error("{}: not an evaluator description ({error}); delete {} to retrain it", .path.display(), .dir.display())]
    BadInfo {
        path: PathBuf,
        dir: PathBuf,
        error: serde_json::Error,
    },
    /// The cached weights do not load: a damaged cache.
    #[error("{}: {error}; delete {} to retrain it", .path.display(), .dir.display())]
    BadWeights {
        path: PathBuf,
        dir: PathBuf,
        error: tch::TchError,
    },
}

impl EvaluatorError {
    /// Whether what the user gave is what is wrong (exit 2), not a file
    /// that could not be read or written, a damaged cache or libtorch.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            EvaluatorError::NotImages { .. }
                | EvaluatorError::Unlabelled { .. }
                | EvaluatorError::NoEpochs
                | EvaluatorError::Data { .. }
        )
    }
}

/// `data.source` as the config spells it.
fn source_name(source: DataSource) -> String {
    toml::Value::try_from(source).map_or_else(|_| "?".into(), |v| v.to_string())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EvaluatorError + '_ {
    |error| EvaluatorError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// What an evaluator was trained on and how well it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatorInfo {
    /// The metric suffix: `fd_<name>`, `is_<name>`, …
    pub name: String,
    pub key: String,
    pub architecture: String,
    pub channels: i64,
    pub resolution: i64,
    pub num_classes: i64,
    pub train_images: i64,
    pub test_images: i64,
    /// Accuracy on the held-out split.
    pub test_accuracy: f64,
    pub epochs: usize,
    pub seconds: f64,
}

struct Net {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    hidden: nn::Linear,
    out: nn::Linear,
}

impl Net {
    fn new(p: nn::Path, channels: i64, classes: i64) -> Net {
        let conv = |i: usize, cin: i64, cout: i64| {
            let cfg = nn::ConvConfig {
                padding: 1,
                ..Default::default()
            };
            (
                nn::conv2d(&p / format!("conv{i}"), cin, cout, 3, cfg),
                nn::batch_norm2d(&p / format!("bn{i}"), cout, Default::default()),
            )
        };
        Net {
            convs: vec![conv(0, channels, 32), conv(1, 32, 64), conv(2, 64, 64)],
            hidden: nn::linear(&p / "hidden", 64 * 16, FEATURES, Default::default()),
            out: nn::linear(&p / "out", FEATURES, classes, Default::default()),
        }
    }

    /// (features [N, 128], logits [N, C]).
    fn forward(&self, x: &Tensor, train: bool) -> (Tensor, Tensor) {
        let mut h = x.shallow_clone();
        for (i, (c, bn)) in self.convs.iter().enumerate() {
            h = bn.forward_t(&c.forward(&h), train).relu();
            if i < 2 {
                h = h.max_pool2d_default(2);
            }
        }
        let f = self
            .hidden
            .forward(&h.adaptive_avg_pool2d([4, 4]).flatten(1, -1))
            .relu();
        let logits = self.out.forward(&f.dropout(0.3, train));
        (f, logits)
    }
}

/// A trained evaluator, ready to embed images.
pub struct Evaluator {
    net: Net,
    _vs: nn::VarStore,
    pub info: EvaluatorInfo,
    device: Device,
}

impl EvaluatorInfo {
    /// A warning when the held-out accuracy is within 1.5× of chance: the
    /// metrics built on its features would say little.
    pub fn near_chance(&self) -> Option<String> {
        let chance = 1.0 / self.num_classes.max(1) as f64;
        (self.num_classes > 1 && self.test_accuracy < 1.5 * chance).then(|| {
            format!(
                "the evaluator {} classifies {:.1}% of the held-out images right, near chance ({:.1}% for {} classes): the fd_/is_/precision_/recall_ metrics from its features will say little. Check the labels, or use more data",
                self.name,
                self.test_accuracy * 100.0,
                chance * 100.0,
                self.num_classes
            )
        })
    }
}

/// How to train an evaluator.
#[derive(Debug, Clone, Copy)]
pub struct TrainOptions {
    pub epochs: usize,
    /// At least this many optimizer steps: small datasets get more epochs.
    pub min_steps: usize,
    pub batch_size: i64,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 20,
            min_steps: 400,
            batch_size: 128,
            seed: 0,
        }
    }
}

/// The dataset key of a run's data ([`crate::run::layout::evaluator_key`]).
pub fn dataset_key(cfg: &RunConfig) -> Result<String, EvaluatorError> {
    crate::run::layout::evaluator_key(cfg).ok_or_else(|| EvaluatorError::NotImages {
        data: cfg.data.source,
        shape: crate::config::data_shape(cfg).sample,
    })
}

/// The metric suffix of a run's evaluator: `<source>-cnn`.
fn evaluator_name(key: &str) -> String {
    format!("{}-cnn", key.split('-').next().unwrap_or("data"))
}

fn labelled(ds: &Dataset, split: &'static str) -> Result<(Tensor, i64), EvaluatorError> {
    match (&ds.labels, ds.num_classes) {
        (Some(l), Some(c)) if c >= 2 => Ok((l.shallow_clone(), c)),
        _ => Err(EvaluatorError::Unlabelled { split }),
    }
}

/// Shift each image by up to `max` pixels (the border filled with the
/// background, −1).
fn random_shift(x: &Tensor, max: i64, rng: &mut impl rand::Rng) -> Tensor {
    let size = x.size();
    let (h, w) = (size[2], size[3]);
    let padded = (x + 1.0).constant_pad_nd([max, max, max, max]) - 1.0;
    let crops: Vec<Tensor> = (0..size[0])
        .map(|i| {
            let dy = rng.random_range(0..=2 * max);
            let dx = rng.random_range(0..=2 * max);
            padded.get(i).narrow(1, dy, h).narrow(2, dx, w)
        })
        .collect();
    Tensor::stack(&crops, 0)
}

const EVAL_BATCH: i64 = 500;

/// (features, logits) of images [N, C, H, W] in [−1, 1], in batches, no grad.
fn embed(net: &Net, x: &Tensor, device: Device) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let mut feats = vec![];
        let mut logits = vec![];
        let n = x.size()[0];
        let mut start = 0;
        while start < n {
            let len = EVAL_BATCH.min(n - start);
            let (f, l) = net.forward(
                &x.narrow(0, start, len)
                    .to_device(device)
                    .to_kind(Kind::Float),
                false,
            );
            feats.push(f.to_device(Device::Cpu));
            logits.push(l.to_device(Device::Cpu));
            start += len;
        }
        (Tensor::cat(&feats, 0), Tensor::cat(&logits, 0))
    })
}

/// Share of argmax(logits) equal to `labels`.
pub fn accuracy_of(logits: &Tensor, labels: &Tensor) -> f64 {
    logits
        .argmax(1, false)
        .eq_tensor(&labels.to_device(logits.device()))
        .to_kind(Kind::Double)
        .mean(Kind::Double)
        .double_value(&[])
}

impl Evaluator {
    /// Train on `train`, measure on `test`; `progress(epoch, test accuracy)`.
    pub fn train(
        key: &str,
        train: &Dataset,
        test: &Dataset,
        opts: TrainOptions,
        device: Device,
        mut progress: impl FnMut(usize, f64),
    ) -> Result<Evaluator, EvaluatorError> {
        use rand::SeedableRng;
        if opts.epochs == 0 {
            return Err(EvaluatorError::NoEpochs);
        }
        let started = std::time::Instant::now();
        let (labels, classes) = labelled(train, "training")?;
        let (test_labels, _) = labelled(test, "test")?;
        let size = train.x.size();
        tch::manual_seed(opts.seed as i64);
        let vs = nn::VarStore::new(device);
        let net = Net::new(vs.root(), size[1], classes);
        let mut opt = nn::Adam::default()
            .build(&vs, 1e-3)
            .map_err(|error| EvaluatorError::Optimizer { error })?;
        let mut rng = rand_pcg::Pcg64::seed_from_u64(opts.seed);
        let n = train.len();
        let (x_all, y_all) = (train.x.to_device(device), labels.to_device(device));
        let per_epoch = (n as usize)
            .div_ceil(opts.batch_size.max(1) as usize)
            .max(1);
        let epochs = opts.epochs.max(opts.min_steps.div_ceil(per_epoch));
        let mut acc = 0.0;
        for epoch in 0..epochs {
            // A lower learning rate for the last third.
            if epoch == epochs * 2 / 3 {
                opt.set_lr(3e-4);
            }
            let mut p: Vec<i64> = (0..n).collect();
            rand::seq::SliceRandom::shuffle(p.as_mut_slice(), &mut rng);
            let perm = Tensor::from_slice(&p).to_device(device);
            let mut start = 0;
            while start < n {
                let len = opts.batch_size.min(n - start);
                let idx = perm.narrow(0, start, len);
                let x = random_shift(&x_all.index_select(0, &idx), 2, &mut rng);
                let y = y_all.index_select(0, &idx);
                let (_, logits) = net.forward(&x, true);
                let loss = logits.cross_entropy_for_logits(&y);
                opt.backward_step(&loss);
                start += len;
            }
            // Measured after each of the last epochs only (the rest is cost).
            if epoch + 3 >= epochs {
                acc = accuracy_of(&embed(&net, &test.x, device).1, &test_labels);
                progress(epoch + 1, acc);
            }
        }
        Ok(Evaluator {
            net,
            _vs: vs,
            info: EvaluatorInfo {
                name: evaluator_name(key),
                key: key.to_string(),
                architecture: "cnn".into(),
                channels: size[1],
                resolution: size[2],
                num_classes: classes,
                train_images: n,
                test_images: test.len(),
                test_accuracy: acc,
                epochs,
                seconds: started.elapsed().as_secs_f64(),
            },
            device,
        })
    }

    /// (features [N, 128], class probabilities [N, C]) on the CPU.
    pub fn embed(&self, x: &Tensor) -> (Tensor, Tensor) {
        let (f, l) = embed(&self.net, x, self.device);
        (f, l.softmax(1, Kind::Float))
    }

    /// Write to `dir` (atomically: a temporary folder renamed into place).
    pub fn save(&self, dir: &Path) -> Result<(), EvaluatorError> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            dir.file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("evaluator"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let weights = tmp.join(WEIGHTS_FILE);
        self._vs
            .save(&weights)
            .map_err(|error| EvaluatorError::SaveWeights {
                path: weights.clone(),
                error,
            })?;
        let info = tmp.join(INFO_FILE);
        crate::run::atomic::write_json(&info, &self.info).map_err(io_err(&info))?;
        if dir.join(INFO_FILE).exists() {
            // Someone else finished first: theirs stands.
            let _ = std::fs::remove_dir_all(&tmp);
            return Ok(());
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&tmp, dir).map_err(io_err(dir))
    }

    /// Read the evaluator in `dir` (None if there is none).
    pub fn load(dir: &Path, device: Device) -> Result<Option<Evaluator>, EvaluatorError> {
        let info_path = dir.join(INFO_FILE);
        if !info_path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&info_path).map_err(io_err(&info_path))?;
        let info: EvaluatorInfo = match serde_json::from_str(&text) {
            Ok(info) => info,
            Err(error) => {
                return Err(EvaluatorError::BadInfo {
                    path: info_path,
                    dir: dir.to_path_buf(),
                    error,
                })
            }
        };
        let mut vs = nn::VarStore::new(device);
        let net = Net::new(vs.root(), info.channels, info.num_classes);
        let weights = dir.join(WEIGHTS_FILE);
        if let Err(error) = vs.load(&weights) {
            return Err(EvaluatorError::BadWeights {
                path: weights,
                dir: dir.to_path_buf(),
                error,
            });
        }
        vs.freeze();
        Ok(Some(Evaluator {
            net,
            _vs: vs,
            info,
            device,
        }))
    }
}

/// The evaluator of a run's data: loaded from `<root>/<key>/`, or trained on
/// the run's training split (and saved) when there is none.
pub fn load_or_train(
    cfg: &RunConfig,
    root: &Path,
    opts: TrainOptions,
    device: Device,
    mut progress: impl FnMut(&str),
) -> Result<Evaluator, EvaluatorError> {
    let key = dataset_key(cfg)?;
    let dir = root.join(&key);
    if let Some(ev) = Evaluator::load(&dir, device)? {
        return Ok(ev);
    }
    let data_err = |error| EvaluatorError::Data { error };
    let train = data::load(&cfg.data, Split::Train).map_err(data_err)?;
    let test = data::load(&cfg.data, Split::Test).map_err(data_err)?;
    progress(&format!(
        "training the evaluator network for {key} ({} images, at least {} epochs)",
        train.len(),
        opts.epochs
    ));
    let ev = Evaluator::train(&key, &train, &test, opts, device, |e, acc| {
        progress(&format!(
            "evaluator epoch {e}: held-out accuracy {:.2}%",
            acc * 100.0
        ))
    })?;
    ev.save(&dir)?;
    Ok(ev)
}

/// Where a key's evaluator lives.
pub fn dir_of(root: &Path, cfg: &RunConfig) -> Result<PathBuf, EvaluatorError> {
    Ok(root.join(dataset_key(cfg)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::run::DataSource;

    fn synthetic_cfg() -> RunConfig {
        let mut c = RunConfig::default();
        c.data.source = DataSource::Synthetic;
        c.data.n_samples = 400;
        c.data.shape = vec![1, 16, 16];
        c
    }

    #[test]
    fn an_evaluator_near_chance_is_flagged() {
        let info = |classes: i64, accuracy: f64| EvaluatorInfo {
            name: "cnn".into(),
            key: "k".into(),
            architecture: "a".into(),
            channels: 1,
            resolution: 8,
            num_classes: classes,
            train_images: 10,
            test_images: 10,
            test_accuracy: accuracy,
            epochs: 1,
            seconds: 0.0,
        };
        let w = info(2, 0.5).near_chance().unwrap();
        assert!(
            w.contains("50.0% of the held-out images right, near chance (50.0% for 2 classes)"),
            "{w}"
        );
        assert!(info(2, 0.74).near_chance().is_some());
        assert!(info(2, 0.76).near_chance().is_none());
        assert!(info(10, 0.14).near_chance().is_some());
        assert!(info(10, 0.98).near_chance().is_none());
        assert!(info(1, 0.0).near_chance().is_none());
    }

    #[test]
    fn it_learns_synthetic_quadrants_saves_and_loads_to_the_same_features() {
        let cfg = synthetic_cfg();
        let dir = tempfile::tempdir().unwrap();
        let opts = TrainOptions {
            epochs: 3,
            min_steps: 60,
            ..Default::default()
        };
        let ev = load_or_train(&cfg, dir.path(), opts, Device::Cpu, |_| {}).unwrap();
        assert!(ev.info.test_accuracy > 0.9, "{:?}", ev.info);
        assert_eq!(ev.info.name, "synthetic-cnn");
        let test = data::load(&cfg.data, Split::Test).unwrap();
        let (f, p) = ev.embed(&test.x);
        assert_eq!(f.size(), vec![400, FEATURES]);
        assert!(
            (accuracy_of(&p, test.labels.as_ref().unwrap()) - ev.info.test_accuracy).abs() < 1e-12
        );
        // Cached: the second call loads, and gives the same features.
        let mut trained_again = false;
        let again = load_or_train(&cfg, dir.path(), opts, Device::Cpu, |_| {
            trained_again = true
        })
        .unwrap();
        assert!(!trained_again);
        assert!(again.embed(&test.x).0.allclose(&f, 1e-5, 1e-5, false));
        assert_eq!(again.info, ev.info);
        // No temporary folders are left behind.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![dataset_key(&cfg).unwrap()]);
    }

    #[test]
    fn vector_data_and_unlabelled_data_are_refused_with_the_fix() {
        let mut c = RunConfig::default();
        c.data.source = DataSource::Toy;
        let e = dataset_key(&c).unwrap_err().to_string();
        assert!(e.contains("needs image data"), "{e}");
        let ds = Dataset {
            x: Tensor::zeros([4, 1, 8, 8], (Kind::Float, Device::Cpu)),
            labels: None,
            num_classes: None,
            class_names: None,
            condition: None,
            stats: None,
        };
        let e = Evaluator::train(
            "k",
            &ds,
            &ds,
            TrainOptions::default(),
            Device::Cpu,
            |_, _| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("needs class labels") && e.contains("data.labels = true"),
            "{e}"
        );
    }

    #[test]
    fn shifts_keep_the_shape_and_fill_with_background() {
        use rand::SeedableRng;
        let x = Tensor::ones([3, 1, 5, 5], (Kind::Float, Device::Cpu));
        let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
        let y = random_shift(&x, 2, &mut rng);
        assert_eq!(y.size(), vec![3, 1, 5, 5]);
        let vals: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        assert!(vals.iter().all(|&v| v == 1.0 || v == -1.0));
    }

    #[test]
    fn a_cache_that_cannot_be_read_or_written_is_a_failure_not_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        // A damaged description: a failure, with the fix.
        std::fs::write(dir.path().join(INFO_FILE), "{").unwrap();
        let e = Evaluator::load(dir.path(), Device::Cpu).err().unwrap();
        assert!(matches!(e, EvaluatorError::BadInfo { .. }), "{e:?}");
        assert!(!e.is_bad_input(), "{e}");
        assert!(
            e.to_string().contains("not an evaluator description (")
                && e.to_string()
                    .ends_with(&format!("; delete {} to retrain it", dir.path().display())),
            "{e}"
        );
        let io = EvaluatorError::Io {
            path: "results/.evaluators/x".into(),
            error: std::io::Error::from(std::io::ErrorKind::StorageFull),
        };
        assert!(!io.is_bad_input(), "{io}");
        let optimizer = EvaluatorError::Optimizer {
            error: tch::TchError::Torch("out of memory".into()),
        };
        assert!(!optimizer.is_bad_input(), "{optimizer}");
        // What the user gave is bad input.
        let mut c = RunConfig::default();
        c.data.source = DataSource::Toy;
        let e = dataset_key(&c).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(
            e.to_string()
                .starts_with("the evaluator network needs image data; data.source = \"toy\" has samples of shape ["),
            "{e}"
        );
        assert!(EvaluatorError::NoEpochs.is_bad_input());
        let data = EvaluatorError::Data {
            error: crate::data::DataError::format("d", "empty"),
        };
        assert!(data.is_bad_input(), "{data}");
        assert_eq!(data.to_string(), "the evaluator's data: d: empty");
    }
}
