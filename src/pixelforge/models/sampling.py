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
    init: torch.Tensor | None = None,
) -> torch.Tensor:
    """Images in [-1, 1], (B, 3, S, S), for a batch of conditions.

    ``cond``: (B, L, D) text embeddings, (B,) class ids, or None (unconditional: ``n`` images); ``uncond`` the
    matching "no condition" (the empty caption's embedding, or the null class id). Noise comes
    from ``generator`` on the CPU, so a seed gives the same images on every device. ``init``: the
    starting noise x_T itself (B, 3, S, S), when the caller draws it (a Tree-Ring watermark does).
    """
    return sample_with_grad(
        unet,
        cfg,
        cond,
        uncond,
        steps=steps,
        sampler_name=sampler_name,
        guidance=guidance,
        generator=generator,
        device=device,
        n=n,
        init=init,
        grad_steps=0,
    )


def sample_with_grad(
    unet: torch.nn.Module,
    cfg: DiffusionConfig,
    cond: torch.Tensor | None,
    uncond: torch.Tensor | None,
    *,
    steps: int,
    sampler_name: str,
    guidance: float,
    generator: torch.Generator,
    device: torch.device,
    n: int | None = None,
    init: torch.Tensor | None = None,
    grad_steps: int = 0,
) -> torch.Tensor:
    """:func:`sample_diffusion` with the autograd graph kept through its last ``grad_steps`` steps (the
    earlier ones run without it): DRaFT-K's truncated backpropagation of a reward into the UNet
    (Clark et al. 2024). With ``grad_steps`` 0 it is sample_diffusion's loop."""
    sched = sampler(sampler_name, cfg)
    sched.set_timesteps(steps)
    b = cond.shape[0] if cond is not None else (n or 1)
    size = cfg.image_size
    # 1. x_T ~ N(0, I)   x: (B, 3, S, S)
    if init is None:
        init = torch.randn((b, 3, size, size), generator=generator)
    x = init.to(device) * getattr(sched, "init_noise_sigma", 1.0)
    guided = cond is not None and uncond is not None and guidance != 1.0
    both = torch.cat([uncond, cond]).to(device) if guided else (cond.to(device) if cond is not None else None)
    first_grad = len(sched.timesteps) - grad_steps
    was_enabled = torch.is_grad_enabled()
    try:
        for i, t in enumerate(sched.timesteps):
            torch.set_grad_enabled(was_enabled and i >= first_grad)
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
    finally:
        torch.set_grad_enabled(was_enabled)
    return x.clamp(-1, 1)


@torch.inference_mode()
def invert_diffusion(
    unet: torch.nn.Module,
    cfg: DiffusionConfig,
    x0: torch.Tensor,
    uncond: torch.Tensor | None,
    *,
    steps: int = 50,
    device: torch.device,
) -> torch.Tensor:
    """The starting noise x_T that deterministic sampling would have turned into ``x0`` (B, 3, S, S in
    [-1, 1]), by running the sampler's ODE backwards without guidance (DDIM inversion, Song et al. 2021;
    for flow models, Euler steps along the velocity). ``uncond``: the "no condition" of ``denoise``."""
    from pixelforge.models.diffusion import train_scheduler

    x = x0.to(device)
    cond = uncond.to(device) if uncond is not None else None
    if cfg.prediction == "flow":
        # x_s = (1 - s) x0 + s eps, dx/ds = eps - x0 = v: from s = 0 up to s = 1
        levels = torch.linspace(0.0, 1.0, steps + 1)
        for s0, s1 in zip(levels[:-1], levels[1:]):
            tt = torch.full((x.shape[0],), float(s0) * cfg.timesteps, device=device, dtype=torch.float32)
            x = x + (s1 - s0) * denoise(unet, cfg, x, tt, cond)
        return x
    abar = train_scheduler(cfg).alphas_cumprod
    ts = torch.linspace(0, cfg.timesteps - 1, steps + 1).round().long()
    for t0, t1 in zip(ts[:-1], ts[1:]):
        # 1. the model's x0 and eps at t0, then 2. the same x0 and eps put at the noisier t1 (DDIM, eta 0)
        a0, a1 = abar[t0].to(device), abar[t1].to(device)
        out = denoise(unet, cfg, x, torch.full((x.shape[0],), int(t0), device=device, dtype=torch.long), cond)
        if cfg.prediction == "epsilon":
            eps = out
            pred_x0 = (x - (1 - a0).sqrt() * eps) / a0.sqrt()
        else:  # v = sqrt(abar) eps - sqrt(1 - abar) x0
            pred_x0 = a0.sqrt() * x - (1 - a0).sqrt() * out
            eps = (1 - a0).sqrt() * x + a0.sqrt() * out
        x = a1.sqrt() * pred_x0 + (1 - a1).sqrt() * eps
    return x


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (B, 3, H, W) -> uint8 (B, H, W, 3) on the CPU."""
    return ((x.float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
