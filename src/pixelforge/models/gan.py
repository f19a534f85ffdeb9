"""DCGAN-style generator and discriminator: spectral norm, projection discriminator, conditional batch-norm.

The generator maps z ~ N(0, I) (and a class) to images in [-1, 1]: a linear layer to a 4x4 map,
then one upsample-conv stage per doubling. The discriminator mirrors it with spectrally
normalised convolutions (Miyato et al. 2018) and, for classes, the projection term
<embed(y), h> (Miyato & Koyama 2018). DiffAugment (Zhao et al. 2020) augments real and fake
images alike, differentiably, so a discriminator on a small dataset cannot simply memorise it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from pixelforge.errors import UsageError

CONDITIONS = ("none", "class")
LOSSES = ("hinge", "bce")
AUGMENTS = ("color", "translation", "cutout")


@dataclass
class GanConfig:
    """What defines a GAN and its adversarial training (saved in the run's config.json)."""

    condition: str = "none"
    image_size: int = 32
    z_dim: int = 128
    width: int = 32  # channels at the finest resolution (doubled per coarser stage, up to 8x)
    loss: str = "hinge"  # hinge, or bce (the non-saturating loss of Goodfellow et al.)
    diffaugment: str = "color,translation,cutout"  # comma list of AUGMENTS, or "none"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    n_critic: int = 1  # discriminator steps per generator step
    num_classes: int = 0

    def validate(self) -> None:
        if self.condition not in CONDITIONS:
            raise UsageError(f"--condition {self.condition!r}: a GAN is conditioned on none or class")
        if self.loss not in LOSSES:
            raise UsageError(f"--loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        stages = math.log2(self.image_size / 4) if self.image_size >= 8 else -1
        if stages < 1 or stages != int(stages):
            raise UsageError(f"--image-size {self.image_size}: a GAN needs a power of two of at least 8")
        for part in self.augment_ops:
            if part not in AUGMENTS:
                raise UsageError(
                    f"--diffaugment {self.diffaugment!r}: use a comma list of {', '.join(AUGMENTS)} or none"
                )
        if self.n_critic < 1:
            raise UsageError(f"--n-critic {self.n_critic}: must be at least 1")
        for flag, v in (("--lr-g", self.lr_g), ("--lr-d", self.lr_d)):
            if v <= 0:
                raise UsageError(f"{flag} {v}: must be positive")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise UsageError(f"--beta1/--beta2 {self.beta1}/{self.beta2}: choose values in [0, 1)")

    @property
    def augment_ops(self) -> list[str]:
        return [] if self.diffaugment in ("", "none") else [p.strip() for p in self.diffaugment.split(",")]

    @property
    def stages(self) -> int:
        return int(math.log2(self.image_size // 4))

    def channels(self, stage: int) -> int:
        """Channels at ``stage`` (0: the 4x4 map, stages: full resolution)."""
        return self.width * min(8, 2 ** (self.stages - stage))


class ConditionalBatchNorm(nn.Module):
    """Batch-norm whose scale and shift come from the class (plain batch-norm without classes)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=num_classes == 0)
        self.embed = None
        if num_classes:
            self.embed = nn.Embedding(num_classes, 2 * channels)
            nn.init.ones_(self.embed.weight[:, :channels])
            nn.init.zeros_(self.embed.weight[:, channels:])

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(x)
        if self.embed is None:
            return h
        gamma, beta = self.embed(y).chunk(2, dim=1)
        return h * gamma[:, :, None, None] + beta[:, :, None, None]


class _UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.bn = ConditionalBatchNorm(cin, num_classes)
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        x = F.relu(self.bn(x, y))
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    def __init__(self, cfg: GanConfig):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.channels(0)
        self.fc = nn.Linear(cfg.z_dim, 4 * 4 * c0)
        self.blocks = nn.ModuleList(
            _UpBlock(cfg.channels(i), cfg.channels(i + 1), cfg.num_classes) for i in range(cfg.stages)
        )
        c = cfg.channels(cfg.stages)
        self.out_bn = ConditionalBatchNorm(c, cfg.num_classes)
        self.out = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], -1, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.out_bn(h, y))))


class Discriminator(nn.Module):
    def __init__(self, cfg: GanConfig):
        super().__init__()
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(3, cfg.channels(cfg.stages), 3, 1, 1)), nn.LeakyReLU(0.2)]
        for i in range(cfg.stages, 0, -1):  # full resolution down to 4x4
            cin, cout = cfg.channels(i), cfg.channels(i - 1)
            layers += [
                spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)),
                nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(cout, cout, 3, 1, 1)),
                nn.LeakyReLU(0.2),
            ]
        self.body = nn.Sequential(*layers)
        c0 = cfg.channels(0)
        self.linear = spectral_norm(nn.Linear(c0, 1))
        self.embed = spectral_norm(nn.Embedding(cfg.num_classes, c0)) if cfg.num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x).sum(dim=(2, 3))  # (B, C): global sum pooling
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(y) * h).sum(dim=1)  # projection discriminator
        return out


def d_loss(loss: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss(loss: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if loss == "hinge" else F.softplus(-fake).mean()


def diff_augment(x: torch.Tensor, ops: list[str], gen: torch.Generator) -> torch.Tensor:
    """DiffAugment: the same differentiable random colour/translation/cutout per image, drawn from ``gen``."""
    b, _, h, w = x.shape

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen).to(x.device)

    if "color" in ops:
        x = x + (rand(b, 1, 1, 1) - 0.5)  # brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (rand(b, 1, 1, 1) * 2) + mean  # saturation
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (rand(b, 1, 1, 1) + 0.5) + mean  # contrast
    if "translation" in ops:
        # shift by up to 1/8 of the side, filling with zeros, via a padded gather
        sy, sx = max(1, h // 8), max(1, w // 8)
        ty = (rand(b) * (2 * sy + 1)).long() - sy
        tx = (rand(b) * (2 * sx + 1)).long() - sx
        padded = F.pad(x, (sx, sx, sy, sy))
        rows = (torch.arange(h, device=x.device)[None, :] + sy - ty[:, None]).clamp(0, h + 2 * sy - 1)
        cols = (torch.arange(w, device=x.device)[None, :] + sx - tx[:, None]).clamp(0, w + 2 * sx - 1)
        idx_b = torch.arange(b, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if "cutout" in ops:
        # zero one square of half the side at a random place
        ch, cw = h // 2, w // 2
        cy = (rand(b) * (h + 1)).long() - ch // 2  # top-left corner; the square may hang over the edge
        cx = (rand(b) * (w + 1)).long() - cw // 2
        ys = torch.arange(h, device=x.device)[None, :]
        xs = torch.arange(w, device=x.device)[None, :]
        in_y = ((ys >= cy[:, None]) & (ys < cy[:, None] + ch))[:, :, None]
        in_x = ((xs >= cx[:, None]) & (xs < cx[:, None] + cw))[:, None, :]
        x = x * (~(in_y & in_x)).unsqueeze(1).to(x.dtype)
    return x
