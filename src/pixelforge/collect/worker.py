"""The per-shard work of `collect urls`: download, check, resize and store one slice of the list.

Runs in worker processes, so it imports only what the work needs (no CLI, DuckDB or Rich).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from pixelforge import media
from pixelforge.collect.config import CollectConfig
from pixelforge.collect.fetch import Fetcher, make_session
from pixelforge.collect.lists import InputRow
from pixelforge.collect.people import face_detector, people_columns
from pixelforge.errors import ItemError
from pixelforge.store.schema import PEOPLE_FIELDS, encode_meta, index_schema
from pixelforge.store.shards import ShardWriter


def collect_schema() -> pa.Schema:
    """The index schema of every collected dataset (`collect urls`, `crawl`, `retry`): the people columns added."""
    return index_schema(PEOPLE_FIELDS)


@dataclass
class ShardTask:
    """One shard's slice of the list; rows already judged invalid/duplicate carry their reason."""

    out: str
    shard_id: int
    rows: list[tuple[InputRow, str | None, str]]  # (row, pre-failure reason, detail)
    config: CollectConfig
    run_id: str = ""  # scopes per-process caches (robots.txt) to one run


@dataclass
class ShardStats:
    shard_id: int
    rows: int
    samples: int
    bytes_downloaded: int
    seconds: float
    reasons: dict[str, int] = field(default_factory=dict)
    politeness: dict[str, Any] = field(default_factory=dict)  # retries, backoffs, hosts taken as down


def collect_shard(task: ShardTask) -> ShardStats:
    """Download, check, resize and store one shard (runs in a worker process)."""
    return asyncio.run(_collect_shard(task))


async def _collect_shard(task: ShardTask) -> ShardStats:
    cfg = task.config
    fetch_cfg = cfg.fetch_config()
    limits = media.MediaLimits(max_bytes=cfg.max_bytes, max_pixels=cfg.max_pixels, min_side=cfg.min_side)
    detector = face_detector(cfg.faces, cfg.face_weights)  # one per process, kept between shards
    start = time.monotonic()
    downloaded = 0

    async def one(row: InputRow) -> tuple[Any, ...]:
        nonlocal downloaded
        try:
            # the fetcher's gate is held until the block ends: at most `concurrency` bodies in memory
            async with fetcher.fetching(row.url) as got:
                downloaded += len(got.data)
                fetched_at = datetime.now(UTC)
                # Image work runs inline on the event loop: handing it to a thread pool was measured
                # slower (collect benchmark, 2 processes: 227 images/s inline, 207 with one thread,
                # 181 with two) because of GIL hand-offs; sockets keep filling their kernel buffers
                # meanwhile, and one process per core supplies the parallelism.
                processed, img = media.process_decoded(
                    got.data,
                    size=cfg.image_size,
                    resize_mode=cfg.resize_mode,
                    encoding=cfg.encode,
                    quality=cfg.quality,
                    limits=limits,
                )
                if fetcher.opt_outs is not None and fetcher.opt_outs.checks_images:
                    why = fetcher.opt_outs.refuses_image(processed.sha256, processed.phash)
                    if why:
                        return ("fail", "opt_out_list", why)
                # consent and faces; blurring re-encodes (the opt-out list's phash was of the unblurred image)
                processed, people = people_columns(row, got.data, processed, img, cfg, detector)
                # keep the status and final URL, not the original body: a shard's outcomes stay small
                return ("ok", (got.status, got.url), processed, fetched_at, people)
        except ItemError as exc:  # FetchError or a media error
            return ("fail", exc.reason, exc.detail)

    async with make_session(fetch_cfg) as session:
        fetcher = Fetcher(session, fetch_cfg, task.run_id)
        jobs = [one(row) if reason is None else _pre(reason, detail) for row, reason, detail in task.rows]
        outcomes = await asyncio.gather(*jobs)
    polite = {
        "retries": fetcher.retries,
        "backoffs": fetcher.throttle.backoffs,
        "hosts_down": sorted(fetcher.throttle.hosts_down),
    }

    writer = ShardWriter(task.out, task.shard_id, collect_schema())
    reasons: dict[str, int] = {}
    try:
        for (row, _, _), outcome in zip(task.rows, outcomes):
            if outcome[0] == "fail":
                _, reason, detail = outcome
                reasons[reason] = reasons.get(reason, 0) + 1
                writer.fail(row=row.row, source=row.url, url=row.url, reason=reason, detail=detail)
                continue
            _, got, processed, fetched_at, people = outcome
            sample = _sample_row(row, got, processed, fetched_at, cfg) | people
            writer.write(sample, processed.data, processed.ext)
        result = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return ShardStats(
        task.shard_id, len(task.rows), result.samples, downloaded, time.monotonic() - start, reasons, polite
    )


async def _pre(reason: str, detail: str) -> tuple[str, str, str]:
    return ("fail", reason, detail)


def _sample_row(
    row: InputRow, got: tuple[int, str], processed: media.Processed, fetched_at: datetime, cfg: CollectConfig
) -> dict[str, Any]:
    status, final_url = got
    meta = dict(row.meta)
    if final_url != row.url:
        meta["final_url"] = final_url
    return {
        "key": f"{row.row:09d}",
        "source_kind": row.source_kind,
        "source": row.url,
        "page_url": row.page_url,
        "caption": row.caption,
        "caption_source": row.caption_source or ("dataset" if row.caption is not None else None),
        "boxes": [],
        "license": row.license or cfg.license,
        "license_url": row.license_url,
        "attribution": row.attribution,
        "opt_out": row.opt_out,
        "width": processed.width,
        "height": processed.height,
        "orig_width": processed.orig_width,
        "orig_height": processed.orig_height,
        "format": processed.format,
        "sha256": processed.sha256,
        "phash": processed.phash,
        "fetched_at": fetched_at,
        "http_status": status,
        "meta": encode_meta(meta),
    }
