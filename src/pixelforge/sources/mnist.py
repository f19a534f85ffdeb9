"""MNIST-format importer: IDX image/label file pairs (MNIST, Fashion-MNIST), plain or gzip, streamed."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ClassVar

import numpy as np
import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.sources.base import Failure, Record

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (N,)
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 8 * 1024 * 1024  # images are read this much at a time, so memory does not grow with N
MAX_PIXELS = 4096 * 4096  # a larger image side in an IDX header is damage, not data
SPLITS = (("train", "train"), ("t10k", "test"))  # (file prefix, split)
LABEL_NAMES = {
    "digits": tuple(str(i) for i in range(10)),
    "fashion": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
# The read errors of a damaged file; each becomes a failure of that file, never a crash.
_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)


class _BadIdx(Exception):
    """An IDX header that is short or has the wrong magic number."""


def idx_names(prefix: str, what: str) -> list[str]:
    """The file names an IDX file may have: ``train-images-idx3-ubyte`` (the official name), the
    ``train-images.idx3-ubyte`` spelling some mirrors use, and either with ``.gz``."""
    idx = "idx3" if what == "images" else "idx1"
    return [f"{prefix}-{what}{sep}{idx}-ubyte{gz}" for sep in ("-", ".") for gz in ("", ".gz")]


def open_idx(path: Path) -> IO[bytes]:
    """Open an IDX file for reading, decompressing it when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    # the content decides, not the name: mirrors ship gzip data without .gz and the reverse
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_header(f: IO[bytes], path: Path, magic: int) -> tuple[int, ...]:
    """Read an IDX header and return its dimensions (big-endian uint32 each).

    Raises _BadIdx when the magic number is not ``magic`` or the header is cut short.
    """
    ndim = magic & 0xFF
    head = f.read(4 + 4 * ndim)
    if len(head) < 4 + 4 * ndim:
        raise _BadIdx(f"{path.name}: header is {len(head)} bytes, expected {4 + 4 * ndim}")
    (found,) = struct.unpack(">I", head[:4])
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise _BadIdx(f"{path.name}: magic number 0x{found:08X}, expected 0x{magic:08X} (unsigned-byte {kind})")
    return struct.unpack(f">{ndim}I", head[4:])


def _read_upto(f: IO[bytes], n: int) -> tuple[bytes, str | None]:
    """Up to ``n`` bytes, stopping at the end of the file or at the first read error (returned)."""
    parts, got = [], 0
    try:
        while got < n:
            # read1, not read: a buffered read() that fails half way drops what it had already read
            part = f.read1(min(n - got, CHUNK_BYTES))
            if not part:
                break
            parts.append(part)
            got += len(part)
    except _READ_ERRORS as exc:  # a truncated .gz: keep what decompressed before the cut
        return b"".join(parts), f"{type(exc).__name__}: {exc}"
    return b"".join(parts), None


