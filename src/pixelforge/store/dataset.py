"""Dataset directories: create one shard by shard, finalise it, open it and read its samples."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelforge import __version__
from pixelforge.errors import DatasetError, UsageError
from pixelforge.store import fs as fsutil
from pixelforge.store.embeddings import Embeddings
from pixelforge.store.embeddings import read as read_embeddings
from pixelforge.store.schema import (
    FAILURE_SCHEMA,
    PEOPLE_NAMES,
    SCHEMA_VERSION,
    extra_fields_of,
    index_schema,
)
from pixelforge.store.shards import (
    MASK_EXT,
    SHARDS_DIR,
    WORK_DIR,
    ShardResult,
    ShardWriter,
    member_offsets,
    read_members,
    read_range,
    split_member,
)

DATASET_JSON = "dataset.json"
INDEX = "index.parquet"
FAILURES = "failures.parquet"
STATS = "stats.json"


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as plain JSON values (paths become strings)."""
    if config is None:
        return {}
    raw = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)

    def plain(v: Any) -> Any:
        if isinstance(v, (pathlib.PurePath,)):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(raw)


@dataclass
class Lineage:
    """How a dataset was made: the command, its config and the datasets it read."""

    command: str
    config: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)

    def to_json(self, fs=None) -> dict[str, Any]:
        inputs = []
        for path in self.inputs:
            entry: dict[str, Any] = {"path": str(path)}
            try:
                parent = Dataset.open(path)
                entry.update(name=parent.name, created_at=parent.info.get("created_at"), num_samples=parent.num_samples)
            except DatasetError:
                pass  # a source that is not a dataset (a URL list, a COCO file): its path is enough
            inputs.append(entry)
        return {"command": self.command, "config": self.config, "inputs": inputs}


def prepare_output(path: str, *, overwrite: bool = False, resume: bool = False) -> tuple[Any, str]:
    """Check that ``path`` may receive a new dataset and create it.

    A finished dataset is never overwritten silently: the user must pass ``--overwrite``.
    A partly written one (a killed run) is continued with ``resume`` or replaced with ``overwrite``.
    """
    fs, root = fsutil.resolve(path)
    if fs.exists(root):
        entries = fs.ls(root, detail=False)
        if entries and overwrite:
            fs.rm(root, recursive=True)
        elif entries and not resume:
            done = fs.exists(fsutil.join(root, DATASET_JSON))
            what = "a finished dataset" if done else "a partly written dataset"
            hint = (
                "choose another --out or pass --overwrite"
                if done
                else "pass --resume to continue it or --overwrite to start again"
            )
            raise UsageError(f"--out {path} already holds {what}: {hint}")
        elif entries and resume and fs.exists(fsutil.join(root, DATASET_JSON)):
            raise UsageError(
                f"--out {path} is already a finished dataset: nothing to resume; "
                "choose another --out or pass --overwrite"
            )
    fs.makedirs(fsutil.join(root, SHARDS_DIR), exist_ok=True)
    return fs, root


def is_dataset(path: str | pathlib.Path) -> bool:
    """True when ``path`` holds a finished dataset (its dataset.json, written last, exists)."""
    fs, root = fsutil.resolve(str(path))
    return fs.exists(fsutil.join(root, DATASET_JSON))


def is_partial(path: str | pathlib.Path) -> bool:
    """True when ``path`` holds a stopped run's output: a work folder and no dataset.json yet."""
    fs, root = fsutil.resolve(str(path))
    return fs.exists(fsutil.join(root, WORK_DIR)) and not fs.exists(fsutil.join(root, DATASET_JSON))


def work_path(root: str, name: str, fs=None) -> str:
    """The path of file ``name`` in the work folder of the dataset being written at ``root``.

    The folder is created if needed; :func:`finalize` deletes it with everything in it, so a stage
    keeps there what only a resumed run needs. With ``fs``, ``root`` is a path inside that file system.
    """
    if fs is None:
        fs, root = fsutil.resolve(root)
    work = fsutil.join(root, WORK_DIR)
    fs.makedirs(work, exist_ok=True)
    return fsutil.join(work, name)


def default_name(path: str | pathlib.Path) -> str:
    """A dataset's name when the user gives none: the last part of its path."""
    return str(path).rstrip("/").rsplit("/", 1)[-1] or "dataset"


PLAN = "plan.json"  # under .work/: decisions a resumed run must repeat exactly (shard size, ...)


