//! True FID: the standard Inception-v3 feature network as TorchScript
//! (`inception-2015-12-05.pt`, the file StyleGAN2-ADA and clean-fid use),
//! named by `eval.inception`. It cannot be downloaded here; the user points
//! at their copy.
//!
//! Calling convention of that file: `forward(img, return_features: bool)`
//! with img [N, 3, H, W] float in [0, 255]; it resizes to 299×299 itself and
//! returns the 2048-d pool features when `return_features` is true. Grayscale
//! samples are repeated to three channels.
//!
//! Reference statistics are cached per dataset and per network file (its
//! SHA-256), so replacing the file never mixes statistics.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{CModule, Device, IValue, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum InceptionError {
    /// The file `eval.inception` names cannot be read.
    #[error("eval.inception = {:?}: cannot read it ({error}); point it at the TorchScript inception-2015-12-05.pt", .path.display().to_string())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not a TorchScript module.
    #[error("eval.inception = {:?}: not a TorchScript module ({}); it must be the TorchScript inception-2015-12-05.pt", .path.display().to_string(), first_line(.error))]
    NotTorchScript { path: PathBuf, error: tch::TchError },
    /// The network failed on a batch of images.
    #[error("eval.inception: the network failed on a batch ({}); it must take (img, return_features: bool)", first_line(.error))]
    Forward { error: tch::TchError },
    #[error("eval.inception: the network returned something other than a tensor")]
    NotATensor,
    #[error("eval.inception: the network returned {size:?} for a batch of {batch}; it must return one feature row per image")]
    FeatureShape { size: Vec<i64>, batch: i64 },
}

/// The first line of libtorch's message (the rest is its C++ backtrace).
fn first_line(e: &tch::TchError) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

pub struct Inception {
    module: CModule,
    device: Device,
    /// First 16 hex digits of the file's SHA-256.
    pub digest: String,
}

const BATCH: i64 = 100;

impl Inception {
    pub fn load(path: &Path, device: Device) -> Result<Inception, InceptionError> {
        let bytes = std::fs::read(path).map_err(|error| InceptionError::Unreadable {
            path: path.to_path_buf(),
            error,
        })?;
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut module = CModule::load_on_device(path, device).map_err(|error| {
            InceptionError::NotTorchScript {
                path: path.to_path_buf(),
                error,
            }
        })?;
        module.set_eval();
        Ok(Inception {
            module,
            device,
            digest,
        })
    }

    /// Pool features [N, F] (F = 2048 for the real network) of images
    /// [N, C, H, W] in [−1, 1], on the CPU.
    pub fn features(&self, x: &Tensor) -> Result<Tensor, InceptionError> {
        let n = x.size()[0];
        let mut out = vec![];
        let mut start = 0;
        while start < n {
            let len = BATCH.min(n - start);
            let mut b = x
                .narrow(0, start, len)
                .to_device(self.device)
                .to_kind(Kind::Float);
            if b.size()[1] == 1 {
                b = b.repeat([1, 3, 1, 1]);
            }
            let img = ((b + 1.0) * 127.5).clamp(0.0, 255.0);
            let f = tch::no_grad(|| {
                self.module
                    .forward_is(&[IValue::Tensor(img), IValue::Bool(true)])
            })
            .map_err(|error| InceptionError::Forward { error })?;
            let IValue::Tensor(f) = f else {
                return Err(InceptionError::NotATensor);
            };
            let f = f
                .f_reshape([len, -1])
                .map_err(|_| InceptionError::FeatureShape {
                    size: f.size(),
                    batch: len,
                })?;
            out.push(f.to_device(Device::Cpu));
            start += len;
        }
        Ok(Tensor::cat(&out, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_missing_or_not_torchscript_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pt");
        let e = Inception::load(&missing, Device::Cpu).err().unwrap();
        assert!(
            matches!(&e, InceptionError::Unreadable { error, .. } if error.kind() == std::io::ErrorKind::NotFound),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with(&format!(
                "eval.inception = {:?}: cannot read it (",
                missing.display().to_string()
            )) && e
                .to_string()
                .ends_with("); point it at the TorchScript inception-2015-12-05.pt"),
            "{e}"
        );
        let junk = dir.path().join("junk.pt");
        std::fs::write(&junk, "not a module").unwrap();
        let e = Inception::load(&junk, Device::Cpu).err().unwrap();
        assert!(matches!(e, InceptionError::NotTorchScript { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains(": not a TorchScript module ("), "{text}");
        assert!(
            !text.contains('\n'),
            "one line of libtorch's message: {text}"
        );
        assert_eq!(
            InceptionError::FeatureShape {
                size: vec![7],
                batch: 2
            }
            .to_string(),
            "eval.inception: the network returned [7] for a batch of 2; it must return one feature row per image"
        );
    }
}
