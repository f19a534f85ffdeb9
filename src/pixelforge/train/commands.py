"""CLI of the train stage: `pixelforge train FAMILY --data DIR --out RUN ...`."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Optional

import typer

from pixelforge.train.config import TrainConfig, load_toml, merge

train_app = typer.Typer(help="Train a model on a dataset (one shared loop for every family).", no_args_is_help=True)

Opt = typer.Option


def _given(**values: Any) -> dict[str, Any]:
    """The flags the user actually passed (None means 'not given': TOML or the default applies)."""
    return {k: v for k, v in values.items() if v is not None}


def build_configs(config_file: Optional[str], family_table: str, family_cls: type, train_flags: dict[str, Any],
                  family_flags: dict[str, Any]) -> tuple[TrainConfig, Any]:
    """Defaults, then the TOML file's [train] and [FAMILY] tables, then the flags."""
    doc = load_toml(config_file) if config_file else {}
    unknown = sorted(set(doc) - {"train", family_table})
    if unknown:
        from pixelforge.errors import UsageError

        raise UsageError(f"--config {config_file}: unknown table(s) {', '.join(unknown)}; use [train] and "
                         f"[{family_table}]")
    train = merge(TrainConfig, TrainConfig(), doc.get("train", {}), f"--config [train]")
    train = merge(TrainConfig, train, train_flags, "flags")
    fam = merge(family_cls, family_cls(), doc.get(family_table, {}), f"--config [{family_table}]")
    fam = merge(family_cls, fam, family_flags, "flags")
    train.family = dataclasses.asdict(fam)
    return train, fam


@train_app.command("diffusion")
def train_diffusion(
    data: Annotated[Optional[str], Opt(help="Dataset directory to train on.")] = None,
    out: Annotated[Optional[str], Opt("--out", "-o", help="Run directory to write.")] = None,
    config: Annotated[Optional[str], Opt(help="TOML file with [train] and [diffusion] tables.")] = None,
    condition: Annotated[Optional[str], Opt(help="none, class or text.")] = None,
    image_size: Annotated[Optional[int], Opt(help="Training resolution (images are center-cropped).")] = None,
    model_size: Annotated[Optional[str], Opt(help="tiny (CPU), small or base.")] = None,
    prediction: Annotated[Optional[str], Opt(help="epsilon or v_prediction.")] = None,
    beta_schedule: Annotated[Optional[str], Opt(help="cosine or linear.")] = None,
    zero_terminal_snr: Annotated[Optional[bool], Opt(help="Rescale betas to zero terminal SNR.")] = None,
    cond_drop: Annotated[Optional[float], Opt(help="Condition dropout for classifier-free guidance.")] = None,
    batch_size: Annotated[Optional[int], Opt()] = None,
    optimizer: Annotated[Optional[str], Opt(help="adamw, adam, sgd or rmsprop.")] = None,
    lr: Annotated[Optional[float], Opt(help="Peak learning rate.")] = None,
    weight_decay: Annotated[Optional[float], Opt()] = None,
    lr_schedule: Annotated[Optional[str], Opt(help="cosine or constant (after warm-up).")] = None,
    warmup_steps: Annotated[Optional[int], Opt()] = None,
    epochs: Annotated[Optional[int], Opt(help="Stop after this many epochs.")] = None,
    max_steps: Annotated[Optional[int], Opt(help="Stop after this many steps.")] = None,
    max_minutes: Annotated[Optional[float], Opt(help="Stop after this much wall time.")] = None,
    grad_clip: Annotated[Optional[float], Opt(help="Clip the gradient norm (0: off).")] = None,
    ema_decay: Annotated[Optional[float], Opt()] = None,
    seed: Annotated[Optional[int], Opt()] = None,
    device: Annotated[Optional[str], Opt(help="auto (CUDA when present), cpu, cuda, cuda:N, mps.")] = None,
    eval_every: Annotated[Optional[int], Opt(help="Validation loss, sample grid and checkpoint every N steps.")]
    = None,
    log_every: Annotated[Optional[int], Opt()] = None,
    patience: Annotated[Optional[int], Opt(help="Stop after N evaluations without a better validation loss.")]
    = None,
    augment: Annotated[Optional[str], Opt(help="On-the-fly augmentation SPEC (as `pixelforge prepare`).")] = None,
    sample_steps: Annotated[Optional[int], Opt(help="Sampling steps of the grid saved at each evaluation.")] = None,
    val_batches: Annotated[Optional[int], Opt(help="Validation batches per evaluation.")] = None,
    allow_opt_out: Annotated[bool, Opt(help="Train even on opted-out samples (recorded in the run).")] = False,
    resume: Annotated[bool, Opt(help="Continue the run in --out from its latest checkpoint.")] = False,
    as_json: Annotated[bool, Opt("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a diffusion model (diffusers UNet) from noise to images, conditioned on text, a class or nothing.

    Example:

        pixelforge train diffusion --data data/shapes --out runs/shapes --condition text --max-minutes 20
    """
    from pixelforge.models.diffusion import DiffusionConfig
    from pixelforge.train.loop import train

    train_flags = _given(data=data, out=out, image_size=image_size, batch_size=batch_size, optimizer=optimizer,
                         lr=lr, weight_decay=weight_decay, lr_schedule=lr_schedule, warmup_steps=warmup_steps,
                         epochs=epochs, max_steps=max_steps, max_minutes=max_minutes, grad_clip=grad_clip,
                         ema_decay=ema_decay, seed=seed, device=device, eval_every=eval_every, log_every=log_every,
                         patience=patience, augment=augment, sample_steps=sample_steps, val_batches=val_batches)
    if allow_opt_out:
        train_flags["allow_opt_out"] = True
    family_flags = _given(condition=condition, model_size=model_size, prediction=prediction,
                          beta_schedule=beta_schedule, zero_terminal_snr=zero_terminal_snr, cond_drop=cond_drop)
    cfg, fam = build_configs(config, "diffusion", DiffusionConfig, train_flags, family_flags)
    fam.image_size = cfg.image_size
    result = train("diffusion", cfg, fam, resume=resume)
    if as_json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        for k, v in dataclasses.asdict(result).items():
            print(f"{k:15s} {v}")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
