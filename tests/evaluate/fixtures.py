"""Test fixtures made in code: a random FID Inception weights file in the official format, image folders, datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pixelforge.evaluate.inception import build_fid_inception


def smooth_images(n: int, size: int, seed: int, grid: int = 5) -> np.ndarray:
    """``n`` smooth random RGB images (n, size, size, 3) uint8: bicubic-upsampled grid x grid noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, grid, grid, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def make_weights(path: Path, seed: int = 0) -> Path:
    """Save a randomly initialised FID Inception's state dict, its BatchNorm statistics calibrated.

    Default-initialised weights shrink activations layer by layer until they vanish (and turn
    denormal, which is also slow); running smooth random images through the network in training
    mode with cumulative BatchNorm averages sets each layer's running mean and variance to what
    it actually sees, so every layer's output is normalised in eval mode.
    """
    torch.manual_seed(seed)
    net = build_fid_inception()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    x = torch.from_numpy(smooth_images(2, 299, seed + 1000)).permute(0, 3, 1, 2).float() / 127.5 - 1
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    torch.save(net.state_dict(), path)
    return path


def write_folder(folder: Path, images: np.ndarray, ext: str = "png", start: int = 0) -> Path:
    """Write (n, H, W, 3) uint8 images as NNNNN.ext files; return ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(folder / f"{start + i:05d}.{ext}")
    return folder


COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 80, 230)}


class ColourJudge(torch.nn.Module):
    """A tiny classifier of an image's dominant colour: channel means against colour prototypes.

    ``features`` are the per-channel means and standard deviations (B, 6), ``forward`` gives
    logits = -squared distance of the mean colour to each prototype, so it is exactly right on
    solid colours and needs no training.
    """

    def __init__(self, names=tuple(COLOURS)):
        super().__init__()
        self.register_buffer("prototypes", torch.tensor([COLOURS[n] for n in names], dtype=torch.float32) / 255)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))  # (B, 3)
        return -(torch.cdist(mean, self.prototypes) ** 2)  # (B, K)


def colour_image(name: str, size: int, seed: int) -> np.ndarray:
    """A solid ``name`` image with mild noise and a random darker square (so images differ)."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float64)
    img[:] = COLOURS[name]
    x, y = rng.integers(0, size // 2, 2)
    img[y : y + size // 4, x : x + size // 4] *= 0.8
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def generated_dataset(path: Path, images: np.ndarray, rows: list[dict]) -> Path:
    """A pixelforge dataset of generated images (source_kind=generated) with the given row fields."""
    import pyarrow as pa

    from pixelforge import media
    from pixelforge.store import DatasetBuilder, Lineage

    extra = [pa.field("colour", pa.string())] if any("colour" in r for r in rows) else []
    builder = DatasetBuilder(str(path), samples_per_shard=16, extra_fields=extra)
    for i, (a, row) in enumerate(zip(images, rows)):
        builder.add(
            {"key": f"g{i:04d}", "source_kind": "generated", "license": "unknown", **row}, media.array_to_png(a), "png"
        )
    builder.finish(name="generated", lineage=Lineage(command="test"))
    return path


class PooledJudge(ColourJudge):
    """ColourJudge whose penultimate features are a centred 4 x 4 average-pooled image (B, 48).

    Coarse layout features, as a small CNN's pooled activations are: enough to tell random smooth
    images apart, blind to pixel noise and JPEG artefacts.
    """

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 4).flatten(1) - 0.5
