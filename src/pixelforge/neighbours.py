"""Nearest neighbours over a dataset's embedding with faiss: exact below IVF_FROM vectors, an IVF index above.

Vectors are unit length (store.embeddings.Embeddings.normalised), so the inner product is the
cosine similarity and ``1 - similarity`` the cosine distance.
"""

from __future__ import annotations

import math

import numpy as np

IVF_FROM = 1_000_000  # from this many vectors on, search an IVF index (approximate) instead of all
IVF_PROBE = 16  # inverted lists searched per query


def build(vectors: np.ndarray, ivf_from: int = IVF_FROM):
    """A faiss index over ``vectors`` (float32, unit length): exact below ``ivf_from`` vectors, IVF above."""
    import faiss

    n, dim = vectors.shape
    if n < max(ivf_from, 2):
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(4 * math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(vectors[rng.choice(n, size=min(n, 64 * lists), replace=False)])
        index.nprobe = IVF_PROBE
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(cosine similarities, row numbers) of the ``k`` nearest vectors of each query, nearest first."""
    k = min(k, index.ntotal)
    sims, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return sims, ids


def kth_distance(vectors: np.ndarray, k: int, index=None) -> np.ndarray:
    """Each vector's cosine distance to its ``k``-th nearest other vector (itself excluded)."""
    index = index if index is not None else build(vectors)
    sims, _ = search(index, vectors, k + 1)  # the first hit is the vector itself
    return (1.0 - sims[:, min(k, sims.shape[1] - 1)]).astype(np.float32)
