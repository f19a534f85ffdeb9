"""CIFAR-10 / CIFAR-100 importer: the official python-version batches, unpickled with an allow-list."""

from __future__ import annotations

import pickle
import tarfile  # reads the user's CIFAR .tar.gz archive, an input format; never a dataset shard
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.sources.base import Failure, Record

SIDE = 32
ROW_BYTES = 3 * SIDE * SIDE  # one image: the R plane, then G, then B, each 32x32 row-major
# The largest official batch (CIFAR-100 train) is ~160 MB; a bigger member is not a CIFAR batch
# and would only make us hold a huge pickle in memory.
MAX_BATCH_BYTES = 512 * 1024 * 1024


class _Layout(NamedTuple):
    title: str
    archive: str
    folder: str
    meta: str
    batches: tuple[tuple[str, str], ...]  # (file name, split) in import order
    label_key: str
    names_key: str


LAYOUTS = {
    "cifar10": _Layout(
        "CIFAR-10",
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py",
        "batches.meta",
        tuple((f"data_batch_{i}", "train") for i in range(1, 6)) + (("test_batch", "test"),),
        "labels",
        "label_names",
    ),
    "cifar100": _Layout(
        "CIFAR-100",
        "cifar-100-python.tar.gz",
        "cifar-100-python",
        "meta",
        (("train", "train"), ("test", "test")),
        "fine_labels",
        "fine_label_names",
    ),
}


class UnsafePickle(Exception):
    """A pickle asked for a global outside the allow-list; nothing it named was called."""


