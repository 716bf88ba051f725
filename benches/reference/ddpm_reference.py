"""The PyTorch reference that `just bench` measures ddpm-lab against.

* ``UNet``: a faithful PyTorch port of ddpm-lab's UNet (src/model/unet.rs and
  src/model/embedding.rs), module for module and with the same parameter
  names, so ddpm-lab's weights load into it unchanged (tests/bench_reference.rs
  checks the outputs agree and the parameter counts are equal).
* ``DDPMTrainer``: the chapter's trainer (docs: shared/reference/ddpm_training.md,
  section 3) in PyTorch eager: AdamW, clipping at 1.0, one EMA updated per
  parameter, the simple ε loss, metrics read with ``.item()`` every step,
  ``torch.amp`` autocast (plus a GradScaler in fp16) — run as its users run it.
* ``ddim_sample``: the usual deterministic DDIM loop (η = 0, x̂₀ clipped) on the
  same respaced timesteps ddpm-lab visits.

Usage (one JSON line on stdout each):
    python ddpm_reference.py params  --preset unet-tiny --channels 1 --resolution 28
    python ddpm_reference.py train   --preset unet-tiny --channels 1 --resolution 28 \
        --batch 64 --warmup 5 --steps 5 --repeats 5 [--device cuda --precision bf16]
    python ddpm_reference.py ddim    --preset unet-tiny ... --batch 16 --sampling-steps 50
    python ddpm_reference.py forward --preset unet-tiny ... --weights W.safetensors \
        --io IO.safetensors        (max |ours − reference| on IO's x, t, labels)
"""

import argparse
import copy
import json
import math
import resource
import struct
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# ──────────────────────────────────────────────────────────────────────
# The model: ddpm-lab's presets (src/model/presets.rs)
# ──────────────────────────────────────────────────────────────────────

PRESETS = {
    # name: ch, ch_mult, num_res_blocks, attn_resolutions, dropout, norm_groups
    "ddpm-cifar10": (128, [1, 2, 2, 2], 2, [16], 0.1, 32),
    "unet-mnist-small": (32, [1, 2, 2], 2, [7], 0.1, 8),
    "unet-tiny": (16, [1, 2], 1, [], 0.0, 4),
}


def timestep_embedding(t, dim):
    """Sinusoidal embedding, sin then cos, frequencies exp(−ln(10⁴)·i/(half−1))."""
    half = dim // 2
    shift = 1.0 if half > 1 else 0.0
    freqs = torch.exp(
        torch.arange(half, dtype=torch.float32, device=t.device)
        * (-math.log(10000.0) / (half - shift))
    )
    args = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb


def zero_(module):
    nn.init.zeros_(module.weight)
    return module


class CondEmbedding(nn.Module):
    def __init__(self, base_dim, dim, num_classes):
        super().__init__()
        self.base_dim = base_dim
        self.time_linear_1 = nn.Linear(base_dim, dim)
        self.time_linear_2 = nn.Linear(dim, dim)
        self.label_embedding = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, t, labels=None):
        # In the weights' dtype (a no-op in f32; bf16 for a network held in bf16, as ddpm-lab's bf16-pure).
        sin = timestep_embedding(t, self.base_dim).to(self.time_linear_1.weight.dtype)
        emb = self.time_linear_2(F.silu(self.time_linear_1(sin)))
        if self.label_embedding is not None and labels is not None:
            emb = emb + self.label_embedding(labels)
        return emb


class ResBlock(nn.Module):
    def __init__(self, i, o, temb_dim, groups, dropout):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, i)
        self.conv1 = nn.Conv2d(i, o, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, o)
        self.norm2 = nn.GroupNorm(groups, o)
        self.conv2 = zero_(nn.Conv2d(o, o, 3, padding=1))
        self.conv_shortcut = nn.Conv2d(i, o, 1) if i != o else None
        self.dropout = dropout

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.dropout(F.silu(self.norm2(h)), self.dropout, self.training))
        skip = self.conv_shortcut(x) if self.conv_shortcut is not None else x
        return skip + h


