"""Operators per ddpm-cifar10 training step under each precision, on the CPU.

What `train.precision = "bf16-pure"` saves is the cast kernels that bf16
autocast launches around every convolution and GroupNorm. This counts them
with PyTorch's profiler on the reference port of our UNet (the same libtorch
operators ddpm-lab calls): one forward + backward step for fp32, bf16
autocast, and the network held in bf16; then times a few steps of each
(the times drift on a shared machine; the counts do not).

    python3 benches/op_count.py [--batch 4] [--preset ddpm-cifar10] [--steps 5]
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ddpm_reference import UNet  # noqa: E402


def step_fn(model, mode, batch, res):
    x = torch.randn(batch, 3, res, res)
    t = torch.randint(0, 1000, (batch,))
    noise = torch.randn_like(x)

    def step():
        if mode == "bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x, t)
        else:
            out = model(x.to(next(model.parameters()).dtype), t)
        F.mse_loss(out.float(), noise).backward()
        for p in model.parameters():
            p.grad = None

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--preset", default="ddpm-cifar10")
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    print(f"{a.preset} 3x{a.resolution}x{a.resolution}, batch {a.batch}, {torch.get_num_threads()} threads")
    for mode in ["fp32", "bf16", "bf16-pure"]:
        torch.manual_seed(0)
        model = UNet(a.preset, 3, a.resolution)
        if mode == "bf16-pure":
            model = model.to(torch.bfloat16)
        step = step_fn(model, mode, a.batch, a.resolution)
        step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step()
        ev = prof.key_averages()
        ops = sum(e.count for e in ev if e.key.startswith("aten::"))
        copies = sum(e.count for e in ev if e.key == "aten::copy_")
        start = time.perf_counter()
        for _ in range(a.steps):
            step()
        ms = (time.perf_counter() - start) / a.steps * 1000
        print(f"{mode:10} aten operators per step {ops:6,}  copy_ {copies:5,}  {ms:8.1f} ms/step", flush=True)


if __name__ == "__main__":
    main()
