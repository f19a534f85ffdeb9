"""Copy the kept samples of curate and split into the output dataset, shard by shard, bytes unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from pixelforge.progress import track
from pixelforge.store import Dataset, shard_id_of, shard_name


def copy_shards(
    ds: Dataset,
    out: str,
    kept: pa.Table,
    failures: list[dict[str, Any]],
    schema: pa.Schema,
    config: Any,
    label: str,
    done: set[str] = frozenset(),
) -> int:
    """Write ``kept`` rows (their samples' bytes copied unchanged) into ``out``, one output shard per
    input shard under the same shard number; ``failures`` (dicts with key, source, reason, detail)
    go to the shard their key came from. Runs write_shard through ``config.executor``. Output shards
    named in ``done`` (finished by a stopped run) are not written again."""
    from pixelforge.curate.worker import WriteTask, write_shard

    shard_of_key = dict(
        zip(
            ds.index(columns=["key"]).column("key").to_pylist(), ds.index(columns=["shard"]).column("shard").to_pylist()
        )
    )
    by_shard_fail: dict[str, list[dict[str, Any]]] = {}
    for f in failures:
        by_shard_fail.setdefault(shard_of_key[f["key"]], []).append(
            {"source": f["source"], "reason": f["reason"], "detail": f"sample {f['key']}: {f['detail']}"}
        )
    rows = kept.to_pylist()
    shards = np.array([r["shard"] for r in rows], dtype=object)
    by_shard_rows: dict[str, list[dict[str, Any]]] = {s: [] for s in ds.shards()}
    for shard in np.unique(shards) if len(shards) else []:
        by_shard_rows[shard] = [rows[i] for i in np.flatnonzero(shards == shard)]

    def tasks():
        for shard in ds.shards():
            if shard_name(shard_id_of(shard)) in done:
                bar.advance(len(by_shard_rows.get(shard, [])))
                continue
            yield WriteTask(
                ds.path,
                shard,
                out,
                shard_id_of(shard),
                by_shard_rows.get(shard, []),
                by_shard_fail.get(shard, []),
                schema,
            )

    written = 0
    with track(label, total=len(rows)) as bar:
        for n in config.executor.run(write_shard, tasks()):
            written += n
            bar.advance(n)
    return written
