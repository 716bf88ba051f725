//! Denoising networks: the DDPM UNet for images, a residual MLP for vectors,
//! their embeddings and named presets.

pub mod cost;
pub mod diffusers_config;
pub mod diffusers_import;
pub mod diffusers_names;
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
use tch::{nn, Kind, Tensor};

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

    /// The dtype of the network's weights, which it computes in: f32, or bf16
    /// when the trainer holds it in bf16 (`precision = "bf16-pure"`).
    pub fn weight_kind(&self) -> Kind {
        match self {
            Denoiser::UNet(m) => m.weight_kind(),
            Denoiser::Mlp(m) => m.weight_kind(),
        }
    }

    /// # Shapes
    /// `x`: [B, C, H, W] (UNet) or [B, D] (MLP); `t`: [B]; result: like `x`.
    ///
    /// `x` is cast to the weights' dtype on the way in; a result in another
    /// dtype than `x`'s (bf16 weights, or autocast) is cast back on the way
    /// out. Both casts are no-ops for an f32 network without autocast.
    pub fn forward(&self, x: &Tensor, t: &Tensor, cond: &Conditioning, train: bool) -> Tensor {
        let xin = x.to_kind(self.weight_kind());
        let out = match self {
            Denoiser::UNet(m) => m.forward(&xin, t, cond, train),
            Denoiser::Mlp(m) => m.forward(&xin, t, cond, train),
        };
        out.to_kind(x.kind())
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

    /// Held in bf16 (as the trainer holds it under `precision = "bf16-pure"`),
    /// a network computes in bf16, answers in the input's dtype, and stays
    /// within bf16's rounding of the same network in f32, conditions included.
    #[test]
    fn a_bf16_network_computes_in_bf16_and_answers_in_the_inputs_dtype() {
        let specs = [
            ModelSpec::Unet(unet(ModelPreset::UnetTiny, 3, 8, 10)),
            ModelSpec::Mlp(MlpConfig {
                dim: 4,
                hidden: 32,
                depth: 2,
                dropout: 0.0,
                num_classes: 0,
                cond_dim: 3,
            }),
        ];
        for spec in specs {
            tch::manual_seed(1);
            let mut vs = nn::VarStore::new(Device::Cpu);
            let net = Denoiser::new(vs.root(), &spec);
            // Random weights everywhere (the output layers start at zero).
            tch::no_grad(|| {
                for mut v in vs.trainable_variables() {
                    let r = v.randn_like() * 0.2;
                    v.copy_(&r);
                }
            });
            let (x, cond) = match &spec {
                ModelSpec::Unet(_) => (
                    Tensor::randn([3, 3, 8, 8], (Kind::Float, Device::Cpu)),
                    Conditioning::labels(Tensor::from_slice(&[0i64, 4, 10])),
                ),
                ModelSpec::Mlp(_) => (
                    Tensor::randn([3, 4], (Kind::Float, Device::Cpu)),
                    Conditioning {
                        vector: Some(Tensor::randn([3, 3], (Kind::Float, Device::Cpu))),
                        ..Default::default()
                    },
                ),
            };
            let t = Tensor::from_slice(&[3i64, 400, 999]);
            assert_eq!(net.weight_kind(), Kind::Float);
            let y32 = net.forward(&x, &t, &cond, false);
            vs.bfloat16();
            assert_eq!(net.weight_kind(), Kind::BFloat16);
            let y16 = net.forward(&x, &t, &cond, false);
            assert_eq!(y16.kind(), Kind::Float, "answers in x's dtype");
            let rel = (&y16 - &y32).norm().double_value(&[]) / y32.norm().double_value(&[]);
            // bf16 keeps 8 bits of mantissa: a relative error near 2^-8, never 0.
            assert!(rel > 1e-4 && rel < 0.05, "{spec:?}: relative error {rel}");
        }
    }
}
