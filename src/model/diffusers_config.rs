//! diffusers' `UNet2DModel` config (`unet/config.json`): the kwargs that build
//! our UNet in diffusers, and the check that a config someone else wrote
//! builds the network a run's `[model]` describes.
//!
//! Our UNet is `UNet2DModel` with `DownBlock2D`/`AttnDownBlock2D` and
//! `UpBlock2D`/`AttnUpBlock2D` blocks, a `UNetMidBlock2D` with attention,
//! the sinusoidal embedding of Ho et al. (`flip_sin_to_cos = false`,
//! `freq_shift = 1`), SiLU, GroupNorm with ε = 1e-5, stride-2 conv
//! downsampling padded by 1, and nearest ×2 + conv upsampling. Class labels
//! are `num_class_embeds` = classes + 1 rows, the last (index = the number of
//! classes) being the null token of classifier-free guidance.
//!
//! What `UNet2DModel` cannot express is refused by [`Unexpressible`], naming
//! the run-config key: the MLP, a continuous condition vector, and several
//! attention heads whose width differs between levels (diffusers has one
//! `attention_head_dim` for every block).

use super::{ModelSpec, UNetConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `_class_name` of the config.
pub const UNET_CLASS: &str = "UNet2DModel";

/// `UNet2DModel`'s keyword arguments, as `config.json` holds them. Missing
/// keys take diffusers' own defaults (so a config written by diffusers
/// reads as diffusers reads it); [`UNet2DModelConfig::from_unet`] writes
/// every key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNet2DModelConfig {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    pub sample_size: Option<serde_json::Value>,
    pub in_channels: i64,
    pub out_channels: i64,
    pub center_input_sample: bool,
    pub time_embedding_type: String,
    pub time_embedding_dim: Option<i64>,
    pub freq_shift: i64,
    pub flip_sin_to_cos: bool,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: i64,
    pub mid_block_scale_factor: f64,
    pub downsample_padding: i64,
    pub downsample_type: String,
    pub upsample_type: String,
    pub dropout: f64,
    pub act_fn: String,
    pub attention_head_dim: Option<i64>,
    pub norm_num_groups: Option<i64>,
    pub attn_norm_num_groups: Option<i64>,
    pub norm_eps: f64,
    pub resnet_time_scale_shift: String,
    pub add_attention: bool,
    pub class_embed_type: Option<String>,
    pub num_class_embeds: Option<i64>,
    pub num_train_timesteps: Option<i64>,
    /// Keys this version does not know. Those starting with `_` are
    /// diffusers' bookkeeping (`_diffusers_version`, `_name_or_path`).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Default for UNet2DModelConfig {
    /// diffusers' defaults for `UNet2DModel` (0.42).
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        UNet2DModelConfig {
            class_name: UNET_CLASS.into(),
            sample_size: None,
            in_channels: 3,
            out_channels: 3,
            center_input_sample: false,
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            freq_shift: 0,
            flip_sin_to_cos: true,
            down_block_types: s(&[
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ]),
            mid_block_type: Some("UNetMidBlock2D".into()),
            up_block_types: s(&[
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ]),
            block_out_channels: vec![224, 448, 672, 896],
            layers_per_block: 2,
            mid_block_scale_factor: 1.0,
            downsample_padding: 1,
            downsample_type: "conv".into(),
            upsample_type: "conv".into(),
            dropout: 0.0,
            act_fn: "silu".into(),
            attention_head_dim: Some(8),
            norm_num_groups: Some(32),
            attn_norm_num_groups: None,
            norm_eps: 1e-5,
            resnet_time_scale_shift: "default".into(),
            add_attention: true,
            class_embed_type: None,
            num_class_embeds: None,
            num_train_timesteps: None,
            other: BTreeMap::new(),
        }
    }
}

/// A model `UNet2DModel` cannot build; each names the run-config key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unexpressible {
    #[error("model.preset: the model is a residual MLP, and diffusers has no counterpart for it (UNet2DModel is an image UNet); only UNet presets (unet-tiny, unet-mnist-small, ddpm-cifar10) are exported")]
    Mlp,
    #[error("data.vector_condition / data.condition_columns: the model is conditioned on a continuous vector of {0} values, which UNet2DModel has no input for (it takes class labels only)")]
    ConditionVector(i64),
    #[error(
        "model.ch = {0}: diffusers' sinusoidal embedding divides by ch/2 − 1, so it needs ch ≥ 4"
    )]
    TooFewChannels(i64),
    #[error("model.attn_heads = {heads}: UNet2DModel gives every attention block one head width (attention_head_dim), but this model's attention blocks have {channels:?} channels, so its heads differ in width; use model.attn_heads = 1, or attention only at levels of one width")]
    HeadWidths { heads: i64, channels: Vec<i64> },
}

