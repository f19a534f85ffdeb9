"""WebDataset tar shards: an atomic shard writer and a streaming shard reader."""

from __future__ import annotations

import json
import os
import tarfile
import time
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelforge.store import fs as fsutil
from pixelforge.store.schema import FAILURE_SCHEMA, check_reason, check_row, rows_to_table

SHARDS_DIR = "shards"
WORK_DIR = ".work"  # per-shard rows and failures while a dataset is being written
MASK_EXT = "mask.png"  # a sample's segmentation mask is member KEY.mask.png


def shard_name(shard_id: int) -> str:
    return f"{shard_id:06d}.tar"


def shard_id_of(name: str) -> int:
    return int(split_member(name)[0])


def split_member(member: str) -> tuple[str, str]:
    """``(key, ext)`` of a member name: a WebDataset key is the name up to its first dot.

    ``"000001.jpg"`` -> ``("000001", "jpg")``; ``"000001.mask.png"`` -> ``("000001", "mask.png")``.
    """
    key, _, ext = member.partition(".")
    return key, ext


@dataclass
class ShardResult:
    name: str
    samples: int
    failures: int
    bytes: int


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a sample's JSON")


class ShardWriter:
    """Write one shard: ``shards/NNNNNN.tar`` plus its rows and failures.

    Members go to a temporary tar; :meth:`commit` first writes the shard's index rows and
    failure rows under ``.work/``, then renames the tar to its final name. A shard is done
    exactly when its tar exists under the final name, so a killed writer leaves nothing that
    resume would mistake for finished work. Safe to use from a worker process.
    """

    def __init__(self, root: str, shard_id: int, schema: pa.Schema, fs=None):
        if fs is None:
            fs, root = fsutil.resolve(root)
        self.fs, self.root, self.schema = fs, root, schema
        self.name = shard_name(shard_id)
        self.final_path = fsutil.join(root, SHARDS_DIR, self.name)
        self.tmp_path = f"{self.final_path}.tmp-{os.getpid()}"
        fs.makedirs(fsutil.join(root, SHARDS_DIR), exist_ok=True)
        fs.makedirs(fsutil.join(root, WORK_DIR), exist_ok=True)
        self._file = fs.open(self.tmp_path, "wb")
        self._offset = 0  # bytes written to the tar so far
        self.rows: list[dict[str, Any]] = []
        self.failures: list[dict[str, Any]] = []
        self._keys: set[str] = set()
        self._bytes = 0
        self._mtime = int(time.time())

    def _add(self, member: str, data: bytes) -> None:
        # A ustar header from tarfile, then the data padded to whole blocks: what TarFile.addfile
        # writes, without its per-member copying (a third of the time of writing a shard).
        info = tarfile.TarInfo(member)
        info.size = len(data)
        info.mtime = self._mtime
        info.mode = 0o644
        pad = -len(data) % tarfile.BLOCKSIZE
        self._file.write(info.tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape"))
        self._file.write(data)
        if pad:
            self._file.write(b"\0" * pad)
        self._offset += tarfile.BLOCKSIZE + len(data) + pad
        self._bytes += len(data)

    def _close_tar(self) -> None:
        """End the archive as TarFile.close does: two zero blocks, then zeros to a whole record."""
        end = self._offset + 2 * tarfile.BLOCKSIZE
        self._file.write(b"\0" * (2 * tarfile.BLOCKSIZE + (-end % tarfile.RECORDSIZE)))
        self._file.close()

    def write(self, row: dict[str, Any], image: bytes, ext: str, mask: bytes | None = None) -> dict[str, Any]:
        """Add one sample. ``row`` must carry ``key``; ``shard``, ``member`` and ``mask`` are set here."""
        key = row["key"]
        if not key or "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must be non-empty without '.' or '/'")
        if key in self._keys:
            raise ValueError(f"sample key {key!r} written twice to shard {self.name}")
        self._keys.add(key)
        row = dict(row, shard=self.name, member=f"{key}.{ext}", mask=f"{key}.{MASK_EXT}" if mask else None)
        check_row(row, self.schema)
        self._add(row["member"], image)
        if row.get("caption") is not None:
            self._add(f"{key}.txt", row["caption"].encode("utf-8"))
        if mask:
            self._add(row["mask"], mask)
        doc = {k: v for k, v in row.items() if v is not None}
        self._add(f"{key}.json", json.dumps(doc, ensure_ascii=False, default=_json_default).encode("utf-8"))
        self.rows.append(row)
        return row

    def fail(
        self,
        *,
        reason: str,
        detail: str = "",
        row: int | None = None,
        source: str | None = None,
        url: str | None = None,
    ) -> None:
        """Record one input that produced no sample."""
        check_reason(reason)
        self.failures.append({"row": row, "source": source, "url": url, "reason": reason, "detail": detail[:1000]})

    def commit(self) -> ShardResult:
        """Persist rows and failures, then make the shard visible under its final name."""
        self._close_tar()
        stem = split_member(self.name)[0]
        _write_parquet(
            self.fs, fsutil.join(self.root, WORK_DIR, f"{stem}.rows.parquet"), rows_to_table(self.rows, self.schema)
        )
        _write_parquet(
            self.fs,
            fsutil.join(self.root, WORK_DIR, f"{stem}.failures.parquet"),
            rows_to_table(self.failures, FAILURE_SCHEMA),
        )
        self.fs.mv(self.tmp_path, self.final_path)
        return ShardResult(self.name, len(self.rows), len(self.failures), self._bytes)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """Commit when the block ends normally; abort (leave nothing) when it raises."""
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            if self.fs.exists(self.tmp_path):
                self.fs.rm(self.tmp_path)


