"""Model families on the shared loop: each says how to build its modules, take a step, validate and sample.

The loop (train/loop.py) knows nothing of diffusion, GANs, VAEs or classifiers; it calls a
family through the small interface of :class:`Family`. Most families have one loss and one
optimiser and only implement ``loss_terms``; a GAN overrides ``train_step`` to alternate its
two players.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch

from pixelforge.errors import UsageError
from pixelforge.train.data import Batches, ImageTable


class Family(abc.ABC):
    """The interface the loop uses. Subclasses set ``name`` and ``config_cls`` and implement ``build``."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    # the family a finished run is loaded as (config.json's "family"): a reward-tuned run is a diffusion run
    saved_family: ClassVar[str | None] = None
    ema_names: ClassVar[tuple[str, ...]] = ()  # modules with an EMA copy (evaluated, sampled, exported)
    log_terms: ClassVar[tuple[str, ...]] = ()  # extra per-step scalars in metrics.csv (besides loss)
    val_terms: ClassVar[tuple[str, ...]] = ("val_loss",)  # what validate() returns
    monitor: ClassVar[tuple[str, str] | None] = ("val_loss", "min")  # picks the best checkpoint; None: latest
    train_defaults: ClassVar[dict[str, Any]] = {}  # TrainConfig defaults this family changes
    label_column: str = "label"
    generates: ClassVar[bool] = True
    # True when every draw of a training step from its generator goes through draw_rows: then N DDP processes
    # draw together exactly what one process would; otherwise each process gets its own generator
    splits_draws: ClassVar[bool] = False

    def __init__(self, cfg: Any, device: torch.device, train_cfg: Any = None):
        self.cfg, self.device, self.train_cfg = cfg, device, train_cfg
        self.sample_conds: list[Any] = []

    # -- set-up ----------------------------------------------------------------------------------
    def prepare(self, train: ImageTable, val: ImageTable) -> None:  # noqa: B027 - optional hook
        """Check the data suits the model; fill data-dependent config (e.g. the number of classes)."""

    @abc.abstractmethod
    def build(self) -> dict[str, torch.nn.Module]:
        """The family's networks by name, on ``self.device``."""

    def optimizers(self, modules: dict[str, torch.nn.Module], make) -> dict[str, torch.optim.Optimizer]:
        """One optimiser over every parameter; ``make(params, lr=None, betas=None)`` builds --optimizer."""
        return {"main": make([p for m in modules.values() for p in m.parameters()])}

    def meta(self) -> dict[str, Any]:
        """Extra keys of the run's config.json."""
        return {"sample_conditions": self.sample_conds}

    def saved_model(self) -> dict[str, Any]:
        """config.json's "model": the options that rebuild the network (the run is loaded by ``saved_family``)."""
        return dataclasses.asdict(self.cfg)

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Training state of the family beyond its modules and optimisers (saved in every checkpoint), so a
        resumed run continues as the uninterrupted one would. Under N processes it is the first process's,
        restored in every process: a family whose state differs between processes must gather it."""
        return {}

    def restore_checkpoint_state(self, tensors: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook
        """Take back what :meth:`checkpoint_state` returned, on resuming from a checkpoint (an empty dict: the
        checkpoint holds none)."""

    # -- training --------------------------------------------------------------------------------
    def loss_terms(
        self,
        modules: dict[str, torch.nn.Module],
        x: torch.Tensor,
        labels: torch.Tensor,
        captions: list[str | None],
        gen: torch.Generator,
        step: int,
        train: bool = True,
        rows: tuple[int, int, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """{"loss": the scalar to minimise, and each of ``log_terms``} for a batch x in [-1, 1].

        ``rows``: under DDP, this process's rows of the global batch (see :meth:`draw_rows`).
        The default ``train_step`` needs it; a family that overrides ``train_step`` (the GAN) may not.
        """
        raise TypeError(f"the {self.name} family defines neither loss_terms nor train_step")

    @staticmethod
    def draw_rows(
        draw: Callable[[tuple[int, ...]], torch.Tensor], shape: Sequence[int], rows: tuple[int, int, int] | None
    ) -> torch.Tensor:
        """``draw(shape)`` for a batch of ``shape[0]`` rows. Under DDP, ``rows`` (start, stop, global batch) of a
        training step: it draws for the whole global batch and keeps this process's rows, so the processes
        together draw what one process would."""
        if rows is None:
            return draw(tuple(shape))
        start, stop, total = rows
        return draw((total, *shape[1:]))[start:stop]

    def train_step(
        self,
        modules: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        x: torch.Tensor,
        labels: torch.Tensor,
        captions: list[str | None],
        gen: torch.Generator,
        step: int,
        autocast,
        rows: tuple[int, int, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalars ("loss" and ``log_terms``).

        ``rows``: under DDP, this process's rows (start, stop, global batch) of the step's global batch.
        """
        with autocast():
            terms = self.loss_terms(modules, x, labels, captions, gen, step, rows=rows)
        (opt,) = optimizers.values()
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.train_cfg is not None and self.train_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], self.train_cfg.grad_clip)
        opt.step()
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def validate(
        self, modules: dict[str, torch.nn.Module], val: Batches, gen_for, max_batches: int
    ) -> dict[str, float]:
        """Deterministic validation scalars (``val_terms``): the same images and noise at every evaluation."""
        total, n = 0.0, 0
        for b in range(min(max_batches, val.per_epoch)):
            x, labels, captions = val._batch(b, val.indices(b))
            loss = self.loss_terms(modules, x, labels, captions, gen_for(b), step=10**9, train=False)["loss"]
            total += float(loss) * len(x)
            n += len(x)
        return {"val_loss": total / max(n, 1)}

    def samples(
        self, modules: dict[str, torch.nn.Module], gen: torch.Generator, steps: int = 25
    ) -> tuple[torch.Tensor, list[str]] | None:
        """A grid's worth of images in [-1, 1] (one per sample condition), or None for non-generative models."""
        conds = self.sample_conds or [None] * 16
        return self.generate(modules, conds, gen, steps=steps), [str(c) for c in conds]

    def finish(self, modules: dict[str, torch.nn.Module], tables: dict[str, ImageTable]) -> dict[str, Any]:
        """Final evaluation after training (e.g. test accuracy), with the best weights; kept in result.json."""
        return {}

    # -- generation ------------------------------------------------------------------------------
    def generate(
        self, modules: dict[str, torch.nn.Module], conds: list[Any], gen: torch.Generator, **options: Any
    ) -> torch.Tensor:
        """Images in [-1, 1] (B, 3, S, S), one per condition (a class id, a prompt, or None)."""
        raise UsageError(f"a {self.name} run does not generate images")