impl UNet2DModelConfig {
    /// The config of the `UNet2DModel` that computes what `spec` computes.
    pub fn from_spec(spec: &ModelSpec) -> Result<Self, Unexpressible> {
        match spec {
            ModelSpec::Unet(cfg) => Self::from_unet(cfg),
            ModelSpec::Mlp(_) => Err(Unexpressible::Mlp),
        }
    }

    /// The config of the `UNet2DModel` that computes what our UNet of `cfg`
    /// computes, every key written.
    pub fn from_unet(cfg: &UNetConfig) -> Result<Self, Unexpressible> {
        if cfg.cond_dim > 0 {
            return Err(Unexpressible::ConditionVector(cfg.cond_dim));
        }
        if cfg.ch < 4 {
            return Err(Unexpressible::TooFewChannels(cfg.ch));
        }
        let channels: Vec<i64> = cfg.ch_mult.iter().map(|m| cfg.ch * m).collect();
        let attn: Vec<bool> = (0..channels.len())
            .map(|l| cfg.attn_resolutions.contains(&(cfg.resolution >> l)))
            .collect();
        let attention_head_dim = head_dim(cfg, &channels, &attn)?;
        let down = attn
            .iter()
            .map(|&a| if a { "AttnDownBlock2D" } else { "DownBlock2D" }.to_string())
            .collect();
        let up = attn
            .iter()
            .rev()
            .map(|&a| if a { "AttnUpBlock2D" } else { "UpBlock2D" }.to_string())
            .collect();
        Ok(UNet2DModelConfig {
            sample_size: Some(cfg.resolution.into()),
            in_channels: cfg.in_channels,
            out_channels: cfg.in_channels,
            freq_shift: 1,
            flip_sin_to_cos: false,
            down_block_types: down,
            up_block_types: up,
            block_out_channels: channels,
            layers_per_block: cfg.num_res_blocks,
            dropout: cfg.dropout,
            attention_head_dim,
            norm_num_groups: Some(cfg.norm_groups),
            num_class_embeds: (cfg.num_classes > 0).then_some(cfg.num_classes + 1),
            ..UNet2DModelConfig::default()
        })
    }

    /// The head count of each attention block, in the order they run (down
    /// levels with attention, the middle): diffusers gives a block of c
    /// channels c / attention_head_dim heads, or one head without it.
    pub fn attention_heads(&self) -> Vec<i64> {
        let heads = |c: i64| self.attention_head_dim.map_or(1, |d| c / d.max(1));
        let mut out: Vec<i64> = self
            .down_block_types
            .iter()
            .zip(&self.block_out_channels)
            .filter(|(t, _)| t.starts_with("Attn"))
            .map(|(_, &c)| heads(c))
            .collect();
        if self.add_attention && self.mid_block_type.is_some() {
            out.push(heads(self.block_out_channels.last().copied().unwrap_or(0)));
        }
        out
    }
}

/// `attention_head_dim` for `cfg`: none for one head (diffusers then gives
/// each block one head of its width); else the one width every attention
/// block (and the middle, at the last level) must share.
fn head_dim(
    cfg: &UNetConfig,
    channels: &[i64],
    attn: &[bool],
) -> Result<Option<i64>, Unexpressible> {
    if cfg.attn_heads == 1 {
        return Ok(None);
    }
    let mut widths: Vec<i64> = channels
        .iter()
        .zip(attn)
        .filter(|(_, a)| **a)
        .map(|(c, _)| *c)
        .chain(channels.last().copied())
        .collect();
    widths.sort_unstable();
    widths.dedup();
    match widths.as_slice() {
        [c] => Ok(Some(c / cfg.attn_heads)),
        _ => Err(Unexpressible::HeadWidths {
            heads: cfg.attn_heads,
            channels: widths,
        }),
    }
}

/// The first key in which a config read from a folder builds another
/// network than the run's.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMismatch {
    pub key: &'static str,
    /// The folder's value and the run's, as JSON.
    pub found: String,
    pub want: String,
    /// The run-config key that sets it, or what ddpm-lab always builds.
    pub set_by: &'static str,
}

impl std::fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {}, the run's model needs {} ({})",
            self.key, self.found, self.want, self.set_by
        )
    }
}

