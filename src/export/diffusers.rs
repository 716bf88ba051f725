//! A diffusers pipeline folder, which `DDPMPipeline.from_pretrained(DIR)`
//! loads:
//!
//! ```text
//! DIR/model_index.json                           DDPMPipeline: a unet and a scheduler
//! DIR/unet/config.json                           UNet2DModel's kwargs for our UNet
//! DIR/unet/diffusion_pytorch_model.safetensors   the weights, under diffusers' names
//! DIR/scheduler/scheduler_config.json            DDPMScheduler: schedule, T, target, variance, clipping
//! ```
//!
//! The folder is built under a temporary name beside `DIR` and renamed into
//! place at the end, so `DIR` is either complete or absent; an existing
//! non-empty `DIR` is never touched.

use crate::diffusion::diffusers_scheduler::DdpmSchedulerConfig;
use crate::model::diffusers_config::{UNet2DModelConfig, Unexpressible};
use crate::model::diffusers_import::WEIGHTS_FILE;
use crate::model::diffusers_names::to_diffusers;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Why a folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("--out {}: exists and is not empty; ddpm-lab never overwrites results: choose another folder", .0.display())]
    OutExists(PathBuf),
    #[error("{0}")]
    Unexpressible(#[from] Unexpressible),
    #[error("{0}: a parameter UNet2DModel has no counterpart for")]
    Unnamed(String),
    #[error("{context}: {error}")]
    Io {
        context: String,
        error: std::io::Error,
    },
    #[error("writing {}: {error}", .path.display())]
    Tensor { path: PathBuf, error: tch::TchError },
}

impl ExportError {
    /// Whether the user's input (the run's model, `--out`) is what is wrong.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ExportError::OutExists(_) | ExportError::Unexpressible(_)
        )
    }
}

/// What goes into the folder.
pub struct DiffusersExport {
    pub unet: UNet2DModelConfig,
    pub scheduler: DdpmSchedulerConfig,
    /// The UNet's parameters under our names.
    pub weights: Vec<(String, Tensor)>,
}

/// `model_index.json`: which diffusers classes the pipeline's parts are.
#[derive(Debug, Serialize)]
struct ModelIndex {
    #[serde(rename = "_class_name")]
    class_name: &'static str,
    scheduler: [&'static str; 2],
    unet: [&'static str; 2],
}

const MODEL_INDEX: ModelIndex = ModelIndex {
    class_name: "DDPMPipeline",
    scheduler: ["diffusers", "DDPMScheduler"],
    unet: ["diffusers", "UNet2DModel"],
};

/// Whether `out` can be written: absent, or an empty folder.
pub fn check_out(out: &Path) -> Result<(), ExportError> {
    let empty_dir =
        out.is_dir() && std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_none());
    if out.exists() && !empty_dir {
        return Err(ExportError::OutExists(out.to_path_buf()));
    }
    Ok(())
}

/// Write `export` as the pipeline folder `out`.
pub fn write(out: &Path, export: &DiffusersExport) -> Result<(), ExportError> {
    check_out(out)?;
    let levels = export.unet.block_out_channels.len();
    let mut named = vec![];
    for (name, t) in &export.weights {
        // The name map covers every parameter of a model from_unet accepts.
        let d = to_diffusers(name, levels).ok_or_else(|| ExportError::Unnamed(name.clone()))?;
        named.push((d, t.to_device(tch::Device::Cpu).contiguous()));
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
    }
    let tmp = crate::run::atomic::temp_path(out);
    let result = fill(&tmp, export, &named).and_then(|()| {
        std::fs::rename(&tmp, out).map_err(|error| match error.kind() {
            // Someone filled `out` meanwhile.
            std::io::ErrorKind::DirectoryNotEmpty => ExportError::OutExists(out.to_path_buf()),
            _ => io("moving the export into", out)(error),
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Every file of the folder, into `dir`.
fn fill(
    dir: &Path,
    export: &DiffusersExport,
    named: &[(String, Tensor)],
) -> Result<(), ExportError> {
    let unet = dir.join("unet");
    let scheduler = dir.join("scheduler");
    for d in [&unet, &scheduler] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    json(&dir.join("model_index.json"), &MODEL_INDEX)?;
    json(&unet.join("config.json"), &export.unet)?;
    json(&scheduler.join("scheduler_config.json"), &export.scheduler)?;
    let path = unet.join(WEIGHTS_FILE);
    Tensor::write_safetensors(named, &path).map_err(|error| ExportError::Tensor { path, error })
}

fn json<T: Serialize>(path: &Path, value: &T) -> Result<(), ExportError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(std::io::Error::other)
        .map_err(io("writing", path))?;
    text.push('\n');
    std::fs::write(path, text).map_err(io("writing", path))
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ExportError {
    let context = format!("{what} {}", path.display());
    move |error| ExportError::Io { context, error }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::sampling::Variance;
    use crate::diffusion::{Prediction, ScheduleConfig};
    use crate::model::{ModelPreset, UNet, UNetConfig};
    use tch::{nn, Device};

    fn export_of(cfg: &UNetConfig) -> (DiffusersExport, nn::VarStore) {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(vs.root(), cfg);
        let weights = vs.variables().into_iter().collect();
        let e = DiffusersExport {
            unet: UNet2DModelConfig::from_unet(cfg).unwrap(),
            scheduler: DdpmSchedulerConfig::new(
                &ScheduleConfig::default(),
                Prediction::Epsilon,
                Variance::FixedLarge,
                true,
            ),
            weights,
        };
        (e, vs)
    }

    #[test]
    fn the_folder_has_the_pipelines_files_and_never_replaces_a_full_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = UNetConfig::from_preset(ModelPreset::UnetTiny, 1, 8, 2);
        let (e, _vs) = export_of(&cfg);
        let out = dir.path().join("a/export");
        write(&out, &e).unwrap();
        for f in [
            "model_index.json",
            "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json",
        ] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let index = std::fs::read_to_string(out.join("model_index.json")).unwrap();
        assert!(index.contains("\"DDPMPipeline\""), "{index}");
        let w = Tensor::read_safetensors(out.join("unet").join(WEIGHTS_FILE)).unwrap();
        assert!(w
            .iter()
            .any(|(n, t)| n == "class_embedding.weight" && t.size() == [3, 64]));
        // A second export into it is refused, and leaves it as it was.
        let e2 = write(&out, &e).unwrap_err();
        assert!(
            matches!(e2, ExportError::OutExists(_)) && e2.is_bad_input(),
            "{e2}"
        );
        assert!(e2.to_string().contains("exists and is not empty"), "{e2}");
        // An empty folder is filled; no temporary folder is left beside it.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        write(&empty, &e).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
    }
}
