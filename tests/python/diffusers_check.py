"""diffusers' side of tests/diffusers_export.rs: load a `ddpm-lab export
--format diffusers` folder with diffusers and compare what it computes with
what ddpm-lab computed. Each subcommand prints one JSON line (two
subcommands, as each start of Python and diffusers takes seconds).

    noise EXPORT N SEED DDPM.safetensors DDIM.safetensors
        the noise the diffusers pipelines draw from torch.Generator(SEED) for
        N samples, as the tensor `noise` that `ddpm-lab sample --noise` reads:
        for DDPM, x_T and then one tensor per reverse step in
        DDPMScheduler.step's order (zeros at t = 0, where it draws none); for
        DDIM with eta 0, x_T alone.
    compare EXPORT IO.safetensors SEED DDPM.safetensors DDIM.safetensors [LABEL]
        unet: IO holds x [B, C, H, W], t [B] (int64), optionally labels [B],
        and ddpm-lab's UNet output `out`; the max abs difference of
        UNet2DModel's output on the same input.
        ddpm, ddim: DDPMPipeline, and DDIMPipeline with
        DDIMScheduler.from_config (eta 0, every timestep, x_0 clipped and
        epsilon re-derived from it, as ddpm-lab's DDIM), run with
        torch.Generator(SEED); the max abs difference from ddpm-lab's
        samples in the files, in model units ([-1, 1]). With LABEL, the
        pipelines (which take no class) are replaced by their loop over the
        same scheduler and UNet, with class_labels = LABEL.
"""
import json
import sys

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file


def unet(export, io):
    model = UNet2DModel.from_pretrained(f"{export}/unet").eval()
    d = load_file(io)
    with torch.no_grad():
        out = model(d["x"], d["t"], class_labels=d.get("labels")).sample
    return {"max_abs": (out - d["out"]).abs().max().item(), "scale": d["out"].abs().max().item()}


def shape_of(export, n):
    cfg = UNet2DModel.load_config(f"{export}/unet")
    size = cfg["sample_size"]
    return (n, cfg["in_channels"], size, size)


def noise(export, n, seed, ddpm_out, ddim_out):
    shape = shape_of(export, n)
    steps = DDPMScheduler.from_pretrained(f"{export}/scheduler").config.num_train_timesteps
    shapes = {}
    for sampler, out in [("ddpm", ddpm_out), ("ddim", ddim_out)]:
        g = torch.Generator().manual_seed(seed)
        drawn = [torch.randn(shape, generator=g)]
        if sampler == "ddpm":
            # DDPMScheduler.step draws at every t > 0, from T - 1 down.
            for t in reversed(range(steps)):
                drawn.append(torch.randn(shape, generator=g) if t > 0 else torch.zeros(shape))
        stacked = torch.stack(drawn).contiguous()
        save_file({"noise": stacked}, out)
        shapes[sampler] = list(stacked.shape)
    print(json.dumps(shapes))


def labelled_loop(export, scheduler, shape, seed, label, eta):
    """The pipelines' loop, with class labels."""
    model = UNet2DModel.from_pretrained(f"{export}/unet").eval()
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(shape, generator=g)
    labels = torch.full((shape[0],), label, dtype=torch.long)
    scheduler.set_timesteps(scheduler.config.num_train_timesteps)
    extra = {"eta": eta, "use_clipped_model_output": True} if isinstance(scheduler, DDIMScheduler) else {}
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = model(image, t, class_labels=labels).sample
            image = scheduler.step(out, t, image, generator=g, **extra).prev_sample
    return image


def pipeline(export, seed, sampler, ours, label=None):
    x = load_file(ours)["samples"]
    ddpm = DDPMPipeline.from_pretrained(export)
    steps = ddpm.scheduler.config.num_train_timesteps
    if sampler == "ddim":
        scheduler = DDIMScheduler.from_config(ddpm.scheduler.config)
        pipe = DDIMPipeline(unet=ddpm.unet, scheduler=scheduler)
        kwargs = {"eta": 0.0, "use_clipped_model_output": True}
    else:
        pipe, kwargs = ddpm, {}
    pipe.set_progress_bar_config(disable=True)
    if label is None:
        images = pipe(
            batch_size=x.shape[0],
            generator=torch.Generator().manual_seed(seed),
            num_inference_steps=steps,
            output_type="np",
            **kwargs,
        ).images
        # The pipelines return (x / 2 + 0.5) clamped to [0, 1], channels last.
        theirs = torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1
        ours = x.clamp(-1, 1)
    else:
        theirs = labelled_loop(export, pipe.scheduler, tuple(x.shape), seed, label, 0.0)
        ours = x
    return {"max_abs": (theirs - ours).abs().max().item(), "scale": ours.abs().max().item()}


def compare(export, io, seed, ddpm, ddim, label=None):
    print(
        json.dumps(
            {
                "unet": unet(export, io),
                "ddpm": pipeline(export, seed, "ddpm", ddpm, label),
                "ddim": pipeline(export, seed, "ddim", ddim, label),
            }
        )
    )


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "noise":
        noise(args[0], int(args[1]), int(args[2]), args[3], args[4])
    elif cmd == "compare":
        compare(args[0], args[1], int(args[2]), args[3], args[4], int(args[5]) if len(args) > 5 else None)
    else:
        sys.exit(f"unknown subcommand {cmd}")
