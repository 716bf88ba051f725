//! Reading a diffusers `UNet2DModel` folder (`config.json` +
//! `diffusion_pytorch_model.safetensors`) into our UNet's parameters: how a
//! run starts from a model trained elsewhere (`model.init_from`).
//!
//! Nothing is copied until everything is checked, in this order: every
//! parameter's name and shape, in the order data flows through the network
//! (a difference there comes with the config key behind it, when one
//! differs); then the config's keys that change what the network computes
//! without changing a shape (GroupNorm's groups and ε, the embedding's
//! sinusoids, …); then those the shapes cannot show (where attention sits).
//! The first difference is named, with the run-config key that sets it.

use super::diffusers_config::{UNet2DModelConfig, Unexpressible, UNET_CLASS};
use super::diffusers_names::{network_order, to_diffusers};
use super::UNetConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

/// The weights file of a diffusers model folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// Why a folder cannot start this run. Every message begins with the key
/// that names the folder.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("model.init_from = {}: no such folder; give a folder written by `ddpm-lab export --format diffusers`, or a diffusers UNet2DModel folder (config.json and {WEIGHTS_FILE})", .0.display())]
    NoFolder(PathBuf),
    #[error("model.init_from = {}: has neither unet/config.json nor config.json; give a diffusers pipeline folder or its unet/ folder", .0.display())]
    NoConfig(PathBuf),
    #[error("model.init_from: cannot read {} ({error})", .path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("model.init_from: {} is not a diffusers model config ({error})", .path.display())]
    BadConfig {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("model.init_from: {} is a {class} config; ddpm-lab starts from a {UNET_CLASS} only", .path.display())]
    NotUNet2D { path: PathBuf, class: String },
    #[error("model.init_from: {} has the key {key}, which ddpm-lab does not know, so it cannot tell what the network computes; remove it if it holds diffusers' default", .path.display())]
    UnknownKey { path: PathBuf, key: String },
    #[error("model.init_from: {} is not there (a .bin file is not read: save the model with safetensors, e.g. `save_pretrained(DIR, safe_serialization=True)`)", .0.display())]
    NoWeights(PathBuf),
    #[error("model.init_from: cannot read {} ({error})", .path.display())]
    Weights { path: PathBuf, error: tch::TchError },
    #[error("model.init_from: {}: {mismatch}; the folder's model is not the run's", .path.display())]
    Config {
        path: PathBuf,
        mismatch: super::diffusers_config::KeyMismatch,
    },
    #[error("model.init_from: the run's own model cannot be a UNet2DModel: {0}")]
    Unexpressible(#[from] Unexpressible),
    #[error("model.init_from: {} has no {name}, which the run's model has (shape {shape:?}){hint}", .path.display())]
    Missing {
        path: PathBuf,
        name: String,
        shape: Vec<i64>,
        hint: String,
    },
    #[error("model.init_from: {}: {name} has shape {found:?}, the run's model needs {want:?}{hint}", .path.display())]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<i64>,
        want: Vec<i64>,
        hint: String,
    },
    #[error("model.init_from: {} has {name}, which the run's model does not{hint}", .path.display())]
    Extra {
        path: PathBuf,
        name: String,
        hint: String,
    },
}

/// A diffusers model folder, located and its config read.
#[derive(Debug)]
pub struct UNetFolder {
    pub config_path: PathBuf,
    pub weights_path: PathBuf,
    pub config: UNet2DModelConfig,
}

/// Find and read the `UNet2DModel` of `dir`: a pipeline folder
/// (`dir/unet/config.json`) or the model's own folder (`dir/config.json`).
pub fn locate(dir: &Path) -> Result<UNetFolder, ImportError> {
    if !dir.is_dir() {
        return Err(ImportError::NoFolder(dir.to_path_buf()));
    }
    let model_dir = [dir.join("unet"), dir.to_path_buf()]
        .into_iter()
        .find(|d| d.join("config.json").is_file())
        .ok_or_else(|| ImportError::NoConfig(dir.to_path_buf()))?;
    let config_path = model_dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|error| ImportError::Unreadable {
        path: config_path.clone(),
        error,
    })?;
    let config: UNet2DModelConfig =
        serde_json::from_str(&text).map_err(|error| ImportError::BadConfig {
            path: config_path.clone(),
            error,
        })?;
    if config.class_name != UNET_CLASS {
        return Err(ImportError::NotUNet2D {
            path: config_path,
            class: config.class_name,
        });
    }
    if let Some(key) = config.unknown_keys().first() {
        return Err(ImportError::UnknownKey {
            path: config_path.clone(),
            key: key.to_string(),
        });
    }
    Ok(UNetFolder {
        weights_path: model_dir.join(WEIGHTS_FILE),
        config_path,
        config,
    })
}

/// Copy the weights of the diffusers folder `dir` into `vs`, which holds our
/// UNet of `unet`, after checking that the folder's network is that one.
pub fn load_into(vs: &nn::VarStore, unet: &UNetConfig, dir: &Path) -> Result<(), ImportError> {
    let folder = locate(dir)?;
    let want = UNet2DModelConfig::from_unet(unet)?;
    if !folder.weights_path.is_file() {
        return Err(ImportError::NoWeights(folder.weights_path));
    }
    let read =
        Tensor::read_safetensors(&folder.weights_path).map_err(|error| ImportError::Weights {
            path: folder.weights_path.clone(),
            error,
        })?;
    let theirs: HashMap<String, Tensor> = read.into_iter().collect();
    // A shape difference usually comes from a config key: name it too.
    let hint = folder
        .config
        .shape_mismatch(&want)
        .map_or_else(String::new, |m| format!(" (config.json: {m})"));
    let pairs = match_parameters(vs, unet, &theirs, &folder.weights_path, &hint)?;
    let mismatch = folder
        .config
        .compute_mismatch(&want)
        .or_else(|| folder.config.shape_mismatch(&want));
    if let Some(mismatch) = mismatch {
        return Err(ImportError::Config {
            path: folder.config_path,
            mismatch,
        });
    }
    tch::no_grad(|| {
        for (mut ours, theirs) in pairs {
            ours.copy_(theirs);
        }
    });
    Ok(())
}