@dataclass
class MnistSource:
    """A directory of IDX files: train-* become split "train" and t10k-* split "test".

    IDX files do not say which dataset they hold, so ``label_names`` picks the names:
    "digits" (MNIST, the default) or "fashion" (Fashion-MNIST).
    """

    path: str
    label_names: str = "digits"
    kind: ClassVar[str] = "mnist"
    extra_fields: ClassVar[tuple[pa.Field, ...]] = ()

    def validate(self) -> None:
        """Raise UsageError for unknown label names or a directory without any MNIST IDX file."""
        if self.label_names not in LABEL_NAMES:
            raise UsageError(f"--label-names {self.label_names!r}: choose one of {', '.join(LABEL_NAMES)}")
        if not Path(self.path).is_dir():
            raise UsageError(
                f"mnist {self.path}: not a directory; pass the directory that holds "
                "train-images-idx3-ubyte[.gz] and the other MNIST IDX files"
            )
        if not any(self._find(p, w) for p, _ in SPLITS for w in ("images", "labels")):
            expected = ", ".join(idx_names(p, w)[0] + "[.gz]" for p, _ in SPLITS for w in ("images", "labels"))
            raise UsageError(f"mnist {self.path}: holds none of {expected}; pass the directory that holds them")

    def count(self) -> int | None:
        """Image/label pairs as the headers declare them (pairs that cannot be read count 0)."""
        total = 0
        for prefix, _ in SPLITS:
            images, labels = self._find(prefix, "images"), self._find(prefix, "labels")
            if images and labels:
                try:
                    with open_idx(images) as fi, open_idx(labels) as fl:
                        total += min(read_header(fi, images, IMAGES_MAGIC)[0], read_header(fl, labels, LABELS_MAGIC)[0])
                except (_BadIdx, *_READ_ERRORS):
                    pass
        return total

    def records(self) -> Iterator[Record | Failure]:
        """One Record per image of train then t10k; a damaged file gives its good images and a Failure."""
        names = LABEL_NAMES[self.label_names]
        for prefix, split in SPLITS:
            images, labels = self._find(prefix, "images"), self._find(prefix, "labels")
            if images is None and labels is None:
                continue  # a directory with only one split is normal (such as a test-only copy)
            if images is None or labels is None:
                have, what = (images, "images") if images else (labels, "labels")
                missing = idx_names(prefix, "labels" if what == "images" else "images")[0]
                yield Failure(
                    str(have), "missing_file", f"{have.name} has no partner: {missing}[.gz] is missing from {self.path}"
                )
                continue
            yield from self._pair_records(images, labels, split, names)

    def _find(self, prefix: str, what: str) -> Path | None:
        for name in idx_names(prefix, what):
            if (Path(self.path) / name).is_file():
                return Path(self.path) / name
        return None

    def _pair_records(
        self, images: Path, labels: Path, split: str, names: tuple[str, ...]
    ) -> Iterator[Record | Failure]:
        # 1. labels, whole: 1 byte per image (60 KB for MNIST train)
        try:
            with open_idx(labels) as f:
                (n_labels,) = read_header(f, labels, LABELS_MAGIC)
                raw, error = _read_upto(f, n_labels)
        except (_BadIdx, *_READ_ERRORS) as exc:
            yield Failure(str(labels), "bad_record", f"{exc}; no {split} image was imported")
            return
        label_arr = np.frombuffer(raw, np.uint8)
        if len(label_arr) < n_labels:
            yield Failure(
                str(labels),
                "bad_record",
                f"{labels.name} is truncated: its header declares {n_labels} labels, the file "
                f"holds {len(label_arr)}; images past that are not imported" + (f" ({error})" if error else ""),
            )
        # 2. images, streamed in chunks of whole images, each paired with its label
        try:
            fi = open_idx(images)
            n_images, rows, cols = read_header(fi, images, IMAGES_MAGIC)
        except (_BadIdx, *_READ_ERRORS) as exc:
            yield Failure(str(images), "bad_record", f"{exc}; no {split} image was imported")
            return
        with fi:
            if not 0 < rows * cols <= MAX_PIXELS:
                yield Failure(
                    str(images),
                    "bad_record",
                    f"{images.name}: header declares {rows}x{cols} images; no {split} image was imported",
                )
                return
            if n_images != n_labels:
                yield Failure(
                    str(images),
                    "bad_record",
                    f"{images.name} declares {n_images} images but {labels.name} declares "
                    f"{n_labels} labels: only the first {min(n_images, n_labels)} are paired",
                )
            n, per = min(n_images, len(label_arr)), rows * cols
            chunk, done = max(1, CHUNK_BYTES // per), 0
            while done < n:
                want = min(chunk, n - done)
                buf, error = _read_upto(fi, want * per)
                k = len(buf) // per
                pixels = np.frombuffer(buf, np.uint8, count=k * per).reshape(k, rows, cols)
                for j in range(k):
                    i, label = done + j, int(label_arr[done + j])
                    if label >= len(names):
                        yield Failure(f"{images}#{i}", "bad_record", f"label {label} is outside 0..{len(names) - 1}")
                        continue
                    yield Record(
                        source=f"{images}#{i}",
                        image=pixels[j].copy(),
                        label=label,
                        label_name=names[label],
                        split=split,
                    )
                done += k
                if k < want:
                    yield Failure(
                        str(images),
                        "bad_record",
                        f"{images.name} is truncated: its header declares {n_images} images, "
                        f"the file holds {done} complete ones" + (f" ({error})" if error else ""),
                    )
                    return
