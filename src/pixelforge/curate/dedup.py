"""Duplicate groups: exact (sha256) and near (64-bit phash within a Hamming radius, dhash as second vote).

Near pairs come from multi-index hashing (Norouzi et al., "Fast Search in Hamming Space with
Multi-Index Hashing", CVPR 2012), not from all pairs:

1. Cut the 64 bits into m chunks of b = 64/m bits. If two hashes differ in at most r bits, one
   chunk differs in at most r' = floor(r / m) bits (pigeonhole), so every pair within r shares
   a chunk value up to r' flipped bits.
2. Per chunk, sort the items by chunk value and keep bucket offsets (a direct-address table of
   2^b + 1 entries). For each flip mask of at most r' bits, every item looks up the bucket of
   (its chunk XOR mask): a vectorised gather, no per-item Python.
3. Each candidate (i, j) is checked on the full 64 bits; survivors are the pairs within r.

m is chosen per call to minimise probes + candidates, ~ m * V(b, r') * (1 + N / 2^b), where
V(b, r') is the number of masks; for N = 1M and r = 8 that is m = 3 chunks of 21-22 bits.
The result is exact (every pair within r, nothing else). Groups are the connected components
of exact-duplicate and near-duplicate pairs (scipy.sparse.csgraph).

Both hashes are taken of grey copies, so a red and a blue circle on the same background hash
alike. A near pair is therefore also vetoed when the colour signatures of its two images
(quality.colour_signature: saturation mass per hue sector) disagree, see colour_distance.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

MAX_RADIUS = 16
_DIRECT_BITS = 24  # chunks up to this many bits use a direct-address offset table (2^24 int64 = 128 MB)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of two uint64 arrays (element-wise), as int64."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _masks(bits: int, flips: int) -> np.ndarray:
    """Every bits-wide mask with at most ``flips`` bits set (the zero mask first)."""
    out = [0]
    for k in range(1, flips + 1):
        out += [sum(1 << p for p in combo) for combo in itertools.combinations(range(bits), k)]
    return np.array(out, dtype=np.uint64)


def plan_chunks(n: int, radius: int) -> int:
    """The number of chunks m (1..radius+1) with the smallest estimated cost for n hashes."""
    best, best_cost = 1, math.inf
    for m in range(1, min(radius + 1, 16) + 1):
        b = 64 // m
        flips = radius // m
        masks = sum(math.comb(b + (1 if m - 1 < 64 % m else 0), k) for k in range(flips + 1))
        cost = m * masks * (1.0 + n / 2.0**b)
        if b > _DIRECT_BITS:
            cost *= 4  # sorted-array lookups (searchsorted) instead of direct addressing
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def near_pairs(hashes: np.ndarray, radius: int, chunks: int | None = None, threads: int = 2) -> np.ndarray:
    """All pairs (i, j), i < j, with Hamming(hashes[i], hashes[j]) <= radius; int64 (P, 2), sorted.

    ``hashes``: uint64 (N,). Exact and sub-quadratic (see the module docstring); ``chunks``
    overrides the automatic choice of m. The flip masks of a chunk are shared among
    ``threads`` threads (NumPy releases the GIL in the gathers and bit operations).
    """
    h = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(h)
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"radius {radius}: choose 0..{MAX_RADIUS}")
    if n < 2:
        return np.zeros((0, 2), np.int64)
    m = chunks or plan_chunks(n, radius)
    flips = radius // m
    # chunk widths: the first (64 % m) chunks take one extra bit so the widths add up to 64
    widths = [64 // m + (1 if c < 64 % m else 0) for c in range(m)]
    found: list[np.ndarray] = []
    shift = 64
    for width in widths:
        shift -= width
        table = _ChunkTable(h, shift, width, radius)
        found.append(table.same_bucket())
        masks = _masks(width, flips)[1:]
        if threads > 1 and len(masks) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(threads) as pool:
                found.extend(pool.map(table.flipped, np.array_split(masks, threads * 4)))
        else:
            found.append(table.flipped(masks))
    code = np.unique(np.concatenate(found))  # a pair met through several chunks counts once
    return np.stack([code // n, code % n], axis=1)


class _ChunkTable:
    """One chunk's index: items sorted by chunk value, bucket offsets, and the two probe kinds."""

    def __init__(self, h: np.ndarray, shift: int, width: int, radius: int):
        self.n, self.radius, self.width = len(h), radius, width
        keys = (h >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]  # ascending
        self.h = h[self.order]  # hashes in the same order: candidate checks read nearby memory
        self._side: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # top bit -> (positions, keys) with it clear
        self.direct = width <= _DIRECT_BITS
        if self.direct:
            self.starts = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(np.bincount(self.keys.astype(np.int64), minlength=1 << width), out=self.starts[1:])

    def _emit(self, pi: np.ndarray, pj: np.ndarray) -> np.ndarray:
        """Pair codes min * n + max (original indices) of the candidates within the radius."""
        keep = np.bitwise_count(self.h[pi] ^ self.h[pj]) <= self.radius
        a, b = self.order[pi[keep]], self.order[pj[keep]]
        return np.minimum(a, b) * self.n + np.maximum(a, b)

    def same_bucket(self) -> np.ndarray:
        """Candidates sharing the chunk value: positions p and p + k with equal keys, k = 1, 2, ..."""
        out = []
        k = 1
        pos = np.arange(self.n - 1, dtype=np.int64)
        while len(pos):
            pos = pos[self.keys[pos] == self.keys[pos + k]]  # runs shrink as k grows
            if len(pos):
                out.append(self._emit(pos, pos + k))
            k += 1
            pos = pos[pos + k < self.n]
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _clear_side(self, bit: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions whose key has ``bit`` clear, and their keys; cached (a chunk has few top bits)."""
        if bit not in self._side:  # two threads may both compute it: same value, no harm
            src = np.flatnonzero((self.keys & np.uint64(1 << bit)) == 0)
            self._side[bit] = (src, self.keys[src])
        return self._side[bit]

    def flipped(self, masks: np.ndarray) -> np.ndarray:
        """Candidates whose chunk values differ by exactly one of ``masks`` (all non-zero)."""
        out = []
        for mask in masks:
            # a pair differing by `mask` is met from both sides; query only from the side whose
            # key has the mask's highest bit clear, which halves the work and finds each once
            src, src_keys = self._clear_side(int(mask).bit_length() - 1)
            q = src_keys ^ mask
            if self.direct:
                qi = q.astype(np.int64)
                lo = self.starts[qi]
                count = self.starts[qi + 1] - lo
            else:
                lo = np.searchsorted(self.keys, q, side="left")
                count = np.searchsorted(self.keys, q, side="right") - lo
            k = 0
            sel = np.flatnonzero(count)
            while len(sel):  # the k-th member of every bucket that has one; buckets are short
                out.append(self._emit(src[sel], lo[sel] + k))
                k += 1
                sel = sel[count[sel] > k]
        return np.concatenate(out) if out else np.zeros(0, np.int64)


COLOUR_FLOOR = 0.05  # colourfulness under which a difference of hue is measured against this floor


def colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How differently coloured the images of each pair are, in [0, 2]; float (P,).

    ``a``, ``b``: colour signatures (P, HUE_BINS) of the pairs' two images.

    1. d = sum |a - b| - |sum a - sum b|: the L1 distance less the part a pure change of
       saturation explains. A brightness, contrast or saturation change scales a signature
       (d ~ 0); a grey copy of a colour image has the zero signature (d = 0: still a copy);
       moving colour to another hue leaves d at twice the moved mass.
    2. Divide by max(sum a, sum b, COLOUR_FLOOR): a red circle against a blue one scores ~2
       whether it fills the frame or a corner; two nearly grey images stay near 0.
    On benchmarks/dedup_vs_imagededup.py's true pairs the largest value is 0.20 (a 10% crop);
    flat shapes that differ only in colour score 1.7-2.0.
    """
    d = np.abs(a - b).sum(axis=1) - np.abs(a.sum(axis=1) - b.sum(axis=1))
    scale = np.maximum(np.maximum(a.sum(axis=1), b.sum(axis=1)), COLOUR_FLOOR)
    return np.maximum(d, 0.0) / scale


def exact_pairs(values: list[str | None]) -> np.ndarray:
    """Pairs (first, other) linking every repeated non-null value to its first occurrence; (P, 2)."""
    first: dict[str, int] = {}
    pairs = []
    for i, v in enumerate(values):
        if v is None:
            continue
        j = first.setdefault(v, i)
        if j != i:
            pairs.append((j, i))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def pairs_to_groups(n: int, *pair_sets: np.ndarray) -> np.ndarray:
    """Connected components of the pair graph: a group id per item, int64 (n,), singletons their own."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = np.concatenate([p for p in pair_sets if len(p)] or [np.zeros((0, 2), np.int64)])
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


@dataclass
class Duplicates:
    """What duplicate detection found: groups per item and the pairs behind them."""

    groups: np.ndarray  # (N,) component id per item
    exact: np.ndarray  # (P1, 2) exact-duplicate pairs (same sha256)
    near: np.ndarray  # (P2, 2) near pairs that passed the vote
    candidates: int  # pairs nominated by either hash before the combined check
    colour_vetoed: int = 0  # near pairs the hashes accepted and the colour check refused
    aligned: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (P3, 2) near copies by alignment
    aligned_candidates: int = 0  # neighbour pairs the near-copy pass looked at (not grouped by the hashes)
    aligned_verified: int = 0  # of those, the pairs close enough in hash and colour to be aligned


def with_near_copies(
    dups: Duplicates,
    thumbs: np.ndarray,
    phash: np.ndarray,
    dhash: np.ndarray,
    colour: np.ndarray,
    max_colour: float | None = None,
    threads: int = 2,
) -> Duplicates:
    """``dups`` with the crops and rotations the hashes missed (curate.nearcopy) joined to the groups.

    ``max_colour``: curate's --colour; the pass's own bound (alignment compares grey) is never looser.
    """
    from pixelforge.curate.nearcopy import NearCopyParams, find_near_copies

    params = NearCopyParams()
    if max_colour is not None and max_colour < params.max_colour:
        params = replace(params, max_colour=max_colour)
    found = find_near_copies(thumbs, phash, dhash, colour, dups.groups, params, threads=threads)
    groups = pairs_to_groups(len(dups.groups), dups.exact, dups.near, found.pairs)
    return replace(
        dups, groups=groups, aligned=found.pairs, aligned_candidates=found.candidates, aligned_verified=found.verified
    )


def hashes_to_groups(
    sha256: list[str | None],
    phash: np.ndarray,
    dhash: np.ndarray | None,
    radius: int,
    combined: int | None,
    colour: np.ndarray | None = None,
    max_colour: float | None = None,
) -> Duplicates:
    """Group items that are byte-identical or near duplicates, by two votes.

    Nomination: phash within ``radius`` bits, OR dhash within ``radius`` bits (each from its
    own multi-index search). Confirmation: phash distance + dhash distance <= ``combined``.
    Either hash alone may be thrown off by one edit (a crop moves phash's low frequencies,
    a brightness ramp flips dhash's gradients), so either may nominate; requiring the two to
    agree in sum keeps chance matches out (benchmarks/dedup_vs_imagededup.py: at radius 8 and
    combined 24: recall 0.838 at precision 0.990, against imagededup's PHash at its default
    threshold 10: recall 0.832 at precision 0.971).
    Without ``dhash`` (or with ``combined`` None) a pair is phash within ``radius``.
    With ``colour`` (signatures (N, HUE_BINS)) and ``max_colour``, a near pair whose
    colour_distance exceeds ``max_colour`` is refused; byte-identical pairs never are.
    """
    n = len(phash)
    exact = exact_pairs(sha256)
    if dhash is None or combined is None:
        cand = near = near_pairs(phash, radius)
    else:
        cand = np.concatenate([near_pairs(phash, radius), near_pairs(dhash, radius)])
        if len(cand):
            code = np.unique(cand[:, 0] * n + cand[:, 1])
            cand = np.stack([code // n, code % n], axis=1)
        dist = hamming(phash[cand[:, 0]], phash[cand[:, 1]]) + hamming(dhash[cand[:, 0]], dhash[cand[:, 1]])
        near = cand[dist <= combined]
    vetoed = 0
    if colour is not None and max_colour is not None and len(near):
        ok = colour_distance(colour[near[:, 0]], colour[near[:, 1]]) <= max_colour
        vetoed, near = int((~ok).sum()), near[ok]
    return Duplicates(pairs_to_groups(n, exact, near), exact, near, int(len(cand)), vetoed)