def _latin1_encode(text: Any, encoding: str = "latin1", errors: str = "strict") -> bytes:
    # Python 3 writes bytes in protocol-2 pickles as _codecs.encode(str, "latin1"); only that use
    # is let through, so the codec machinery cannot be driven to anything else.
    if not isinstance(text, str) or encoding.lower().replace("-", "").replace("_", "") != "latin1":
        raise UnsafePickle(f"_codecs.encode is allowed only for latin1 text, not {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2 keeps its core under numpy._core; old pickles still say numpy.core
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    for mod in ("builtins", "__builtin__"):  # containers without an opcode of their own in protocol 2
        allowed[(mod, "set")], allowed[(mod, "frozenset")] = set, frozenset
    return allowed


_ALLOWED = _allowed_globals()


class _RestrictedUnpickler(pickle.Unpickler):
    # The objects are looked up in _ALLOWED, never imported by name, so a pickle cannot reach
    # any module (os, subprocess, builtins.eval ...) however it spells it.
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickle(f"global '{module}.{name}' is not allowed") from None


def restricted_load(stream: IO[bytes]) -> Any:
    """Unpickle ``stream`` admitting only numpy arrays, dtypes, scalars and plain containers.

    Strings load as bytes (``encoding="bytes"``), as the official Python 2 batches need.
    Raises UnsafePickle, before calling it, for any other global; other damage raises the
    usual pickle errors.
    """
    return _RestrictedUnpickler(stream, encoding="bytes").load()


def _get(d: dict, key: str) -> Any:
    # official batches have bytes keys; a batch re-saved from Python 3 may have str keys
    return d.get(key.encode(), d.get(key))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _int_list(value: Any, n: int, what: str) -> list[int]:
    """``value`` (a list or 1-D array) as n Python ints; ValueError naming ``what`` otherwise."""
    arr = np.asarray(value)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu") or arr.size != n:
        size = f"{arr.size} values" if arr.ndim == 1 else f"shape {arr.shape}"
        raise ValueError(f"{what} has {size}, expected {n} integers")
    return [int(v) for v in arr]


class _Files:
    """The member files of one CIFAR copy (a tar archive or a directory), opened one at a time."""

    def __init__(self, path: str, folder: str):
        self.tar: tarfile.TarFile | None = None
        self.sizes: dict[str, int] = {}
        p = Path(path)
        if p.is_dir():
            self.dir = p / folder if (p / folder).is_dir() else p
            self.sizes = {f.name: f.stat().st_size for f in self.dir.iterdir() if f.is_file()}
            return
        self.tar = tarfile.open(path, "r:*")
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in self.tar:  # only regular files of the official folder (or the archive root)
            parent, _, base = m.name.removeprefix("./").rpartition("/")
            if m.isfile() and parent in (folder, ""):
                self.members[base], self.sizes[base] = m, m.size

    def open(self, name: str) -> IO[bytes]:
        if self.tar is None:
            return open(self.dir / name, "rb")
        # streamed out of the archive: nothing is extracted to disk
        return self.tar.extractfile(self.members[name])  # type: ignore[return-value]

    def __enter__(self) -> _Files:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tar is not None:
            self.tar.close()


@dataclass
class CifarSource:
    """The official "python version" of CIFAR-10 or CIFAR-100: the .tar.gz or its extracted folder.

    Train batches come first, then test, each in file order. ``source`` is ``PATH#batch/index``.
    """

    path: str
    variant: str = "cifar10"

    @property
    def kind(self) -> str:
        return self.variant

    @property
    def extra_fields(self) -> tuple[pa.Field, ...]:
        if self.variant == "cifar100":
            return (pa.field("coarse_label", pa.int32()), pa.field("coarse_label_name", pa.string()))
        return ()

    def validate(self) -> None:
        """Raise UsageError for an unknown variant or a path that holds no batch of that variant."""
        if self.variant not in LAYOUTS:
            raise UsageError(f"variant {self.variant!r}: choose one of {', '.join(LAYOUTS)}")
        layout = LAYOUTS[self.variant]
        expects = (
            f"expects the {layout.title} python version: {layout.archive} or the extracted {layout.folder}/ directory"
        )
        if not Path(self.path).exists():
            raise UsageError(f"{self.variant} {self.path}: does not exist; {expects}")
        if Path(self.path).is_file() and not tarfile.is_tarfile(self.path):
            raise UsageError(f"{self.variant} {self.path}: not a tar archive; {expects}")
        try:
            with _Files(self.path, layout.folder) as files:
                found = set(files.sizes)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UsageError(f"{self.variant} {self.path}: cannot read it ({exc}); {expects}") from None
        if not found & {name for name, _ in layout.batches}:
            other = next(k for k in LAYOUTS if k != self.variant)
            with _Files(self.path, LAYOUTS[other].folder) as files:  # the other variant is a common mix-up
                theirs = set(files.sizes) & {LAYOUTS[other].meta, *(n for n, _ in LAYOUTS[other].batches)}
            hint = f"; it looks like {LAYOUTS[other].title}: use `pixelforge import {other}`" if len(theirs) > 1 else ""
            raise UsageError(f"{self.variant} {self.path}: no {layout.title} batch found; {expects}{hint}")

    def count(self) -> int | None:
        """None: a batch's size is known only once it is unpickled."""
        return None

    def records(self) -> Iterator[Record | Failure]:
        """One Record per image; a whole batch becomes one Failure when it is unsafe or malformed."""
        layout = LAYOUTS[self.variant]
        with _Files(self.path, layout.folder) as files:
            names: dict[str, list[str] | None] = {"fine": None, "coarse": None}
            meta = self._load(files, layout.meta)
            if isinstance(meta, Failure):
                yield meta  # the labels still import; only their names stay empty
            else:
                names = {"fine": _names(meta, layout.names_key), "coarse": _names(meta, "coarse_label_names")}
            for batch, split in layout.batches:
                yield from self._batch_records(files, layout, batch, split, names)

    def _load(self, files: _Files, name: str) -> dict | Failure:
        source = f"{self.path}#{name}"
        if name not in files.sizes:
            return Failure(source, "missing_file", f"{name} is missing from {self.path}")
        if files.sizes[name] > MAX_BATCH_BYTES:
            return Failure(
                source,
                "bad_record",
                f"{name} is {files.sizes[name]} bytes, over the {MAX_BATCH_BYTES} a CIFAR batch can be",
            )
        try:
            with files.open(name) as f:
                obj = restricted_load(f)
        except UnsafePickle as exc:
            return Failure(source, "unsafe_pickle", str(exc))
        except Exception as exc:  # any damage inside the pickle: it is one bad item, not a crash
            return Failure(source, "bad_record", f"cannot unpickle {name}: {type(exc).__name__}: {exc}")
        if not isinstance(obj, dict):
            return Failure(source, "bad_record", f"{name} holds a {type(obj).__name__}, not a dict")
        return obj

    def _batch_records(
        self, files: _Files, layout: _Layout, batch: str, split: str, names: dict[str, list[str] | None]
    ) -> Iterator[Record | Failure]:
        d = self._load(files, batch)
        if isinstance(d, Failure):
            yield d
            return
        data = _get(d, "data")
        try:
            if (
                not isinstance(data, np.ndarray)
                or data.dtype != np.uint8
                or data.ndim != 2
                or data.shape[1] != ROW_BYTES
            ):
                what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
                raise ValueError(f"data is {what}, expected uint8 (N, {ROW_BYTES})")
            n = data.shape[0]
            labels = _int_list(_get(d, layout.label_key), n, layout.label_key)
            coarse = _int_list(_get(d, "coarse_labels"), n, "coarse_labels") if self.variant == "cifar100" else None
            filenames = _get(d, "filenames")
            if filenames is not None and len(filenames) != n:
                raise ValueError(f"filenames has {len(filenames)} values, expected {n}")
        except (ValueError, TypeError) as exc:
            yield Failure(f"{self.path}#{batch}", "bad_record", f"{batch}: {exc}")
            return
        for i in range(n):
            source = f"{self.path}#{batch}/{i}"
            label_name, label_err = _name_of(labels[i], names["fine"], "label")
            extra: dict[str, Any] = {}
            if coarse is not None:
                extra["coarse_label"] = coarse[i]
                extra["coarse_label_name"], coarse_err = _name_of(coarse[i], names["coarse"], "coarse label")
                label_err = label_err or coarse_err
            if label_err:
                yield Failure(source, "bad_record", label_err)
                continue
            # (3072,) -> (3, 32, 32) planes -> (32, 32, 3) HxWxC, contiguous for the PNG encoder
            image = np.ascontiguousarray(data[i].reshape(3, SIDE, SIDE).transpose(1, 2, 0))
            meta: dict[str, Any] = {"batch": batch, "index": i}
            if filenames is not None:
                meta["filename"] = _text(filenames[i])
            yield Record(
                source=source, image=image, label=labels[i], label_name=label_name, split=split, meta=meta, extra=extra
            )


def _names(meta: dict, key: str) -> list[str] | None:
    """The label names under ``key`` as text, or None when absent or not a list."""
    value = _get(meta, key)
    return [_text(v) for v in value] if isinstance(value, (list, tuple)) and value else None


def _name_of(label: int, names: list[str] | None, what: str) -> tuple[str | None, str | None]:
    """(name, None) for a known label, (None, None) without names, (None, error) when out of range."""
    if names is None:
        return None, None
    if 0 <= label < len(names):
        return names[label], None
    return None, f"{what} {label} is outside 0..{len(names) - 1}"
