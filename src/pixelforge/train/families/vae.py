"""VAEs on the shared loop: reconstruction + beta * KL, with the KL weight warmed up from 0."""

from __future__ import annotations

from typing import Any

import torch

from pixelforge.models.vae import VAE, VaeConfig, vae_terms
from pixelforge.train.data import ImageTable
from pixelforge.train.families import Family, prepare_classes


class VaeFamily(Family):
    name = "vae"
    config_cls = VaeConfig
    ema_names = ("vae",)
    splits_draws = True
    log_terms = ("reconstruction", "kl", "beta")
    val_terms = ("val_loss", "val_reconstruction", "val_kl")
    train_defaults = {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 100}

    def prepare(self, train: ImageTable, val: ImageTable) -> None:
        prepare_classes(self, train)

    def build(self) -> dict[str, torch.nn.Module]:
        return {"vae": VAE(self.cfg).to(self.device)}

    def beta_at(self, step: int) -> float:
        warm = self.cfg.kl_warmup_steps
        return self.cfg.beta if warm == 0 else self.cfg.beta * min(1.0, (step + 1) / warm)

    def loss_terms(self, modules, x, labels, captions, gen, step, train=True, rows=None):
        x01 = (x.to(self.device) + 1) / 2
        y = labels.to(self.device) if self.cfg.condition == "class" else None
        eps = self.draw_rows(lambda s: torch.randn(s, generator=gen), (x.shape[0], self.cfg.latent_dim), rows).to(
            self.device
        )
        rec, kl = vae_terms(modules["vae"], x01, y, eps, self.cfg.reconstruction)
        beta = self.beta_at(step) if train else self.cfg.beta
        return {"loss": rec + beta * kl, "reconstruction": rec, "kl": kl, "beta": torch.tensor(beta)}

    @torch.no_grad()
    def validate(self, modules, val, gen_for, max_batches):
        sums, n = {"val_loss": 0.0, "val_reconstruction": 0.0, "val_kl": 0.0}, 0
        for b in range(min(max_batches, val.per_epoch)):
            x, labels, captions = val._batch(b, val.indices(b))
            t = self.loss_terms(modules, x, labels, captions, gen_for(b), step=0, train=False)
            for key, term in (("val_loss", "loss"), ("val_reconstruction", "reconstruction"), ("val_kl", "kl")):
                sums[key] += float(t[term]) * len(x)
            n += len(x)
        return {k: v / max(n, 1) for k, v in sums.items()}

    @torch.no_grad()
    def generate(self, modules, conds, gen, **_: Any) -> torch.Tensor:
        """Decode z ~ N(0, I) from the prior (with the asked class)."""
        z = torch.randn((len(conds), self.cfg.latent_dim), generator=gen).to(self.device)
        y = torch.tensor(conds, dtype=torch.long, device=self.device) if self.cfg.condition == "class" else None
        return modules["vae"].decode(z, y) * 2 - 1
