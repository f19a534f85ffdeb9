"""`pixelforge embed`: a new dataset with the same samples and one embedding vector per sample.

The samples are carried over unchanged (store.derive.carry_shards); the vectors are computed shard
by shard through the executor (local pool or Ray), each shard's kept in the work folder until all
are done (so --resume after a kill computes only the missing shards), then written as one array in
index order (store.embeddings). A sample that no longer decodes gets a row of NaN and is listed in
stats.json (``embed_failures``), never dropped.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelforge.errors import UsageError
from pixelforge.organise.models import ModelSpec, load
from pixelforge.progress import track
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import (
    Dataset,
    Lineage,
    begin_run,
    config_to_dict,
    default_name,
    finalize,
    open_input,
    work_path,
)
from pixelforge.store import embeddings as store_embeddings
from pixelforge.store import fs as fsutil
from pixelforge.store.derive import carry_shards


@dataclass
class EmbedConfig:
    """Options of `pixelforge embed`."""

    model: str = "pixels"  # pixels | classifier:RUN | clip:DIR
    name: str | None = None  # the embedding's name in the dataset (default: the model kind)
    batch_size: int = 64
    dtype: str = "float32"  # float32 | float16
    device: str = "auto"
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)

    def validate(self) -> ModelSpec:
        spec = ModelSpec.parse(self.model)
        self.name = store_embeddings.check_name(self.name or spec.kind)
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.dtype not in store_embeddings.DTYPES:
            raise UsageError(f"--dtype {self.dtype}: choose {' or '.join(store_embeddings.DTYPES)}")
        self.executor.validate()
        return spec


@dataclass
class EmbedTask:
    dataset: str
    shard: str
    out: str
    model: str
    device: str
    batch_size: int


@dataclass
class EmbedResult:
    out: str
    name: str
    model: str
    samples: int
    dim: int
    failures: int
    seconds: float


def _work_name(shard: str) -> str:
    return f"embed-{shard.rsplit('.', 1)[0]}.npz"


def embed_shard(task: EmbedTask) -> tuple[str, int]:
    """Embed one shard's samples into the work folder (runs in a worker process); return (shard, count)."""
    ds = Dataset.open(task.dataset)
    model = load(ModelSpec.parse(task.model), task.device)
    keys: list[str] = []
    decoded: list[int] = []  # rows of ``keys`` whose image decoded, in order
    images: list[Any] = []
    parts: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    for sample in ds.iter_samples(shards=[task.shard]):
        keys.append(sample.key)
        try:
            images.append(sample.decode().convert("RGB"))
        except Exception as exc:  # a damaged member: a NaN row, named in stats.json
            failed.append((sample.key, f"{type(exc).__name__}: {exc}"[:300]))
            continue
        decoded.append(len(keys) - 1)
        if len(images) >= task.batch_size:
            parts.append(model.embed(images))
            images = []
    if images:
        parts.append(model.embed(images))
    array = np.full((len(keys), parts[0].shape[1] if parts else 0), np.nan, np.float32)
    if parts:
        array[decoded] = np.concatenate(parts)
    fs, root = fsutil.resolve(task.out)
    buf = io.BytesIO()
    np.savez(
        buf,
        vectors=array,
        keys=np.array(keys, dtype=object),
        failed=np.array(failed, dtype=object),
        model=json.dumps(model.describe()),  # so the main process never loads the model itself
    )
    fsutil.atomic_write_bytes(fs, work_path(root, _work_name(task.shard), fs), buf.getvalue())
    return task.shard, len(keys)


def embed(inp: str, out: str, config: EmbedConfig, *, resume: bool = False, overwrite: bool = False) -> EmbedResult:
    """Write ``out``: ``inp``'s samples and their ``config.model`` embedding (plus ``inp``'s own embeddings)."""
    spec = config.validate()
    start = time.monotonic()
    ds, fs, root = open_input(inp, out, overwrite, resume)
    done = begin_run(out, "embed", inp, config, resume)
    carry_shards(ds, out, done)
    waiting = [s for s in ds.shards() if not fs.exists(fsutil.join(root, ".work", _work_name(s)))]
    tasks = (EmbedTask(ds.path, s, out, str(spec), config.device, config.batch_size) for s in waiting)
    with track("embed", total=ds.num_samples) as bar:
        for _, n in config.executor.run(embed_shard, tasks):
            bar.advance(n)
    keys: list[str] = []
    parts: list[np.ndarray] = []
    failed: list[list[str]] = []
    described = {"model": spec.kind}  # what an empty dataset's embedding says of its model
    for shard in ds.shards():
        with fs.open(work_path(root, _work_name(shard), fs), "rb") as f:
            saved = np.load(io.BytesIO(f.read()), allow_pickle=True)  # our own file, written above
            keys.extend(saved["keys"].tolist())
            parts.append(saved["vectors"])
            failed.extend([list(x) for x in saved["failed"].tolist()])
            described = json.loads(str(saved["model"]))
    dim = max((p.shape[1] for p in parts), default=0)
    # a shard whose every image failed has NaN rows of no width: widen them
    parts = [p if p.shape[1] == dim else np.full((len(p), dim), np.nan, np.float32) for p in parts]
    vectors = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    entries = dict(ds.info.get("embeddings") or {})
    for name in entries:
        if name != config.name:
            store_embeddings.copy(ds.fs, ds.root, out, name)
    entries.pop(config.name, None)
    entries[config.name] = store_embeddings.write(
        out, config.name, keys, vectors.astype(config.dtype), {**described, "spec": str(spec)}
    )
    seconds = time.monotonic() - start
    lineage = Lineage(command="embed", config=config_to_dict(config), inputs=[inp])
    stats = {"seconds": round(seconds, 3), "embed_failures": [{"key": k, "reason": r} for k, r in failed]}
    finalize(out, name=default_name(out), lineage=lineage, schema=ds.schema, stats=stats, embeddings=entries)
    return EmbedResult(out, config.name, str(spec), len(keys), dim, len(failed), round(seconds, 3))
