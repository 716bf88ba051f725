// Fused AdamW for ddpm-lab's flat buffers: libtorch's `_fused_adamw_` (one
// pass over parameters, gradients and both moments, on the CPU and on CUDA),
// which tch does not expose. The unfused form in optim.rs makes about ten
// passes over the flat buffers with full-size temporaries; on the CPU, for a
// 35.7M-parameter model at a small batch, those passes cost as much as the
// forward and backward.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

extern "C" {

// param, grad, exp_avg, exp_avg_sq: same-shape f32 tensors on one device.
// step: 0-dim f32, already counting this update. found_inf: 0-dim f32, 1 = skip
// this update (an fp16 overflow). lr: 0-dim f32 on the same device (a tensor, so
// that a captured CUDA graph reads each step's rate). Returns 0, or -1 if
// libtorch refused.
int ddpm_fused_adamw(const at::Tensor* param, const at::Tensor* grad, const at::Tensor* exp_avg,
                     const at::Tensor* exp_avg_sq, const at::Tensor* step,
                     const at::Tensor* found_inf, const at::Tensor* lr, double beta1,
                     double beta2, double weight_decay, double eps) {
  try {
    at::NoGradGuard no_grad;
    at::_fused_adamw_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {*step}, *lr, beta1, beta2,
                      weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false,
                      /*grad_scale=*/::std::nullopt, *found_inf);
    return 0;
  } catch (...) {
    return -1;
  }
}
}
