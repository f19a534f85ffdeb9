"""Diffusion on the shared loop: DDPM training of a diffusers UNet, conditioned on nothing, a class or text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pixelforge.errors import UsageError
from pixelforge.models.diffusion import (
    GUIDANCE,
    DiffusionConfig,
    build_unet,
    denoise,
    noise_levels,
    snr_weights,
    train_scheduler,
)
from pixelforge.models.sampling import invert_diffusion, sample_diffusion
from pixelforge.models.text import CaptionCache, text_encoder
from pixelforge.train.data import ImageTable
from pixelforge.train.families import Family, class_ids


class DiffusionFamily(Family):
    name = "diffusion"
    config_cls = DiffusionConfig
    ema_names = ("unet",)
    # measured on the tiny text UNet (benchmarks/text2img_shapes.py, 500 steps): peak lr 1.5e-3 after 50
    # warm-up steps drew the asked colour 0.77 of the time, 4e-4 after 200 steps 0.29
    # cpu_bf16: on a CPU with AVX512-BF16 the tiny text UNet trains at 55 instead of 45 images/s (batch 16,
    # 2 cores; 1,000 instead of 893 steps in the 5-minute shapes benchmark); elsewhere it is ignored
    train_defaults = {"lr": 1.5e-3, "warmup_steps": 50, "cpu_bf16": True}
    splits_draws = True  # eps, t and the dropped conditions go through draw_rows (exact under DDP)

    def __init__(self, cfg: DiffusionConfig, device: torch.device, train_cfg: Any = None):
        super().__init__(cfg, device, train_cfg)
        self.noise = train_scheduler(cfg)
        self.alphas = self.noise.alphas_cumprod.to(device)
        self.captions: CaptionCache | None = None
        # channels_last feeds cuDNN's fastest kernels; on CPUs the UNet's group norms make it ~15% slower
        # (measured: tiny text UNet, batch 64, one thread: 2.9 s contiguous vs 3.4 s channels_last per step)
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    # -- set-up ----------------------------------------------------------------------------------
    def prepare(self, train: ImageTable, val: ImageTable) -> None:
        """Check the data carries the condition; embed every caption once."""
        cfg = self.cfg
        if cfg.condition == "class":
            cfg.num_classes = class_ids(train, "--condition class")
            self.sample_conds = list(range(cfg.num_classes))
        if cfg.condition == "text":
            if any(c is None for c in train.captions):
                raise UsageError(
                    "--condition text: some samples have no caption; curate them out "
                    "(pixelforge curate --where 'caption IS NOT NULL') or use --condition class|none"
                )
            self._caption_cache().add([""] + list(train.captions) + [c for c in val.captions if c])
            cfg.text_dim = self.captions.encoder.dim
            self.sample_conds = sorted({c for c in val.captions if c})[:16] or sorted(set(train.captions))[:16]

    def _caption_cache(self) -> CaptionCache:
        if self.captions is None:
            self.captions = CaptionCache(
                text_encoder(self.cfg.text_encoder, self.cfg.text_tokens, layer=self.cfg.text_layer)
            )
        return self.captions

    def build(self) -> dict[str, torch.nn.Module]:
        return {"unet": build_unet(self.cfg).to(self.device, memory_format=self.memory_format)}

    # -- conditions ------------------------------------------------------------------------------
    def condition(self, labels: torch.Tensor, captions: list[str | None], drop: torch.Tensor | None):
        """The model's condition for a batch; ``drop`` (B,) bool replaces it by "no condition"."""
        cfg = self.cfg
        if cfg.condition == "class":
            ids = labels.clone()
            if drop is not None:
                ids[drop] = cfg.num_classes
            return ids.to(self.device)
        if cfg.condition == "text":
            texts = [("" if drop is not None and drop[i] else c) for i, c in enumerate(captions)]
            return self.captions(texts).to(self.device)
        return None

    # -- training --------------------------------------------------------------------------------
    def loss_terms(self, modules, x0, labels, captions, gen, step, train=True, rows=None, sample_weights=None):
        """The denoising loss on a batch x0 (B, 3, S, S) in [-1, 1]; all randomness from ``gen`` (CPU).

        ``sample_weights`` (B,): the loss is the weighted mean over the images (reward-weighted regression)."""
        cfg = self.cfg
        b = x0.shape[0]
        # 1. eps ~ N(0, I), a noise level per image, and which conditions are dropped (classifier-free guidance)
        eps = self.draw_rows(lambda s: torch.randn(s, generator=gen), x0.shape, rows).to(self.device)
        if cfg.prediction != "flow" and cfg.timestep_sampling == "uniform":
            t = self.draw_rows(lambda s: torch.randint(0, cfg.timesteps, s, generator=gen), (b,), rows).to(self.device)
        else:
            level = noise_levels(cfg, self.draw_rows(lambda s: torch.randn(s, generator=gen), (b,), rows))
            level = level.to(self.device)
            t = (level * cfg.timesteps).long().clamp(0, cfg.timesteps - 1)
        drop = (
            self.draw_rows(lambda s: torch.rand(s, generator=gen), (b,), rows) < cfg.cond_drop
            if train and cfg.condition != "none"
            else None
        )
        x0 = x0.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        cond = self.condition(labels, captions, drop)
        if cfg.prediction == "flow":
            # 2f. x_s = (1 - s) x0 + s eps on the straight line; the velocity dx/ds = eps - x0 is the target
            s = level.view(b, 1, 1, 1)
            pred = denoise(modules["unet"], cfg, (1 - s) * x0 + s * eps, level * cfg.timesteps, cond)
            if sample_weights is not None:
                return {"loss": _weighted_mse(pred, eps - x0, sample_weights)}
            return {"loss": F.mse_loss(pred.float(), (eps - x0).float())}
        # 2. x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps   (eq. 4 of Ho et al. 2020)
        a = self.alphas[t].view(b, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        # 3. target: eps, or v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022)
        target = eps if cfg.prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0
        pred = denoise(modules["unet"], cfg, xt, t, cond)
        if not cfg.snr_gamma:
            if sample_weights is not None:
                return {"loss": _weighted_mse(pred, target, sample_weights)}
            return {"loss": F.mse_loss(pred.float(), target.float())}
        # 4. Min-SNR-gamma: per-sample MSE weighted by min(SNR, gamma) / SNR (or / (SNR + 1) for v)
        weights = snr_weights(self.alphas, t, cfg.snr_gamma, cfg.prediction)
        if sample_weights is not None:
            weights = weights * sample_weights.to(weights.device)
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        return {"loss": (per_sample * weights).mean()}

    # -- sampling --------------------------------------------------------------------------------
    def generate(
        self,
        modules,
        conds,
        gen,
        *,
        steps: int = 25,
        sampler: str = "ddim",
        guidance: float = GUIDANCE,
        init: torch.Tensor | None = None,
        **_: Any,
    ) -> torch.Tensor:
        cfg, n = self.cfg, len(conds)
        if cfg.condition == "class":
            cond = torch.tensor(conds, dtype=torch.long)
            uncond = torch.full((n,), cfg.num_classes, dtype=torch.long)
        elif cfg.condition == "text":
            cache = self._caption_cache()
            cond, uncond = cache(conds), cache([""] * n)
        else:
            cond = uncond = None
        return sample_diffusion(
            modules["unet"],
            cfg,
            cond,
            uncond,
            steps=steps,
            sampler_name=sampler,
            guidance=guidance,
            generator=gen,
            device=self.device,
            n=n,
            init=init,
        )

    def invert(self, modules, images: torch.Tensor, steps: int = 50) -> torch.Tensor:
        """The starting noise that would sample into ``images`` ((B, 3, S, S) in [-1, 1]), unconditionally."""
        cfg, n = self.cfg, images.shape[0]
        if cfg.condition == "class":
            uncond = torch.full((n,), cfg.num_classes, dtype=torch.long)
        elif cfg.condition == "text":
            uncond = self._caption_cache()([""] * n)
        else:
            uncond = None
        return invert_diffusion(modules["unet"], cfg, images, uncond, steps=steps, device=self.device)

    def save_extras(self, run: Path) -> None:
        """Keep the run's caption embeddings beside it (generation reuses the same encoder)."""
        if self.captions is None:
            return
        from safetensors.torch import save_file

        table = self.captions.table
        keys = sorted(table)
        save_file(
            {"embeddings": torch.stack([table[k] for k in keys])},
            str(run / "text_cache.safetensors"),
            metadata={"captions": "\n".join(k.replace("\n", " ") for k in keys)},
        )


def _weighted_mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The mean over images of each image's MSE times its weight."""
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    return (per_sample * weights.to(per_sample.device)).mean()
