//! Conditioning inputs of the denoiser: the sinusoidal timestep embedding
//! (Ho et al. 2020, as diffusers' `Timesteps(flip_sin_to_cos=False,
//! downscale_freq_shift=1)`), its MLP, and the two kinds of condition the
//! chapter uses: class labels with a learned null token (§5.1–5.2) and a
//! continuous condition vector (e.g. macro variables, §9) with a learned null
//! embedding.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// Sinusoidal embedding of integer timesteps.
///
/// # Shapes
/// `t`: [B] (int64); result: [B, dim] (f32).
pub fn timestep_embedding(t: &Tensor, dim: i64) -> Tensor {
    let half = dim / 2;
    let shift = if half > 1 { 1.0 } else { 0.0 };
    let freqs = (Tensor::arange(half, (Kind::Float, t.device()))
        * (-(10000f64.ln()) / (half as f64 - shift)))
        .exp();
    let args = t.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
    let emb = Tensor::cat(&[args.sin(), args.cos()], 1);
    if dim % 2 == 1 {
        emb.pad([0, 1], "constant", Some(0.0))
    } else {
        emb
    }
}

/// What the denoiser is conditioned on besides x_t and t.
#[derive(Debug, Default)]
pub struct Conditioning {
    /// Class labels [B] (int64); the value `num_classes` is the null token.
    pub labels: Option<Tensor>,
    /// A continuous condition [B, D].
    pub vector: Option<Tensor>,
    /// Which rows of `vector` are dropped (replaced by the learned null embedding) [B] (bool).
    pub vector_dropped: Option<Tensor>,
}

impl Conditioning {
    pub fn none() -> Self {
        Conditioning::default()
    }
    pub fn labels(labels: Tensor) -> Self {
        Conditioning {
            labels: Some(labels),
            ..Default::default()
        }
    }
}

/// The time-embedding MLP plus the condition embeddings, summed into one
/// vector per sample that every residual block receives.
#[derive(Debug)]
pub struct CondEmbedding {
    base_dim: i64,
    lin1: nn::Linear,
    lin2: nn::Linear,
    /// num_classes + 1 rows: the last is the null token.
    label: Option<nn::Embedding>,
    vector_proj: Option<nn::Linear>,
    vector_null: Option<Tensor>,
}

impl CondEmbedding {
    /// `base_dim`: the sinusoidal dimension; `dim`: the embedding's (4·base_dim in DDPM).
    pub fn new(p: nn::Path, base_dim: i64, dim: i64, num_classes: i64, cond_dim: i64) -> Self {
        let label = (num_classes > 0).then(|| {
            nn::embedding(
                &p / "label_embedding",
                num_classes + 1,
                dim,
                Default::default(),
            )
        });
        let vector_proj =
            (cond_dim > 0).then(|| nn::linear(&p / "cond_proj", cond_dim, dim, Default::default()));
        let vector_null = (cond_dim > 0).then(|| p.var("cond_null", &[dim], nn::Init::Const(0.0)));
        CondEmbedding {
            base_dim,
            lin1: nn::linear(&p / "time_linear_1", base_dim, dim, Default::default()),
            lin2: nn::linear(&p / "time_linear_2", dim, dim, Default::default()),
            label,
            vector_proj,
            vector_null,
        }
    }

    /// # Shapes
    /// `t`: [B]; result: [B, dim].
    // `a = a + b` on tch tensors is out of place; clippy's `a += b` would be an
    // in-place op on a tensor autograd saved, and break the backward pass.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, t: &Tensor, cond: &Conditioning) -> Tensor {
        // The sinusoids are computed in f32, then held in the weights' dtype
        // (bf16 under bf16-pure; a no-op otherwise).
        let kind = self.lin1.ws.kind();
        let mut emb = self.lin2.forward(
            &self
                .lin1
                .forward(&timestep_embedding(t, self.base_dim).to_kind(kind))
                .silu(),
        );
        if let (Some(e), Some(labels)) = (&self.label, &cond.labels) {
            emb = emb + e.forward(labels);
        }
        if let (Some(proj), Some(null), Some(v)) =
            (&self.vector_proj, &self.vector_null, &cond.vector)
        {
            let mut c = proj.forward(&v.to_kind(kind));
            if let Some(drop) = &cond.vector_dropped {
                c = c.where_self(&drop.logical_not().unsqueeze(1), &null.unsqueeze(0));
            }
            emb = emb + c;
        }
        emb
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn timestep_embedding_matches_the_closed_form() {
        let t = Tensor::from_slice(&[0i64, 1, 500]);
        let e = timestep_embedding(&t, 8);
        assert_eq!(e.size(), vec![3, 8]);
        // freq_i = exp(−ln(10000)·i/(half−1)), half = 4; sin in the first half, cos in the second.
        for (row, tv) in [0.0f64, 1.0, 500.0].iter().enumerate() {
            for i in 0..4 {
                let f = (-(10000f64.ln()) * i as f64 / 3.0).exp();
                let s = e.double_value(&[row as i64, i]);
                let c = e.double_value(&[row as i64, i + 4]);
                assert!((s - (tv * f).sin()).abs() < 1e-4, "sin t={tv} i={i}");
                assert!((c - (tv * f).cos()).abs() < 1e-4, "cos t={tv} i={i}");
            }
        }
    }

    #[test]
    fn null_token_and_null_vector_replace_the_condition() {
        let vs = nn::VarStore::new(Device::Cpu);
        let emb = CondEmbedding::new(vs.root(), 8, 16, 10, 3);
        let t = Tensor::from_slice(&[5i64, 5]);
        // Labels: a null token differs from a real label; the same label gives the same embedding.
        let a = emb.forward(&t, &Conditioning::labels(Tensor::from_slice(&[3i64, 10])));
        let b = emb.forward(&t, &Conditioning::labels(Tensor::from_slice(&[3i64, 3])));
        assert!((a.get(0) - b.get(0)).abs().max().double_value(&[]) == 0.0);
        assert!((a.get(1) - b.get(1)).abs().max().double_value(&[]) > 0.0);
        // Vector: a dropped row equals the time embedding plus the null vector (0 at init),
        // whatever the condition's value.
        let v = Tensor::from_slice(&[1.0f32, 2.0, 3.0, -4.0, 5.0, 6.0]).reshape([2, 3]);
        let cond = Conditioning {
            vector: Some(v),
            vector_dropped: Some(Tensor::from_slice(&[false, true])),
            ..Default::default()
        };
        let c = emb.forward(&t, &cond);
        let plain = emb.forward(&t, &Conditioning::none());
        assert!((c.get(1) - plain.get(1)).abs().max().double_value(&[]) == 0.0);
        assert!((c.get(0) - plain.get(0)).abs().max().double_value(&[]) > 0.0);
    }
}
