//! Named model shapes. `model.preset` picks one; any field set beside it in
//! `[model]` overrides the preset's value.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelPreset {
    /// Ho et al.'s CIFAR-10 UNet: ch 128, ch_mult [1,2,2,2], 2 res blocks,
    /// attention at 16×16, dropout 0.1 (35,746,307 parameters on 32×32×3).
    DdpmCifar10,
    /// A small UNet for MNIST on a CPU: ch 32, ch_mult [1,2,2], 2 res blocks,
    /// attention at 7×7, dropout 0.1.
    UnetMnistSmall,
    /// A tiny UNet for smoke tests: ch 16, ch_mult [1,2], 1 res block, no attention.
    UnetTiny,
    /// A residual MLP for 2-D and tabular data: hidden 128, depth 3.
    MlpSmall,
    /// A wider residual MLP: hidden 256, depth 4.
    MlpMedium,
}

/// Which network family a preset builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    UNet,
    Mlp,
}

/// A preset's architecture values (before the data fills in channels, sizes, classes).
#[derive(Debug, Clone, PartialEq)]
pub struct PresetValues {
    pub family: Family,
    pub ch: i64,
    pub ch_mult: Vec<i64>,
    pub num_res_blocks: i64,
    pub attn_resolutions: Vec<i64>,
    pub dropout: f64,
    pub norm_groups: i64,
    pub attn_heads: i64,
    pub hidden: i64,
    pub depth: i64,
}

impl ModelPreset {
    pub fn values(self) -> PresetValues {
        let unet = |ch, ch_mult: &[i64], nrb, attn: &[i64], dropout, groups| PresetValues {
            family: Family::UNet,
            ch,
            ch_mult: ch_mult.to_vec(),
            num_res_blocks: nrb,
            attn_resolutions: attn.to_vec(),
            dropout,
            norm_groups: groups,
            attn_heads: 1,
            hidden: 0,
            depth: 0,
        };
        let mlp = |hidden, depth| PresetValues {
            family: Family::Mlp,
            ch: 0,
            ch_mult: vec![],
            num_res_blocks: 0,
            attn_resolutions: vec![],
            dropout: 0.0,
            norm_groups: 0,
            attn_heads: 0,
            hidden,
            depth,
        };
        match self {
            ModelPreset::DdpmCifar10 => unet(128, &[1, 2, 2, 2], 2, &[16], 0.1, 32),
            ModelPreset::UnetMnistSmall => unet(32, &[1, 2, 2], 2, &[7], 0.1, 8),
            ModelPreset::UnetTiny => unet(16, &[1, 2], 1, &[], 0.0, 4),
            ModelPreset::MlpSmall => mlp(128, 3),
            ModelPreset::MlpMedium => mlp(256, 4),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ModelPreset::DdpmCifar10 => "ddpm-cifar10",
            ModelPreset::UnetMnistSmall => "unet-mnist-small",
            ModelPreset::UnetTiny => "unet-tiny",
            ModelPreset::MlpSmall => "mlp-small",
            ModelPreset::MlpMedium => "mlp-medium",
        }
    }
}
