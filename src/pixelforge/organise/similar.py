"""`pixelforge similar`: the samples nearest to a sample or an image file, by a dataset's embedding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pixelforge import media, neighbours
from pixelforge.errors import UsageError
from pixelforge.organise.models import ModelSpec, load
from pixelforge.store import Dataset
from pixelforge.store import fs as fsutil
from pixelforge.store.embeddings import EMBEDDINGS_DIR, Embeddings

SHOWN = ("key", "caption", "label_name", "source", "license")


def _index(ds: Dataset, emb: Embeddings, x: np.ndarray):
    """The faiss index of ``x``: an IVF index (from IVF_FROM vectors) is built once and kept in the dataset."""
    if len(x) < neighbours.IVF_FROM or not fsutil.is_local(ds.fs):
        return neighbours.build(x)
    import faiss

    cached = fsutil.join(ds.root, EMBEDDINGS_DIR, f"{emb.name}.ivf.faiss")
    if Path(cached).exists():
        index = faiss.read_index(cached)
        index.nprobe = neighbours.IVF_PROBE
        return index
    index = neighbours.build(x)
    faiss.write_index(index, f"{cached}.tmp")
    Path(f"{cached}.tmp").rename(cached)
    return index


def similar(
    path: str, query: str, k: int = 10, embedding: str | None = None, device: str = "auto"
) -> list[dict[str, Any]]:
    """The ``k`` samples of ``path`` nearest to ``query`` (a sample key or an image file), nearest first."""
    if k < 1:
        raise UsageError(f"--k {k}: must be at least 1")
    ds = Dataset.open(path)
    emb = ds.embeddings(embedding)
    x = emb.normalised()
    valid = np.flatnonzero(np.isfinite(x).all(axis=1))
    rows = emb.row_of()
    skip = None
    if query in rows:
        skip = rows[query]
        q = x[skip : skip + 1]
        if not np.isfinite(q).all():
            raise UsageError(f"sample {query} has no embedding (its image did not decode when embedded)")
    elif Path(query).is_file():
        spec = ModelSpec.parse(emb.info.get("spec", "pixels"))
        try:
            image = media.open_rgb(Path(query).read_bytes())
        except media.MediaError as exc:
            raise UsageError(f"{query}: not an image pixelforge can read ({exc})") from None
        q = load(spec, device).embed([image]).astype(np.float32)
        q /= max(float(np.linalg.norm(q)), 1e-12)
    else:
        raise UsageError(f"{query!r} is neither a sample key of {path} nor an image file")
    index = _index(ds, emb, x[valid])
    sims, ids = neighbours.search(index, q, k + (skip is not None))
    found = [(int(valid[i]), float(s)) for i, s in zip(ids[0], sims[0]) if i >= 0 and valid[i] != skip][:k]
    table = ds.index(columns=[c for c in SHOWN if c in ds.schema.names])
    keys = pa.array([emb.keys[i] for i, _ in found], pa.string())
    by_key = {r["key"]: r for r in table.filter(pc.is_in(table.column("key"), value_set=keys)).to_pylist()}
    return [{**by_key.get(emb.keys[i], {"key": emb.keys[i]}), "similarity": round(s, 6)} for i, s in found]
