//! Mixed precision (chapter §4.3): autocast regions for bf16 and fp16 (bf16-pure
//! needs none: its weights are bf16, see [`super::flat`]), and the
//! dynamic loss scaler fp16 needs, which behaves like PyTorch's `GradScaler`:
//! initial scale 2^16, ×2 after 2000 consecutive finite steps, ×0.5 and the step
//! skipped when any gradient is inf/NaN, gradients unscaled before clipping.
//!
//! The scaler's state lives on the device and is updated with libtorch's own
//! `_amp_update_scale_`, so deciding whether to skip a step never makes the host
//! wait for the GPU.

use crate::config::run::Precision;
use tch::{Device, Kind, Tensor};

extern "C" {
    fn ddpm_autocast_enter(device: i32, dtype: i32) -> i32;
    fn ddpm_autocast_exit(device: i32, prev_enabled: i32) -> i32;
}

/// Run `f` under autocast for `precision` on `device` (fp32: no autocast).
pub fn autocast<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> T {
    let dtype = match precision {
        // bf16-pure: the weights are bf16 already, so every op runs in bf16.
        Precision::Fp32 | Precision::Bf16Pure => return f(),
        Precision::Bf16 => 0,
        Precision::Fp16 => 1,
    };
    let dev = i32::from(device.is_cuda());
    // SAFETY: plain C functions that toggle libtorch's thread-local autocast state;
    // they catch every C++ exception.
    let prev = unsafe { ddpm_autocast_enter(dev, dtype) };
    let out = f();
    if prev >= 0 {
        unsafe { ddpm_autocast_exit(dev, prev) };
    }
    out
}

pub const INITIAL_SCALE: f64 = 65536.0;
pub const GROWTH_FACTOR: f64 = 2.0;
pub const BACKOFF_FACTOR: f64 = 0.5;
pub const GROWTH_INTERVAL: i64 = 2000;

/// Dynamic loss scaling, on the device.
pub struct LossScaler {
    /// 0-dim f32.
    pub scale: Tensor,
    /// 0-dim int32: consecutive finite steps since the last change.
    pub growth_tracker: Tensor,
    pub enabled: bool,
}

impl LossScaler {
    /// Enabled for fp16 only; otherwise the scale is a constant 1.
    pub fn new(precision: Precision, device: Device) -> Self {
        let enabled = precision == Precision::Fp16;
        LossScaler {
            scale: Tensor::full(
                [],
                if enabled { INITIAL_SCALE } else { 1.0 },
                (Kind::Float, device),
            ),
            growth_tracker: Tensor::zeros([], (Kind::Int, device)),
            enabled,
        }
    }

    /// The loss to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        if self.enabled {
            loss * &self.scale
        } else {
            loss.shallow_clone()
        }
    }

    /// Unscale `grad` in place and say whether the step may be taken: returns `keep`,
    /// a 0-dim f32 that is 1 when every gradient is finite and 0 otherwise (then
    /// `grad` is zeroed, so clipping and the update see finite numbers). Then update
    /// the scale. Without scaling, `keep` is always 1.
    pub fn unscale_and_update(&mut self, grad: &Tensor) -> Tensor {
        let device = grad.device();
        if !self.enabled {
            return Tensor::ones([], (Kind::Float, device));
        }
        let mut grad = grad.shallow_clone();
        tch::no_grad(|| {
            let _ = grad.g_mul_(&self.scale.reciprocal());
            let found_inf = grad.isfinite().all().logical_not().to_kind(Kind::Float);
            let _ = grad.nan_to_num_(0.0, 0.0, 0.0);
            let _ = grad.g_mul_(&(-&found_inf + 1.0));
            let _ = self.scale.internal_amp_update_scale_(
                &self.growth_tracker,
                &found_inf,
                GROWTH_FACTOR,
                BACKOFF_FACTOR,
                GROWTH_INTERVAL,
            );
            -found_inf + 1.0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_backs_off_on_inf_grows_after_2000_clean_steps() {
        let mut s = LossScaler::new(Precision::Fp16, Device::Cpu);
        assert_eq!(s.scale.double_value(&[]), 65536.0);
        let finite = || Tensor::from_slice(&[65536.0f32, -131072.0]);
        // A clean step unscales.
        let g = finite();
        let keep = s.unscale_and_update(&g);
        assert_eq!(keep.double_value(&[]), 1.0);
        assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![1.0, -2.0]);
        // An injected inf: step skipped, gradient zeroed, scale halved, tracker reset.
        let g = Tensor::from_slice(&[f32::INFINITY, 1.0]);
        let keep = s.unscale_and_update(&g);
        assert_eq!(keep.double_value(&[]), 0.0);
        assert_eq!(Vec::<f32>::try_from(&g).unwrap(), vec![0.0, 0.0]);
        assert_eq!(s.scale.double_value(&[]), 32768.0);
        assert_eq!(s.growth_tracker.int64_value(&[]), 0);
        // NaN counts too.
        let _ = s.unscale_and_update(&Tensor::from_slice(&[f32::NAN]));
        assert_eq!(s.scale.double_value(&[]), 16384.0);
        // 1999 clean steps: no growth yet; the 2000th doubles the scale.
        for _ in 0..1999 {
            let _ = s.unscale_and_update(&Tensor::from_slice(&[1.0f32]));
        }
        assert_eq!(s.scale.double_value(&[]), 16384.0);
        assert_eq!(s.growth_tracker.int64_value(&[]), 1999);
        let _ = s.unscale_and_update(&Tensor::from_slice(&[1.0f32]));
        assert_eq!(s.scale.double_value(&[]), 32768.0);
        assert_eq!(s.growth_tracker.int64_value(&[]), 0);
    }

    #[test]
    fn fp32_and_bf16_do_not_scale() {
        let mut s = LossScaler::new(Precision::Bf16, Device::Cpu);
        let g = Tensor::from_slice(&[f32::INFINITY]);
        assert_eq!(s.unscale_and_update(&g).double_value(&[]), 1.0);
        assert_eq!(s.scale_loss(&Tensor::from(3.0f32)).double_value(&[]), 3.0);
    }

    #[test]
    fn bf16_autocast_runs_matmuls_in_bf16_on_the_cpu() {
        let a = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
        let y = autocast(Precision::Bf16, Device::Cpu, || a.matmul(&a));
        assert_eq!(y.kind(), Kind::BFloat16);
        // And autocast is off again afterwards.
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let y = autocast(Precision::Fp32, Device::Cpu, || a.matmul(&a));
        assert_eq!(y.kind(), Kind::Float);
    }
}
