"""The feature pass as one task per shard (or folder chunk), so an executor such as Ray can run it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pixelforge.evaluate.images import Extracted, ImageSet, _ImageStream, collected, to_batches
from pixelforge.progress import track

if TYPE_CHECKING:
    from pixelforge.run import ExecutorSettings

_MODELS: dict[tuple, Any] = {}  # per worker process: a model is loaded once, not once per shard


@dataclass(frozen=True)
class ModelSource:
    """How a worker gets the FeatureModel: rebuilt from the Inception weights file or a classifier run
    (those paths must be readable on every node), or carried pickled in each task (models built in code)."""

    kind: str  # inception | classifier | object
    args: tuple = ()
    model: Any = field(default=None, compare=False)

    def load(self) -> Any:
        if self.kind == "object":
            return self.model
        key = (self.kind, *self.args)
        if key not in _MODELS:
            if self.kind == "inception":
                from pixelforge.evaluate.inception import InceptionFeatures

                weights, dims, impl = self.args
                _MODELS[key] = InceptionFeatures(weights, dims=dims, impl=impl)
            else:
                from pixelforge.evaluate.features import load_classifier

                _MODELS[key] = load_classifier(self.args[0])
        return _MODELS[key]


def source_of(model: Any, features: str | None = None) -> ModelSource:
    """The ModelSource of ``model``; ``features`` is the --features value it was loaded from, if any."""
    from pixelforge.evaluate.inception import InceptionFeatures

    if isinstance(model, InceptionFeatures):
        return ModelSource("inception", (str(model.weights.resolve()), model.dims, model.impl))
    if features and features.startswith("classifier:"):
        return ModelSource("classifier", (features[len("classifier:") :],))
    return ModelSource("object", model=model)


@dataclass
class FeatureTask:
    """One unit of the feature pass: the images of one shard (or FOLDER_CHUNK files) and their positions."""

    images: ImageSet  # the unit's images only, in set order
    positions: list[int]  # position of each of them in the whole set
    model: ModelSource
    batch_size: int
    logits: bool


@dataclass
class UnitFeatures:
    positions: list[int]  # of the images that decoded, in the set
    features: np.ndarray  # (n, D) float32
    logits: np.ndarray | None  # (n, K) float32
    failed: list[tuple[int, str]]  # (position in the set, reason)
    images: int  # images the unit held


def unit_features(task: FeatureTask) -> UnitFeatures:
    """Decode one unit's images and run the model over them, in batches of ``task.batch_size``.

    The same decoding (images._ImageStream) and batching by size (images.to_batches) as the local
    pass, so a unit whose images fill whole batches gives the same numbers bit for bit.
    """
    import torch

    model = task.model.load()
    rows: list[int] = []
    feats: list[np.ndarray] = []
    logit_parts: list[np.ndarray] = []
    failed: list[tuple[int, str]] = []
    for positions, arrays, failures in _ImageStream(task.images, task.batch_size):
        failed += [(task.positions[p], why) for p, why in failures]
        for idx, x in to_batches(arrays):
            with torch.inference_mode():
                f, lg = model.features_and_logits(x, logits=task.logits)
            rows += [task.positions[positions[i]] for i in idx]
            feats.append(f.numpy().astype(np.float32, copy=False))
            if lg is not None:
                logit_parts.append(lg.numpy().astype(np.float32, copy=False))
    return UnitFeatures(
        rows,
        np.concatenate(feats) if feats else np.zeros((0, 0), np.float32),
        np.concatenate(logit_parts) if logit_parts else None,
        failed,
        len(task.positions),
    )


def feature_tasks(images: ImageSet, model: ModelSource, batch_size: int, logits: bool) -> Iterator[FeatureTask]:
    """One FeatureTask per shard of a dataset, or per FOLDER_CHUNK files of a folder."""
    by_shard: dict[str, list[int]] = {}
    for p, s in enumerate(images.shards):
        by_shard.setdefault(s, []).append(p)
    for unit in _ImageStream(images, batch_size).units:
        if images.kind == "dataset":
            positions = by_shard[unit]
            part = replace(images, keys=[images.keys[p] for p in positions], shards=[unit] * len(positions))
        else:
            positions = list(unit)
            part = replace(images, keys=[images.keys[p] for p in positions], files=[images.files[p] for p in positions])
        yield FeatureTask(part, positions, model, batch_size, logits)


def extract_tasks(
    images: ImageSet,
    model: Any,
    *,
    batch_size: int,
    logits: bool,
    label: str,
    executor: ExecutorSettings,
    processes: int | None = None,
    features: str | None = None,
) -> Extracted:
    """images.extract through ``executor``: one unit_features task per unit, gathered in set order.

    ``processes`` overrides the executor's pool size (evaluate sizes it by ``--workers``).
    """
    n = len(images)
    feats: np.ndarray | None = None
    logit_arr: np.ndarray | None = None
    ok = np.zeros(n, dtype=bool)
    failed: dict[int, str] = {}
    tasks = feature_tasks(images, source_of(model, features), batch_size, logits)
    with track(label, total=n) as progress:
        for res in executor.run(unit_features, tasks, processes=processes):
            failed.update(res.failed)
            if res.positions:
                if feats is None:
                    feats = np.zeros((n, res.features.shape[1]), np.float32)
                    logit_arr = np.zeros((n, res.logits.shape[1]), np.float32) if res.logits is not None else None
                feats[res.positions] = res.features
                if logit_arr is not None:
                    logit_arr[res.positions] = res.logits
                ok[res.positions] = True
            progress.advance(res.images)
    return collected(images, feats, logit_arr, ok, failed)
