"""Reward fine-tuning of a text-conditioned diffusion run on the shared loop (`pixelforge train reward`).

The run starts from the base run's weights (the loop's ``--init``) and is saved as an ordinary
diffusion run (generate, verify, evaluate and report read it unchanged); config.json's "reward" block
names the base run, the reward and the method. Two methods:

- ``draft`` (the default), DRaFT-K (Clark et al. 2024): sample with the autograd graph kept through the last
  K steps and follow the gradient of the reward itself (loss -s), the judges seeing jittered images.
- ``rwr``, reward-weighted regression (Peters & Schaal 2007; for text-to-image, Lee et al. 2023, "Aligning
  text-to-image models using human feedback"): sample ``group`` images of each prompt with the current
  weights, score them, and minimise the denoising loss on them weighted by exp(s / temperature)
  (normalised over the batch): the model learns its own good drawings. A batch of samples serves
  ``updates`` optimiser steps.

Both add ``anchor`` * sum (theta - theta_base)^2 (the weights' squared distance from the base run's) and
``data_weight`` x the denoising loss on a batch of the base's real training images, so the images stay
near the base model's and the data's, and keep their variety.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from pixelforge.errors import UsageError
from pixelforge.models.diffusion import GUIDANCE, SAMPLERS, DiffusionConfig
from pixelforge.models.sampling import sample_with_grad
from pixelforge.train.families.diffusion import DiffusionFamily

METHODS = ("rwr", "draft")
VAL_PROMPTS = 16  # prompts of the validation reward (the first of the prompts file, each once, fixed noise)


@dataclass
class RewardConfig(DiffusionConfig):
    """The base run's model options plus how to fine-tune it (saved under "reward" in config.json)."""

    base: str = ""
    prompts: str = ""
    reward: list[str] = field(default_factory=list)
    rating_features: list[str] = field(default_factory=list)
    # defaults measured in benchmarks/reward_shapes.py (docs/benchmarks.md#reward-fine-tuning): DRaFT with
    # jittered judges and anchor 10 held every attribute the reward does not judge; rwr and plain DRaFT did not
    method: str = "draft"
    anchor: float = 10.0
    data_weight: float = 1.0  # weight of the denoising loss on the base's real training images
    # > 0: the reward's gradient is scaled to at most reward_scale x the data loss's gradient norm, so the
    # data term can keep the base recipe's learning rate without the reward's gradient wrecking the model
    reward_scale: float = 0.0
    reward_every: int = 1  # reward steps: every N-th; the others are the base recipe's plain steps
    reward_batch: int | None = None  # images sampled per round (rwr) or step (draft); None: --batch-size
    group: int = 4  # rwr: images of each prompt per round
    updates: int = 2  # rwr: optimiser steps per batch of samples
    temperature: float = 1.0  # rwr: softmax temperature of the log-strengths
    draft_k: int = 1  # draft: sampling steps the reward's gradient goes back through
    judge_jitter: int = 2  # draft: the judges see each image shifted by up to this many pixels, with noise
    sampler: str = "dpm++"
    sampling_steps: int = 10
    guidance: float | None = None  # of the tuning samples; None: 1 for rwr (its own distribution), 2 for draft

    def validate(self) -> None:
        super().validate()
        if self.condition != "text":
            raise UsageError(
                f"--base {self.base}: a {self.condition}-conditioned run; reward tuning needs --condition text"
            )
        if self.method not in METHODS:
            raise UsageError(f"--method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.sampler not in SAMPLERS:
            raise UsageError(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        for flag, value in (
            ("--group", self.group),
            ("--updates", self.updates),
            ("--sampling-steps", self.sampling_steps),
            ("--reward-batch", 1 if self.reward_batch is None else self.reward_batch),
            ("--reward-every", self.reward_every),
        ):
            if value < 1:
                raise UsageError(f"{flag} {value}: must be at least 1")
        if self.judge_jitter < 0:
            raise UsageError(f"--judge-jitter {self.judge_jitter}: must be 0 or more pixels")
        if not 1 <= self.draft_k <= self.sampling_steps:
            raise UsageError(f"--draft-k {self.draft_k}: choose 1 to --sampling-steps ({self.sampling_steps})")
        for flag, value in (
            ("--anchor", self.anchor),
            ("--data-weight", self.data_weight),
            ("--reward-scale", self.reward_scale),
        ):
            if value < 0:
                raise UsageError(f"{flag} {value}: must be 0 or more")
        if self.reward_scale and not self.data_weight:
            raise UsageError(f"--reward-scale {self.reward_scale}: scales to the data loss; give --data-weight > 0")
        if self.reward_every > 1 and not self.data_weight:
            raise UsageError(
                f"--reward-every {self.reward_every}: the other steps train on the data; give --data-weight > 0"
            )
        if self.temperature <= 0:
            raise UsageError(f"--temperature {self.temperature}: must be positive")

    def model_options(self) -> dict[str, Any]:
        """The DiffusionConfig fields: what config.json's "model" holds (the run loads as a diffusion run)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(DiffusionConfig)}

    def reward_options(self) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(DiffusionConfig)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in names}


class RewardFamily(DiffusionFamily):
    name = "reward"
    saved_family = "diffusion"
    config_cls = RewardConfig
    log_terms = ("reward", "drift")
    val_terms = ("val_loss", "val_reward")
    monitor = ("val_reward", "max")
    # measured in benchmarks/reward_shapes.py (see docs/benchmarks.md)
    train_defaults = {
        "lr": 1e-4,  # 1.5e-3, the base recipe's, diverged
        "batch_size": 8,
        "warmup_steps": 10,
        "cpu_bf16": True,
        "ema_decay": 0.9,
        "eval_every": 100,
    }
    splits_draws = False

    def __init__(self, cfg: RewardConfig, device: torch.device, train_cfg: Any = None):
        if train_cfg is not None and train_cfg.nproc > 1:  # --nproc is refused earlier; this is torchrun
            raise UsageError(f"train reward runs in one process, not {train_cfg.nproc} (run it without torchrun)")
        super().__init__(cfg, device, train_cfg)
        from pixelforge.prompts import read_prompts
        from pixelforge.train.reward import parse_reward

        self.rows = read_prompts(cfg.prompts)
        self.prompts = [r["prompt"] for r in self.rows]
        self.reward = parse_reward(cfg.reward, cfg.rating_features, device)
        self.reward.bind(self.rows, f"--prompts {cfg.prompts}")
        self.base_params: list[torch.Tensor] | None = None
        self.buffer: tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor] | None = None
        self.buffer_uses = 0
        # rwr learns from its own samples: unguided ones are its distribution (guided ones, learnt and then
        # guided again, exaggerate more every round); draft tunes the guided images generate draws
        self.guidance = cfg.guidance if cfg.guidance is not None else (1.0 if cfg.method == "rwr" else GUIDANCE)

    def prepare(self, train, val) -> None:
        super().prepare(train, val)
        self._caption_cache().add(self.prompts)
        self.sample_conds = self.prompts[:VAL_PROMPTS]

    def build(self) -> dict[str, torch.nn.Module]:
        from pixelforge.train.rundir import RunDir

        modules = super().build()
        # the base run's weights (its EMA copy: what it generates with), kept for the anchor
        base = RunDir(self.cfg.base).load("best", self.device, family="diffusion")
        self.base_params = [p.detach().clone() for p in base.model.parameters()]
        self.base_norm = sum((b.float() ** 2).sum() for b in self.base_params)
        return modules

    def meta(self) -> dict[str, Any]:
        from pixelforge.train.rundir import RunDir

        base = RunDir(self.cfg.base)
        best = base.marker("best") or {}
        return {
            **super().meta(),
            "reward": {
                "base": self.cfg.base,
                "base_checkpoint": best.get("dir"),
                "options": self.cfg.reward_options(),
                "reward": self.reward.describe(),
            },
        }

    def saved_model(self) -> dict[str, Any]:
        return self.cfg.model_options()

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """rwr: the scored samples still to be learnt from and how many steps used them (the prompts as
        indices into the prompts file's), so a resumed run takes the same steps."""
        if self.buffer is None:
            return {}
        images, prompts, weights, reward = self.buffer
        index = {p: i for i, p in enumerate(self.prompts)}
        return {
            "rwr_images": images,
            "rwr_prompts": torch.tensor([index[p] for p in prompts]),
            "rwr_weights": weights,
            "rwr_reward": reward.reshape(1),
            "rwr_uses": torch.tensor([self.buffer_uses]),
        }

    def restore_checkpoint_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "rwr_images" not in tensors:
            if self.cfg.method == "rwr":  # a checkpoint written before checkpoints kept it
                from pixelforge.progress import stderr

                stderr.print("train reward: the checkpoint holds no scored samples; rwr draws a new batch")
            return
        prompts = [self.prompts[i] for i in tensors["rwr_prompts"].tolist()]
        images, weights = tensors["rwr_images"].to(self.device), tensors["rwr_weights"].to(self.device)
        self.buffer = (images, prompts, weights, tensors["rwr_reward"][0])
        self.buffer_uses = int(tensors["rwr_uses"][0])

    # -- training --------------------------------------------------------------------------------
    def _conds(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._caption_cache()
        return cache(prompts), cache([""] * len(prompts))

    def _sample(
        self, unet: torch.nn.Module, prompts: list[str], gen: torch.Generator, grad_steps: int, guidance: float
    ) -> torch.Tensor:
        cfg = self.cfg
        cond, uncond = self._conds(prompts)
        return sample_with_grad(
            unet,
            cfg,
            cond,
            uncond,
            steps=cfg.sampling_steps,
            sampler_name=cfg.sampler,
            guidance=guidance,
            generator=gen,
            device=self.device,
            grad_steps=grad_steps,
        )

    def _drift(self, unet: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of (theta - theta_base)^2, its root over the base weights' norm)."""
        sq = sum(((p.float() - b.float()) ** 2).sum() for p, b in zip(unet.parameters(), self.base_params))
        return sq, (sq.detach() / self.base_norm).sqrt()

    def train_step(self, modules, optimizers, x, labels, captions, gen, step, autocast, rows=None):
        cfg, unet = self.cfg, modules["unet"]
        (opt,) = optimizers.values()
        params = [p for g in opt.param_groups for p in g["params"]]
        terms: dict[str, torch.Tensor] = {}
        opt.zero_grad(set_to_none=True)
        sq, terms["drift"] = self._drift(unet)
        base = cfg.anchor * sq  # what every step minimises: the anchor, and the data's denoising loss
        if cfg.data_weight:
            # the denoising loss on real training images (Lee et al.'s pre-training loss): the data keeps
            # the model from drifting into what its own samples get wrong
            with autocast():
                base = base + cfg.data_weight * self.loss_terms(modules, x, labels, captions, gen, step)["loss"]
        if step % cfg.reward_every:  # a plain step
            base.backward()
            terms["loss"] = base.detach()
        else:
            n = cfg.reward_batch or x.shape[0]
            loss, terms["reward"] = self._reward_loss(modules, n, labels, gen, step, autocast)
            if cfg.reward_scale:
                base.backward()
                data_grads = [p.grad.clone() if p.grad is not None else None for p in params]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                _add_scaled(params, data_grads, cfg.reward_scale)
            else:
                (loss + base).backward()
            terms["loss"] = (loss + base).detach()
        if self.train_cfg is not None and self.train_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.train_cfg.grad_clip)
        opt.step()
        return terms

    def _reward_loss(self, modules, n, labels, gen, step, autocast) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's loss on the model's own samples and their mean reward (exp s)."""
        cfg, unet = self.cfg, modules["unet"]
        if cfg.method == "rwr":
            if self.buffer is None or self.buffer_uses >= cfg.updates:
                self.buffer, self.buffer_uses = self._score_samples(unet, n, gen, autocast), 0
            images, prompts, weights, reward = self.buffer
            self.buffer_uses += 1
            with autocast():
                # the condition is never dropped here: the unconditional model stays, so the guidance
                # direction (conditional - unconditional) moves toward the reward
                loss = self.loss_terms(
                    modules, images, labels, prompts, gen, step, train=False, sample_weights=weights
                )["loss"]
            return loss, reward
        picks = torch.randint(len(self.prompts), (n,), generator=gen).tolist()
        prompts = [self.prompts[i] for i in picks]
        with autocast():
            images = self._sample(unet, prompts, gen, cfg.draft_k, self.guidance)
            s = self.reward(jitter(images, cfg.judge_jitter, gen), prompts)
        return -s.mean(), s.detach().exp().mean()

    @torch.no_grad()
    def _score_samples(
        self, unet, n: int, gen: torch.Generator, autocast
    ) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
        """rwr: n images (n / group prompts, ``group`` images each), their prompts, their loss weights and
        their mean reward."""
        cfg = self.cfg
        g = min(cfg.group, n)
        picks = torch.randint(len(self.prompts), (max(1, n // g),), generator=gen).tolist()
        prompts = [self.prompts[i] for i in picks for _ in range(g)]
        with autocast():
            images = self._sample(unet, prompts, gen, 0, self.guidance).float()
            s = self.reward(images, prompts).float()
        return images.clone(), prompts, rwr_weights(s, cfg.temperature), s.exp().mean()

    # -- validation ------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, modules, val, gen_for, max_batches) -> dict[str, float]:
        """The denoising loss on real held-out images (how far the model moved from the data) and the mean
        reward (exp s) of one image per validation prompt, same noise at every evaluation."""
        out = super().validate(modules, val, gen_for, max_batches)
        prompts = self.prompts[:VAL_PROMPTS]
        images = self._sample(modules["unet"], prompts, gen_for(0), 0, GUIDANCE)
        out["val_reward"] = float(self.reward(images, prompts).exp().mean())
        return out


def _add_scaled(params: list[torch.Tensor], data_grads: list[torch.Tensor | None], scale: float) -> None:
    """p.grad (the reward's gradient) becomes data + c x reward with c = min(1, scale x |data| / |reward|):
    the reward's share of the step is bounded by the data's, whatever the two losses' scales."""
    reward = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = lambda gs: torch.sqrt(sum((g.float() ** 2).sum() for g in gs if g is not None))  # noqa: E731
    c = torch.clamp(scale * norm(data_grads) / norm(reward).clamp_min(1e-12), max=1.0)
    for p, d, r in zip(params, data_grads, reward):
        p.grad = r * c if d is None else d + r * c


def rwr_weights(s: torch.Tensor, temperature: float) -> torch.Tensor:
    """Reward-weighted regression's loss weights for log-strengths ``s`` (B,): exp(s / temperature), normalised
    over the batch to a mean of 1 (softmax x B). Over the batch, not per prompt: an image is learnt from in
    proportion to its reward, and a prompt whose images all fail is not learnt from its best failure
    (measured: weighting within each prompt's group taught the model its failures, and its reward fell)."""
    return torch.softmax(s / temperature, dim=0) * s.shape[0]


def jitter(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Each image of x (B, 3, S, S) shifted by up to ``pixels`` in x and y (edges repeated), plus Gaussian noise
    of 0.03 (in [-1, 1] units): what the judges see, so a gradient step cannot aim at one pixel pattern
    that fools them (expectation over transformations, Athalye et al. 2018)."""
    if pixels == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pixels, pixels, pixels, pixels), mode="replicate")
    shifts = torch.randint(0, 2 * pixels + 1, (b, 2), generator=gen).tolist()
    out = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(shifts)])
    return out + 0.03 * torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
