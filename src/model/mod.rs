//! Denoising networks: the DDPM UNet for images, a residual MLP for vectors,
//! their embeddings and named presets.

pub mod cost;
pub mod embedding;
pub mod guidance;
pub mod mlp;
pub mod presets;
pub mod unet;

pub use embedding::Conditioning;
pub use mlp::{Mlp, MlpConfig};
pub use presets::{Family, ModelPreset};
pub use unet::{UNet, UNetConfig};

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// A fully resolved architecture: a preset with its overrides and the data's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "kebab-case")]
pub enum ModelSpec {
    Unet(UNetConfig),
    Mlp(MlpConfig),
}

/// ε_θ(x_t, t, c) (or x̂_0, or v̂: the network does not care what it predicts).
// Built once per run and never moved in a hot path, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Denoiser {
    UNet(UNet),
    Mlp(Mlp),
}

impl Denoiser {
    pub fn new(p: nn::Path, spec: &ModelSpec) -> Self {
        match spec {
            ModelSpec::Unet(c) => Denoiser::UNet(UNet::new(p, c)),
            ModelSpec::Mlp(c) => Denoiser::Mlp(Mlp::new(p, c)),
        }
    }

    /// # Shapes
    /// `x`: [B, C, H, W] (UNet) or [B, D] (MLP); `t`: [B]; result: like `x`.
    pub fn forward(&self, x: &Tensor, t: &Tensor, cond: &Conditioning, train: bool) -> Tensor {
        match self {
            Denoiser::UNet(m) => m.forward(x, t, cond, train),
            Denoiser::Mlp(m) => m.forward(x, t, cond, train),
        }
    }
}

/// Parameters per top-level block (`conv_in`, `down.0`, `mid`, …) in build order,
/// for `inspect model`.
pub fn parameter_table(vs: &nn::VarStore) -> Vec<(String, i64)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut table: Vec<(String, i64)> = vec![];
    for (name, t) in vars {
        let parts: Vec<&str> = name.split('.').collect();
        let block = match parts[0] {
            "down" | "up" if parts.len() > 2 => format!("{}.{}", parts[0], parts[1]),
            "block" if parts.len() > 2 => format!("block.{}", parts[1]),
            other => other.to_string(),
        };
        let n = t.numel() as i64;
        match table.iter_mut().find(|(b, _)| *b == block) {
            Some(row) => row.1 += n,
            None => table.push((block, n)),
        }
    }
    let rank = |b: &str| match b.split('.').next().unwrap_or("") {
        "embedding" => 0,
        "conv_in" | "input" => 1,
        "down" | "block" => 2,
        "mid" => 3,
        "up" => 4,
        _ => 5,
    };
    table.sort_by(|a, b| {
        let key = |s: &str| {
            let idx: i64 = s
                .split('.')
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
            // The up path is numbered by level, and runs from the deepest level down.
            let idx = if s.starts_with("up") { -idx } else { idx };
            (rank(s), idx)
        };
        key(&a.0).cmp(&key(&b.0))
    });
    table
}

/// The number of trainable parameters.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn unet(preset: ModelPreset, in_ch: i64, res: i64, classes: i64) -> UNetConfig {
        UNetConfig::from_preset(preset, in_ch, res, classes)
    }

    #[test]
    fn ddpm_cifar10_has_the_papers_parameter_count() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _m = UNet::new(vs.root(), &unet(ModelPreset::DdpmCifar10, 3, 32, 0));
        // diffusers' UNet2DModel for google/ddpm-cifar10-32 builds 35,746,307.
        assert_eq!(parameter_count(&vs), 35_746_307);
    }

    #[test]
    fn unet_keeps_the_shape_at_every_resolution() {
        tch::manual_seed(0);
        for (preset, ch, res) in [
            (ModelPreset::UnetTiny, 1, 28),
            (ModelPreset::UnetTiny, 3, 16),
            (ModelPreset::UnetMnistSmall, 1, 28),
            (ModelPreset::UnetMnistSmall, 3, 12),
        ] {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = UNet::new(vs.root(), &unet(preset, ch, res, 0));
            let x = Tensor::randn([2, ch, res, res], (Kind::Float, Device::Cpu));
            let t = Tensor::from_slice(&[0i64, 999]);
            let y = m.forward(&x, &t, &Conditioning::none(), true);
            assert_eq!(y.size(), x.size(), "{preset:?} {res}");
            // conv_out starts at zero: the untrained model predicts exactly 0.
            assert_eq!(y.abs().max().double_value(&[]), 0.0);
        }
    }

    #[test]
    fn class_conditioning_changes_the_output_and_null_token_is_a_class_of_its_own() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = UNet::new(vs.root(), &unet(ModelPreset::UnetTiny, 1, 8, 10));
        // Move the zero-initialised convs off zero so outputs depend on the embedding.
        tch::no_grad(|| {
            for (name, mut v) in vs.variables() {
                if name.starts_with("conv_out") || name.contains("conv2") {
                    let _ = v.normal_(0.0, 0.1);
                }
            }
        });
        let x = Tensor::randn([1, 1, 8, 8], (Kind::Float, Device::Cpu)).repeat([3, 1, 1, 1]);
        let t = Tensor::from_slice(&[10i64, 10, 10]);
        let y = m.forward(
            &x,
            &t,
            &Conditioning::labels(Tensor::from_slice(&[1i64, 2, 10])),
            false,
        );
        let d = |i: i64, j: i64| (y.get(i) - y.get(j)).abs().max().double_value(&[]);
        assert!(d(0, 1) > 0.0 && d(0, 2) > 0.0 && d(1, 2) > 0.0);
        // The label embedding has num_classes + 1 rows.
        let emb = vs.variables()["embedding.label_embedding.weight"].size();
        assert_eq!(emb, vec![11, 64]);
    }

    #[test]
    fn mlp_maps_vectors_to_vectors() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = MlpConfig {
            dim: 2,
            hidden: 32,
            depth: 2,
            dropout: 0.0,
            num_classes: 0,
            cond_dim: 3,
        };
        let m = Mlp::new(vs.root(), &cfg);
        let x = Tensor::randn([5, 2], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 1, 2, 3, 4]);
        let cond = Conditioning {
            vector: Some(Tensor::randn([5, 3], (Kind::Float, Device::Cpu))),
            ..Default::default()
        };
        assert_eq!(m.forward(&x, &t, &cond, true).size(), vec![5, 2]);
        let table = parameter_table(&vs);
        assert_eq!(table.iter().map(|r| r.1).sum::<i64>(), parameter_count(&vs));
        assert_eq!(table[0].0, "embedding");
    }
}
