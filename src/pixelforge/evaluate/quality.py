"""`pixelforge evaluate`: FID, KID, Inception Score and precision/recall of fakes against reals, in one pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixelforge.errors import UsageError
from pixelforge.evaluate import cache
from pixelforge.evaluate.features import FeatureModel, load_feature_model
from pixelforge.evaluate.images import Extracted, ImageSet, extract, open_images
from pixelforge.evaluate.inception import DIMS, FID_IMPLS, InceptionFeatures
from pixelforge.evaluate.metrics import (
    IS_SPLITS,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    METRICS,
    NEEDS_REAL,
    MetricInputs,
    check_metrics,
    compute_metrics,
    features_to_statistics,
)
from pixelforge.run import ExecutorSettings


@dataclass
class EvaluateConfig:
    """Options of `pixelforge evaluate` (defaults are torch-fidelity's, so numbers compare with it)."""

    metrics: tuple[str, ...] = tuple(METRICS)
    features: str = "inception"  # inception | classifier:RUN
    dims: int = 2048  # Inception layer: 64, 192, 768 or 2048
    fid_impl: str = "torch-fidelity"  # torch-fidelity | pytorch-fid (resize/normalisation convention)
    n: int | None = None  # first N images of each input (None: all)
    batch_size: int = 50
    workers: int = 2  # image-decoding processes
    inception_weights: str | None = None
    download: bool = False
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    is_splits: int = IS_SPLITS
    cache: bool = True  # cache the real set's features and statistics
    # feature pass: backend local (``workers`` loader processes) or ray (one task per shard; its
    # processes are ``workers`` too, so its own processes field is not used)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)

    def validate(self) -> None:
        """Raise UsageError for a bad value, naming it and the allowed set, before any work."""
        self.metrics = check_metrics(self.metrics)
        if self.dims not in DIMS:
            raise UsageError(f"--dims {self.dims}: choose one of {', '.join(map(str, DIMS))}")
        if self.fid_impl not in FID_IMPLS:
            raise UsageError(f"--fid-impl {self.fid_impl!r}: choose one of {', '.join(FID_IMPLS)}")
        if not (self.features == "inception" or self.features.startswith("classifier:")):
            raise UsageError(f"--features {self.features!r}: choose inception or classifier:RUN")
        for flag, value, low in (
            ("--batch-size", self.batch_size, 1),
            ("--workers", self.workers, 0),
            ("--kid-subsets", self.kid_subsets, 1),
            ("--kid-subset-size", self.kid_subset_size, 2),
            ("--is-splits", self.is_splits, 1),
        ):
            if value < low:
                raise UsageError(f"{flag} {value}: must be at least {low}")
        self.executor.validate()


@dataclass
class EvaluateResult:
    """The asked-for metrics plus what they were computed from; ``warnings`` go to stderr."""

    metrics: dict[str, float]
    n_real: int
    n_fake: int
    features: str
    dims: int
    fid_impl: str | None
    warnings: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # images left out: {input, key, reason}
    real_cache: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `--json` object: the metrics, then n_real, n_fake, features, dims, fid_impl."""
        return {
            **self.metrics,
            "n_real": self.n_real,
            "n_fake": self.n_fake,
            "features": self.features,
            "dims": self.dims,
            "fid_impl": self.fid_impl,
        }


def _real_features(real: ImageSet, model: FeatureModel, config: EvaluateConfig) -> tuple[Extracted, Any, str | None]:
    """The real set's features and FID statistics: from the cache when present, else computed and cached."""
    name = cache.cache_name(real, model.name, model.layer) if config.cache else None
    if name is not None:
        hit = cache.load(real, name)
        if hit is not None:
            extracted, mu, sigma = hit
            return extracted, (mu, sigma), cache.location(real, name)[1]
    extracted = _extract(real, model, config, logits=False, label="real images")
    stats = features_to_statistics(extracted.features)
    where = cache.save(real, name, extracted, *stats) if name is not None else None
    return extracted, stats, where


def _extract(images: ImageSet, model: FeatureModel, config: EvaluateConfig, *, logits: bool, label: str) -> Extracted:
    """The feature pass of one set: in this process with loader workers, or one executor task per shard."""
    if config.executor.backend == "local":
        return extract(images, model, batch_size=config.batch_size, workers=config.workers, logits=logits, label=label)
    from pixelforge.evaluate.feature_tasks import extract_tasks

    return extract_tasks(
        images,
        model,
        batch_size=config.batch_size,
        logits=logits,
        label=label,
        executor=config.executor,
        processes=max(1, config.workers),
        features=config.features,
    )


def evaluate(
    real: str | None, fake: str, config: EvaluateConfig | None = None, model: FeatureModel | None = None
) -> EvaluateResult:
    """Compare the images at ``fake`` with those at ``real`` (datasets or plain folders).

    Every metric comes from one feature pass per set; ``model`` overrides ``config.features``
    (a FeatureModel built in code). The real set's features are cached (see evaluate.cache).
    Raises UsageError for bad options or inputs, before any image is read.
    """
    config = config or EvaluateConfig()
    config.validate()
    need_real = bool(NEEDS_REAL & set(config.metrics))
    if need_real and not real:
        raise UsageError(
            f"--real is needed for {', '.join(m for m in config.metrics if m in NEEDS_REAL)}; "
            "only the Inception Score works from --fake alone"
        )
    fake_set = open_images(fake, "--fake", config.n)
    real_set = open_images(real, "--real", config.n) if need_real else None
    features_name = config.features if model is None else model.name
    if model is None:
        model = load_feature_model(
            config.features,
            dims=config.dims,
            fid_impl=config.fid_impl,
            inception_weights=config.inception_weights,
            download=config.download,
        )
    warnings: list[str] = []
    failed: list[dict[str, str]] = []
    real_cache = None
    real_x, real_stats = None, None
    if real_set is not None:
        real_x, real_stats, real_cache = _real_features(real_set, model, config)
        failed += [{"input": "real", "key": k, "reason": r} for k, r in real_x.failed]
    fake_x = _extract(fake_set, model, config, logits="is" in config.metrics, label="fake images")
    failed += [{"input": "fake", "key": k, "reason": r} for k, r in fake_x.failed]
    if failed:
        warnings.append(
            f"{len(failed)} images could not be decoded and were left out (first: "
            f"{failed[0]['input']} {failed[0]['key']}: {failed[0]['reason']})"
        )
    n_fake, dims = len(fake_x.keys), fake_x.features.shape[1]
    n_real = len(real_x.keys) if real_x is not None else 0
    if "fid" in config.metrics and min(n_real, n_fake) <= dims:
        warnings.append(
            f"FID from {n_real} real and {n_fake} fake images of {dims}-d features is biased (the "
            f"covariance has rank below {dims}): use at least {dims + 1} images of each"
        )
    subset = config.kid_subset_size
    if "kid" in config.metrics and subset > min(n_real, n_fake):
        subset = min(n_real, n_fake)
        warnings.append(
            f"KID subset size lowered from {config.kid_subset_size} to {subset}, the size of the smaller set"
        )
    inputs = MetricInputs(
        real=real_x.features if real_x is not None else None,
        fake=fake_x.features,
        fake_logits=fake_x.logits,
        kid_subsets=config.kid_subsets,
        kid_subset_size=subset,
        is_splits=config.is_splits,
        real_statistics=real_stats,
    )
    metrics = compute_metrics(config.metrics, inputs)
    return EvaluateResult(
        metrics=metrics,
        n_real=n_real,
        n_fake=n_fake,
        features=features_name,
        dims=dims,
        fid_impl=model.impl if isinstance(model, InceptionFeatures) else None,
        warnings=warnings,
        failed=failed,
        real_cache=real_cache,
    )
