"""The importer interface (Record / Failure items) and the one driver that turns items into a dataset."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from pixelforge import media
from pixelforge.errors import ItemError, UsageError
from pixelforge.progress import track
from pixelforge.store import Dataset, DatasetBuilder, Lineage, config_to_dict, default_name
from pixelforge.store.schema import CONSENT_STATES, PEOPLE_FIELDS, encode_meta, people_defaults

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class Record:
    """One sample as an importer reads it, before it is stored.

    ``image`` is either encoded bytes (kept unchanged when they are JPEG, PNG or WebP) or a uint8
    array HxW / HxWx3 (stored as lossless PNG). Licence fields left at None take the command's
    ``--license/--license-url/--attribution``; what the source itself says wins over the flags.
    ``consent`` left at None is read from the image's XMP model release, else the command's
    ``--consent`` (item_consent).
    """

    source: str
    image: bytes | np.ndarray
    caption: str | None = None
    caption_source: str | None = None
    label: int | None = None
    label_name: str | None = None
    boxes: Sequence[dict[str, Any]] = ()
    mask: np.ndarray | None = None  # HxW integer array (class or instance ids), stored as PNG
    split: str | None = None
    license: str | None = None
    license_url: str | None = None
    attribution: str | None = None
    consent: str | None = None  # granted | denied | unknown, when the item's own record states it
    consent_source: str | None = None  # where that came from (pixelforge.store.schema.PEOPLE_FIELDS)
    meta: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # values of the importer's extra_fields


@dataclass
class Failure:
    """One input item that gives no sample: becomes a row in failures.parquet."""

    source: str
    reason: str  # a key of pixelforge.store.schema.FAILURE_REASONS
    detail: str = ""


class Source(Protocol):
    """What every importer is: a config dataclass with a kind, extra columns and a record stream."""

    kind: str  # the source_kind of its rows
    extra_fields: tuple[pa.Field, ...]

    def validate(self) -> None:
        """Raise UsageError for a missing path or bad option, before any work."""

    def records(self) -> Iterator[Record | Failure]:
        """Yield items in a stable order; never raise for a bad item (yield a Failure)."""

    def count(self) -> int | None:
        """The number of items when cheap to know (for the progress bar), else None."""


@dataclass
class ImportOptions:
    """Options every importer shares (the CLI's common flags)."""

    out: str
    license: str = "unknown"
    license_url: str | None = None
    attribution: str | None = None
    consent: str | None = None  # granted | denied | unknown for items whose record and image state none
    samples_per_shard: int = 1000
    overwrite: bool = False
    max_pixels: int = media.MediaLimits.max_pixels
    max_bytes: int = media.MediaLimits.max_bytes
    processes: int = 2  # worker processes decoding and hashing the images


@dataclass
class ImportResult:
    out: str
    kind: str
    samples: int
    failures: int
    failure_reasons: dict[str, int]
    seconds: float


def store_image(image: bytes | np.ndarray, limits: media.MediaLimits) -> media.Processed:
    """Checked, measured image ready to store: source bytes kept when they are jpg/png/webp."""
    return store_image_decoded(image, limits)[0]


def store_image_decoded(image: bytes | np.ndarray, limits: media.MediaLimits) -> tuple[media.Processed, Image.Image]:
    """store_image, and the decoded image its phash is taken of (media.process_decoded)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ItemError(
                f"pixel array must be uint8 HxW or HxWxC, got {image.dtype} {image.shape}", reason="bad_record"
            )
        image = media.array_to_png(image)
    return media.process_decoded(image, limits=limits)


# Items go to the worker processes in windows of this many; an import with fewer items than
# MIN_PARALLEL_ITEMS runs in this process (starting the pool costs more than it saves).
WINDOW = 64
MIN_PARALLEL_ITEMS = 512


def _store_all(limits: media.MediaLimits, images: list[bytes | np.ndarray]) -> list[media.Processed | tuple[str, str]]:
    """store_image over a list of images; a bad image becomes (reason, detail), not an exception."""
    out: list[media.Processed | tuple[str, str]] = []
    for image in images:
        try:
            out.append(store_image(image, limits))
        except ItemError as exc:
            out.append((exc.reason, exc.detail))
    return out


def _store_window(task: tuple[int, media.MediaLimits, list[bytes | np.ndarray]]) -> tuple[int, list, dict[str, int]]:
    """One pool task: (window id, limits, images) -> (window id, _store_all's results, Pillow warning counts).

    A source file kept byte for byte is not sent back (``data`` empty): the caller has it.
    """
    wid, limits, images = task
    out = _store_all(limits, images)
    for i, p in enumerate(out):
        if isinstance(p, media.Processed) and p.data is images[i]:
            out[i] = dataclasses.replace(p, data=b"")
    return wid, out, media.take_warnings()


def _windows(
    items: Iterator[Record | Failure], pending: dict[int, list[Record | Failure]], limits: media.MediaLimits
) -> Iterator[tuple[int, media.MediaLimits, list]]:
    """A pool task per WINDOW items; the items wait in ``pending`` (by window id) for their results."""
    for wid in itertools.count():
        window = list(itertools.islice(items, WINDOW))
        if not window:
            return
        pending[wid] = window
        yield wid, limits, [r.image for r in window if isinstance(r, Record)]


def _stored(
    items: Iterator[Record | Failure],
    limits: media.MediaLimits,
    processes: int,
    image_warnings: dict[str, int],
) -> Iterator[tuple[Record | Failure, media.Processed | tuple[str, str] | None]]:
    """Each item with its stored image, or (reason, detail) for a bad one, in the source's order.

    With ``processes > 1`` decoding, hashing and re-encoding run in a process pool over windows
    of items, and the results are put back in order: the dataset is the same for any count.
    The workers' Pillow warning counts are added to ``image_warnings`` (this process's stay in media).
    """
    if processes <= 1:
        for item in items:
            yield item, (None if isinstance(item, Failure) else _store_all(limits, [item.image])[0])
        return
    from pixelforge.run.local import run_local

    pending: dict[int, list[Record | Failure]] = {}
    done: dict[int, list] = {}
    next_id = 0
    for wid, results, warned in run_local(_store_window, _windows(items, pending, limits), processes=processes):
        media.add_warnings(image_warnings, warned)
        done[wid] = results
        while next_id in done:
            stored = iter(done.pop(next_id))
            for item in pending.pop(next_id):
                if isinstance(item, Failure):
                    yield item, None
                    continue
                p = next(stored)
                yield (
                    item,
                    (dataclasses.replace(p, data=item.image) if isinstance(p, media.Processed) and not p.data else p),
                )
            next_id += 1


def run_import(source: Source, options: ImportOptions) -> ImportResult:
    """Import ``source`` into a new dataset at ``options.out``; bad items become failure rows."""
    source.validate()
    if not options.license:
        raise UsageError("--license must not be empty: pass an SPDX-like id or leave the default 'unknown'")
    if options.processes < 1:
        raise UsageError(f"--processes {options.processes}: must be at least 1")
    if options.consent is not None and options.consent not in CONSENT_STATES:
        raise UsageError(f"--consent {options.consent!r}: choose one of {', '.join(CONSENT_STATES)}")
    limits = media.MediaLimits(max_bytes=options.max_bytes, max_pixels=options.max_pixels)
    builder = DatasetBuilder(
        options.out,
        samples_per_shard=options.samples_per_shard,
        extra_fields=(*PEOPLE_FIELDS, *source.extra_fields),  # the importer's own columns last
        overwrite=options.overwrite,
    )
    start = time.monotonic()
    items = 0
    count = source.count()
    processes = options.processes if count is None or count >= MIN_PARALLEL_ITEMS else 1
    media.take_warnings()  # counts left by earlier work in this process are not this import's
    image_warnings: dict[str, int] = {}
    try:
        with track(f"import {source.kind}", total=count) as bar:
            for n, (item, stored) in enumerate(_stored(source.records(), limits, processes, image_warnings)):
                items += 1
                bar.advance()
                if isinstance(item, Failure):
                    builder.fail(row=n, source=item.source, reason=item.reason, detail=item.detail)
                    continue
                if isinstance(stored, tuple):
                    builder.fail(row=n, source=item.source, reason=stored[0], detail=stored[1])
                    continue
                try:
                    mask = media.encode_mask(item.mask) if item.mask is not None else None
                except ItemError as exc:
                    builder.fail(row=n, source=item.source, reason=exc.reason, detail=exc.detail)
                    continue
                builder.add(import_row(n, item, stored, source.kind, options), stored.data, stored.ext, mask)
    except BaseException:
        builder.abort()
        raise
    seconds = time.monotonic() - start
    media.add_warnings(image_warnings, media.take_warnings())  # decoded in this process
    options_config = {k: v for k, v in config_to_dict(options).items() if k not in ("out", "overwrite", "processes")}
    ds = builder.finish(
        name=default_name(options.out),
        lineage=Lineage(
            command=f"import {source.kind}", config={"source": config_to_dict(source), "options": options_config}
        ),
        stats={"seconds": round(seconds, 3), "items": items, "image_warnings": dict(sorted(image_warnings.items()))},
    )
    return _result(ds, source.kind, seconds)


def import_row(n: int, item: Record, stored: media.Processed, kind: str, options: ImportOptions) -> dict[str, Any]:
    """The index row of the ``n``-th item of a source (its key is n, zero-padded to 9 digits)."""
    row = {
        "key": f"{n:09d}",
        "source_kind": kind,
        "source": item.source,
        "caption": item.caption,
        "caption_source": item.caption_source if item.caption is not None else None,
        "label": item.label,
        "label_name": item.label_name,
        "boxes": list(item.boxes),
        "license": item.license or options.license,
        "license_url": item.license_url if item.license_url is not None else options.license_url,
        "attribution": item.attribution if item.attribution is not None else options.attribution,
        "width": stored.width,
        "height": stored.height,
        "orig_width": stored.orig_width,
        "orig_height": stored.orig_height,
        "format": stored.format,
        "sha256": stored.sha256,
        "phash": stored.phash,
        "split": item.split,
        "meta": encode_meta(item.meta),
    }
    row.update(item.extra)
    row.update(people_defaults(*item_consent(item, options)))
    return row


def item_consent(item: Record, options: ImportOptions) -> tuple[str, str | None]:
    """(consent, consent_source) of an item: what its own record states, else its image's XMP model
    release (media.MODEL_RELEASE_CONSENT, source ``xmp:MR-CODE``), else ``--consent`` (source
    ``option``), else unknown with no source."""
    if item.consent is not None:
        return item.consent, item.consent_source
    code = media.model_release(item.image) if isinstance(item.image, bytes) else None
    if code is not None:
        return media.MODEL_RELEASE_CONSENT[code], f"xmp:MR-{code}"
    if options.consent is not None:
        return options.consent, "option"
    return "unknown", None


def _result(ds: Dataset, kind: str, seconds: float) -> ImportResult:
    stats = ds.stats()
    return ImportResult(
        out=ds.path,
        kind=kind,
        samples=ds.num_samples,
        failures=ds.info["num_failures"],
        failure_reasons=stats.get("failure_reasons", {}),
        seconds=seconds,
    )
