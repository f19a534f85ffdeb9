"""A convolutional VAE (Kingma & Welling 2014), optionally conditioned on a class (Sohn et al. 2015).

The encoder halves the image down to 4x4 and outputs the mean and log-variance of a Gaussian
q(z|x); z = mu + sigma * eps (reparameterised); the decoder mirrors the encoder and outputs
per-pixel logits, so the image is sigmoid(logits) in [0, 1]. With classes, a learnt class
embedding is appended to the encoder's features and to z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pixelforge.errors import UsageError

CONDITIONS = ("none", "class")
RECONSTRUCTIONS = ("bce", "mse")


@dataclass
class VaeConfig:
    """What defines a VAE and its loss (saved in the run's config.json)."""

    condition: str = "none"
    image_size: int = 32
    latent_dim: int = 64
    width: int = 32  # channels of the first encoder stage (doubled per stage, up to 8x)
    beta: float = 1.0
    kl_warmup_steps: int = 1000  # the KL weight rises linearly from 0 to beta over these steps
    reconstruction: str = "bce"  # bce (Bernoulli likelihood of [0, 1] pixels) or mse (summed squared error)
    num_classes: int = 0
    embed_dim: int = 16

    def validate(self) -> None:
        if self.condition not in CONDITIONS:
            raise UsageError(f"--condition {self.condition!r}: a VAE is conditioned on none or class")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise UsageError(f"--reconstruction {self.reconstruction!r}: choose one of {', '.join(RECONSTRUCTIONS)}")
        stages = math.log2(self.image_size / 4) if self.image_size >= 8 else -1
        if stages < 1 or stages != int(stages):
            raise UsageError(f"--image-size {self.image_size}: a VAE needs a power of two of at least 8")
        if self.latent_dim < 1:
            raise UsageError(f"--latent-dim {self.latent_dim}: must be at least 1")
        if self.beta < 0:
            raise UsageError(f"--beta {self.beta}: must be zero or positive")
        if self.kl_warmup_steps < 0:
            raise UsageError(f"--kl-warmup-steps {self.kl_warmup_steps}: must be zero or positive")

    @property
    def stages(self) -> int:
        return int(math.log2(self.image_size // 4))

    def channels(self, stage: int) -> int:
        return self.width * min(8, 2**stage)


class VAE(nn.Module):
    def __init__(self, cfg: VaeConfig):
        super().__init__()
        self.cfg = cfg
        enc: list[nn.Module] = []
        cin = 3
        for i in range(cfg.stages):
            c = cfg.channels(i)
            enc += [
                nn.Conv2d(cin, c, 4, 2, 1),
                nn.BatchNorm2d(c),
                nn.LeakyReLU(0.2),
                nn.Conv2d(c, c, 3, 1, 1),
                nn.BatchNorm2d(c),
                nn.LeakyReLU(0.2),
            ]
            cin = c
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.top = cin
        cond = cfg.embed_dim if cfg.num_classes else 0
        self.embed = nn.Embedding(cfg.num_classes, cfg.embed_dim) if cfg.num_classes else None
        self.to_stats = nn.Linear(cin * 16 + cond, 2 * cfg.latent_dim)
        self.from_z = nn.Linear(cfg.latent_dim + cond, cin * 16)
        dec: list[nn.Module] = []
        for i in range(cfg.stages - 1, -1, -1):
            c = cfg.channels(i)
            cout = cfg.channels(i - 1) if i > 0 else cfg.width
            dec += [
                nn.BatchNorm2d(c),
                nn.LeakyReLU(0.2),
                nn.ConvTranspose2d(c, cout, 4, 2, 1),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2),
                nn.Conv2d(cout, cout, 3, 1, 1),
            ]
        self.decoder = nn.Sequential(*dec, nn.LeakyReLU(0.2), nn.Conv2d(cfg.width, 3, 3, 1, 1))

    def _with_class(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return h if self.embed is None else torch.cat([h, self.embed(y)], dim=1)

    def encode(self, x01: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x, y), x in [0, 1]."""
        stats = self.to_stats(self._with_class(self.encoder(x01 * 2 - 1), y))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.from_z(self._with_class(z, y)).view(z.shape[0], self.top, 4, 4)
        return self.decoder(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z, y))


def vae_terms(
    model: VAE, x01: torch.Tensor, y: torch.Tensor | None, eps: torch.Tensor, reconstruction: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, KL), each summed over an image and averaged over the batch."""
    # 1. q(z|x) = N(mu, sigma^2);  z = mu + sigma * eps
    mu, logvar = model.encode(x01, y)
    z = mu + (0.5 * logvar).exp() * eps
    # 2. -log p(x|z): Bernoulli (binary cross-entropy on logits) or summed squared error
    logits = model.decode_logits(z, y)
    if reconstruction == "bce":
        rec = F.binary_cross_entropy_with_logits(logits, x01, reduction="none")
    else:
        rec = (torch.sigmoid(logits) - x01) ** 2
    rec = rec.flatten(1).sum(1).mean()
    # 3. KL(q(z|x) || N(0, I)) = -1/2 sum(1 + logvar - mu^2 - sigma^2)
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return rec, kl
