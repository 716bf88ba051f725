//! AdamW on the flat buffers (β 0.9/0.999, ε 1e-8, decoupled weight decay, as
//! `torch.optim.AdamW`), gradient clipping by global norm, and the learning-rate
//! schedules.
//!
//! The update is written with a 0-dim `keep` tensor (1 normally, 0 on a step the
//! fp16 loss scaler skips) and a step count kept on the device, so a skipped step
//! leaves parameters, moments and bias correction untouched without the host ever
//! waiting for the GPU to say whether the gradients were finite.

use crate::config::run::TrainConfig;
use tch::{Kind, Tensor};

/// AdamW state over a flat parameter buffer.
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// First moment [P].
    pub exp_avg: Tensor,
    /// Second moment [P].
    pub exp_avg_sq: Tensor,
    /// Steps taken (not counting skipped ones), 0-dim f32 on the device.
    pub step: Tensor,
    /// This step's learning rate, 0-dim f32 on the device (set by [`AdamW::set_lr`]).
    pub lr: Tensor,
    /// Whether to use libtorch's fused kernel (turned off if it ever refuses).
    pub fused: bool,
}

extern "C" {
    fn ddpm_fused_adamw(
        param: *const std::ffi::c_void,
        grad: *const std::ffi::c_void,
        exp_avg: *const std::ffi::c_void,
        exp_avg_sq: *const std::ffi::c_void,
        step: *const std::ffi::c_void,
        found_inf: *const std::ffi::c_void,
        lr: *const std::ffi::c_void,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> i32;
}

/// libtorch's `_fused_adamw_` on the flat buffers (`opt.step` already counts
/// this update; `skip` = 1 leaves everything as it is). False if refused.
fn fused_update(opt: &AdamW, param: &Tensor, grad: &Tensor, skip: &Tensor) -> bool {
    let p = |t: &Tensor| t.as_ptr() as *const std::ffi::c_void;
    // SAFETY: the pointers are live `at::Tensor`s owned by tch for the whole call;
    // the shim catches every C++ exception and reports it as −1.
    let rc = unsafe {
        ddpm_fused_adamw(
            p(param),
            p(grad),
            p(&opt.exp_avg),
            p(&opt.exp_avg_sq),
            p(&opt.step),
            p(skip),
            p(&opt.lr),
            opt.beta1,
            opt.beta2,
            opt.weight_decay,
            opt.eps,
        )
    };
    rc == 0
}

impl AdamW {
    pub fn new(cfg: &TrainConfig, flat: &Tensor) -> Self {
        AdamW {
            beta1: cfg.adam_beta1,
            beta2: cfg.adam_beta2,
            eps: cfg.adam_eps,
            weight_decay: cfg.weight_decay,
            exp_avg: flat.zeros_like(),
            exp_avg_sq: flat.zeros_like(),
            step: Tensor::zeros([], (Kind::Float, flat.device())),
            lr: Tensor::full([], cfg.lr, (Kind::Float, flat.device())),
            fused: true,
        }
    }

    /// One update of `param` with gradient `grad` at learning rate `lr`, scaled
    /// by `keep` (0-dim, 0 or 1): [`AdamW::set_lr`], then [`AdamW::apply`].
    pub fn update(&mut self, param: &Tensor, grad: &Tensor, lr: f64, keep: &Tensor) {
        self.set_lr(lr);
        self.apply(param, grad, keep);
    }

    /// Set the learning rate the next [`AdamW::apply`] uses (a scalar fill on the
    /// device: no synchronisation).
    pub fn set_lr(&mut self, lr: f64) {
        let _ = tch::no_grad(|| self.lr.fill_(lr));
    }

    /// The update at the rate in `self.lr`. Only device work, with no value read
    /// on the host, so a CUDA graph can record it.
    ///
    /// libtorch's fused AdamW kernel (one pass; [`fused_update`]) where it
    /// accepts the tensors, else the same update as separate tensor ops.
    pub fn apply(&mut self, param: &Tensor, grad: &Tensor, keep: &Tensor) {
        if self.fused {
            let _ = tch::no_grad(|| self.step.g_add_(keep));
            let skip = -keep + 1.0;
            if fused_update(self, param, grad, &skip) {
                return;
            }
            // Not accepted (never seen on CPU or CUDA f32): undo the count, go unfused.
            let _ = tch::no_grad(|| self.step.g_sub_(keep));
            self.fused = false;
        }
        self.unfused_apply(param, grad, keep);
    }

    /// [`AdamW::update`] as separate tensor ops (about ten passes over the buffers).
    pub fn unfused_update(&mut self, param: &Tensor, grad: &Tensor, lr: f64, keep: &Tensor) {
        self.set_lr(lr);
        self.unfused_apply(param, grad, keep);
    }

    fn unfused_apply(&mut self, param: &Tensor, grad: &Tensor, keep: &Tensor) {
        let lr = &self.lr;
        let mut param = param.shallow_clone();
        tch::no_grad(|| {
            let _ = self.step.g_add_(keep);
            // Decoupled weight decay: θ ← θ·(1 − lr·λ).
            if self.weight_decay != 0.0 {
                let factor = keep * lr * (-self.weight_decay) + 1.0;
                let _ = param.g_mul_(&factor);
            }
            let _ = self
                .exp_avg
                .lerp_tensor_(grad, &(keep * (1.0 - self.beta1)));
            let _ = self
                .exp_avg_sq
                .lerp_tensor_(&grad.square(), &(keep * (1.0 - self.beta2)));
            // Bias corrections 1 − β^step, computed on the device (clamped so a run whose
            // first steps were all skipped divides by a tiny number times keep = 0).
            let bc1 = (-(&self.step * self.beta1.ln()).exp() + 1.0).clamp_min(1e-12);
            let bc2 = (-(&self.step * self.beta2.ln()).exp() + 1.0).clamp_min(1e-12);
            let denom = (self.exp_avg_sq.sqrt() / bc2.sqrt()) + self.eps;
            let step_size = keep * lr / bc1;
            let _ = param.g_sub_(&(&self.exp_avg / denom * step_size));
        });
    }
}

/// Scale `grad` in place so its global L2 norm is at most `max_norm` (0 = no clipping),
/// as `torch.nn.utils.clip_grad_norm_` does (coefficient max_norm/(norm + 1e-6), clamped at 1).
/// Returns the norm before clipping (0-dim, on the device: reading it syncs).
pub fn clip_grad_norm(grad: &Tensor, max_norm: f64) -> Tensor {
    let mut grad = grad.shallow_clone();
    tch::no_grad(|| {
        let norm = grad.norm();
        if max_norm > 0.0 {
            let coef = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
            let _ = grad.g_mul_(&coef);
        }
        norm
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::run::LrSchedule;
    use tch::{nn, nn::OptimizerConfig, Device};

    #[test]
    fn lr_schedules_follow_their_formulas() {
        let mut c = TrainConfig {
            lr: 1.0,
            steps: 100,
            warmup_steps: 10,
            ..Default::default()
        };
        assert_eq!(c.lr_at(50), 1.0);
        c.lr_schedule = LrSchedule::Warmup;
        assert!((c.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((c.lr_at(4) - 0.5).abs() < 1e-12);
        assert_eq!(c.lr_at(9), 1.0);
        assert_eq!(c.lr_at(99), 1.0);
        c.lr_schedule = LrSchedule::Cosine;
        assert!((c.lr_at(4) - 0.5).abs() < 1e-12);
        assert!((c.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((c.lr_at(55) - 0.5).abs() < 1e-12); // halfway through the decay
        assert!(c.lr_at(100).abs() < 1e-12);
    }

    /// Our flat AdamW against libtorch's own AdamW (tch's nn::AdamW) on the same problem.
    #[test]
    fn flat_adamw_matches_torch_adamw() {
        tch::manual_seed(0);
        let target = Tensor::randn([7], (Kind::Float, Device::Cpu));
        let init = Tensor::randn([7], (Kind::Float, Device::Cpu));
        let cfg = TrainConfig {
            weight_decay: 0.01,
            ..Default::default()
        };
        // Reference.
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &init);
        let mut opt = nn::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            wd: 0.01,
            eps: 1e-8,
            amsgrad: false,
        }
        .build(&vs, 1e-2)
        .unwrap();
        // Ours.
        let p = init.copy().set_requires_grad(false);
        let mut ours = AdamW::new(&cfg, &p);
        // The unfused form, on its own copy.
        let q = init.copy().set_requires_grad(false);
        let mut unfused = AdamW::new(&cfg, &q);
        let keep = Tensor::ones([], (Kind::Float, Device::Cpu));
        for i in 0..20 {
            // A rate that changes every step: each update must use its own.
            let lr = 1e-2 * (1 + i % 3) as f64;
            opt.set_lr(lr);
            let loss = (&w - &target).square().sum(Kind::Float) * w.sin().sum(Kind::Float);
            opt.zero_grad();
            loss.backward();
            let g = w.grad().copy();
            // Same gradient formula at our parameters.
            let pg = p.copy().set_requires_grad(true);
            let l2 = (&pg - &target).square().sum(Kind::Float) * pg.sin().sum(Kind::Float);
            l2.backward();
            let our_g = pg.grad();
            assert!(our_g.allclose(&g, 1e-5, 1e-6, false));
            opt.step();
            ours.update(&p, &our_g, lr, &keep);
            unfused.unfused_update(&q, &our_g, lr, &keep);
            assert!(ours.fused, "libtorch refused the fused kernel");
            assert!(p.allclose(&w.detach(), 1e-5, 1e-6, false), "{p:?} vs {w:?}");
            assert!(q.allclose(&w.detach(), 1e-5, 1e-6, false), "{q:?} vs {w:?}");
        }
        assert_eq!(ours.step.double_value(&[]), 20.0);
    }

    #[test]
    fn a_kept_out_step_changes_nothing() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]);
        let cfg = TrainConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        for fused in [true, false] {
            let mut opt = AdamW::new(&cfg, &p);
            opt.fused = fused;
            let zero = Tensor::zeros([], (Kind::Float, Device::Cpu));
            opt.update(&p, &Tensor::from_slice(&[0.5f32, 0.5]), 0.1, &zero);
            assert_eq!(opt.fused, fused);
            assert_eq!(Vec::<f32>::try_from(&p).unwrap(), vec![1.0, -2.0]);
            assert_eq!(opt.step.double_value(&[]), 0.0);
            assert_eq!(opt.exp_avg.abs().sum(Kind::Float).double_value(&[]), 0.0);
            assert_eq!(opt.exp_avg_sq.abs().sum(Kind::Float).double_value(&[]), 0.0);
        }
    }

    #[test]
    fn clipping_scales_to_the_max_norm_and_reports_the_norm_before() {
        let g = Tensor::from_slice(&[3.0f32, 4.0]);
        let n = clip_grad_norm(&g, 1.0);
        assert!((n.double_value(&[]) - 5.0).abs() < 1e-6);
        assert!((g.norm().double_value(&[]) - 1.0).abs() < 1e-5);
        let g = Tensor::from_slice(&[0.3f32, 0.4]);
        let _ = clip_grad_norm(&g, 1.0);
        assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![0.3, 0.4]);
    }
}
