"""`pixelforge evaluate memorization`: generated images that copy a training image, by pixels, by features and by
alignment (a crop, small rotation or rescale of a training image, which pixel distance misses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pixelforge.errors import UsageError
from pixelforge.evaluate.features import FeatureModel, load_feature_model
from pixelforge.evaluate.images import extract, open_images

# Carlini et al. 2023, "Extracting Training Data from Diffusion Models", sec. 5.1: a generation
# copies its nearest training image when l2(x^, x) <= delta * alpha * mean l2 to its n nearest.
ALPHA, NEIGHBOURS, THRESHOLD = 0.5, 50, 1 / 3
TRAIN_CHUNK = 2048  # training images compared per step: memory is (fakes x chunk), not (fakes x train)


class PixelFeatures:
    """Pixels as features: images resized to ``size`` x ``size`` (antialiased bilinear), in [0, 1], flattened.

    The "normalisation" of the pixel criterion: every image on the same grid and scale, so the
    RMS difference is comparable across sizes.
    """

    label_names = None
    layer = "pixels"

    def __init__(self, size: int = 32):
        if size < 4:
            raise UsageError(f"--pixel-size {size}: choose at least 4")
        self.input_size, self.name = size, f"pixels{size}"

    def features_and_logits(self, x: torch.Tensor, logits: bool = False) -> tuple[torch.Tensor, None]:
        s = self.input_size
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return x.flatten(1).float(), None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[0]


@dataclass
class MemorizationConfig:
    """Options of `pixelforge evaluate memorization`."""

    features: str = "pixels"  # pixels | inception | classifier:RUN (features add criterion (a))
    threshold: float = THRESHOLD  # delta of the relative-l2 criterion, on pixels
    feature_threshold: float = THRESHOLD  # the same relative criterion on cosine distance of features
    neighbours: int = NEIGHBOURS
    alpha: float = ALPHA
    pixel_size: int = 32
    top: int = 20
    n: int | None = None
    batch_size: int = 64
    workers: int = 2
    aligned: bool = True  # criterion (c): crops and rotations of a training image (pixelforge.alignment)
    aligned_candidates: int = 10  # training images aligned with each fake, per embedding
    dims: int = 2048
    fid_impl: str = "torch-fidelity"
    inception_weights: str | None = None
    download: bool = False

    def validate(self) -> None:
        if not 0 < self.threshold <= 1 / self.alpha or not 0 < self.feature_threshold <= 1 / self.alpha:
            raise UsageError(
                f"--threshold {self.threshold} / --feature-threshold {self.feature_threshold}: choose "
                f"a value in (0, {1 / self.alpha:g}] (Carlini et al. use 1/3)"
            )
        if self.neighbours < 1 or self.top < 0:
            raise UsageError(f"--neighbours {self.neighbours} / --top {self.top}: must be at least 1 / 0")


@dataclass
class MemorizationResult:
    """Which fakes copy a training image. ``flagged``: {fake, train, score, by, cosine}, closest first."""

    n_fake: int
    n_train: int
    n_flagged: int
    share: float
    flagged: list[dict[str, Any]]
    top: list[dict[str, Any]]  # the closest pairs by pixel score, flagged or not (for the report)
    criterion: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "n_fake": self.n_fake,
            "n_flagged": self.n_flagged,
            "share": self.share,
            "flagged": self.flagged,
            "n_train": self.n_train,
            "top": self.top,
            "criterion": self.criterion,
        }


def nearest_neighbours(queries: np.ndarray, base: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``base`` for each query: (distances (Q, k) ascending, indices (Q, k)).

    metric "l2": RMS distance ||q - b|| / sqrt(D); "cosine": 1 - cos(q, b). The base is walked in
    chunks and a running top-k is kept, so memory is Q x (k + chunk).
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, np.float32))
    b = torch.from_numpy(np.ascontiguousarray(base, np.float32))
    if metric == "cosine":
        q, b = F.normalize(q, dim=1), F.normalize(b, dim=1)
    best_d = torch.full((len(q), 0), float("inf"))
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    for start in range(0, len(b), TRAIN_CHUNK):
        chunk = b[start : start + TRAIN_CHUNK]
        if metric == "cosine":
            d = (1 - q @ chunk.T).clamp(min=0)  # (Q, chunk)
        else:
            d = torch.cdist(q, chunk) / q.shape[1] ** 0.5  # (Q, chunk)
        idx = torch.arange(start, start + len(chunk)).expand(len(q), -1)
        all_d, all_i = torch.cat([best_d, d], dim=1), torch.cat([best_i, idx], dim=1)
        best_d, order = all_d.topk(min(k, all_d.shape[1]), dim=1, largest=False)
        best_i = all_i.gather(1, order)
    return best_d.numpy(), best_i.numpy()


def relative_scores(dist: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Carlini et al.'s score per query: d(x^, nearest) / (alpha * mean d(x^, its n nearest)).

    dist: (Q, n) ascending. 0 for an exact copy, 1/alpha when all n neighbours are equally far;
    a copy is a score at or under delta (1/3 in the paper).
    """
    mean = dist.mean(axis=1)
    return np.where(mean > 0, dist[:, 0] / np.maximum(alpha * mean, 1e-12), 0.0)


