//! What a model costs to run: multiply-accumulates (MACs) per sample for one
//! forward pass. The sweep planner orders jobs longest first and estimates a
//! sweep's time from it; it is not a profiler.
//!
//! Counted from the built module's own variables, so it can never drift from
//! the architecture: every conv and linear weight costs its size once per
//! output position (a UNet conv's resolution follows from its name: `down.L`
//! runs at resolution/2^L, its `downsample` writes resolution/2^(L+1), `mid`
//! runs at the lowest, `up.L.upsample` writes resolution/2^(L−1)), and every
//! attention block adds its two N×N products, 2·N²·C. Norms, biases,
//! activations and embedding lookups are left out (they are memory-bound and
//! small).

use super::{Denoiser, ModelSpec};
use tch::nn;

/// Forward MACs per sample, and the number of parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelCost {
    pub macs_per_sample: f64,
    pub parameters: i64,
}

impl ModelCost {
    /// MACs of one training step at `batch`: forward plus backward (about twice
    /// the forward).
    pub fn train_step_macs(&self, batch: i64) -> f64 {
        3.0 * self.macs_per_sample * batch as f64
    }
}

/// Build the model on the CPU (no data, no device) and count.
pub fn model_cost(spec: &ModelSpec) -> ModelCost {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let _model = Denoiser::new(vs.root(), spec);
    let vars = vs.variables();
    let parameters = vars.values().map(|t| t.numel() as i64).sum();
    let mut macs = 0.0;
    for (name, t) in &vars {
        let size = t.size();
        let is_weight = name.ends_with(".weight");
        let counts = is_weight && (size.len() == 4 || (size.len() == 2 && !is_table(name)));
        if !counts {
            continue;
        }
        let numel = t.numel() as f64;
        match spec {
            ModelSpec::Mlp(_) => macs += numel,
            ModelSpec::Unet(c) => {
                let side = unet_side(name, c.resolution, c.ch_mult.len());
                let positions = (side * side) as f64;
                let in_attention = name.contains(".attn.");
                if size.len() == 4 || in_attention {
                    macs += numel * positions;
                } else {
                    macs += numel; // the time and condition embeddings: once per sample
                }
                if in_attention && name.ends_with("to_q.weight") {
                    macs += 2.0 * positions * positions * size[0] as f64;
                }
            }
        }
    }
    ModelCost {
        macs_per_sample: macs,
        parameters,
    }
}

/// An embedding table (looked up, not multiplied).
fn is_table(name: &str) -> bool {
    name.contains("label_embedding")
}

/// The side of the feature map a UNet variable works at, from its name.
fn unet_side(name: &str, resolution: i64, levels: usize) -> i64 {
    let parts: Vec<&str> = name.split('.').collect();
    let at = |level: i64| (resolution >> level.max(0)).max(1);
    match parts.first().copied() {
        Some("down") => {
            let level: i64 = parts.get(1).and_then(|l| l.parse().ok()).unwrap_or(0);
            if parts.get(2) == Some(&"downsample") {
                at(level + 1)
            } else {
                at(level)
            }
        }
        Some("up") => {
            let level: i64 = parts.get(1).and_then(|l| l.parse().ok()).unwrap_or(0);
            if parts.get(2) == Some(&"upsample") {
                at(level - 1)
            } else {
                at(level)
            }
        }
        Some("mid") => at(levels as i64 - 1),
        _ => resolution,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MlpConfig, UNetConfig};

    #[test]
    fn an_mlp_costs_its_weight_matrices() {
        let spec = ModelSpec::Mlp(MlpConfig {
            dim: 2,
            hidden: 64,
            depth: 2,
            dropout: 0.0,
            num_classes: 0,
            cond_dim: 0,
        });
        let c = model_cost(&spec);
        // Upper bound: every parameter once. Lower bound: the hidden blocks' own
        // 64×64 matrices (two per residual block).
        assert!(c.macs_per_sample <= c.parameters as f64);
        assert!(c.macs_per_sample >= (2 * 2 * 64 * 64) as f64);
    }

    /// One level, no attention: conv_in, two res-block convs, the mid block and
    /// the up blocks all run at full resolution, so MACs = (conv and linear
    /// weights except the time embedding) × H·W + the time embedding once.
    #[test]
    fn a_single_level_unet_matches_the_closed_form() {
        let cfg = UNetConfig {
            in_channels: 1,
            resolution: 8,
            ch: 8,
            ch_mult: vec![1],
            num_res_blocks: 1,
            attn_resolutions: vec![],
            dropout: 0.0,
            norm_groups: 4,
            attn_heads: 1,
            num_classes: 0,
            cond_dim: 0,
        };
        let spec = ModelSpec::Unet(cfg);
        let c = model_cost(&spec);
        let k = 9.0;
        let convs = k * (1.0 * 8.0) // conv_in
            + k * (8.0 * 8.0) * 2.0 // down res: conv1, conv2
            + k * (8.0 * 8.0) * 4.0 // mid res1, res2
            + 2.0 * (k * 16.0 * 8.0 + k * 64.0 + 16.0 * 8.0) // up res ×2: conv1 (16→8), conv2, 1×1 shortcut
            + k * 8.0; // conv_out
        let temb_dim = 32.0;
        // Per-block time projections are linears too, counted once per sample,
        // as is the sinusoid → MLP embedding (8→32→32).
        let linears = 5.0 * temb_dim * 8.0 + 8.0 * temb_dim + temb_dim * temb_dim;
        // Attention in the mid block: q, k, v, out (8×8 each) per position, and 2·N²·C.
        let n = 64.0;
        let attn = 4.0 * 64.0 * n + 2.0 * n * n * 8.0;
        let expect = convs * n + linears + attn;
        assert!(
            (c.macs_per_sample - expect).abs() < 1e-9 * expect,
            "{} vs {expect}",
            c.macs_per_sample
        );
    }

    #[test]
    fn the_cifar_unet_is_about_six_gmacs() {
        // DDPM's CIFAR-10 model is usually quoted at ~6 GFLOPs (MACs) per image.
        let v = crate::model::ModelPreset::DdpmCifar10.values();
        let spec = crate::model::ModelSpec::Unet(crate::model::UNetConfig {
            in_channels: 3,
            resolution: 32,
            ch: v.ch,
            ch_mult: v.ch_mult,
            num_res_blocks: v.num_res_blocks,
            attn_resolutions: v.attn_resolutions,
            dropout: v.dropout,
            norm_groups: v.norm_groups,
            attn_heads: v.attn_heads,
            num_classes: 0,
            cond_dim: 0,
        });
        let c = model_cost(&spec);
        assert_eq!(c.parameters, 35_746_307);
        let g = c.macs_per_sample / 1e9;
        assert!((5.0..7.5).contains(&g), "{g} GMACs");
    }
}
