"""Read URL lists (.txt, .csv, .tsv, .jsonl, .parquet) as a stream of input rows."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import fsspec

from pixelforge.collect.people import boxes_from_cell, consent_from_cell
from pixelforge.errors import UsageError

LIST_FORMATS = ("txt", "csv", "tsv", "jsonl", "parquet")
LICENCE_COLUMNS = ("license", "license_url", "attribution")


@dataclass
class InputRow:
    """One line of the list: its 0-based row number and the columns we use."""

    row: int
    url: str | None
    caption: str | None = None
    license: str | None = None
    license_url: str | None = None
    attribution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # the list's consent (--consent-col) and face boxes (--bbox-col; fractions of the original image);
    # None: the list says nothing (collect.people decides)
    consent: str | None = None
    consent_source: str | None = None
    face_boxes: list[list[float]] | None = None
    # set by the crawler (a URL list leaves the defaults)
    source_kind: str = "url"
    page_url: str | None = None
    caption_source: str | None = None
    opt_out: str | None = None  # why the owner opted out, kept on the sample under --ignore-opt-outs
    failure: tuple[str, str] | None = None  # (reason, detail) decided before download: never fetched


def list_format(path: str) -> str:
    name = path.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = name.rsplit(".", 1)[-1] if "." in name.rsplit("/", 1)[-1] else ""
    if ext == "json":
        ext = "jsonl"
    if ext not in LIST_FORMATS:
        raise UsageError(
            f"URL list {path}: unknown format {ext or '(no extension)'!r}; name it .{', .'.join(LIST_FORMATS)}"
        )
    return ext


@dataclass
class ListReader:
    """Streams a URL list; validates the named columns against the header before any work."""

    path: str
    url_col: str = "url"
    caption_col: str | None = "caption"
    keep_cols: tuple[str, ...] = ()
    consent_col: str | None = None
    bbox_col: str | None = None

    def __post_init__(self) -> None:
        self.format = list_format(self.path)
        fs, _ = fsspec.core.url_to_fs(self.path)
        if not fs.exists(self.path):
            raise UsageError(f"URL list {self.path}: no such file")

    def columns(self) -> list[str] | None:
        """The list's column names (None for .txt and .jsonl, which are checked row by row)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            with fsspec.open(self.path, "rb") as f:
                return pq.read_schema(f).names
        if self.format in ("csv", "tsv"):
            with fsspec.open(self.path, "rt", encoding="utf-8", errors="replace", newline="", compression="infer") as f:
                return next(csv.reader(f, delimiter="\t" if self.format == "tsv" else ","), [])
        return None

    def estimate_rows(self) -> int:
        """Rows in the list: exact for parquet, the line count otherwise (header excluded).

        One streaming pass over the bytes; used only to size shards, so a CSV with quoted
        multi-line fields (counted high) is harmless.
        """
        if self.format == "parquet":
            import pyarrow.parquet as pq

            with fsspec.open(self.path, "rb") as f:
                return pq.ParquetFile(f).metadata.num_rows
        lines, last = 0, b"\n"
        with fsspec.open(self.path, "rb", compression="infer") as f:
            while chunk := f.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        lines += last != b"\n"
        return max(0, lines - (self.format in ("csv", "tsv")))

    def validate(self) -> None:
        named = [("--consent-col", self.consent_col), ("--bbox-col", self.bbox_col)]
        if self.format == "txt":
            for flag, col in named:
                if col:
                    raise UsageError(
                        f"{flag} {col!r}: {self.path} is a .txt list (URLs only, no columns); "
                        "give a .csv, .tsv, .jsonl or .parquet list with that column"
                    )
        cols = self.columns()
        if cols is None:
            return
        wanted = [("--url-col", self.url_col)] + [("--keep-cols", c) for c in self.keep_cols]
        wanted += [(flag, col) for flag, col in named if col]
        for flag, col in wanted:
            if col not in cols:
                raise UsageError(f"{flag} {col!r} is not a column of {self.path}; its columns are: {', '.join(cols)}")

    def __iter__(self) -> Iterator[InputRow]:
        if self.format == "txt":
            yield from self._txt()
        elif self.format == "parquet":
            yield from self._dicts(self._parquet())
        elif self.format == "jsonl":
            yield from self._jsonl()
        else:
            yield from self._dicts(self._csv())

    def _open_text(self):
        return fsspec.open(self.path, "rt", encoding="utf-8", errors="replace", newline="", compression="infer")

    def _txt(self) -> Iterator[InputRow]:
        with self._open_text() as f:
            for n, line in enumerate(f):
                yield InputRow(n, line.strip() or None)

    def _csv(self) -> Iterator[dict[str, Any]]:
        with self._open_text() as f:
            yield from csv.DictReader(f, delimiter="\t" if self.format == "tsv" else ",")

    def _parquet(self) -> Iterator[dict[str, Any]]:
        import pyarrow.parquet as pq

        with fsspec.open(self.path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=8192):
                yield from batch.to_pylist()

    def _jsonl(self) -> Iterator[InputRow]:
        with self._open_text() as f:
            for n, line in enumerate(f):
                try:
                    doc = json.loads(line) if line.strip() else None
                except ValueError:
                    doc = None
                if not isinstance(doc, dict):
                    yield InputRow(n, None, meta={"error": "line is not a JSON object"})
                    continue
                yield self._row(n, doc)

    def _dicts(self, records: Iterator[dict[str, Any]]) -> Iterator[InputRow]:
        for n, doc in enumerate(records):
            yield self._row(n, doc)

    def _row(self, n: int, doc: dict[str, Any]) -> InputRow:
        def text(col: str | None) -> str | None:
            v = doc.get(col) if col else None
            if v is None:
                return None
            v = str(v).strip()
            return v or None

        meta = {c: doc.get(c) for c in self.keep_cols if c in doc}
        consent = consent_from_cell(doc.get(self.consent_col), self.consent_col) if self.consent_col else None
        boxes = None
        if self.bbox_col:
            boxes, why = boxes_from_cell(doc.get(self.bbox_col))
            if why:  # the row is still collected, its boxes ignored
                meta["bbox_error"] = f"--bbox-col {self.bbox_col}: {why}"
        return InputRow(
            n,
            text(self.url_col),
            caption=text(self.caption_col),
            license=text("license"),
            license_url=text("license_url"),
            attribution=text("attribution"),
            meta=meta,
            consent=consent[0] if consent else None,
            consent_source=consent[1] if consent else None,
            face_boxes=boxes,
        )
