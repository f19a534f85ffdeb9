"""A dataset's embeddings: one vector per sample, stored beside the shards and opened memory-mapped.

Layout (docs/dataset-format.md):

    embeddings/NAME.npy           float32 or float16, shape (samples, dim), rows in the order of
    embeddings/NAME.keys.parquet  ... these sample keys (one column, ``key``)

dataset.json's ``embeddings`` maps NAME to its model, settings, dim, dtype and count. A dataset
made from another by a command that keeps the samples (embed, cluster) carries its embeddings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelforge.errors import UsageError
from pixelforge.store import fs as fsutil
from pixelforge.store.shards import link_or_copy

EMBEDDINGS_DIR = "embeddings"
DTYPES = ("float32", "float16")


@dataclass
class Embeddings:
    """One named embedding of a dataset: ``vectors[i]`` belongs to sample ``keys[i]``."""

    name: str
    keys: list[str]
    vectors: np.ndarray  # (n, dim), memory-mapped when local
    info: dict[str, Any]  # model, settings, dim, dtype, count

    def row_of(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    def normalised(self) -> np.ndarray:
        """The vectors as float32 with unit length (cosine similarity is then a dot product)."""
        v = np.asarray(self.vectors, dtype=np.float32)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return v / np.maximum(norms, 1e-12)


def paths(root: str, name: str) -> tuple[str, str]:
    base = fsutil.join(root, EMBEDDINGS_DIR, name)
    return f"{base}.npy", f"{base}.keys.parquet"


def check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise UsageError(f"--name {name!r}: use letters, digits, - and _ (it names the embedding's files)")
    return name


def write(root: str, name: str, keys: list[str], vectors: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
    """Write embedding ``name`` under the dataset being written at ``root``; return its dataset.json entry."""
    if vectors.ndim != 2 or len(keys) != len(vectors):
        raise ValueError(f"embedding {name}: {len(keys)} keys for an array of shape {vectors.shape}")
    if str(vectors.dtype) not in DTYPES:
        raise ValueError(f"embedding {name}: dtype {vectors.dtype}, not one of {DTYPES}")
    fs, root = fsutil.resolve(root)
    fs.makedirs(fsutil.join(root, EMBEDDINGS_DIR), exist_ok=True)
    npy, keys_path = paths(root, name)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vectors))
    fsutil.atomic_write_bytes(fs, npy, buf.getvalue())
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"key": pa.array(keys, pa.string())}), sink)
    fsutil.atomic_write_bytes(fs, keys_path, sink.getvalue().to_pybytes())
    return {**info, "dim": int(vectors.shape[1]), "dtype": str(vectors.dtype), "count": len(keys)}


def copy(src_fs, src_root: str, root: str, name: str) -> None:
    """Copy embedding ``name``'s files from another dataset into the one being written at ``root``."""
    fs, root = fsutil.resolve(root)
    fs.makedirs(fsutil.join(root, EMBEDDINGS_DIR), exist_ok=True)
    for src, dst in zip(paths(src_root, name), paths(root, name)):
        link_or_copy(src_fs, src, fs, dst)  # never modified once written: a hard link is safe


def read(fs, root: str, name: str, info: dict[str, Any]) -> Embeddings:
    npy, keys_path = paths(root, name)
    with fs.open(keys_path, "rb") as f:
        keys = pq.read_table(f).column("key").to_pylist()
    if fsutil.is_local(fs):
        vectors = np.load(npy, mmap_mode="r")
    else:
        with fs.open(npy, "rb") as f:
            vectors = np.load(io.BytesIO(f.read()))
    return Embeddings(name, keys, vectors, info)
