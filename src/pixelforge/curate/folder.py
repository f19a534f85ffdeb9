"""`pixelforge curate FOLDER`: a plain image folder imported and curated in one pass.

`pixelforge import folder` then `pixelforge curate` reads and decodes every image twice and
writes the dataset twice. Given a folder, curate does both at once: worker processes read, check,
hash and score each image once (a window of files per task), the parent groups and filters the
rows as for a dataset, and workers write the kept samples from the folder's files straight into
the output shards. Rows are what the two commands give (tests/curate/test_folder.py compares
them), except that the lineage records one command.

curate_folder is the route, run in the parent; score_window and write_window run in worker
processes, like curate.worker, so this module imports nothing of the CLI or DuckDB at the top and
the route's parent-side modules (curate.stage and what it needs) only when it runs.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pixelforge import media
from pixelforge.curate.columns import FACE_COLUMNS
from pixelforge.curate.worker import ScoreBatch
from pixelforge.errors import ItemError, UsageError
from pixelforge.faces import FaceSettings
from pixelforge.sources.base import Failure, ImportOptions, import_row, store_image, store_image_decoded
from pixelforge.sources.folders import FolderSource, folder_record
from pixelforge.store import (
    ShardWriter,
    begin_run,
    index_schema,
    is_dataset,
    is_partial,
    prepare_output,
    shard_name,
    work_path,
)
from pixelforge.store import fs as fsutil
from pixelforge.store.schema import PEOPLE_FIELDS

if TYPE_CHECKING:
    from pixelforge.curate.stage import CurateConfig, CurateResult

KIND = FolderSource.kind  # rows say source_kind "folder", as `import folder` makes them
WINDOW = 256  # images per scoring task: large enough that a task's fixed cost is small
SAMPLES_PER_SHARD = ImportOptions.samples_per_shard  # the layout `import folder` would give
IMPORT_OPTIONS = ImportOptions(out="")  # licence "unknown", the default size limits
LIMITS = media.MediaLimits(max_bytes=IMPORT_OPTIONS.max_bytes, max_pixels=IMPORT_OPTIONS.max_pixels)
# The people columns `import folder` adds (store.schema) that curate does not compute: they come before
# curate's own, in the order curate on the imported dataset gives them.
CARRIED_PEOPLE = tuple(f for f in PEOPLE_FIELDS if f.name not in FACE_COLUMNS)
# The columns an imported row has before it is written (shard, member and mask are the writer's).
ROW_SCHEMA = pa.schema([f for f in index_schema(CARRIED_PEOPLE) if f.name not in ("shard", "member", "mask")])


def is_image_folder(path: str) -> bool:
    """True for a local directory that is not a pixelforge dataset, finished or partly written."""
    return Path(path).is_dir() and not is_dataset(path) and not is_partial(path)


def curate_folder(
    inp: str, out: str, config: CurateConfig, *, overwrite: bool = False, resume: bool = False
) -> CurateResult:
    """curate's route for a plain image folder ``inp`` (see the module docstring); ``config`` is
    validated. The same result, curation.json and resume as curate on the imported dataset."""
    from pixelforge.curate.columns import CURATE_FIELDS
    from pixelforge.curate.rules import check_where
    from pixelforge.curate.stage import finish, group_and_filter, import_while_scoring

    schema = index_schema([*CARRIED_PEOPLE, *CURATE_FIELDS])
    if config.max_outlier is not None:
        raise UsageError(f"--max-outlier needs the outlier column: import {inp}, then embed and cluster it")
    if config.where:  # before any output exists: a bad condition leaves nothing behind
        check_where(config.where, schema)
    paths = folder_images(inp)
    open_folder_output(inp, out, overwrite, resume)
    done = begin_run(out, "curate", inp, config, resume)
    start = time.monotonic()
    import_while_scoring(config)
    table, failures, reencoded, image_warnings = score_folder(paths, config, out)
    chosen = group_and_filter(table, config)
    kept = chosen.kept()
    write_folder(out, kept, np.flatnonzero(chosen.alive), failures, reencoded, schema, config, done)
    return finish(inp, out, config, schema, chosen, kept.num_rows, failures, len(paths), image_warnings, start)


def open_folder_output(inp: str, out: str, overwrite: bool, resume: bool) -> None:
    """Make ``out`` ready for the dataset curated from image folder ``inp``; never inside ``inp``."""
    fs, root = fsutil.resolve(out)
    if fsutil.is_local(fs):
        where, folder = Path(root).resolve(), Path(inp).resolve()
        if where == folder or folder in where.parents:
            raise UsageError(
                f"--out {out} is inside the input folder {inp}: its shards would be read as "
                "images next time; choose a directory outside it"
            )
    prepare_output(out, overwrite=overwrite, resume=resume)


def folder_images(inp: str) -> list[str]:
    """The image files of folder ``inp`` in `import folder`'s order; a folder without any is an error."""
    paths = [str(p) for p in media.images_under(Path(inp))]
    if not paths:
        raise UsageError(
            f"IN {inp} is neither a pixelforge dataset (no dataset.json) nor a folder of images "
            f"({', '.join(sorted(media.IMAGE_EXTENSIONS))}): pass a dataset or a folder that holds images"
        )
    return paths


