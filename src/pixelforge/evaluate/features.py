"""Feature models behind one small protocol: the FID Inception, or a pixelforge classifier run (classifier:RUN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from pixelforge.errors import UsageError
from pixelforge.evaluate.inception import FID_IMPLS, InceptionFeatures, find_weights

FEATURE_KINDS = ("inception", "classifier:RUN")


@runtime_checkable
class FeatureModel(Protocol):
    """What every metric, the conditional judge and the memorisation search read images through.

    ``name`` and ``layer`` identify the extractor in cache file names; ``input_size`` is the side
    it resizes to (None: any); ``label_names`` are its classes (None: none).
    """

    name: str
    layer: str
    input_size: int | None
    label_names: list[str] | None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, D)."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, K)."""

    def features_and_logits(self, x: torch.Tensor, logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both from one pass where the model allows it; logits None unless asked for."""


@dataclass
class ClassifierFeatures:
    """A classifier (any nn.Module with ``features(x)`` and ``forward(x)``) seen as a FeatureModel.

    Images are resized to ``input_size`` (antialiased bilinear) when their size differs, since a
    classifier only knows the size it was trained at. Its penultimate features give the
    domain-specific FID small datasets need; those numbers are NOT comparable to Inception FID.
    """

    module: nn.Module
    label_names: list[str]
    input_size: int | None
    name: str = "classifier"
    layer: str = "penultimate"

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True
            )
        return x

    def features_and_logits(self, x: torch.Tensor, logits: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self._fit(x)
        with torch.inference_mode():
            feats = self.module.features(x).flatten(1).float()
            out = self.module(x).float() if logits else None
        return feats, out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x, logits=True)[1]


def load_classifier(run: str) -> ClassifierFeatures:
    """A trained pixelforge classifier run as a FeatureModel (penultimate features, softmax for IS).

    Reads the run's config ({"family": "classifier", "model": {...}, "labels": [...]}) and loads
    the model through ``pixelforge.train.rundir.load_run``.
    """
    from pixelforge.train import rundir

    run_dir = rundir.RunDir(run)
    if not run_dir.has_config():
        raise UsageError(
            f"classifier run {run}: no config.json; pass the directory `pixelforge train classifier --out RUN` wrote"
        )
    config = run_dir.config
    if config.get("family") != "classifier":
        raise UsageError(
            f"classifier run {run} holds a {config.get('family')!r} model, not a classifier; "
            "train one with `pixelforge train classifier`"
        )
    # load_run gives .model: an eval nn.Module with forward(x) -> logits (B, K) and features(x) -> (B, D),
    # x in [0, 1] of shape (B, 3, S, S), S = the run's image size
    loaded = rundir.load_run(str(run_dir.path))
    model_cfg = config.get("model") or {}
    labels = list(config.get("labels") or [])
    size = model_cfg.get("image_size")
    return ClassifierFeatures(
        module=loaded.model.eval(),
        label_names=labels,
        input_size=int(size) if size else None,
        name=f"classifier-{run_dir.digest()}",
    )


def load_feature_model(
    spec: str,
    *,
    dims: int = 2048,
    fid_impl: str = "torch-fidelity",
    inception_weights: str | None = None,
    download: bool = False,
) -> FeatureModel:
    """The FeatureModel a ``--features`` value names: ``inception`` or ``classifier:RUN``.

    ``dims``, ``fid_impl``, ``inception_weights`` and ``download`` apply to ``inception`` only.
    Raises UsageError for an unknown spec, missing weights or a run that is not a classifier.
    """
    if spec == "inception":
        if fid_impl not in FID_IMPLS:  # checked before the weights are looked for
            raise UsageError(f"--fid-impl {fid_impl!r}: choose one of {', '.join(FID_IMPLS)}")
        return InceptionFeatures(find_weights(inception_weights, download), dims=dims, impl=fid_impl)
    if spec.startswith("classifier:") and spec[len("classifier:") :]:
        return load_classifier(spec[len("classifier:") :])
    raise UsageError(f"--features {spec!r}: choose one of {', '.join(FEATURE_KINDS)}")
