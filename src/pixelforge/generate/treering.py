"""The ``treering`` watermark of pixelforge's own diffusion runs: a key written into the Fourier transform
of the starting noise, found again by running the run's sampler backwards (Tree-Ring, Wen et al. 2023).

1. Marking (generate): x_T ~ N(0, I) as usual, then in channel CHANNEL the Fourier coefficients
   within RADIUS_SHARE of the image side from the centre (the constant term left alone) are replaced
   by the key: one real value per integer radius (rings: the same under any rotation). The key is
   symmetric, so the noise stays real; the sampler turns it into an image as it would any noise, so
   the mark is not added to the pixels at all.
2. Reading (verify --run RUN): the image is resized to the run's side, DDIM-inverted with the run's
   own model (unconditionally, INVERT_STEPS steps: models.sampling.invert_diffusion) back to an
   estimate of x_T, and its coefficients in the key's half-plane are correlated with the key:
   z = sum(Re F . K) / sqrt(sigma^2 sum K^2), sigma^2 from the ring just outside the key; "marked"
   is z >= Z_MIN. Were the inverted noise of an unmarked image white, z would be a standard normal;
   it is not (benchmarks/watermark_attacks.py: mean -0.83, sd 2.10 over 1,960 unmarked images, the
   low frequencies stronger than the ring beside them), so the false-positive rate stated is the
   measured one, not the normal tail (3.2e-5).

It needs the run at verify time and carries no payload (the run is what it identifies). A resize does
not matter (the image is resized to the model's side anyway); a crop rescales the content, and the
rings' radii with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

CHANNEL = 0  # the noise channel carrying the key (the paper marks one latent channel)
RADIUS_SHARE = 5 / 32  # the key's radius in Fourier bins, as a share of the side (the paper: 10 of 64)
INVERT_STEPS = 50
Z_MIN = 4.0
# measured, benchmarks/watermark_attacks.py 2026-12-07: 1 of 1,960 unmarked images (the unmarked generated
# ones under every attack, photo crops, shapes renders, digits) reached z >= 4
MEASURED_FALSE_POSITIVES = (1, 1960)
KEY_SEED = 0x74726565  # "tree"


@lru_cache(maxsize=8)
def _key(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key values on the centred spectrum, the key's mask, the reference ring's mask), side ``size``."""
    k = np.arange(size) - size // 2
    radius = np.hypot(k[:, None], k[None, :])
    outer = max(2.0, round(size * RADIUS_SHARE))
    mask = (radius > 0) & (radius <= outer)
    rings = np.random.default_rng(KEY_SEED).normal(0.0, size / np.sqrt(2), int(outer) + 2)
    values = np.where(mask, rings[np.rint(radius).astype(int).clip(0, len(rings) - 1)], 0.0)
    ref = (radius > outer) & (radius <= 2 * outer)
    return values, mask, ref


def initial_noise(n: int, size: int, generator) -> Any:
    """Starting noise (n, 3, size, size) for generate: N(0, I) with the key in channel CHANNEL's spectrum."""
    import torch

    x = torch.randn((n, 3, size, size), generator=generator)
    values, mask, _ = _key(size)
    spectrum = torch.fft.fftshift(torch.fft.fft2(x[:, CHANNEL].double()), dim=(-2, -1))
    spectrum[:, torch.from_numpy(mask)] = torch.from_numpy(values[mask]).to(spectrum.dtype)
    x[:, CHANNEL] = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1))).real.float()
    return x


@dataclass
class TreeRingReading:
    z: float  # the key's correlation with the inverted noise, in standard deviations
    found: bool


def false_positive_rate() -> float:
    """The measured share of unmarked images judged marked (MEASURED_FALSE_POSITIVES)."""
    flagged, images = MEASURED_FALSE_POSITIVES
    return flagged / images


def read_treering(images: list, run) -> list[TreeRingReading]:
    """Invert PIL ``images`` with ``run`` (a train.rundir.LoadedRun of a diffusion model) and test the key."""
    import torch
    from PIL import Image

    size = run.family.cfg.image_size
    batch = np.stack(
        [np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS), np.float32) for img in images]
    )
    x = torch.from_numpy(batch).permute(0, 3, 1, 2) / 127.5 - 1.0
    noise = run.family.invert(run.modules, x, INVERT_STEPS).double().cpu()
    spectrum = torch.fft.fftshift(torch.fft.fft2(noise[:, CHANNEL]), dim=(-2, -1)).numpy()
    values, mask, ref = _key(size)
    k = np.arange(size) - size // 2
    half = (k[:, None] > 0) | ((k[:, None] == 0) & (k[None, :] > 0))  # F(-k) = conj F(k): one of each pair
    key = values[mask & half]
    out = []
    for f in spectrum:
        sigma2 = float(np.mean(np.abs(f[ref & half]) ** 2)) / 2  # the real part's variance, beside the key
        z = float(np.sum(f[mask & half].real * key) / np.sqrt(sigma2 * np.sum(key**2) + 1e-12))
        out.append(TreeRingReading(round(z, 2), z >= Z_MIN))
    return out
