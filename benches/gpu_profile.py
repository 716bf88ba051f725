"""Where a ddpm-cifar10 training step spends its time on a GPU (batch 128).

Uses the reference port of our UNet (same operators as ddpm-lab's, from the
same libtorch) to answer two questions cheaply, for bf16 autocast:
  * is the step bound by the GPU's work or by launching it (CUDA busy time
    against wall time, kernels per step), and which kernels dominate;
  * would channels-last memory format help (forward + backward timed both ways).

    python3 benches/gpu_profile.py
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ddpm_reference import UNet  # noqa: E402

torch.backends.cudnn.benchmark = True
dev = torch.device("cuda")
B = 128


def make(channels_last):
    torch.manual_seed(0)
    m = UNet("ddpm-cifar10", 3, 32).to(dev)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
    return m


def step_fn(m, channels_last):
    x = torch.randn(B, 3, 32, 32, device=dev)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    t = torch.randint(0, 1000, (B,), device=dev)
    noise = torch.randn_like(x)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = m(x, t)
        loss = F.mse_loss(out.float(), noise)
        loss.backward()
        for p in m.parameters():
            p.grad = None
        return loss

    return step


def timeit(step, n=40, warm=15):
    for _ in range(warm):
        step()
    torch.cuda.synchronize()
    s = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - s) / n


for cl in (False, True):
    m = make(cl)
    print(f"forward+backward bf16, channels_last={cl}: {timeit(step_fn(m, cl)) * 1000:.1f} ms/step", flush=True)

m = make(False)
step = step_fn(m, False)
timeit(step, n=5)
from torch.profiler import ProfilerActivity, profile  # noqa: E402

n = 10
torch.cuda.synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    s = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - s) / n
events = prof.key_averages()
on_gpu = [e for e in events if "CUDA" in str(e.device_type)]
busy = sum(e.self_device_time_total for e in on_gpu) / n / 1000.0
kernels = sum(e.count for e in on_gpu) / n
print(f"profiled: wall {wall * 1000:.1f} ms/step (profiler on); GPU busy {busy:.1f} ms/step in {kernels:.0f} "
      "kernels/copies per step (see the table's 'Self CUDA time total' too)")
print(events.table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=60))