/// Keys that change what the network computes without changing any
/// parameter's shape: checked before the parameters.
const COMPUTE_KEYS: [(&str, &str); 17] = [
    ("center_input_sample", "ddpm-lab's UNet takes x_t as it is"),
    (
        "time_embedding_type",
        "ddpm-lab's UNet embeds t by sinusoids",
    ),
    (
        "time_embedding_dim",
        "ddpm-lab's UNet: 4 × the first level's channels",
    ),
    ("freq_shift", "ddpm-lab's UNet: Ho et al.'s sinusoids"),
    (
        "flip_sin_to_cos",
        "ddpm-lab's UNet: Ho et al.'s sinusoids, sin first",
    ),
    ("act_fn", "ddpm-lab's UNet uses SiLU"),
    ("norm_eps", "ddpm-lab's UNet: GroupNorm's ε"),
    ("norm_num_groups", "model.norm_groups"),
    (
        "attn_norm_num_groups",
        "ddpm-lab's UNet: model.norm_groups everywhere",
    ),
    ("attention_head_dim", "model.attn_heads"),
    (
        "resnet_time_scale_shift",
        "ddpm-lab's UNet adds t's embedding",
    ),
    (
        "mid_block_type",
        "ddpm-lab's UNet: res, attention, res in the middle",
    ),
    ("mid_block_scale_factor", "ddpm-lab's UNet does not rescale"),
    (
        "add_attention",
        "ddpm-lab's UNet has attention in the middle",
    ),
    ("downsample_type", "ddpm-lab's UNet: a stride-2 conv"),
    (
        "downsample_padding",
        "ddpm-lab's UNet pads its stride-2 conv by 1 on every side",
    ),
    ("upsample_type", "ddpm-lab's UNet: nearest ×2, then a conv"),
];

/// Keys the parameters' shapes show; checked after them, for what the
/// shapes cannot tell (an attention block's place, say).
const SHAPE_KEYS: [(&str, &str); 8] = [
    ("in_channels", "the data's channels"),
    ("out_channels", "the data's channels"),
    ("block_out_channels", "model.ch × model.ch_mult"),
    ("layers_per_block", "model.num_res_blocks"),
    ("down_block_types", "model.attn_resolutions"),
    ("up_block_types", "model.attn_resolutions"),
    (
        "class_embed_type",
        "ddpm-lab's UNet: a class embedding table",
    ),
    (
        "num_class_embeds",
        "data.labels: the data's classes + 1 (the null token)",
    ),
];

impl UNet2DModelConfig {
    fn value(&self, key: &str) -> serde_json::Value {
        if key == "attention_head_dim" {
            // Compared by what it builds: the heads of each attention block.
            return serde_json::json!(self.attention_heads());
        }
        let doc = serde_json::to_value(self).unwrap_or_default();
        doc.get(key).cloned().unwrap_or_default()
    }

    fn first_difference(
        &self,
        want: &UNet2DModelConfig,
        keys: &[(&'static str, &'static str)],
    ) -> Option<KeyMismatch> {
        keys.iter().find_map(|&(key, set_by)| {
            let (found, wanted) = (self.value(key), want.value(key));
            (found != wanted).then(|| KeyMismatch {
                key,
                found: shown(self, key, &found),
                want: shown(want, key, &wanted),
                set_by,
            })
        })
    }

    /// The first key, of those that change what the network computes but
    /// not its parameters' shapes, where this config differs from `want`.
    pub fn compute_mismatch(&self, want: &UNet2DModelConfig) -> Option<KeyMismatch> {
        self.first_difference(want, &COMPUTE_KEYS)
    }

    /// The first key that sets the parameters' shapes or places where this
    /// config differs from `want`.
    pub fn shape_mismatch(&self, want: &UNet2DModelConfig) -> Option<KeyMismatch> {
        self.first_difference(want, &SHAPE_KEYS)
    }

    /// Keys neither this version nor diffusers' bookkeeping know.
    pub fn unknown_keys(&self) -> Vec<&str> {
        self.other
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with('_'))
            .collect()
    }
}

