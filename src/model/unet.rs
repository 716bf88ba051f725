//! The DDPM UNet (Ho et al. 2020): the architecture diffusers' `UNet2DModel`
//! builds for `google/ddpm-cifar10-32`.
//!
//! conv_in → per level: `num_res_blocks` residual blocks (attention after each
//! at the resolutions in `attn_resolutions`), then a stride-2 conv downsample
//! (not after the last level) → middle: res, attention, res → per level in
//! reverse: `num_res_blocks + 1` residual blocks on the concatenated skips
//! (attention likewise), then nearest ×2 + conv upsample → GroupNorm, SiLU,
//! conv_out. The time embedding (sinusoidal → Linear → SiLU → Linear, 4·ch wide)
//! is added inside every residual block; class labels and condition vectors are
//! added to it ([`super::embedding`]).
//!
//! As in improved-diffusion, the last conv of each residual block, the attention
//! output projection and conv_out start at zero, so every block starts as the
//! identity and the untrained model predicts 0.

use super::embedding::{CondEmbedding, Conditioning};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

/// The UNet's shape. Presets live in [`super::presets`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub resolution: i64,
    pub ch: i64,
    pub ch_mult: Vec<i64>,
    pub num_res_blocks: i64,
    /// Resolutions (e.g. 16 for 16×16) with self-attention.
    pub attn_resolutions: Vec<i64>,
    pub dropout: f64,
    /// GroupNorm groups; every channel count must be divisible by it.
    pub norm_groups: i64,
    pub attn_heads: i64,
    /// Classes for class conditioning (0 = unconditional).
    pub num_classes: i64,
    /// Width of a continuous condition vector (0 = none).
    pub cond_dim: i64,
}

impl UNetConfig {
    /// A preset's UNet, without overrides, for `in_channels`×`resolution`²
    /// data with `num_classes` classes (0 = unconditional) and no condition vector.
    pub fn from_preset(
        preset: super::ModelPreset,
        in_channels: i64,
        resolution: i64,
        num_classes: i64,
    ) -> Self {
        let v = preset.values();
        UNetConfig {
            in_channels,
            resolution,
            ch: v.ch,
            ch_mult: v.ch_mult,
            num_res_blocks: v.num_res_blocks,
            attn_resolutions: v.attn_resolutions,
            dropout: v.dropout,
            norm_groups: v.norm_groups,
            attn_heads: v.attn_heads,
            num_classes,
            cond_dim: 0,
        }
    }
}

fn conv3(p: nn::Path, i: i64, o: i64, stride: i64, zero: bool) -> nn::Conv2D {
    let mut cfg = nn::ConvConfig {
        padding: 1,
        stride,
        ..Default::default()
    };
    if zero {
        cfg.ws_init = nn::Init::Const(0.0);
    }
    nn::conv2d(p, i, o, 3, cfg)
}

fn group_norm(p: nn::Path, groups: i64, ch: i64) -> nn::GroupNorm {
    nn::group_norm(p, groups, ch, Default::default())
}

#[derive(Debug)]
struct ResBlock {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    temb: nn::Linear,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    skip: Option<nn::Conv2D>,
    dropout: f64,
}

impl ResBlock {
    fn new(p: nn::Path, cfg: &UNetConfig, i: i64, o: i64, temb_dim: i64) -> Self {
        ResBlock {
            norm1: group_norm(&p / "norm1", cfg.norm_groups, i),
            conv1: conv3(&p / "conv1", i, o, 1, false),
            temb: nn::linear(&p / "time_emb_proj", temb_dim, o, Default::default()),
            norm2: group_norm(&p / "norm2", cfg.norm_groups, o),
            conv2: conv3(&p / "conv2", o, o, 1, true),
            skip: (i != o).then(|| nn::conv2d(&p / "conv_shortcut", i, o, 1, Default::default())),
            dropout: cfg.dropout,
        }
    }

    fn forward(&self, x: &Tensor, temb: &Tensor, train: bool) -> Tensor {
        let h = self.conv1.forward(&self.norm1.forward(x).silu());
        let h = h + self.temb.forward(&temb.silu()).unsqueeze(-1).unsqueeze(-1);
        let h = self
            .conv2
            .forward(&self.norm2.forward(&h).silu().dropout(self.dropout, train));
        match &self.skip {
            Some(s) => s.forward(x) + h,
            None => x + h,
        }
    }
}

#[derive(Debug)]
struct AttnBlock {
    norm: nn::GroupNorm,
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    out: nn::Linear,
    heads: i64,
}

impl AttnBlock {
    fn new(p: nn::Path, cfg: &UNetConfig, ch: i64) -> Self {
        let lin = |name: &str| nn::linear(&p / name, ch, ch, Default::default());
        AttnBlock {
            norm: group_norm(&p / "group_norm", cfg.norm_groups, ch),
            q: lin("to_q"),
            k: lin("to_k"),
            v: lin("to_v"),
            out: nn::linear(
                &p / "to_out",
                ch,
                ch,
                nn::LinearConfig {
                    ws_init: nn::Init::Const(0.0),
                    ..Default::default()
                },
            ),
            heads: cfg.attn_heads,
        }
    }

    /// # Shapes
    /// `x`: [B, C, H, W]; result: [B, C, H, W].
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("attention input is [B, C, H, W]"); // ok: UNet-internal
        let seq = self.norm.forward(x).view([b, c, h * w]).transpose(1, 2); // [B, HW, C]
        let split = |t: Tensor| {
            t.view([b, h * w, self.heads, c / self.heads])
                .transpose(1, 2) // [B, heads, HW, C/heads]
        };
        let q = split(self.q.forward(&seq));
        let k = split(self.k.forward(&seq));
        let v = split(self.v.forward(&seq));
        let a = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let a = a.transpose(1, 2).reshape([b, h * w, c]);
        x + self.out.forward(&a).transpose(1, 2).view([b, c, h, w])
    }
}

