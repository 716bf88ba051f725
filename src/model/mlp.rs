//! A residual MLP denoiser for vectors: toy 2-D data and tabular returns.
//!
//! in → Linear(D, hidden) → `depth` blocks of [LayerNorm → SiLU → Linear, plus
//! the projected time/condition embedding → SiLU → Linear, residual] →
//! LayerNorm → SiLU → Linear(hidden, D), the last zero-initialised.

use super::embedding::{CondEmbedding, Conditioning};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    pub dim: i64,
    pub hidden: i64,
    pub depth: i64,
    pub dropout: f64,
    pub num_classes: i64,
    pub cond_dim: i64,
}

#[derive(Debug)]
struct Block {
    norm: nn::LayerNorm,
    lin1: nn::Linear,
    temb: nn::Linear,
    lin2: nn::Linear,
}

#[derive(Debug)]
pub struct Mlp {
    cond: CondEmbedding,
    input: nn::Linear,
    blocks: Vec<Block>,
    norm_out: nn::LayerNorm,
    output: nn::Linear,
    dropout: f64,
}

impl Mlp {
    pub fn new(p: nn::Path, cfg: &MlpConfig) -> Self {
        let h = cfg.hidden;
        let ln = |p: nn::Path| nn::layer_norm(p, vec![h], Default::default());
        let blocks = (0..cfg.depth)
            .map(|i| {
                let bp = &p / "block" / i;
                Block {
                    norm: ln(&bp / "norm"),
                    lin1: nn::linear(&bp / "linear_1", h, h, Default::default()),
                    temb: nn::linear(&bp / "time_emb_proj", h, h, Default::default()),
                    lin2: nn::linear(&bp / "linear_2", h, h, Default::default()),
                }
            })
            .collect();
        Mlp {
            cond: CondEmbedding::new(&p / "embedding", h, h, cfg.num_classes, cfg.cond_dim),
            input: nn::linear(&p / "input", cfg.dim, h, Default::default()),
            blocks,
            norm_out: ln(&p / "norm_out"),
            output: nn::linear(
                &p / "output",
                h,
                cfg.dim,
                nn::LinearConfig {
                    ws_init: nn::Init::Const(0.0),
                    ..Default::default()
                },
            ),
            dropout: cfg.dropout,
        }
    }

    /// The dtype of the weights (see [`super::Denoiser::weight_kind`]).
    pub fn weight_kind(&self) -> tch::Kind {
        self.input.ws.kind()
    }

    /// # Shapes
    /// `x`: [B, D]; `t`: [B] (int64); result: [B, D].
    // Out of place on purpose: `h += …` would modify a tensor autograd saved.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, x: &Tensor, t: &Tensor, cond: &Conditioning, train: bool) -> Tensor {
        let temb = self.cond.forward(t, cond).silu();
        let mut h = self.input.forward(x);
        for b in &self.blocks {
            let r = b.lin1.forward(&b.norm.forward(&h).silu()) + b.temb.forward(&temb);
            h = h + b.lin2.forward(&r.silu().dropout(self.dropout, train));
        }
        self.output.forward(&self.norm_out.forward(&h).silu())
    }
}
