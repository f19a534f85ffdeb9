"""Tests for the metric maths: parity with torch-fidelity's and pytorch-fid's own functions, stability, invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from pixelforge.errors import UsageError
from pixelforge.evaluate import metrics
from pixelforge.evaluate.metrics import (
    MetricInputs,
    check_metrics,
    compute_metrics,
    features_to_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def relu_features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Correlated non-negative features (n, d) float32, shaped like pooled ReLU activations."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).standard_normal((d, d)) / np.sqrt(d)
    return np.maximum(rng.standard_normal((n, d)) @ mix + shift, 0).astype(np.float32)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_statistics_equal_numpy_cov():
    x = relu_features(300, 32, seed=1)
    mu, sigma = features_to_statistics(x)
    assert np.allclose(mu, x.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    assert np.allclose(sigma, np.cov(x, rowvar=False), rtol=0, atol=1e-12)


def test_frechet_equals_pytorch_fid_and_torch_fidelity_256d():
    s1 = features_to_statistics(relu_features(600, 256, seed=1))
    s2 = features_to_statistics(relu_features(600, 256, seed=2, shift=0.2))
    ours = frechet_distance(*s1, *s2)
    assert rel(ours, calculate_frechet_distance(*s1, *s2)) < 1e-9
    fidelity = fid_statistics_to_metric({"mu": s1[0], "sigma": s1[1]}, {"mu": s2[0], "sigma": s2[1]}, False)
    assert rel(ours, fidelity["frechet_inception_distance"]) < 1e-9
    assert ours == pytest.approx(frechet_distance(*s2, *s1), rel=1e-10)  # symmetric


@pytest.mark.slow
def test_frechet_equals_torch_fidelity_2048d_more_samples_than_dims():
    # 2,100 samples of 2,048-d: full-rank covariances, as the pool3 layer needs (pytorch-fid's
    # scipy sqrtm takes over a minute here; it is checked at 256-d above and end to end at 64-d)
    s1 = features_to_statistics(relu_features(2100, 2048, seed=3))
    s2 = features_to_statistics(relu_features(2100, 2048, seed=4, shift=0.1))
    fidelity = fid_statistics_to_metric({"mu": s1[0], "sigma": s1[1]}, {"mu": s2[0], "sigma": s2[1]}, False)
    assert rel(frechet_distance(*s1, *s2), fidelity["frechet_inception_distance"]) < 1e-9


def test_frechet_stays_real_and_exact_when_singular():
    # 40 samples of 64-d: rank-39 covariances, where sqrt of the product has no stable real form
    x = relu_features(40, 64, seed=5)
    mu, sigma = features_to_statistics(x)
    # (the square root turns rounding of the ~24 zero eigenvalues, ~1e-16, into ~1e-8 each)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)
    # sigma2 = c^2 sigma1 exactly: d^2 = |mu1 - mu2|^2 + (1 - c)^2 tr(sigma1)
    c, shift = 1.7, np.full(64, 0.25)
    expected = shift @ shift + (1 - c) ** 2 * np.trace(sigma)
    assert frechet_distance(mu, sigma, mu + shift, c * c * sigma) == pytest.approx(expected, rel=1e-7)
    # a dead (all-zero) feature and duplicated features do not break it either
    x[:, 3] = 0
    x[:, 10] = x[:, 11]
    mu, sigma = features_to_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-6 * np.trace(sigma))


def test_kid_equals_torch_fidelity():
    fake, real = relu_features(300, 64, seed=6, shift=0.1), relu_features(250, 64, seed=7)
    ours = kernel_inception_distance(fake, real, subsets=20, subset_size=100)
    theirs = kid_features_to_metric(
        torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=20, kid_subset_size=100, verbose=False
    )
    assert rel(ours[0], theirs["kernel_inception_distance_mean"]) < 1e-5  # theirs sums in float32
    assert rel(ours[1], theirs["kernel_inception_distance_std"]) < 1e-3


def test_kid_gram_and_per_subset_paths_agree(monkeypatch):
    fake, real = relu_features(120, 32, seed=8, shift=0.1), relu_features(110, 32, seed=9)
    gram = kernel_inception_distance(fake, real, subsets=5, subset_size=50)
    monkeypatch.setattr(metrics, "KID_GRAM_MAX", 0)
    per_subset = kernel_inception_distance(fake, real, subsets=5, subset_size=50)
    assert gram == pytest.approx(per_subset, rel=1e-10)


def test_kid_subset_larger_than_set_is_refused():
    with pytest.raises(UsageError, match="subset size 100"):
        kernel_inception_distance(relu_features(50, 8, 1), relu_features(50, 8, 2), subset_size=100)


def test_inception_score_equals_torch_fidelity():
    logits = torch.randn(200, 1008, generator=torch.Generator().manual_seed(0)) * 3
    ours = inception_score(logits.numpy())
    theirs = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    assert ours[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-12)
    assert ours[1] == pytest.approx(theirs["inception_score_std"], rel=1e-9)
    with pytest.raises(UsageError, match="at least 10 fake images"):
        inception_score(logits[:5].numpy())


def test_precision_recall_equal_torch_fidelity_even_with_ties():
    fake, real = relu_features(150, 64, seed=10, shift=0.3), relu_features(140, 64, seed=11)
    fake[:20] = real[:20]  # exact copies sit exactly on ball boundaries of their own neighbours
    ours = precision_recall(fake, real)
    theirs = prc_features_to_metric(
        torch.from_numpy(fake),
        torch.from_numpy(real),
        prc_neighborhood=3,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )
    assert ours == (theirs["precision"], theirs["recall"])
    assert 0 < ours[0] < 1 and 0 < ours[1] < 1


def test_registry_checks_names_and_shares_the_precision_recall_pass():
    assert check_metrics(["recall", "fid"]) == ("fid", "recall")  # registry order
    with pytest.raises(UsageError, match="--metrics 'fd': choose from fid, kid, is, precision, recall"):
        check_metrics(["fd"])
    fake, real = relu_features(40, 8, 1, shift=0.2), relu_features(40, 8, 2)
    out = compute_metrics(("precision", "recall"), MetricInputs(real=real, fake=fake, fake_logits=None))
    assert (out["precision"], out["recall"]) == precision_recall(fake, real)
    with pytest.raises(UsageError, match="class logits"):
        compute_metrics(("is",), MetricInputs(real=real, fake=fake, fake_logits=None))
