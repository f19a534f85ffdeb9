"""File-system access for dataset paths: local paths by default, any fsspec URL (s3://, memory://) too."""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def resolve(path: str | Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(filesystem, path inside it)`` for a local path or an fsspec URL."""
    fs, root = fsspec.core.url_to_fs(str(path))
    return fs, root.rstrip("/") if root not in ("/", "") else root


def join(root: str, *parts: str) -> str:
    return posixpath.join(root, *parts)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def atomic_write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to a temporary name and rename it, so readers never see half a file."""
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    fs.mv(tmp, path)