def aligned_copies(
    fake_pixels: np.ndarray, train_pixels: np.ndarray, size: int, k: int, alpha: float, nearest_by_pixels: np.ndarray
) -> list[tuple[int, float, float]]:
    """Criterion (c): for each fake, (its best-aligned training image, that alignment score, the relative score).

    ``*_pixels``: PixelFeatures rows (RGB at ``size``^2 in [0, 1]). Each fake is aligned
    (alignment.alignment_score) with its ``k`` nearest training images in each of alignment's two
    embeddings and by pixels (``nearest_by_pixels``, (Q, >= k) row numbers); with d = 1 - score, the
    relative score is Carlini's d(best) / (alpha * mean d of the k best): a generic image that
    aligns with many training images (a red circle on white, shifted) is not a copy of any of them,
    one that aligns with a single image far better than with the rest is. The pixel neighbours are
    what finds the many: a shifted flat shape is far from its twins in the embeddings.
    """
    from pixelforge import alignment

    fakes, train = (_thumbnails(x, size) for x in (fake_pixels, train_pixels))
    hits = [
        np.array(list(dict.fromkeys([*row.tolist(), *near[:k].tolist()])), np.int64)
        for row, near in zip(alignment.nearest(fakes, train, k), nearest_by_pixels, strict=True)
    ]
    pairs = np.array([(q, t) for q, row in enumerate(hits) for t in row], np.int64).reshape(-1, 2)
    scores = alignment.alignment_scores(fakes, train, pairs)
    out = []
    start = 0
    for row in hits:
        s = scores[start : start + len(row)]
        start += len(row)
        order = np.argsort(-s)
        d = 1.0 - s[order][:k]
        relative = float(relative_scores(d[None], alpha)[0]) if len(d) else float("inf")
        out.append((int(row[order[0]]), float(s[order[0]]), relative) if len(row) else (-1, -1.0, float("inf")))
    return out


