"""Classifiers trained on folds of a dataset (k-fold cross-validation), for `pixelforge label issues`.

The one door from other stages into training a classifier: the fold configs (a run's architecture
and options, or a cheap default), the decoded images the folds are predicted on, and one call that
trains a fold and loads its best weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from pixelforge.models.classifier import ClassifierConfig
from pixelforge.store import Dataset
from pixelforge.train.config import TrainConfig
from pixelforge.train.data import ImageTable, load_table
from pixelforge.train.families.classifier import ClassifierFamily
from pixelforge.train.loop import train
from pixelforge.train.rundir import LoadedRun, load_run

# the loop options a fold takes over from the run it imitates
RUN_OPTIONS = (
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "lr_schedule",
    "warmup_steps",
    "grad_clip",
    "ema_decay",
    "augment",
)


def classifier_configs(
    run_config: dict[str, Any] | None,
    *,
    label_column: str,
    epochs: int,
    seed: int,
    device: str,
    image_size: int | None = None,
    width: int | None = None,
    batch_size: int | None = None,
) -> tuple[TrainConfig, ClassifierConfig]:
    """(TrainConfig, ClassifierConfig) for the folds: a run's options (its config.json) where given, a small
    16 px CNN else; the given image size, width and batch size win over both."""
    train_cfg = dataclasses.replace(TrainConfig(), **ClassifierFamily.train_defaults)
    model = ClassifierConfig(label=label_column, image_size=16, width=16)
    if run_config is not None:
        m = run_config["model"]
        model = ClassifierConfig(
            arch=m["arch"],
            label=m["label"],
            image_size=m["image_size"],
            width=m["width"],
            dropout=m["dropout"],
            label_smoothing=m["label_smoothing"],
        )
        t = run_config["train"]
        train_cfg = dataclasses.replace(train_cfg, **{k: t[k] for k in RUN_OPTIONS if k in t})
    if image_size is not None:
        model.image_size = image_size
    if width is not None:
        model.width = width
    # no evaluation or logging while a fold trains: only its final weights are used
    train_cfg = dataclasses.replace(
        train_cfg,
        image_size=model.image_size,
        epochs=epochs,
        max_steps=None,
        max_minutes=None,
        seed=seed,
        device=device,
        num_workers=0,
        eval_every=10**9,
        log_every=10**9,
        patience=None,
        warmup_steps=min(train_cfg.warmup_steps, 50),
    )
    if batch_size is not None:
        train_cfg.batch_size = batch_size
    return train_cfg, model


def labelled_images(ds: Dataset, image_size: int, label_column: str) -> ImageTable:
    """Every sample of ``ds`` decoded as the folds train on it: keys, labels (-1: none), uint8 images."""
    return load_table(ds, image_size, label_column=label_column)


def fit_classifier(data: str, out: str, train_cfg: TrainConfig, model_cfg: ClassifierConfig, device: str) -> LoadedRun:
    """Train a classifier on the dataset ``data`` into the run directory ``out``; its best weights, loaded."""
    train("classifier", dataclasses.replace(train_cfg, data=data, out=out), dataclasses.replace(model_cfg))
    return load_run(out, "best", torch.device(device), family="classifier")
