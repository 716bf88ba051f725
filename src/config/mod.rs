//! Run configuration: the serde tree ([`run`]), layered loading with figment
//! ([`load`]), which kind of file a path holds ([`kind`]), value checks ([`validate`]) against what the machine has
//! ([`hardware`]), warnings on valid but doubtful settings ([`advice`]) and
//! source locations for messages ([`locate`]). A validated [`run::RunConfig`]
//! is the only thing that builds devices, models and data.

pub mod advice;
pub mod device;
pub mod hardware;
pub mod kind;
pub mod load;
pub mod locate;
pub mod run;
pub mod validate;

pub use hardware::Hardware;
pub use load::{load, ConfigError, LoadError, SetArg, Sources};
pub use run::RunConfig;
pub use validate::{data_shape, DataShape, DeviceChoice, Problem};

use crate::model::{Family, MlpConfig, ModelSpec, UNetConfig};

/// The architecture a validated config builds: the preset, its overrides, and
/// the data's shape and conditioning.
///
/// `num_classes` is the data's class count when known from loading (an image
/// folder's subfolders); otherwise the source's static count is used.
pub fn model_spec(cfg: &RunConfig, num_classes: Option<i64>) -> ModelSpec {
    let m = &cfg.model;
    let v = m.preset.values();
    let shape = data_shape(cfg);
    let num_classes = if cfg.data.labels {
        num_classes.or(shape.num_classes).unwrap_or(0)
    } else {
        0
    };
    let cond_dim = if cfg.data.uses_vector_condition() {
        shape.cond_dim.unwrap_or(0)
    } else {
        0
    };
    match v.family {
        Family::UNet => ModelSpec::Unet(UNetConfig {
            in_channels: shape.sample[0],
            resolution: shape.sample[1],
            ch: m.ch.unwrap_or(v.ch),
            ch_mult: m.ch_mult.clone().unwrap_or(v.ch_mult),
            num_res_blocks: m.num_res_blocks.unwrap_or(v.num_res_blocks),
            attn_resolutions: m.attn_resolutions.clone().unwrap_or(v.attn_resolutions),
            dropout: m.dropout.unwrap_or(v.dropout),
            norm_groups: m.norm_groups.unwrap_or(v.norm_groups),
            attn_heads: m.attn_heads.unwrap_or(v.attn_heads),
            num_classes,
            cond_dim,
        }),
        Family::Mlp => ModelSpec::Mlp(MlpConfig {
            dim: shape.sample[0],
            hidden: m.hidden.unwrap_or(v.hidden),
            depth: m.depth.unwrap_or(v.depth),
            dropout: m.dropout.unwrap_or(v.dropout),
            num_classes,
            cond_dim,
        }),
    }
}