def _thumbnails(pixels: np.ndarray, size: int) -> np.ndarray:
    """alignment's colour thumbnails, uint8 (N, size, size, 3), from PixelFeatures rows (N, 3 * size * size)
    in [0, 1]. In colour: a generated blue circle is no copy of a training red one, however well they align."""
    rgb = pixels.reshape(len(pixels), 3, size, size).transpose(0, 2, 3, 1) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def find_memorized(
    train: str, fake: str, config: MemorizationConfig | None = None, model: FeatureModel | None = None
) -> MemorizationResult:
    """For each image of ``fake``, its nearest image in ``train`` by pixels (and features); flag near-copies.

    (b) pixels: every image resized to ``pixel_size``^2 in [0, 1]; flagged when Carlini's relative
        l2 score is <= ``threshold``.
    (a) features (``config.features`` or ``model``): cosine distance of Inception/classifier
        features with the same relative score, flagged when <= ``feature_threshold``; relative,
        so one threshold holds for any extractor.
    (c) alignment (``config.aligned``): a crop, small rotation or rescale of a training image
        (aligned_copies), flagged when its best alignment reaches alignment.COPY_SCORE and its
        relative score is <= ``threshold``.
    """
    config = config or MemorizationConfig()
    config.validate()
    train_set = open_images(train, "--train", None)
    fake_set = open_images(fake, "--fake", config.n)
    if len(train_set) < 2:
        raise UsageError(f"--train {train}: needs at least 2 images to compare a distance with its neighbours")
    warnings = []
    k = min(config.neighbours, len(train_set))
    if k < config.neighbours:
        warnings.append(f"--neighbours {config.neighbours} lowered to {k}, the number of training images")
    if model is None and config.features != "pixels":
        model = load_feature_model(
            config.features,
            dims=config.dims,
            fid_impl=config.fid_impl,
            inception_weights=config.inception_weights,
            download=config.download,
        )
    opts = dict(batch_size=config.batch_size, workers=config.workers)
    pixels = PixelFeatures(config.pixel_size)
    fake_px = extract(fake_set, pixels, label="fake pixels", **opts)
    train_px = extract(train_set, pixels, label="train pixels", **opts)
    dist, idx = nearest_neighbours(fake_px.features, train_px.features, k, "l2")
    pixel_score = relative_scores(dist, config.alpha)
    pairs = [
        {"fake": f, "train": train_px.keys[i], "score": float(s), "l2": float(d), "by": "pixels"}
        for f, i, s, d in zip(fake_px.keys, idx[:, 0], pixel_score, dist[:, 0])
    ]
    by_fake = {p["fake"]: p for p in pairs}
    flagged = {p["fake"]: p for p in pairs if p["score"] <= config.threshold}
    if model is not None:
        fake_f = extract(fake_set, model, label="fake features", **opts)
        train_f = extract(train_set, model, label="train features", **opts)
        fdist, fidx = nearest_neighbours(fake_f.features, train_f.features, k, "cosine")
        feature_score = relative_scores(fdist, config.alpha)
        for f, i, s, d in zip(fake_f.keys, fidx[:, 0], feature_score, fdist[:, 0]):
            entry = by_fake.get(f)
            if entry is not None:
                entry.update(feature_train=train_f.keys[i], feature_score=float(s), cosine=float(1 - d))
            if s <= config.feature_threshold and f not in flagged:
                flagged[f] = {
                    "fake": f,
                    "train": train_f.keys[i],
                    "score": float(s),
                    "cosine": float(1 - d),
                    "by": "features",
                }
    if config.aligned:
        from pixelforge.alignment import COPY_SCORE, THUMB_SIDE

        fake_t, train_t = fake_px, train_px
        if config.pixel_size != THUMB_SIDE:  # alignment works on its own 32 px copies, whatever --pixel-size
            thumbs = PixelFeatures(THUMB_SIDE)
            fake_t = extract(fake_set, thumbs, label="fake thumbnails", **opts)
            train_t = extract(train_set, thumbs, label="train thumbnails", **opts)
        found = aligned_copies(
            fake_t.features, train_t.features, THUMB_SIDE, config.aligned_candidates, config.alpha, idx
        )
        for f, (i, best, rel) in zip(fake_px.keys, found, strict=True):
            if i < 0:
                continue
            by_fake[f].update(aligned_train=train_px.keys[i], aligned_score=best, aligned_relative=rel)
            if best >= COPY_SCORE and rel <= config.threshold and f not in flagged:
                flagged[f] = {"fake": f, "train": train_px.keys[i], "score": rel, "aligned": best, "by": "alignment"}
    flagged_list = sorted(flagged.values(), key=lambda p: p["score"])
    n_fake = len(fake_px.keys)
    return MemorizationResult(
        n_fake=n_fake,
        n_train=len(train_px.keys),
        n_flagged=len(flagged_list),
        share=len(flagged_list) / n_fake if n_fake else 0.0,
        flagged=flagged_list,
        top=sorted(pairs, key=lambda p: p["score"])[: config.top],
        criterion={
            "pixels": f"l2(fake, nearest) <= {config.threshold:g} * {config.alpha:g} * mean l2 to {k} nearest "
            f"({config.pixel_size}x{config.pixel_size} px in [0, 1])",
            "features": None
            if model is None
            else f"cosine distance, same relative test <= {config.feature_threshold:g} ({model.name})",
            "alignment": None
            if not config.aligned
            else "a crop, rotation (<= 6 degrees) or rescale of the training image: alignment score >= 0.95 and "
            f"the same relative test on 1 - score <= {config.threshold:g} over the "
            f"{config.aligned_candidates} best-aligned of its nearest training images (by pixels and by embedding)",
        },
        warnings=warnings,
    )