def read_plan(path: str) -> dict[str, Any] | None:
    """The plan a stopped run recorded, or None."""
    fs, root = fsutil.resolve(path)
    p = fsutil.join(root, WORK_DIR, PLAN)  # not work_path: reading must not create the folder
    if not fs.exists(p):
        return None
    with fs.open(p, "rb") as f:
        return json.load(f)


def write_plan(path: str, plan: dict[str, Any]) -> None:
    """Record a run's plan before its first shard, so ``--resume`` cuts the input the same way."""
    fs, root = fsutil.resolve(path)
    fsutil.atomic_write_bytes(fs, work_path(root, PLAN, fs), json.dumps(plan, indent=2).encode())


def completed_shards(path: str) -> list[str]:
    """Shard names that exist under their final name (the unit of resume)."""
    fs, root = fsutil.resolve(path)
    shard_dir = fsutil.join(root, SHARDS_DIR)
    fs.invalidate_cache(shard_dir)  # object stores (s3fs, gcsfs) cache listings; workers wrote since the last one
    if not fs.exists(shard_dir):
        return []
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(shard_dir, detail=False)]
    return sorted(n for n in names if n.endswith(".tar") and n[:-4].isdigit())


def remove_partial(path: str) -> None:
    """Delete the temporary files a killed writer left behind (never a finished shard)."""
    fs, root = fsutil.resolve(path)
    for sub in (SHARDS_DIR, WORK_DIR):
        d = fsutil.join(root, sub)
        if fs.exists(d):
            for p in fs.ls(d, detail=False):
                if ".tmp" in p.rsplit("/", 1)[-1]:
                    fs.rm(p)


