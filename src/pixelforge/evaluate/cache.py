"""The real-set feature cache: `{content_hash}-{extractor}-{layer}.npz` in DATASET/.cache/ or a user cache."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from pixelforge.evaluate.images import Extracted, ImageSet
from pixelforge.store import fs as fsutil

CACHE_DIR = ".cache"
CACHE_VERSION = "1"  # bump when what a cache file holds changes


def user_cache_dir() -> Path:
    """Where plain folders' statistics go: $XDG_CACHE_HOME/pixelforge/evaluate (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pixelforge" / "evaluate"


def content_hash(images: ImageSet) -> str:
    """A hash of exactly the images evaluated: the dataset's index plus the selection, or every file's bytes.

    A dataset's index records each sample's key, shard, size and the SHA-256 of its bytes, and
    shards are never rewritten in place, so the index's digest (not the shards') is exact and
    cheap. A folder has no such record: its files are hashed with their relative names.
    """
    h = hashlib.sha256(f"v{CACHE_VERSION}:{images.kind}:{len(images)}\n".encode())
    if images.dataset is not None:
        h.update(images.dataset.index_digest().encode())
    else:
        for key, path in zip(images.keys, images.files):
            h.update(key.encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def location(images: ImageSet, file_name: str) -> tuple[object, str]:
    """(fsspec filesystem, path) of the cache file: DATASET/.cache/ for datasets, the user cache for folders."""
    if images.dataset is not None:
        ds = images.dataset
        return ds.fs, fsutil.join(ds.root, CACHE_DIR, file_name)
    fs, root = fsutil.resolve(str(user_cache_dir()))
    return fs, fsutil.join(root, file_name)


def cache_name(images: ImageSet, extractor: str, layer: str) -> str:
    """The cache file name: what was hashed, by which extractor, at which layer."""
    return f"{content_hash(images)}-{extractor}-{layer}.npz"


def load(images: ImageSet, name: str) -> tuple[Extracted, np.ndarray, np.ndarray] | None:
    """The cached features and statistics (mu, sigma) in cache file ``name``, or None when absent."""
    fs, path = location(images, name)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        data = np.load(io.BytesIO(f.read()), allow_pickle=False)
        extracted = Extracted(
            keys=data["keys"].tolist(),
            features=data["features"],
            logits=None,
            failed=[tuple(x) for x in data["failed"].tolist()],
        )
        return extracted, data["mu"], data["sigma"]


def save(images: ImageSet, name: str, extracted: Extracted, mu: np.ndarray, sigma: np.ndarray) -> str | None:
    """Write the cache file atomically; return its path, or None if neither place is writable.

    A dataset on read-only storage falls back to the user cache directory: caching is an
    optimisation and must never fail an evaluation.
    """
    buf = io.BytesIO()
    failed = np.array(extracted.failed, dtype=str).reshape(-1, 2)
    np.savez(
        buf, keys=np.array(extracted.keys, dtype=str), features=extracted.features, mu=mu, sigma=sigma, failed=failed
    )
    places = [location(images, name)]
    if images.dataset is not None:
        fs, root = fsutil.resolve(str(user_cache_dir()))
        places.append((fs, fsutil.join(root, name)))
    for fs, path in places:
        try:
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            fsutil.atomic_write_bytes(fs, path, buf.getvalue())
            return path
        except OSError:
            continue
    return None
