// Autocast control for ddpm-lab. tch exposes only CUDA autocast with its
// default dtype (fp16); bf16 autocast needs the dtype set, which this shim does.
#include <ATen/autocast_mode.h>

extern "C" {

// device: 0 = CPU, 1 = CUDA. dtype: 0 = bfloat16, 1 = float16.
// Turns autocast on for the device with the dtype; returns the previous
// enabled state (0/1), or -1 on error.
int ddpm_autocast_enter(int device, int dtype) {
  try {
    auto dev = device == 1 ? at::kCUDA : at::kCPU;
    bool prev = at::autocast::is_autocast_enabled(dev);
    at::autocast::set_autocast_dtype(dev, dtype == 1 ? at::kHalf : at::kBFloat16);
    at::autocast::set_autocast_enabled(dev, true);
    at::autocast::increment_nesting();
    return prev ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Restores the previous enabled state and clears the cast cache when the
// outermost autocast region ends. Returns 0, or -1 on error.
int ddpm_autocast_exit(int device, int prev_enabled) {
  try {
    auto dev = device == 1 ? at::kCUDA : at::kCPU;
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(dev, prev_enabled == 1);
    return 0;
  } catch (...) {
    return -1;
  }
}
}