def _with_people_columns(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with the people columns ``schema`` has and they lack added as nulls (rows carried from a
    dataset made before those columns: they read as not looked for, consent unknown), in schema order."""
    missing = [f for f in schema if f.name in PEOPLE_NAMES and f.name not in rows.column_names]
    if not missing:
        return rows
    for f in missing:
        rows = rows.append_column(f, pa.nulls(rows.num_rows, f.type))
    return rows.select(schema.names)


def finalize(
    path: str,
    *,
    name: str,
    lineage: Lineage,
    schema: pa.Schema,
    stats: dict[str, Any] | None = None,
    embeddings: dict[str, dict[str, Any]] | None = None,
) -> Dataset:
    """Merge the per-shard rows into index.parquet and failures.parquet; write stats and dataset.json.

    ``embeddings``: the dataset.json entries of the embeddings written under ``path`` (store.embeddings).

    dataset.json is written last: its presence means the dataset is complete.
    Empty shards (every input of the slice failed) are removed.
    """
    remove_partial(path)  # temporary shards of writers that died (a retried Ray task) are not part of it
    fs, root = fsutil.resolve(path)
    work = fsutil.join(root, WORK_DIR)
    num_samples = num_failures = 0
    reasons: dict[str, int] = {}
    shards = completed_shards(path)
    index_path, fail_path = fsutil.join(root, INDEX), fsutil.join(root, FAILURES)
    with fs.open(index_path + ".tmp", "wb") as fi, fs.open(fail_path + ".tmp", "wb") as ff:
        iw = pq.ParquetWriter(fi, schema)
        fw = pq.ParquetWriter(ff, FAILURE_SCHEMA)
        for shard in shards:
            stem = shard[:-4]
            rows = _read_parquet(fs, fsutil.join(work, f"{stem}.rows.parquet"))
            rows = _with_people_columns(rows, schema).cast(schema)
            fails = _read_parquet(fs, fsutil.join(work, f"{stem}.failures.parquet"))
            if rows.num_rows:
                iw.write_table(rows)
            else:
                fs.rm(fsutil.join(root, SHARDS_DIR, shard))
            if fails.num_rows:
                fw.write_table(fails)
                for r in fails.column("reason").to_pylist():
                    reasons[r] = reasons.get(r, 0) + 1
            num_samples += rows.num_rows
            num_failures += fails.num_rows
        iw.close()
        fw.close()
    fs.mv(index_path + ".tmp", index_path)
    fs.mv(fail_path + ".tmp", fail_path)
    stats = dict(stats or {})
    stats.setdefault("samples", num_samples)
    stats.setdefault("failures", num_failures)
    stats["failure_reasons"] = dict(sorted(reasons.items()))
    fsutil.atomic_write_bytes(fs, fsutil.join(root, STATS), json.dumps(stats, indent=2).encode())
    info = {
        "name": name,
        "schema_version": SCHEMA_VERSION,
        "pixelforge_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "num_samples": num_samples,
        "num_failures": num_failures,
        "num_shards": len(completed_shards(path)),
        "extra_columns": [f"{f.name}:{f.type}" for f in extra_fields_of(schema)],
        "lineage": lineage.to_json(),
        **({"embeddings": embeddings} if embeddings else {}),
    }
    if fs.exists(work):
        fs.rm(work, recursive=True)
    fsutil.atomic_write_bytes(fs, fsutil.join(root, DATASET_JSON), json.dumps(info, indent=2).encode())
    return Dataset.open(path)


def _read_parquet(fs, path: str) -> pa.Table:
    if not fs.exists(path):
        raise DatasetError(
            f"{path} is missing: the dataset was damaged while being written; run the command again with --overwrite"
        )
    with fs.open(path, "rb") as f:
        return pq.read_table(f)


class DatasetBuilder:
    """Write a dataset sample by sample, rolling over to a new shard every ``samples_per_shard``.

    The sequential writer used by importers; parallel stages use :class:`ShardWriter` directly
    and call :func:`finalize` themselves.
    """

    def __init__(
        self,
        path: str,
        *,
        samples_per_shard: int = 1000,
        extra_fields: Iterable[pa.Field] = (),
        overwrite: bool = False,
    ):
        if samples_per_shard < 1:
            raise UsageError(f"--samples-per-shard {samples_per_shard}: must be at least 1")
        self.path = str(path)
        self.fs, self.root = prepare_output(self.path, overwrite=overwrite)
        self.schema = index_schema(extra_fields)
        self.samples_per_shard = samples_per_shard
        self._writer: ShardWriter | None = None
        self._next_shard = 0
        self.results: list[ShardResult] = []

    def _current(self) -> ShardWriter:
        if self._writer is None:
            self._writer = ShardWriter(self.root, self._next_shard, self.schema, fs=self.fs)
            self._next_shard += 1
        return self._writer

    def _roll(self) -> None:
        if self._writer is not None and len(self._writer.rows) >= self.samples_per_shard:
            self.results.append(self._writer.commit())
            self._writer = None

    def add(self, row: dict[str, Any], image: bytes, ext: str, mask: bytes | None = None) -> dict[str, Any]:
        out = self._current().write(row, image, ext, mask)
        self._roll()
        return out

    def fail(self, **failure: Any) -> None:
        self._current().fail(**failure)

    def finish(self, *, name: str, lineage: Lineage, stats: dict[str, Any] | None = None) -> Dataset:
        if self._writer is not None:
            self.results.append(self._writer.commit())
            self._writer = None
        return finalize(self.path, name=name, lineage=lineage, schema=self.schema, stats=stats)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


@dataclass
class Sample:
    """One sample: its index row and the bytes of its image (and mask)."""

    row: dict[str, Any]
    image: bytes
    mask: bytes | None = None

    @property
    def key(self) -> str:
        return self.row["key"]

    def decode(self):
        """The image as an RGB PIL image (through media.decode)."""
        from pixelforge import media

        return media.decode(self.image)


class Dataset:
    """A finished dataset directory, opened read-only."""

    def __init__(self, path: str, fs, root: str, info: dict[str, Any]):
        self.path, self.fs, self.root, self.info = path, fs, root, info

    @classmethod
    def open(cls, path: str | pathlib.Path) -> Dataset:
        path = str(path)
        fs, root = fsutil.resolve(path)
        meta = fsutil.join(root, DATASET_JSON)
        if not fs.exists(meta):
            if fs.exists(fsutil.join(root, WORK_DIR)):
                raise DatasetError(
                    f"{path} is a partly written dataset (its run was stopped): "
                    "resume or re-run the command that makes it"
                )
            raise DatasetError(
                f"{path} is not a pixelforge dataset (no {DATASET_JSON}): "
                "make one with `pixelforge import` or `pixelforge collect`"
            )
        with fs.open(meta, "rb") as f:
            info = json.load(f)
        version = info.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DatasetError(
                f"{path} has schema version {version}; this pixelforge reads version "
                f"{SCHEMA_VERSION}: upgrade pixelforge"
            )
        return cls(path, fs, root, info)

    # -- metadata ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def num_samples(self) -> int:
        return int(self.info["num_samples"])

    def __len__(self) -> int:
        return self.num_samples

    def file(self, name: str) -> str:
        return fsutil.join(self.root, name)

    @property
    def schema(self) -> pa.Schema:
        with self.fs.open(self.file(INDEX), "rb") as f:
            return pq.read_schema(f)

    @property
    def extra_fields(self) -> list[pa.Field]:
        return extra_fields_of(self.schema)

    def stats(self) -> dict[str, Any]:
        with self.fs.open(self.file(STATS), "rb") as f:
            return json.load(f)

    def embeddings(self, name: str | None = None) -> Embeddings:
        """Embedding ``name`` (None: the only one, or the newest written), memory-mapped."""
        known = self.info.get("embeddings") or {}
        if not known:
            raise UsageError(f"{self.path} has no embeddings: make them with `pixelforge embed {self.path} --out ...`")
        if name is None:
            name = list(known)[-1]
        if name not in known:
            raise UsageError(f"--embedding {name!r}: {self.path} has {', '.join(known)}")
        return read_embeddings(self.fs, self.root, name, known[name])

    def shards(self) -> list[str]:
        return completed_shards(self.path)

    def index_digest(self) -> str:
        """SHA-256 (hex) of the index file: it names every sample's key, shard and bytes' hash, and
        shards are never rewritten in place, so it changes exactly when the samples do (cache keys)."""
        h = hashlib.sha256()
        with self.fs.open(self.file(INDEX), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def disk_bytes(self) -> int:
        return (
            sum(self.fs.du(self.root, total=False).values())
            if not fsutil.is_local(self.fs)
            else sum(p.stat().st_size for p in pathlib.Path(self.root).rglob("*") if p.is_file())
        )

    # -- rows --------------------------------------------------------------------------------
    def index(self, columns: list[str] | None = None, filters=None) -> pa.Table:
        """The index (or some of its columns) as an Arrow table."""
        with self.fs.open(self.file(INDEX), "rb") as f:
            return pq.read_table(f, columns=columns, filters=filters)

    def failures(self) -> pa.Table:
        with self.fs.open(self.file(FAILURES), "rb") as f:
            return pq.read_table(f)

    def iter_rows(self, columns: list[str] | None = None, batch_size: int = 4096) -> Iterator[dict[str, Any]]:
        """Rows in shard order, streamed in batches (memory does not grow with the dataset)."""
        with self.fs.open(self.file(INDEX), "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns):
                yield from batch.to_pylist()

    # -- samples -----------------------------------------------------------------------------
    def _shard_path(self, shard: str) -> str:
        return fsutil.join(self.root, SHARDS_DIR, shard)

    def read_shard(self, shard: str, keys: Container[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
        """Stream shard ``shard``: ``(key, {ext: bytes})`` per sample, in order (see shards.read_members).

        ``ext`` is the member name after the key (``jpg``, ``json``, ``txt``, ``mask.png``). With
        ``keys``, only those samples are yielded and the others' bytes are skipped.
        """
        return read_members(self.fs, self._shard_path(shard), keys)

    def image_bytes(self, row: dict[str, Any]) -> bytes:
        """The stored image bytes of the sample of index row ``row`` (its ``shard`` and ``member``)."""
        key, ext = split_member(row["member"])
        for _, files in self.read_shard(row["shard"], keys={key}):
            if ext in files:
                return files[ext]
        raise DatasetError(
            f"{self.path}: sample {key} is in the index but not in shard {row['shard']}: "
            "the dataset is damaged; rebuild it"
        )

    def member_offsets(self, shard: str) -> dict[str, tuple[int, int]]:
        """``{member name: (data offset, size)}`` of shard ``shard``, for :meth:`read_member`."""
        return member_offsets(self.fs, self._shard_path(shard))

    def read_member(self, shard: str, offset: int, size: int) -> bytes:
        """One member's bytes by its :meth:`member_offsets` entry: a seek, not a walk of the tar."""
        return read_range(self.fs, self._shard_path(shard), offset, size)

    def iter_samples(self, shards: Iterable[str] | None = None) -> Iterator[Sample]:
        """Every sample (row + image bytes) in shard order, streaming one shard at a time.

        ``shards`` restricts the walk to those shard names (a worker's share).
        """
        wanted = set(shards) if shards is not None else None
        current, members = None, None
        for row in self.iter_rows():
            shard = row["shard"]
            if wanted is not None and shard not in wanted:
                continue
            if shard != current:
                current = shard
                members = self.read_shard(shard)
            yield self._join(row, members)

    def _join(self, row: dict[str, Any], members: Iterator[tuple[str, dict[str, bytes]]]) -> Sample:
        # index rows and tar members are written in the same order: advance the tar to the row's key
        for key, files in members:
            if key == row["key"]:
                image = files.get(split_member(row["member"])[1])
                if image is None:
                    break
                mask = files.get(MASK_EXT) if row.get("mask") else None
                return Sample(row=row, image=image, mask=mask)
        raise DatasetError(
            f"{self.path}: sample {row['key']} is in the index but not in shard "
            f"{row['shard']}: the dataset is damaged; rebuild it"
        )