// Built once per model and never moved in a hot path, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Layer {
    Res(ResBlock),
    Attn(AttnBlock),
    Down(nn::Conv2D),
    Up(nn::Conv2D),
}

/// The DDPM UNet denoiser.
#[derive(Debug)]
pub struct UNet {
    cond: CondEmbedding,
    conv_in: nn::Conv2D,
    /// Each entry is one skip-producing stage: a res block (+ attention) or a downsample.
    down: Vec<Vec<Layer>>,
    mid: Vec<Layer>,
    /// Each entry consumes one skip: a res block (+ attention), and maybe an upsample.
    up: Vec<Vec<Layer>>,
    norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl UNet {
    pub fn new(p: nn::Path, cfg: &UNetConfig) -> Self {
        let ch = cfg.ch;
        let temb_dim = 4 * ch;
        let levels = cfg.ch_mult.len();
        let mut down = vec![];
        let mut skip_ch = vec![ch];
        let mut cur = ch;
        let mut res = cfg.resolution;
        for (level, &mult) in cfg.ch_mult.iter().enumerate() {
            let out = ch * mult;
            let lp = &p / "down" / level;
            for i in 0..cfg.num_res_blocks {
                let mut stage = vec![Layer::Res(ResBlock::new(
                    &lp / "res" / i,
                    cfg,
                    cur,
                    out,
                    temb_dim,
                ))];
                cur = out;
                if cfg.attn_resolutions.contains(&res) {
                    stage.push(Layer::Attn(AttnBlock::new(&lp / "attn" / i, cfg, cur)));
                }
                down.push(stage);
                skip_ch.push(cur);
            }
            if level + 1 < levels {
                down.push(vec![Layer::Down(conv3(
                    &lp / "downsample",
                    cur,
                    cur,
                    2,
                    false,
                ))]);
                skip_ch.push(cur);
                res /= 2;
            }
        }
        let mp = &p / "mid";
        let mid = vec![
            Layer::Res(ResBlock::new(&mp / "res1", cfg, cur, cur, temb_dim)),
            Layer::Attn(AttnBlock::new(&mp / "attn", cfg, cur)),
            Layer::Res(ResBlock::new(&mp / "res2", cfg, cur, cur, temb_dim)),
        ];
        let mut up = vec![];
        for (level, &mult) in cfg.ch_mult.iter().enumerate().rev() {
            let out = ch * mult;
            let lp = &p / "up" / level;
            for i in 0..=cfg.num_res_blocks {
                let skip = skip_ch.pop().expect("one skip per up block"); // ok: counts match by construction
                let mut stage = vec![Layer::Res(ResBlock::new(
                    &lp / "res" / i,
                    cfg,
                    cur + skip,
                    out,
                    temb_dim,
                ))];
                cur = out;
                if cfg.attn_resolutions.contains(&res) {
                    stage.push(Layer::Attn(AttnBlock::new(&lp / "attn" / i, cfg, cur)));
                }
                if i == cfg.num_res_blocks && level > 0 {
                    stage.push(Layer::Up(conv3(&lp / "upsample", cur, cur, 1, false)));
                    res *= 2;
                }
                up.push(stage);
            }
        }
        UNet {
            cond: CondEmbedding::new(
                &p / "embedding",
                ch,
                temb_dim,
                cfg.num_classes,
                cfg.cond_dim,
            ),
            conv_in: conv3(&p / "conv_in", cfg.in_channels, ch, 1, false),
            down,
            mid,
            up,
            norm_out: group_norm(&p / "norm_out", cfg.norm_groups, cur),
            conv_out: conv3(&p / "conv_out", cur, cfg.in_channels, 1, true),
        }
    }

    fn apply(layers: &[Layer], mut h: Tensor, temb: &Tensor, train: bool) -> Tensor {
        for l in layers {
            h = match l {
                Layer::Res(r) => r.forward(&h, temb, train),
                Layer::Attn(a) => a.forward(&h),
                Layer::Down(c) => c.forward(&h),
                Layer::Up(c) => {
                    let (_, _, hh, ww) = h.size4().expect("[B, C, H, W]"); // ok: UNet-internal
                    c.forward(&h.upsample_nearest2d([hh * 2, ww * 2], None, None))
                }
            };
        }
        h
    }

    /// The dtype of the weights (see [`super::Denoiser::weight_kind`]).
    pub fn weight_kind(&self) -> tch::Kind {
        self.conv_in.ws.kind()
    }

    /// # Shapes
    /// `x`: [B, C, H, W]; `t`: [B] (int64); result: [B, C, H, W].
    pub fn forward(&self, x: &Tensor, t: &Tensor, cond: &Conditioning, train: bool) -> Tensor {
        let temb = self.cond.forward(t, cond);
        let mut h = self.conv_in.forward(x);
        let mut skips = vec![h.shallow_clone()];
        for stage in &self.down {
            h = Self::apply(stage, h, &temb, train);
            skips.push(h.shallow_clone());
        }
        h = Self::apply(&self.mid, h, &temb, train);
        for stage in &self.up {
            let skip = skips.pop().expect("one skip per up stage"); // ok: counts match by construction
            h = Self::apply(stage, Tensor::cat(&[h, skip], 1), &temb, train);
        }
        self.conv_out.forward(&self.norm_out.forward(&h).silu())
    }
}
