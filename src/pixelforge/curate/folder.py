"""`pixelforge curate FOLDER`: a plain image folder imported and curated in one pass.

`pixelforge import folder` then `pixelforge curate` reads and decodes every image twice and
writes the dataset twice. Given a folder, curate does both at once: worker processes read, check,
hash and score each image once (a window of files per task), the parent groups and filters the
rows as for a dataset, and workers write the kept samples from the folder's files straight into
the output shards. Rows are what the two commands give (tests/curate/test_folder.py compares
them), except that the lineage records one command.

Runs in worker processes, like curate.worker: nothing of the CLI or DuckDB is imported here.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pixelforge import media
from pixelforge.curate.worker import ScoreBatch
from pixelforge.errors import ItemError
from pixelforge.sources.base import Failure, ImportOptions, import_row, store_image, store_image_decoded
from pixelforge.sources.folders import FolderSource, folder_record
from pixelforge.store.schema import index_schema
from pixelforge.store.shards import ShardWriter

KIND = FolderSource.kind  # rows say source_kind "folder", as `import folder` makes them
WINDOW = 256  # images per scoring task: large enough that a task's fixed cost is small
SAMPLES_PER_SHARD = ImportOptions.samples_per_shard  # the layout `import folder` would give
IMPORT_OPTIONS = ImportOptions(out="")  # licence "unknown", the default size limits
LIMITS = media.MediaLimits(max_bytes=IMPORT_OPTIONS.max_bytes, max_pixels=IMPORT_OPTIONS.max_pixels)
# The columns an imported row has before it is written (shard, member and mask are the writer's).
ROW_SCHEMA = pa.schema([f for f in index_schema(()) if f.name not in ("shard", "member", "mask")])


def is_image_folder(path: str) -> bool:
    """True for a local directory that is not a pixelforge dataset (no dataset.json, no .work/)."""
    p = Path(path)
    return p.is_dir() and not (p / "dataset.json").exists() and not (p / ".work").exists()


@dataclass
class FolderTask:
    """Read, check, hash and score ``paths``, the folder's images from position ``first`` on."""

    first: int
    paths: list[str]
    only: str | None = None
    watermark: bool = True
    weights: str | None = None


# Column of a window's table beside the row and its scores: true for an image not stored as read
# (another format than JPEG/PNG/WebP, or EXIF-rotated), which the writer encodes again from its file.
REENCODED = "__reencoded"


@dataclass
class FolderScores:
    """What one window gave: a table of its readable images in order, and its failures.

    The table is the import row (ROW_SCHEMA), then the scores (curate.worker.SCORE_SCHEMA less
    key and phash, which the row has), then REENCODED.
    """

    table: pa.Table
    failures: list[dict[str, Any]]  # key, source, reason, detail
    seconds: float = 0.0
    task: FolderTask | None = None


def score_window(task: FolderTask) -> FolderScores:
    """Each image of the window as `import folder` stores it, then scored as `curate` scores it."""
    start = time.monotonic()
    batch = ScoreBatch(task.only, task.watermark, task.weights)
    rows: list[dict[str, Any]] = []
    reencoded: list[bool] = []
    for i, path in enumerate(task.paths):
        n = task.first + i
        key = f"{n:09d}"
        item = folder_record(Path(path))
        if isinstance(item, Failure):
            batch.fail(key, item.source, item.reason, item.detail)
            continue
        try:
            stored, img = store_image_decoded(item.image, LIMITS)
        except ItemError as exc:
            batch.fail(key, item.source, exc.reason, exc.detail)
            continue
        kept = stored.data is item.image
        # a kept image was decoded as curate decodes the stored bytes: score that copy, no second decode
        if batch.add(key, item.source, stored.data, stored.phash, decoded=img if kept else None):
            rows.append(import_row(n, item, stored, KIND, IMPORT_OPTIONS))
            reencoded.append(not kept)
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    scores = batch.table()
    for name in scores.column_names:
        if name not in ("key", "phash"):
            table = table.append_column(scores.schema.field(name), scores.column(name))
    table = table.append_column(pa.field(REENCODED, pa.bool_()), pa.array(reencoded, pa.bool_()))
    return FolderScores(table, batch.failures, time.monotonic() - start, task)


@dataclass
class FolderWriteTask:
    """Write one output shard: ``rows`` (full output rows less shard/member/mask) from the folder's files."""

    out: str
    shard_id: int
    rows: list[dict[str, Any]]
    reencoded: set[str]  # keys of the samples `import folder` stores re-encoded (see REENCODED)
    failures: list[dict[str, Any]]  # ShardWriter.fail keyword arguments
    schema: pa.Schema


def write_window(task: FolderWriteTask) -> int:
    """Write the shard; a file that changed since it was scored becomes a failure, not a sample."""
    with ShardWriter(task.out, task.shard_id, task.schema) as writer:
        for row in task.rows:
            try:
                data = Path(row["source"]).read_bytes()
            except OSError as exc:
                data, detail = None, f"cannot read it again: {exc.strerror or exc}"
            else:
                detail = "its bytes differ from the ones scored"
            if data is None or hashlib.sha256(data).hexdigest() != row["sha256"]:
                writer.fail(reason="changed_file", source=row["source"], row=int(row["key"]),
                            detail=f"sample {row['key']}: {detail}")
            elif row["key"] in task.reencoded:
                stored = store_image(data, LIMITS)  # the same bytes the import would store
                writer.write(row, stored.data, stored.ext)
            else:
                writer.write(row, data, media.KEEP_EXT[row["format"]])
        for f in task.failures:
            writer.fail(**f)
    return len(writer.rows)