FAMILIES = {
    "diffusion": "pixelforge.train.families.diffusion:DiffusionFamily",
    "gan": "pixelforge.train.families.gan:GanFamily",
    "vae": "pixelforge.train.families.vae:VaeFamily",
    "classifier": "pixelforge.train.families.classifier:ClassifierFamily",
    "reward": "pixelforge.train.families.reward:RewardFamily",
}


def family_for(name: str) -> type[Family]:
    if name not in FAMILIES:
        raise UsageError(f"model family {name!r}: choose one of {', '.join(FAMILIES)}")
    module, cls = FAMILIES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def config_from_saved(config_cls: type, saved: dict[str, Any]) -> Any:
    """A family's model config from a run's config.json, also one written before an option existed.

    An option added later has a default that may differ from what older runs did; the class lists
    those older values in ``BEFORE_OPTION`` (name -> value), used when the saved config lacks them.
    """
    return config_cls(**{**getattr(config_cls, "BEFORE_OPTION", {}), **saved})


def prepare_classes(family: Family, train: ImageTable) -> None:
    """For GANs and VAEs: the number of classes when class-conditional, and the sample grid's conditions
    (16 images: each class the same number of times, or unconditional noise)."""
    if family.cfg.condition == "class":
        family.cfg.num_classes = class_ids(train, "--condition class")
        per = max(1, 16 // family.cfg.num_classes)
        family.sample_conds = [c for c in range(family.cfg.num_classes) for _ in range(per)]
    else:
        family.sample_conds = [None] * 16


def class_ids(train: ImageTable, option: str) -> int:
    """The number of classes of a class-conditional model; every training sample must have a label."""
    if (train.labels < 0).any():
        raise UsageError(
            f"{option}: {int((train.labels < 0).sum())} training samples have no label; curate them "
            "out (pixelforge curate --where 'label IS NOT NULL') or train unconditionally"
        )
    return len(train.label_names)