class AttnBlock(nn.Module):
    def __init__(self, ch, groups, heads):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, ch)
        self.to_q = nn.Linear(ch, ch)
        self.to_k = nn.Linear(ch, ch)
        self.to_v = nn.Linear(ch, ch)
        self.to_out = zero_(nn.Linear(ch, ch))
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        seq = self.group_norm(x).view(b, c, h * w).transpose(1, 2)

        def split(z):
            return z.view(b, h * w, self.heads, c // self.heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.to_q(seq)), split(self.to_k(seq)), split(self.to_v(seq)))
        a = a.transpose(1, 2).reshape(b, h * w, c)
        return x + self.to_out(a).transpose(1, 2).view(b, c, h, w)


class Level(nn.Module):
    """One resolution: residual blocks, their attention, and a resampling conv."""

    def __init__(self):
        super().__init__()
        self.res = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.downsample = None
        self.upsample = None


class Mid(nn.Module):
    def __init__(self, ch, temb_dim, groups, dropout, heads):
        super().__init__()
        self.res1 = ResBlock(ch, ch, temb_dim, groups, dropout)
        self.attn = AttnBlock(ch, groups, heads)
        self.res2 = ResBlock(ch, ch, temb_dim, groups, dropout)


class UNet(nn.Module):
    """ddpm-lab's DDPM UNet (src/model/unet.rs), with its parameter names."""

    def __init__(self, preset, in_channels, resolution, num_classes=0, heads=1):
        super().__init__()
        ch, ch_mult, nrb, attn_res, dropout, groups = PRESETS[preset]
        temb_dim = 4 * ch
        self.embedding = CondEmbedding(ch, temb_dim, num_classes)
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleDict()
        self.up = nn.ModuleDict()
        skip_ch = [ch]
        cur, res = ch, resolution
        # Forward order: a list of (level, kind, index) in the order ddpm-lab applies them.
        self.down_order = []
        for level, mult in enumerate(ch_mult):
            lv = Level()
            out = ch * mult
            for i in range(nrb):
                lv.res.append(ResBlock(cur, out, temb_dim, groups, dropout))
                cur = out
                if res in attn_res:
                    lv.attn.append(AttnBlock(cur, groups, heads))
                self.down_order.append((str(level), i, res in attn_res, False))
                skip_ch.append(cur)
            if level + 1 < len(ch_mult):
                lv.downsample = nn.Conv2d(cur, cur, 3, stride=2, padding=1)
                self.down_order.append((str(level), None, False, True))
                skip_ch.append(cur)
                res //= 2
            self.down[str(level)] = lv
        self.mid = Mid(cur, temb_dim, groups, dropout, heads)
        self.up_order = []
        for level in reversed(range(len(ch_mult))):
            lv = Level()
            out = ch * ch_mult[level]
            for i in range(nrb + 1):
                skip = skip_ch.pop()
                lv.res.append(ResBlock(cur + skip, out, temb_dim, groups, dropout))
                cur = out
                has_attn = res in attn_res
                if has_attn:
                    lv.attn.append(AttnBlock(cur, groups, heads))
                up = i == nrb and level > 0
                if up:
                    lv.upsample = nn.Conv2d(cur, cur, 3, padding=1)
                    res *= 2
                self.up_order.append((str(level), i, has_attn, up))
            self.up[str(level)] = lv
        self.norm_out = nn.GroupNorm(groups, cur)
        self.conv_out = zero_(nn.Conv2d(cur, in_channels, 3, padding=1))

    def forward(self, x, t, labels=None):
        temb = self.embedding(t, labels)
        h = self.conv_in(x)
        skips = [h]
        for level, i, has_attn, down in self.down_order:
            lv = self.down[level]
            if down:
                h = lv.downsample(h)
            else:
                h = lv.res[i](h, temb)
                if has_attn:
                    h = lv.attn[i](h)
            skips.append(h)
        h = self.mid.res2(self.mid.attn(self.mid.res1(h, temb)), temb)
        for level, i, has_attn, up in self.up_order:
            lv = self.up[level]
            h = lv.res[i](torch.cat([h, skips.pop()], dim=1), temb)
            if has_attn:
                h = lv.attn[i](h)
            if up:
                h = lv.upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


# ──────────────────────────────────────────────────────────────────────
# The chapter's trainer (section 3), epsilon prediction and simple weighting
# ──────────────────────────────────────────────────────────────────────


def build_schedule(n_timesteps=1000, beta_start=1e-4, beta_end=0.02, device="cpu"):
    betas = torch.linspace(beta_start, beta_end, n_timesteps)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return {
        "alphas_cumprod": alphas_cumprod.to(device),
        "sqrt_alphas_cumprod": alphas_cumprod.sqrt().to(device),
        "sqrt_one_minus_alphas_cumprod": (1.0 - alphas_cumprod).sqrt().to(device),
    }


class EMAModel:
    def __init__(self, model, decay=0.9999):
        self.decay = decay
        self.shadow = copy.deepcopy(model)
        self.shadow.requires_grad_(False)
        self.shadow.eval()

    @torch.no_grad()
    def update(self, model):
        for ema_p, p in zip(self.shadow.parameters(), model.parameters()):
            ema_p.data.mul_(self.decay).add_(p.data, alpha=1.0 - self.decay)


class DDPMTrainer:
    def __init__(self, model, device, lr=2e-4, ema_decay=0.9999, grad_clip=1.0, amp_dtype=None, n_timesteps=1000):
        self.model = model.to(device)
        self.device = device
        self.n_timesteps = n_timesteps
        self.grad_clip = grad_clip
        self.amp_dtype = amp_dtype
        self.schedule = build_schedule(n_timesteps, device=device)
        self.ema = EMAModel(model, decay=ema_decay)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and device.type == "cuda")
        self.global_step = 0

    def q_sample(self, x_0, t):
        noise = torch.randn_like(x_0)
        a = self.schedule["sqrt_alphas_cumprod"][t][:, None, None, None]
        s = self.schedule["sqrt_one_minus_alphas_cumprod"][t][:, None, None, None]
        return a * x_0 + s * noise, noise

    def compute_loss(self, x_0):
        t = torch.randint(0, self.n_timesteps, (x_0.shape[0],), device=self.device)
        x_t, noise = self.q_sample(x_0, t)
        pred = self.model(x_t, t)
        per_sample = F.mse_loss(pred.float(), noise, reduction="none").flatten(start_dim=1).mean(dim=1)
        weights = torch.ones(t.shape[0], device=self.device)
        loss = (weights * per_sample).mean()
        metrics = {
            "loss": loss.item(),
            "loss_unweighted": per_sample.mean().item(),
            "mean_t": t.float().mean().item(),
        }
        return loss, metrics

    def train_step(self, x_0):
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.amp.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss, metrics = self.compute_loss(x_0)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = 0.0
        if self.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip).item()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        self.global_step += 1
        metrics.update({"grad_norm": grad_norm, "step": self.global_step})
        return metrics


