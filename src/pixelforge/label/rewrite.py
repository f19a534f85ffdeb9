"""Write a new dataset from an input one with some rows changed (and columns added); bytes copied unchanged."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.store import Dataset, DatasetBuilder, Lineage
from pixelforge.store import fs as fsutil

WRITER_SET = ("shard", "member", "mask")  # the shard writer fills these


def check_out(ds: Dataset, out: str) -> None:
    """Refuse to write over the input: inputs are never modified."""
    fs, root = fsutil.resolve(out)
    if fsutil.is_local(fs) and fsutil.is_local(ds.fs):
        import os

        if os.path.realpath(root) == os.path.realpath(ds.root):
            raise UsageError(f"--out {out} is the input dataset: inputs are never modified; choose another --out")


def rewrite(
    ds: Dataset,
    out: str,
    update: Callable[[dict[str, Any]], dict[str, Any] | None],
    added: Iterable[pa.Field],
    lineage: Lineage,
    overwrite: bool = False,
    label: str = "write",
    samples_per_shard: int = 1000,
) -> Dataset:
    """Copy ``ds`` to ``out`` passing each row through ``update`` (None drops the sample).

    ``added`` columns are appended to the schema (an input column of the same name is replaced).
    """
    check_out(ds, out)
    added = list(added)
    names = {f.name for f in added}
    extra = [f for f in ds.extra_fields if f.name not in names] + added
    builder = DatasetBuilder(out, samples_per_shard=samples_per_shard, extra_fields=extra, overwrite=overwrite)
    keep = set(builder.schema.names) - set(WRITER_SET)
    try:
        with track(label, total=ds.num_samples) as bar:
            for sample in ds.iter_samples():
                bar.advance()
                row = update(dict(sample.row))
                if row is None:
                    continue
                ext = sample.row["member"].split(".", 1)[1]
                builder.add({k: v for k, v in row.items() if k in keep}, sample.image, ext, sample.mask)
    except BaseException:
        builder.abort()
        raise
    name = str(out).rstrip("/").rsplit("/", 1)[-1] or "dataset"
    return builder.finish(name=name, lineage=lineage)