def carry_shard(src_fs, src_path: str, root: str, name: str, rows: pa.Table, failures: list[dict[str, Any]]) -> None:
    """Put the finished shard ``src_path`` (another dataset's) into the dataset being written at ``root``
    under ``name``, bytes unchanged, with its index ``rows`` and ``failures``: the commit protocol of
    ShardWriter (rows and failures first, the tar's final name last). A local shard is hard-linked
    when it can be (shards are never modified), else copied."""
    fs, root = fsutil.resolve(root)
    final = fsutil.join(root, SHARDS_DIR, name)
    fs.makedirs(fsutil.join(root, SHARDS_DIR), exist_ok=True)
    fs.makedirs(fsutil.join(root, WORK_DIR), exist_ok=True)
    stem = split_member(name)[0]
    _write_parquet(fs, fsutil.join(root, WORK_DIR, f"{stem}.rows.parquet"), rows.replace_schema_metadata(None))
    _write_parquet(fs, fsutil.join(root, WORK_DIR, f"{stem}.failures.parquet"), rows_to_table(failures, FAILURE_SCHEMA))
    link_or_copy(src_fs, src_path, fs, final)


def link_or_copy(src_fs, src_path: str, fs, path: str) -> None:
    """Put the immutable file ``src_path`` at ``path``: a hard link when both are local on one device,
    else a streamed copy; under a temporary name first, so ``path`` appears whole or not at all."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        if not (fsutil.is_local(fs) and fsutil.is_local(src_fs)):
            raise OSError("not both local")
        os.link(src_path, tmp)
    except OSError:  # another file system or device: copy
        with src_fs.open(src_path, "rb") as fin, fs.open(tmp, "wb") as fout:
            while chunk := fin.read(1 << 22):
                fout.write(chunk)
    fs.mv(tmp, path)


def _write_parquet(fs, path: str, table: pa.Table) -> None:
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as f:
        pq.write_table(table, f)
    fs.mv(tmp, path)


def read_members(fs, path: str, keys: Container[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream a shard: yield ``(key, {suffix: bytes})`` per sample, in tar order.

    ``suffix`` is the member name after the key's dot (``jpg``, ``json``, ``txt``, ``mask.png``).
    Reads sequentially, so memory holds one sample at a time. With ``keys``, only those samples
    are yielded and the others' bytes are skipped, not copied.
    """
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
        key, files = None, {}
        for info in tar:
            if not info.isfile():
                continue
            k, suffix = split_member(info.name)
            if keys is not None and k not in keys:
                continue
            if k != key and key is not None:
                yield key, files
                files = {}
            key = k
            files[suffix] = tar.extractfile(info).read()
        if key is not None:
            yield key, files


def member_offsets(fs, path: str) -> dict[str, tuple[int, int]]:
    """``{member name: (data offset, size)}`` of every file in a shard, from its tar headers alone."""
    with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        return {info.name: (info.offset_data, info.size) for info in tar.getmembers() if info.isfile()}


def read_range(fs, path: str, offset: int, size: int) -> bytes:
    """``size`` bytes of a shard from ``offset``: one member's data, by seeking, not unpacking."""
    with fs.open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)
