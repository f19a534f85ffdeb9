"""The metric maths on feature arrays: Fréchet distance, KID, Inception Score, precision/recall, and their registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from pixelforge.errors import UsageError

# Result keys, shared by the Python API, `--json` and the report.
FID, KID, KID_STD, IS, IS_STD, PRECISION, RECALL = "fid", "kid", "kid_std", "is", "is_std", "precision", "recall"

# torch-fidelity's defaults (torch_fidelity/defaults.py), kept so our numbers equal theirs.
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE, KID_COEF0 = 3, 1.0
IS_SPLITS = 10
PRC_NEIGHBOURHOOD = 3
PRC_BATCH = 10000
RNG_SEED = 2020
# Above this many samples per side the KID kernels are computed per subset rather than from one
# Gram matrix of every pair (3 * 4096^2 doubles = 400 MB is the most we hold at once).
KID_GRAM_MAX = 4096


def features_to_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``features`` (N, D), in float64.

    1. mu = mean_n x_n                       mu: (D,)
    2. Xc = X - mu                           Xc: (N, D)
    3. sigma = Xc^T Xc / (N - 1)             sigma: (D, D)  (np.cov's estimator, as both reference tools)
    """
    x = np.asarray(features, dtype=np.float64)
    mu = x.mean(axis=0)
    xc = x - mu
    # numpy sees Xc.T @ Xc and calls BLAS syrk: half the work of a general product (0.8 s vs 1.2 s
    # for 10,000 x 2,048 here)
    sigma = (xc.T @ xc) / max(len(x) - 1, 1)
    return mu, sigma


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run LAPACK's symmetric eigensolvers on one thread.

    Their tridiagonal reduction synchronises threads once per column; with another process on
    one of the two cores, a 2,048-d eigvalsh took 2.8 s on two threads and 0.38 s on one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), from symmetric eigenvalues only.

    d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))

    The trace of the matrix square root is the sum of the square roots of the eigenvalues of
    sigma1 sigma2, which equal those of the symmetric PSD matrix R^T sigma2 R for any factor
    sigma1 = R R^T. scipy's sqrtm of the non-symmetric product goes complex or infinite when it is
    near-singular (fewer samples than dimensions, dead features); this stays real and stable:

    1. sigma1 = L L^T (Cholesky; when sigma1 is singular, R = U diag(sqrt(max(lambda, 0))) from
       its eigendecomposition instead)                           R: (D, D)
    2. M = R^T sigma2 R, symmetrised against rounding             M: (D, D), symmetric PSD
    3. mu_i = eigvalsh(M), clipped at 0                           (D,)
    4. tr((sigma1 sigma2)^(1/2)) = sum_i sqrt(mu_i)
    """
    m1, m2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1 = torch.from_numpy(np.ascontiguousarray(sigma1, np.float64))
    s2 = torch.from_numpy(np.ascontiguousarray(sigma2, np.float64))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError(
            f"statistics do not match: mu {m1.shape} vs {m2.shape}, sigma {tuple(s1.shape)} vs {tuple(s2.shape)}"
        )
    # 1. a factor of sigma1
    factor, info = torch.linalg.cholesky_ex(s1)
    if int(info) != 0:
        with _single_thread():
            lam, u = torch.linalg.eigh(s1)
        factor = u * lam.clamp(min=0).sqrt()
    # 2.-3. the symmetric product and its eigenvalues
    m = factor.T @ s2 @ factor
    m = (m + m.T) / 2
    with _single_thread():
        eigenvalues = torch.linalg.eigvalsh(m)
    tr_covmean = eigenvalues.clamp(min=0).sqrt().sum().item()
    # 4.
    diff = m1 - m2
    return float(diff @ diff + torch.trace(s1).item() + torch.trace(s2).item() - 2 * tr_covmean)


def _mmd2_unbiased(k_xx: torch.Tensor, k_xy: torch.Tensor, k_yy: torch.Tensor) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) from the three (m, m) kernel blocks."""
    m = k_xx.shape[0]
    kt_xx = k_xx.sum() - k_xx.diagonal().sum()
    kt_yy = k_yy.sum() - k_yy.diagonal().sum()
    return float((kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    fake: np.ndarray,
    real: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = RNG_SEED,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std of the unbiased MMD^2 over random subsets.

    The kernel is the polynomial k(x, y) = (x.y / D + 1)^3. Subsets are drawn exactly as
    torch-fidelity draws them (one RandomState(seed); per subset ``subset_size`` fake indices, then
    real indices, without replacement), so the same features give the same number.

    1. for each subset s: X = fake[I_s], Y = real[J_s]                 X, Y: (m, D)
    2. K_XX = (X X^T / D + 1)^3, K_XY, K_YY likewise                    (m, m)
    3. mmd_s = (sum_{i!=j} K_XX + sum_{i!=j} K_YY) / (m (m-1)) - 2 sum K_XY / m^2
    4. KID = mean_s mmd_s, KID_std = std_s mmd_s (population std, as torch-fidelity)
    """
    n_f, n_r = len(fake), len(real)
    if subset_size > min(n_f, n_r) or subset_size < 2:
        raise UsageError(
            f"KID subset size {subset_size} needs at least that many real and fake images (have {n_r} real, {n_f} fake)"
        )
    d = fake.shape[1]
    f = torch.from_numpy(np.ascontiguousarray(fake)).to(torch.float64)
    r = torch.from_numpy(np.ascontiguousarray(real)).to(torch.float64)
    rng = np.random.RandomState(seed)
    # Small inputs: every pair's dot product once, then each subset is a gather (the same
    # numbers, 100x less work when the subsets cover most of the set).
    gram = max(n_f, n_r) <= KID_GRAM_MAX
    if gram:
        g_ff, g_rr, g_fr = f @ f.T, r @ r.T, f @ r.T
    mmds = np.zeros(subsets)
    for s in range(subsets):
        i = torch.from_numpy(rng.choice(n_f, subset_size, replace=False))
        j = torch.from_numpy(rng.choice(n_r, subset_size, replace=False))
        if gram:
            xx, yy, xy = g_ff[i][:, i], g_rr[j][:, j], g_fr[i][:, j]
        else:
            x, y = f[i], r[j]
            xx, yy, xy = x @ x.T, y @ y.T, x @ y.T
        mmds[s] = _mmd2_unbiased(
            (xx / d + KID_COEF0) ** KID_DEGREE, (xy / d + KID_COEF0) ** KID_DEGREE, (yy / d + KID_COEF0) ** KID_DEGREE
        )
    return float(mmds.mean()), float(mmds.std())


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS, seed: int = RNG_SEED) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016) over ``splits`` chunks, shuffled as torch-fidelity does.

    1. shuffle rows with RandomState(seed).permutation(N)            logits: (N, K)
    2. p(y|x) = softmax(logits) in float64                           (N, K)
    3. per chunk c: p(y) = mean_{x in c} p(y|x); IS_c = exp(mean_x KL(p(y|x) || p(y)))
    4. IS = mean_c IS_c, IS_std = std_c IS_c
    """
    n = len(logits)
    if n < splits:
        raise UsageError(f"the Inception Score needs at least {splits} fake images (one per split); have {n}")
    x = torch.from_numpy(np.ascontiguousarray(logits))[np.random.RandomState(seed).permutation(n)].double()
    p, log_p = x.softmax(dim=1), x.log_softmax(dim=1)
    scores = []
    for c in range(splits):
        lo, hi = c * n // splits, (c + 1) * n // splits
        q = p[lo:hi].mean(dim=0, keepdim=True)
        kl = (p[lo:hi] * (log_p[lo:hi] - q.log())).sum(dim=1).mean()
        scores.append(kl.exp().item())
    return float(np.mean(scores)), float(np.std(scores))


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row (row itself excluded)."""
    return torch.cat([torch.cdist(chunk, x).kthvalue(k + 1, dim=1).values for chunk in x.split(PRC_BATCH)])


def precision_recall(fake: np.ndarray, real: np.ndarray, k: int = PRC_NEIGHBOURHOOD) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-nearest-neighbour balls.

    1. r_j = distance of real_j to its k-th nearest other real; s_i likewise within the fakes
    2. D = cdist(real, fake)                                          D: (N_real, N_fake)
    3. precision = share of fakes inside some real ball: exists j, D[j, i] <= r_j
    4. recall = share of reals inside some fake ball: exists i, D[j, i] <= s_i
    Distances are torch.cdist in float32 in torch-fidelity's orientation and chunking, so even
    exact ties fall the same way as in torch-fidelity.
    """
    if min(len(fake), len(real)) <= k:
        raise UsageError(
            f"precision/recall with k={k} needs more than {k} real and fake images "
            f"(have {len(real)} real, {len(fake)} fake)"
        )
    f = torch.from_numpy(np.ascontiguousarray(fake, np.float32))
    r = torch.from_numpy(np.ascontiguousarray(real, np.float32))
    radius_real, radius_fake = _kth_neighbour_radii(r, k), _kth_neighbour_radii(f, k)
    fake_hit = torch.zeros(len(f), dtype=torch.bool)
    real_hit = []
    for chunk, radii in zip(r.split(PRC_BATCH), radius_real.split(PRC_BATCH)):
        d = torch.cdist(chunk, f)  # (chunk, N_fake)
        real_hit.append((d <= radius_fake).any(dim=1))
        fake_hit |= (d <= radii[:, None]).any(dim=0)
    return fake_hit.float().mean().item(), torch.cat(real_hit).float().mean().item()


@dataclass
class MetricInputs:
    """What a metric reads: features of both sets (N, D), fake logits (N, K) or None, and settings."""

    real: np.ndarray
    fake: np.ndarray
    fake_logits: np.ndarray | None
    kid_subsets: int = KID_SUBSETS
    kid_subset_size: int = KID_SUBSET_SIZE
    is_splits: int = IS_SPLITS
    real_statistics: tuple[np.ndarray, np.ndarray] | None = None  # from the cache, when it had them


def _fid(inp: MetricInputs) -> dict[str, float]:
    mu_r, sigma_r = inp.real_statistics or features_to_statistics(inp.real)
    mu_f, sigma_f = features_to_statistics(inp.fake)
    return {FID: frechet_distance(mu_f, sigma_f, mu_r, sigma_r)}


def _kid(inp: MetricInputs) -> dict[str, float]:
    mean, std = kernel_inception_distance(inp.fake, inp.real, inp.kid_subsets, inp.kid_subset_size)
    return {KID: mean, KID_STD: std}


def _is(inp: MetricInputs) -> dict[str, float]:
    if inp.fake_logits is None:
        raise UsageError("the Inception Score needs class logits; this feature extractor gives none")
    mean, std = inception_score(inp.fake_logits, inp.is_splits)
    return {IS: mean, IS_STD: std}


def _precision(inp: MetricInputs) -> dict[str, float]:
    return {PRECISION: precision_recall(inp.fake, inp.real)[0]}


def _recall(inp: MetricInputs) -> dict[str, float]:
    return {RECALL: precision_recall(inp.fake, inp.real)[1]}


# The one registry of metrics: --metrics names -> function of the shared inputs.
METRICS: dict[str, Callable[[MetricInputs], dict[str, float]]] = {
    "fid": _fid,
    "kid": _kid,
    "is": _is,
    "precision": _precision,
    "recall": _recall,
}
NEEDS_REAL = frozenset({"fid", "kid", "precision", "recall"})


def check_metrics(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Return ``names`` in registry order, or raise UsageError naming the bad one and the choices."""
    for name in names:
        if name not in METRICS:
            raise UsageError(f"--metrics {name!r}: choose from {', '.join(METRICS)}")
    if not names:
        raise UsageError(f"--metrics is empty: choose from {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)


def compute_metrics(names: tuple[str, ...], inputs: MetricInputs) -> dict[str, float]:
    """Run each named metric once; precision and recall share one pass when both are asked for."""
    out: dict[str, float] = {}
    if "precision" in names and "recall" in names:
        out[PRECISION], out[RECALL] = precision_recall(inputs.fake, inputs.real)
    for name in names:
        if name not in ("precision", "recall") or name not in out:
            out.update(METRICS[name](inputs))
    return out
