"""Shared I/O of the row-rewriting stages (curate, split): open the input, build the schema, copy shards."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.run import run_tasks
from pixelforge.store import Dataset, index_schema, prepare_output
from pixelforge.store import fs as fsutil
from pixelforge.store.shards import shard_id_of


def name_of(out: str) -> str:
    """The dataset name: the last part of its path."""
    return str(out).rstrip("/").rsplit("/", 1)[-1] or "dataset"


def open_input(inp: str, out: str, overwrite: bool) -> tuple[Dataset, Any, str]:
    """Open dataset ``inp`` and make ``out`` ready for a new dataset; refuse to write over the input."""
    ds = Dataset.open(inp)
    fs, root = fsutil.resolve(out)
    in_fs, in_root = fsutil.resolve(inp)
    if type(fs) is type(in_fs) and fs.unstrip_protocol(root) == in_fs.unstrip_protocol(in_root):
        raise UsageError(f"--out {out} is the input dataset: inputs are never modified; choose another --out")
    fs, root = prepare_output(out, overwrite=overwrite)
    return ds, fs, root


def output_schema(ds: Dataset, added: Iterable[pa.Field]) -> pa.Schema:
    """The input's schema with ``added`` columns (replacing input columns of the same name) at the end."""
    added = list(added)
    names = {f.name for f in added}
    return index_schema([f for f in ds.extra_fields if f.name not in names] + added)


def copy_shards(ds: Dataset, out: str, kept: pa.Table, failures: list[dict[str, Any]], schema: pa.Schema,
                config: Any, label: str) -> int:
    """Write ``kept`` rows (their samples' bytes copied unchanged) into ``out``, one output shard per
    input shard under the same shard number; ``failures`` (dicts with key, source, reason, detail)
    go to the shard their key came from. Runs write_shard through the executor."""
    from pixelforge.curate.worker import WriteTask, write_shard

    shard_of_key = dict(zip(ds.index(columns=["key"]).column("key").to_pylist(),
                            ds.index(columns=["shard"]).column("shard").to_pylist()))
    by_shard_fail: dict[str, list[dict[str, Any]]] = {}
    for f in failures:
        by_shard_fail.setdefault(shard_of_key[f["key"]], []).append(
            {"source": f["source"], "reason": f["reason"], "detail": f"sample {f['key']}: {f['detail']}"})
    rows = kept.to_pylist()
    shards = np.array([r["shard"] for r in rows], dtype=object)
    by_shard_rows: dict[str, list[dict[str, Any]]] = {s: [] for s in ds.shards()}
    for shard in np.unique(shards) if len(shards) else []:
        by_shard_rows[shard] = [rows[i] for i in np.flatnonzero(shards == shard)]

    def tasks():
        for shard in ds.shards():
            yield WriteTask(ds.path, shard, out, shard_id_of(shard), by_shard_rows.get(shard, []),
                            by_shard_fail.get(shard, []), schema)

    written = 0
    with track(label, total=len(rows)) as bar:
        for n in run_tasks(write_shard, tasks(), backend=config.backend, processes=config.processes):
            written += n
            bar.advance(n)
    return written