/// A value as a message shows it; attention as its setting and the heads it gives.
fn shown(cfg: &UNet2DModelConfig, key: &str, v: &serde_json::Value) -> String {
    if key == "attention_head_dim" {
        let dim = cfg
            .attention_head_dim
            .map_or_else(|| "null".to_string(), |d| d.to_string());
        return format!("{dim} (heads per attention block {v})");
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MlpConfig, ModelPreset};

    #[test]
    fn presets_map_to_the_block_types_and_widths_diffusers_builds() {
        let c = UNet2DModelConfig::from_unet(&UNetConfig::from_preset(
            ModelPreset::DdpmCifar10,
            3,
            32,
            0,
        ))
        .unwrap();
        assert_eq!(c.block_out_channels, [128, 256, 256, 256]);
        assert_eq!(
            c.down_block_types,
            [
                "DownBlock2D",
                "AttnDownBlock2D",
                "DownBlock2D",
                "DownBlock2D"
            ]
        );
        assert_eq!(
            c.up_block_types,
            ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
        );
        assert_eq!((c.layers_per_block, c.norm_num_groups), (2, Some(32)));
        assert_eq!((c.freq_shift, c.flip_sin_to_cos), (1, false));
        assert_eq!(c.attention_head_dim, None);
        assert_eq!(c.num_class_embeds, None);
        // Ten classes and the null token.
        let tiny = UNetConfig::from_preset(ModelPreset::UnetTiny, 1, 8, 10);
        let c = UNet2DModelConfig::from_unet(&tiny).unwrap();
        assert_eq!(c.num_class_embeds, Some(11));
        assert_eq!(c.down_block_types, ["DownBlock2D", "DownBlock2D"]);
        // Written with every key, and read back the same.
        let text = serde_json::to_string(&c).unwrap();
        assert!(text.contains("\"attention_head_dim\":null"), "{text}");
        assert_eq!(serde_json::from_str::<UNet2DModelConfig>(&text).unwrap(), c);
    }

    #[test]
    fn what_unet2dmodel_cannot_build_is_refused_naming_the_key() {
        let mlp = ModelSpec::Mlp(MlpConfig {
            dim: 2,
            hidden: 8,
            depth: 1,
            dropout: 0.0,
            num_classes: 0,
            cond_dim: 0,
        });
        let e = UNet2DModelConfig::from_spec(&mlp).unwrap_err();
        assert!(e.to_string().starts_with("model.preset: "), "{e}");
        let mut c = UNetConfig::from_preset(ModelPreset::UnetTiny, 1, 8, 0);
        c.cond_dim = 3;
        let e = UNet2DModelConfig::from_unet(&c).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("data.vector_condition / data.condition_columns: "),
            "{e}"
        );
        // Two heads: attention at 14×14 (64 channels) and the middle (64): one width.
        let mut c = UNetConfig::from_preset(ModelPreset::UnetMnistSmall, 1, 28, 0);
        c.attn_heads = 2;
        c.attn_resolutions = vec![14];
        let ok = UNet2DModelConfig::from_unet(&c).unwrap();
        assert_eq!(ok.attention_head_dim, Some(32));
        assert_eq!(ok.attention_heads(), [2, 2]);
        // Attention at 28×28 (32 channels) too: two widths.
        c.attn_resolutions = vec![28, 14];
        let e = UNet2DModelConfig::from_unet(&c).unwrap_err();
        assert_eq!(
            e,
            Unexpressible::HeadWidths {
                heads: 2,
                channels: vec![32, 64]
            }
        );
        assert!(e.to_string().starts_with("model.attn_heads = 2: "), "{e}");
    }

    #[test]
    fn a_config_written_by_diffusers_reads_with_its_defaults_and_names_what_differs() {
        // google/ddpm-cifar10-32's config.json: the original TF model pads
        // its downsampling conv on one side and uses GroupNorm ε 1e-6.
        let text = r#"{"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4",
            "act_fn": "silu", "attention_head_dim": null, "block_out_channels": [128, 256, 256, 256],
            "center_input_sample": false,
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            "downsample_padding": 0, "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3,
            "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
            "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
            "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]}"#;
        let found: UNet2DModelConfig = serde_json::from_str(text).unwrap();
        assert!(found.unknown_keys().is_empty());
        let want = UNet2DModelConfig::from_unet(&UNetConfig::from_preset(
            ModelPreset::DdpmCifar10,
            3,
            32,
            0,
        ))
        .unwrap();
        let m = found.compute_mismatch(&want).unwrap();
        assert_eq!(
            (m.key, m.found.as_str(), m.want.as_str()),
            ("norm_eps", "1e-6", "0.00001")
        );
        assert_eq!(found.shape_mismatch(&want), None);
        // A key left out takes diffusers' default: 8-wide heads.
        let bare: UNet2DModelConfig =
            serde_json::from_str(r#"{"block_out_channels": [32]}"#).unwrap();
        assert_eq!(bare.attention_head_dim, Some(8));
        assert_eq!(bare.attention_heads(), [4]);
        let mut heads = want.clone();
        heads.attention_head_dim = Some(64);
        let m = heads.compute_mismatch(&want).unwrap();
        assert_eq!(m.key, "attention_head_dim");
        assert_eq!(m.found, "64 (heads per attention block [4,4])");
        let odd: UNet2DModelConfig = serde_json::from_str(r#"{"skip_time_act": true}"#).unwrap();
        assert_eq!(odd.unknown_keys(), ["skip_time_act"]);
    }
}
