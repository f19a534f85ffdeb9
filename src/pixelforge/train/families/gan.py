"""GANs on the shared loop: the discriminator and the generator take turns, each with its own Adam."""

from __future__ import annotations

from typing import Any

import torch

from pixelforge.models.gan import Discriminator, GanConfig, Generator, d_loss, diff_augment, g_loss
from pixelforge.train.data import ImageTable
from pixelforge.train.families import Family, prepare_classes


class GanFamily(Family):
    name = "gan"
    config_cls = GanConfig
    ema_names = ("generator",)
    log_terms = ("d_loss", "g_loss", "d_real", "d_fake")
    val_terms = ()
    monitor = None  # no validation loss says which generator is best: "best" is the latest
    train_defaults = {"lr_schedule": "constant", "warmup_steps": 0, "grad_clip": 0.0, "optimizer": "adam"}

    def prepare(self, train: ImageTable, val: ImageTable) -> None:
        prepare_classes(self, train)

    def build(self) -> dict[str, torch.nn.Module]:
        return {
            "generator": Generator(self.cfg).to(self.device),
            "discriminator": Discriminator(self.cfg).to(self.device),
        }

    def optimizers(self, modules, make):
        betas = (float(self.cfg.beta1), float(self.cfg.beta2))
        return {
            "generator": make(list(modules["generator"].parameters()), lr=self.cfg.lr_g, betas=betas),
            "discriminator": make(list(modules["discriminator"].parameters()), lr=self.cfg.lr_d, betas=betas),
        }

    def _z(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.randn((n, self.cfg.z_dim), generator=gen).to(self.device)

    def _y(self, labels: torch.Tensor) -> torch.Tensor | None:
        return labels.to(self.device) if self.cfg.condition == "class" else None

    def _random_classes(self, n: int, gen: torch.Generator) -> torch.Tensor | None:
        if self.cfg.condition != "class":
            return None
        return torch.randint(0, self.cfg.num_classes, (n,), generator=gen).to(self.device)

    def train_step(self, modules, optimizers, x, labels, captions, gen, step, autocast, rows=None):
        G, D = modules["generator"], modules["discriminator"]
        cfg, ops = self.cfg, self.cfg.augment_ops
        real = x.to(self.device)
        y_real = self._y(labels)
        b = real.shape[0]
        # 1. discriminator: n_critic steps on real images vs detached fakes, both DiffAugmented
        for _ in range(cfg.n_critic):
            y_fake = self._random_classes(b, gen)
            with torch.no_grad():
                fake = G(self._z(b, gen), y_fake)
            with autocast():
                s_real = D(diff_augment(real, ops, gen), y_real)
                s_fake = D(diff_augment(fake, ops, gen), y_fake)
                loss_d = d_loss(cfg.loss, s_real, s_fake)
            optimizers["discriminator"].zero_grad(set_to_none=True)
            loss_d.backward()
            optimizers["discriminator"].step()
        # 2. generator: make D score fresh fakes as real
        y_fake = self._random_classes(b, gen)
        with autocast():
            s_gen = D(diff_augment(G(self._z(b, gen), y_fake), ops, gen), y_fake)
            loss_g = g_loss(cfg.loss, s_gen)
        optimizers["generator"].zero_grad(set_to_none=True)
        loss_g.backward()
        optimizers["generator"].step()
        return {
            "loss": (loss_d + loss_g).detach(),
            "d_loss": loss_d.detach(),
            "g_loss": loss_g.detach(),
            "d_real": s_real.detach().mean(),
            "d_fake": s_fake.detach().mean(),
        }

    def validate(self, modules, val, gen_for, max_batches):
        return {}

    @torch.no_grad()
    def generate(self, modules, conds, gen, **_: Any) -> torch.Tensor:
        z = self._z(len(conds), gen)
        y = torch.tensor(conds, dtype=torch.long, device=self.device) if self.cfg.condition == "class" else None
        return modules["generator"](z, y)