def score_folder(
    paths: list[str], config: CurateConfig, out: str
) -> tuple[pa.Table, list[dict[str, Any]], set[str], dict[str, int]]:
    """Import and score the images at ``paths`` in windows of WINDOW files through the executor.

    Returns the readable images' rows with their scores (in folder order, keys 0..N-1 as `import
    folder` numbers them), the failures, the keys of images stored re-encoded and Pillow's warning
    counts (media.take_warnings, summed over the windows). Windows already saved in ``out``'s work
    folder (by a stopped run) are read back instead of scored again.
    """
    from pixelforge.curate.stage import run_saved

    fs, root = fsutil.resolve(out)

    def cache(task: FolderTask) -> str:
        # named by the window's file list too: if the folder changed since the stopped run, a
        # window whose files differ is scored again
        listing = hashlib.blake2b("\n".join(task.paths).encode(), digest_size=8).hexdigest()
        return work_path(root, f"scores-folder-{task.first}-{listing}.arrow", fs)

    tasks = [
        FolderTask(first, paths[first : first + WINDOW], config.only, config.watermark, faces=config.face_settings)
        for first in range(0, len(paths), WINDOW)
    ]
    tables, failures, image_warnings = run_saved(score_window, tasks, cache, fs, config, "curate import", len(paths))
    table = pa.concat_tables(tables).sort_by("key")  # windows finish in any order
    reencoded = set(table.filter(table.column(REENCODED)).column("key").to_pylist())
    return table.drop_columns([REENCODED]), sorted(failures, key=lambda f: f["key"]), reencoded, image_warnings


def write_folder(
    out: str,
    kept: pa.Table,
    positions: np.ndarray,
    failures: list[dict[str, Any]],
    reencoded: set[str],
    schema: pa.Schema,
    config: CurateConfig,
    done: set[str],
) -> None:
    """Write ``kept`` rows from the folder's files into shards laid out as `import folder` lays them out.

    ``positions`` are the kept rows' places among the readable images: the image at place i goes
    to shard i // SAMPLES_PER_SHARD, as the import puts it, and stays there whatever is removed; a
    failure goes to the shard of the readable images around it. Shards named in ``done`` (finished
    by a stopped run) are not written again.
    """
    from pixelforge.progress import track

    rows = kept.to_pylist()
    shard_of = positions // SAMPLES_PER_SHARD
    n_shards = int(shard_of.max()) + 1 if len(shard_of) else 1
    by_shard: dict[int, list[dict[str, Any]]] = {i: [] for i in range(n_shards)}
    for row, sid in zip(rows, shard_of.tolist()):
        by_shard[sid].append(row)
    kept_keys = np.array(kept.column("key").to_pylist(), dtype=object)
    fails: dict[int, list[dict[str, Any]]] = {i: [] for i in range(n_shards)}
    for f in failures:
        at = int(np.searchsorted(kept_keys, f["key"])) if len(kept_keys) else 0
        sid = int(shard_of[min(at, len(shard_of) - 1)]) if len(shard_of) else 0
        fails[sid].append(
            {
                "source": f["source"],
                "reason": f["reason"],
                "row": int(f["key"]),
                "detail": f"sample {f['key']}: {f['detail']}",
            }
        )

    def tasks():
        for sid in range(n_shards):
            if shard_name(sid) in done:
                bar.advance(len(by_shard[sid]))
                continue
            yield FolderWriteTask(
                out, sid, by_shard[sid], {r["key"] for r in by_shard[sid]} & reencoded, fails[sid], schema
            )

    with track("curate write", total=len(rows)) as bar:
        for n in config.executor.run(write_window, tasks()):
            bar.advance(n)


@dataclass
class FolderTask:
    """Read, check, hash and score ``paths``, the folder's images from position ``first`` on."""

    first: int
    paths: list[str]
    only: str | None = None
    watermark: bool = True
    weights: str | None = None
    faces: FaceSettings | None = None


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
    image_warnings: dict[str, int] = field(default_factory=dict)  # Pillow's while decoding (media.take_warnings)


def score_window(task: FolderTask) -> FolderScores:
    """Each image of the window as `import folder` stores it, then scored as `curate` scores it."""
    start = time.monotonic()
    media.take_warnings()  # counts left by earlier work in this process are not this window's
    batch = ScoreBatch(task.only, task.watermark, task.weights, task.faces)
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
    return FolderScores(table, batch.failures, time.monotonic() - start, task, media.take_warnings())


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
                writer.fail(
                    reason="changed_file",
                    source=row["source"],
                    row=int(row["key"]),
                    detail=f"sample {row['key']}: {detail}",
                )
            elif row["key"] in task.reencoded:
                stored = store_image(data, LIMITS)  # the same bytes the import would store
                writer.write(row, stored.data, stored.ext)
            else:
                writer.write(row, data, media.KEEP_EXT[row["format"]])
        for f in task.failures:
            writer.fail(**f)
    return len(writer.rows)
