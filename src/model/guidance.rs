//! Classifier-free guidance at sampling time (chapter §5.2): the denoiser
//! evaluated with and without its condition, mixed as
//! out_u + s (out_c − out_u) (see [`crate::diffusion::sampling::guide`]).
//!
//! The conditional and unconditional passes run as one batched forward of
//! twice the batch: the second half carries the null condition (the null
//! class token, index `num_classes`; the learned null vector for a continuous
//! condition), which is what training's `p_uncond` dropout taught the model.
//! s = 1 needs only the conditional pass and s = 0 only the unconditional one.

use super::embedding::Conditioning;
use super::Denoiser;
use crate::diffusion::sampling::guide;
use tch::{Kind, Tensor};

/// A denoiser with a fixed condition and guidance scale.
pub struct Guided<'a> {
    pub model: &'a Denoiser,
    /// The condition for the whole batch (labels [B] and/or vectors [B, D]).
    pub cond: &'a Conditioning,
    pub scale: f64,
    /// The model's class count (the null token's index); 0 if it has no labels.
    pub num_classes: i64,
}

impl Guided<'_> {
    fn conditioned(&self) -> bool {
        self.cond.labels.is_some() || self.cond.vector.is_some()
    }

    /// The condition with every row replaced by the null condition.
    fn null(&self) -> Conditioning {
        Conditioning {
            labels: self
                .cond
                .labels
                .as_ref()
                .map(|l| l.full_like(self.num_classes)),
            vector: self.cond.vector.as_ref().map(|v| v.shallow_clone()),
            vector_dropped: self
                .cond
                .vector
                .as_ref()
                .map(|v| Tensor::ones([v.size()[0]], (Kind::Bool, v.device()))),
        }
    }

    /// The guided output for x_t [B, …] at t [B] (evaluation mode: no dropout).
    pub fn forward(&self, x: &Tensor, t: &Tensor) -> Tensor {
        if !self.conditioned() || self.scale == 1.0 {
            return self.model.forward(x, t, self.cond, false);
        }
        let null = self.null();
        if self.scale == 0.0 {
            return self.model.forward(x, t, &null, false);
        }
        let cat = |a: &Option<Tensor>, b: &Option<Tensor>| match (a, b) {
            (Some(a), Some(b)) => Some(Tensor::cat(&[a, b], 0)),
            _ => None,
        };
        let kept = self
            .cond
            .vector
            .as_ref()
            .map(|v| match &self.cond.vector_dropped {
                Some(d) => d.shallow_clone(),
                None => Tensor::zeros([v.size()[0]], (Kind::Bool, v.device())),
            });
        let both = Conditioning {
            labels: cat(&self.cond.labels, &null.labels),
            vector: cat(&self.cond.vector, &null.vector),
            vector_dropped: cat(&kept, &null.vector_dropped),
        };
        let out = self.model.forward(
            &Tensor::cat(&[x, x], 0),
            &Tensor::cat(&[t, t], 0),
            &both,
            false,
        );
        let halves = out.chunk(2, 0);
        guide(&halves[1], &halves[0], self.scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MlpConfig, ModelSpec};
    use tch::{nn, Device};

    fn model(num_classes: i64, cond_dim: i64) -> (nn::VarStore, Denoiser) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = Denoiser::new(
            vs.root(),
            &ModelSpec::Mlp(MlpConfig {
                dim: 2,
                hidden: 32,
                depth: 2,
                dropout: 0.0,
                num_classes,
                cond_dim,
            }),
        );
        // Give the embeddings (zero-initialised where they start as a no-op)
        // some weight, so the condition changes the output.
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let r = v.randn_like() * 0.3;
                v.copy_(&r);
            }
        });
        (vs, m)
    }

    #[test]
    fn scales_0_and_1_are_the_unconditional_and_conditional_passes_and_others_mix_them() {
        let (_vs, m) = model(4, 0);
        let x = Tensor::randn([6, 2], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0i64, 10, 20, 30, 40, 50]);
        let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]);
        let cond = Conditioning::labels(labels.shallow_clone());
        let c = m.forward(&x, &t, &cond, false);
        let u = m.forward(&x, &t, &Conditioning::labels(labels.full_like(4)), false);
        assert!(!c.allclose(&u, 1e-4, 1e-4, false), "the label matters");
        let g = |s| {
            Guided {
                model: &m,
                cond: &cond,
                scale: s,
                num_classes: 4,
            }
            .forward(&x, &t)
        };
        assert!(g(1.0).allclose(&c, 1e-5, 1e-5, false));
        assert!(g(0.0).allclose(&u, 1e-5, 1e-5, false));
        let expect = &u + (&c - &u) * 3.0;
        assert!(
            g(3.0).allclose(&expect, 1e-4, 1e-4, false),
            "one batched pass = two passes"
        );
    }

    #[test]
    fn a_vector_condition_is_guided_against_the_learned_null_vector() {
        let (_vs, m) = model(0, 3);
        let x = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[5i64, 5, 50, 50]);
        let v = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let cond = Conditioning {
            vector: Some(v.shallow_clone()),
            ..Default::default()
        };
        let null = Conditioning {
            vector: Some(v.shallow_clone()),
            vector_dropped: Some(Tensor::ones([4], (Kind::Bool, Device::Cpu))),
            ..Default::default()
        };
        let c = m.forward(&x, &t, &cond, false);
        let u = m.forward(&x, &t, &null, false);
        let g = Guided {
            model: &m,
            cond: &cond,
            scale: 2.0,
            num_classes: 0,
        }
        .forward(&x, &t);
        assert!(g.allclose(&(&u + (&c - &u) * 2.0), 1e-4, 1e-4, false));
    }
}
