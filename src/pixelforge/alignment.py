"""Is one image a crop, a small rotation or a rescale of another? Thumbnails, candidates and alignment.

What curate's near-copy pass (curate.nearcopy), `evaluate memorization` and, later, takedown matching
share. Every image is reduced to a 32 px grey thumbnail (THUMB_SIDE):

- Candidates: nearest neighbours (faiss, pixelforge.neighbours) in two 16x16 mean-centred
  embeddings of the thumbnail: the whole frame (a crop stays close to its original) and its central
  70% (a rotation's filled corners left out).
- Alignment: the central 60% of one thumbnail, rotated by -6..6 degrees and scaled by 0.89-1.12,
  located in the other by normalised cross-correlation (OpenCV matchTemplate, TM_CCOEFF_NORMED);
  the best correlation over all of them is the pair's score (1: the same picture).

Why alignment and not local features: on benchmarks/dedup_vs_imagededup.py's 3,000 images, ORB
keypoints with RANSAC (OpenCV) found too few keypoints on smooth images (75 per 128 px image) and
matched shared objects of different images (a star at the same place): recall 0.944 at precision
0.966, against alignment's 0.986 at 0.997 on the same candidates, in a twentieth of the time
(0.9 s against 17.7 s; docs/benchmarks.md, "Duplicates").
"""

from __future__ import annotations

import numpy as np

THUMB_SIDE = 32  # side of the grey thumbnail each image is compared by
COPY_SCORE = 0.95  # an alignment score from which two thumbnails show the same picture
_EMBED = 16  # side of the embeddings' copies
_CENTRE = 5  # pixels of the thumbnail left out on each side in the centre embedding
_MARGIN = 6  # pixels left out on each side of the template (its central 20 px, ~60%)
# The template may sit at most this many pixels off the centre: a crop of up to ~15% moves the
# picture's centre by up to ~2 px of 32 (rotations and rescales by none), while a shifted copy of a
# plain render (a red circle on white, a little to the left) is a different picture
MAX_SHIFT = 3
# Candidates come from an IVF index from this many images on: a near copy is so close that the 16
# inverted lists probed hold it, and an exact search of N x N grows too fast (50,000: ~17 s)
IVF_FROM = 50_000
ANGLES = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)
SCALES = (1 / 1.12, 1 / 1.06, 1.0, 1.06, 1.12)


def thumbnail(img) -> np.ndarray:
    """The grey copy images are compared by, uint8 (32, 32) (aspect ratio squashed, as the hashes do)."""
    from PIL import Image

    return np.asarray(img.convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR))


def embeddings(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The whole-frame and centre embeddings of thumbnails (N, 32, 32), or of the grey of colour ones
    (N, 32, 32, 3): two unit-length float32 (N, 256)."""
    import cv2

    if thumbs.ndim == 4:
        thumbs = thumbs.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)

    def embed(crop: slice) -> np.ndarray:
        size = (_EMBED, _EMBED)
        x = np.stack([cv2.resize(t[crop, crop].astype(np.float32), size, interpolation=cv2.INTER_AREA) for t in thumbs])
        x = x.reshape(len(thumbs), -1)
        x -= x.mean(axis=1, keepdims=True)
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-6
        return x

    return embed(slice(None)), embed(slice(_CENTRE, THUMB_SIDE - _CENTRE))


def nearest(queries: np.ndarray, base: np.ndarray, k: int, min_similarity: float = -1.0) -> list[np.ndarray]:
    """For each query thumbnail, the rows of ``base`` (thumbnails) among its ``k`` nearest in either
    embedding with a cosine similarity of at least ``min_similarity``, nearest first, no repeats."""
    from pixelforge import neighbours

    found: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
    if not len(base):
        return [np.zeros(0, np.int64) for _ in range(len(queries))]
    for q, b in zip(embeddings(queries), embeddings(base), strict=True):
        sims, ids = neighbours.search(neighbours.build(b, ivf_from=IVF_FROM), q, k)
        for row, (s, i) in enumerate(zip(sims, ids, strict=True)):
            found[row].extend((float(v), int(j)) for v, j in zip(s, i, strict=True) if j >= 0 and v >= min_similarity)
    out = []
    for hits in found:
        seen: dict[int, float] = {}
        for s, j in sorted(hits, reverse=True):
            seen.setdefault(j, s)
        out.append(np.fromiter(seen, np.int64, len(seen)))
    return out


def candidate_pairs(thumbs: np.ndarray, k: int, min_similarity: float) -> np.ndarray:
    """Pairs (i < j) of one set where j is among i's ``k`` nearest in either embedding (or i among j's); (P, 2)."""
    n = len(thumbs)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    hits = nearest(thumbs, thumbs, k + 1, min_similarity)  # the first hit is (usually) the image itself
    rows = np.repeat(np.arange(n), [len(h) for h in hits])
    cols = np.concatenate(hits) if hits else np.zeros(0, np.int64)
    keep = rows != cols
    if not keep.any():
        return np.zeros((0, 2), np.int64)
    code = np.unique(np.minimum(rows, cols)[keep] * n + np.maximum(rows, cols)[keep])
    return np.stack([code // n, code % n], axis=1)


_WARPS: list[np.ndarray] = []


def _warps() -> list[np.ndarray]:
    if not _WARPS:
        import cv2

        centre = (THUMB_SIDE - 1) / 2
        _WARPS.extend(cv2.getRotationMatrix2D((centre, centre), a, s) for a in ANGLES for s in SCALES)
    return _WARPS


def alignment_score(a: np.ndarray, b: np.ndarray) -> float:
    """The best normalised correlation of ``b``'s centre, rotated and scaled, placed anywhere in ``a``.

    Grey thumbnails (32, 32) compare shapes only (a red and a blue circle align: curate's pass
    checks colour apart); colour ones (32, 32, 3) are correlated over all three channels at once.
    """
    import cv2

    a = a.astype(np.float32)
    b = b.astype(np.float32)
    best = -1.0
    inner = slice(_MARGIN, THUMB_SIDE - _MARGIN)
    near = slice(_MARGIN - MAX_SHIFT, _MARGIN + MAX_SHIFT + 1)  # positions of the correlation map allowed
    for warp in _warps():
        template = cv2.warpAffine(b, warp, (THUMB_SIDE, THUMB_SIDE), flags=cv2.INTER_LINEAR)[inner, inner]
        best = max(best, float(cv2.matchTemplate(a, template, cv2.TM_CCOEFF_NORMED)[near, near].max()))
    return best


def alignment_scores(a: np.ndarray, b: np.ndarray, pairs: np.ndarray, threads: int = 2) -> np.ndarray:
    """alignment_score of thumbnails ``a[i]`` and ``b[j]`` for each (i, j) of ``pairs``; float64 (P,).

    OpenCV releases the GIL in warpAffine and matchTemplate: ``threads`` share the work.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not len(pairs):
        return np.zeros(0, np.float64)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        scores = pool.map(lambda p: alignment_score(a[p[0]], b[p[1]]), pairs)
        return np.fromiter(scores, np.float64, len(pairs))