@torch.no_grad()
def ddim_sample(model, schedule, shape, steps, device, n_timesteps=1000):
    """Deterministic DDIM (η = 0) with x̂₀ clipped, on ddpm-lab's respaced steps."""
    ts = sorted({round(i * (n_timesteps - 1) / (steps - 1)) for i in range(steps)}, reverse=True)
    ab = schedule["alphas_cumprod"]
    x = torch.randn(shape, device=device)
    for k, t in enumerate(ts):
        tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps = model(x, tt)
        a = ab[t]
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        if k + 1 == len(ts):
            x = x0
        else:
            a_prev = ab[ts[k + 1]]
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return x


# ──────────────────────────────────────────────────────────────────────
# safetensors, read by hand (no extra package): 8-byte header size, JSON, bytes
# ──────────────────────────────────────────────────────────────────────

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BOOL": torch.bool}


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        t = torch.frombuffer(bytearray(body[lo:hi]), dtype=DTYPES[meta["dtype"]])
        out[name] = t.reshape(meta["shape"])
    return out


# ──────────────────────────────────────────────────────────────────────
# Command line
# ──────────────────────────────────────────────────────────────────────


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["params", "train", "ddim", "forward"])
    ap.add_argument("--preset", required=True, choices=sorted(PRESETS))
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--resolution", type=int, default=28)
    ap.add_argument("--classes", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sampling-steps", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--ema-decay", type=float, default=0.9999)
    ap.add_argument("--weights")
    ap.add_argument("--io")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as ddpm-lab sets it on CUDA
    torch.manual_seed(0)
    model = UNet(a.preset, a.channels, a.resolution, a.classes).to(device)
    params = sum(p.numel() for p in model.parameters())
    info = {"impl": "pytorch", "what": a.what, "params": params, "threads": torch.get_num_threads(),
            "device": str(device), "batch": a.batch, "torch": torch.__version__}
    if a.what == "params":
        pass
    elif a.what == "forward":
        weights = read_safetensors(a.weights)
        model.load_state_dict(weights, strict=True)
        io = read_safetensors(a.io)
        model.eval()
        with torch.no_grad():
            y = model(io["x"], io["t"], io.get("labels"))
        info["max_abs_diff"] = (y - io["y"]).abs().max().item()
        info["max_abs_y"] = io["y"].abs().max().item()
    elif a.what == "train":
        amp = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
        trainer = DDPMTrainer(model, device, ema_decay=a.ema_decay, amp_dtype=amp)
        data = torch.rand(max(1024, a.batch), a.channels, a.resolution, a.resolution, device=device) * 2 - 1

        def step():
            idx = torch.randint(0, data.shape[0], (a.batch,), device=device)
            return trainer.train_step(data[idx])

        info.update(timed(step, a.warmup, a.steps, a.repeats, device))
        info["per_repeat"] = a.steps
        info["loss"] = step()["loss"]
    else:
        model.eval()
        schedule = build_schedule(device=device)
        shape = (a.batch, a.channels, a.resolution, a.resolution)
        info.update(timed(lambda: ddim_sample(model, schedule, shape, a.sampling_steps, device), a.warmup, 1, a.repeats, device))
        info["per_repeat"] = 1
    if device.type == "cuda":
        info["peak_gpu_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    info["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(info))


def timed(fn, warmup, per_repeat, repeats, device):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    secs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_repeat):
            fn()
        sync()
        secs.append(time.perf_counter() - start)
    return {"secs": secs}


if __name__ == "__main__":
    sys.exit(main())
