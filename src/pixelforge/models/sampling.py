"""Sampling from the models: the diffusion denoising loop (classifier-free guidance) and images as uint8."""

from __future__ import annotations

import torch

from pixelforge.models.diffusion import GUIDANCE, DiffusionConfig, denoise, sampler


@torch.inference_mode()
def sample_diffusion(
    unet: torch.nn.Module,
    cfg: DiffusionConfig,
    cond: torch.Tensor | None,
    uncond: torch.Tensor | None,
    *,
    steps: int = 50,
    sampler_name: str = "ddim",
    guidance: float = GUIDANCE,
    generator: torch.Generator,
    device: torch.device,
    n: int | None = None,
) -> torch.Tensor:
    """Images in [-1, 1], (B, 3, S, S), for a batch of conditions.

    ``cond``: (B, L, D) text embeddings, (B,) class ids, or None (unconditional: ``n`` images); ``uncond`` the
    matching "no condition" (the empty caption's embedding, or the null class id). Noise comes
    from ``generator`` on the CPU, so a seed gives the same images on every device.
    """
    sched = sampler(sampler_name, cfg)
    sched.set_timesteps(steps)
    b = cond.shape[0] if cond is not None else (n or 1)
    size = cfg.image_size
    # 1. x_T ~ N(0, I)   x: (B, 3, S, S)
    x = torch.randn((b, 3, size, size), generator=generator).to(device) * getattr(sched, "init_noise_sigma", 1.0)
    guided = cond is not None and uncond is not None and guidance != 1.0
    both = torch.cat([uncond, cond]).to(device) if guided else (cond.to(device) if cond is not None else None)
    for i, t in enumerate(sched.timesteps):
        # 2. predict noise / velocity, both halves in one batch when guiding
        inp = torch.cat([x, x]) if guided else x
        if hasattr(sched, "scale_model_input"):  # flow matching's Euler takes the sample as it is
            inp = sched.scale_model_input(inp, t)
        # a flow model's time is its noise fraction s times T, from the scheduler's sigmas (dpm++ rounds its
        # timesteps to integers: 124 for s = 0.1249, off by 0.7%); a DDPM model's an integer timestep
        if cfg.prediction == "flow":
            s = float(sched.sigmas[i]) * cfg.timesteps
            tt = torch.full((inp.shape[0],), s, device=device, dtype=torch.float32)
        else:
            tt = torch.full((inp.shape[0],), int(t), device=device, dtype=torch.long)
        out = denoise(unet, cfg, inp, tt, both)
        if guided:
            # 3. classifier-free guidance: u + w (c - u)
            u, c = out.chunk(2)
            out = u + guidance * (c - u)
        # 4. one reverse step x_t -> x_{t-1}
        x = sched.step(out, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (B, 3, H, W) -> uint8 (B, H, W, 3) on the CPU."""
    return ((x.float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