/// Each of our parameters with the folder's tensor of its diffusers name,
/// checked in network order: the first missing, misshapen or extra one is
/// the error.
fn match_parameters<'a>(
    vs: &nn::VarStore,
    unet: &UNetConfig,
    theirs: &'a HashMap<String, Tensor>,
    path: &Path,
    hint: &str,
) -> Result<Vec<(Tensor, &'a Tensor)>, ImportError> {
    let levels = unet.ch_mult.len();
    let mut ours: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| {
            // from_unet refused the only parameters without a diffusers name.
            let d = to_diffusers(&name, levels).unwrap_or(name);
            (d, t)
        })
        .collect();
    ours.sort_by(|a, b| network_order(&a.0, &b.0));
    let mut pairs = vec![];
    for (name, t) in ours {
        let Some(src) = theirs.get(&name) else {
            return Err(ImportError::Missing {
                path: path.to_path_buf(),
                shape: t.size(),
                name,
                hint: hint.to_string(),
            });
        };
        if src.size() != t.size() {
            return Err(ImportError::Shape {
                path: path.to_path_buf(),
                name,
                found: src.size(),
                want: t.size(),
                hint: hint.to_string(),
            });
        }
        pairs.push((t, src));
    }
    if pairs.len() < theirs.len() {
        let known: std::collections::HashSet<String> = vs
            .variables()
            .keys()
            .filter_map(|n| to_diffusers(n, levels))
            .collect();
        let mut extra: Vec<&String> = theirs.keys().filter(|n| !known.contains(*n)).collect();
        extra.sort_by(|a, b| network_order(a, b));
        if let Some(name) = extra.first() {
            return Err(ImportError::Extra {
                path: path.to_path_buf(),
                name: name.to_string(),
                hint: hint.to_string(),
            });
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelPreset, UNet};
    use tch::{Device, Kind};

    /// A UNet's weights written as a diffusers folder, by name map alone.
    fn write_folder(dir: &Path, cfg: &UNetConfig, vs: &nn::VarStore) {
        let unet = dir.join("unet");
        std::fs::create_dir_all(&unet).unwrap();
        let c = UNet2DModelConfig::from_unet(cfg).unwrap();
        std::fs::write(unet.join("config.json"), serde_json::to_string(&c).unwrap()).unwrap();
        let named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (to_diffusers(&n, cfg.ch_mult.len()).unwrap(), t))
            .collect();
        Tensor::write_safetensors(&named, unet.join(WEIGHTS_FILE)).unwrap();
    }

    fn random_unet(cfg: &UNetConfig) -> nn::VarStore {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(vs.root(), cfg);
        tch::no_grad(|| {
            for mut v in vs.trainable_variables() {
                let r = v.randn_like();
                v.copy_(&r);
            }
        });
        vs
    }

    #[test]
    fn a_folder_of_the_same_unet_loads_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = UNetConfig::from_preset(ModelPreset::UnetTiny, 1, 8, 4);
        let src = random_unet(&cfg);
        write_folder(dir.path(), &cfg, &src);
        let dst = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(dst.root(), &cfg);
        load_into(&dst, &cfg, dir.path()).unwrap();
        // The unet/ folder itself is accepted too.
        load_into(&dst, &cfg, &dir.path().join("unet")).unwrap();
        let (a, b) = (src.variables(), dst.variables());
        for (name, t) in &a {
            assert!(t.equal(&b[name]), "{name}");
            assert_eq!(b[name].kind(), Kind::Float);
        }
    }

    #[test]
    fn the_first_difference_is_named_with_its_shapes_or_key() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = UNetConfig::from_preset(ModelPreset::UnetTiny, 1, 8, 0);
        write_folder(dir.path(), &tiny, &random_unet(&tiny));
        let small = UNetConfig::from_preset(ModelPreset::UnetMnistSmall, 1, 8, 0);
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(vs.root(), &small);
        let e = load_into(&vs, &small, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(
                "conv_in.weight has shape [16, 1, 3, 3], the run's model needs [32, 1, 3, 3]"
            ),
            "{e}"
        );
        assert!(
            e.contains(
                "config.json: block_out_channels is [16,32], the run's model needs [32,64,64]"
            ),
            "{e}"
        );
        // Group norm's groups do not show in any shape: the config names them.
        let mut groups = tiny.clone();
        groups.norm_groups = 8;
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(vs.root(), &groups);
        let e = load_into(&vs, &groups, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("norm_num_groups is 4, the run's model needs 8 (model.norm_groups)"),
            "{e}"
        );
        // Labels: the folder has no class embedding.
        let labelled = UNetConfig::from_preset(ModelPreset::UnetTiny, 1, 8, 3);
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(vs.root(), &labelled);
        let e = load_into(&vs, &labelled, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("has no class_embedding.weight, which the run's model has (shape [4, 64])"),
            "{e}"
        );
        let e = load_into(&vs, &labelled, &dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("model.init_from = ") && e.contains("no such folder"),
            "{e}"
        );
    }
}
