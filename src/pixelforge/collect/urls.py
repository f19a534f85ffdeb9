"""`collect urls`: download a URL list into a dataset, shard by shard, resumably, honouring opt-outs."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import urlsplit

from pixelforge import media
from pixelforge.collect.fetch import DEFAULT_USER_AGENT, FetchConfig, Fetcher, FetchError, make_session
from pixelforge.collect.lists import InputRow, ListReader
from pixelforge.errors import ItemError, UsageError
from pixelforge.progress import track
from pixelforge.run import run_tasks
from pixelforge.store import Lineage, ShardWriter, completed_shards, config_to_dict, finalize, index_schema
from pixelforge.store.dataset import prepare_output, remove_partial
from pixelforge.store.schema import encode_meta
from pixelforge.store.shards import shard_name


@dataclass
class CollectConfig:
    """Options of `pixelforge collect urls` (every CLI flag maps to one field)."""

    url_col: str = "url"
    caption_col: str | None = "caption"
    keep_cols: tuple[str, ...] = ()
    image_size: int = 256
    resize_mode: str = "center_crop"
    encode: str = "jpg"
    quality: int = 95
    min_side: int = 0
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 100_000_000
    timeout: float = 10.0
    retries: int = 2
    processes: int = 2
    concurrency: int = 64
    per_host: int = 0
    user_agent: str = DEFAULT_USER_AGENT
    samples_per_shard: int = 1000
    ignore_opt_outs: bool = False
    allow_private_networks: bool = False
    license: str = "unknown"
    backend: str = "local"

    def validate(self) -> None:
        media.check_resize_mode(self.resize_mode)
        self.encode = media.check_encoding(self.encode)
        checks = [("--image-size", self.image_size, 8), ("--samples-per-shard", self.samples_per_shard, 1),
                  ("--processes", self.processes, 1), ("--concurrency", self.concurrency, 1),
                  ("--max-bytes", self.max_bytes, 1), ("--max-pixels", self.max_pixels, 1)]
        for flag, value, low in checks:
            if value < low:
                raise UsageError(f"{flag} {value}: must be at least {low}")
        for flag, value in (("--min-side", self.min_side), ("--retries", self.retries), ("--per-host", self.per_host)):
            if value < 0:
                raise UsageError(f"{flag} {value}: must be 0 or more")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality}: choose a value from 1 to 100")
        if self.timeout <= 0:
            raise UsageError(f"--timeout {self.timeout}: must be more than 0 seconds")

    def fetch_config(self) -> FetchConfig:
        return FetchConfig(timeout=self.timeout, retries=self.retries, max_bytes=self.max_bytes,
                           user_agent=self.user_agent, honour_opt_outs=not self.ignore_opt_outs,
                           allow_private_networks=self.allow_private_networks,
                           concurrency=self.concurrency, per_host=self.per_host)


@dataclass
class CollectResult:
    out: str
    input_rows: int
    samples: int
    failures: int
    failure_reasons: dict[str, int]
    seconds: float
    images_per_second: float
    bytes_downloaded: int
    shards_resumed: int


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


def url_problem(url: str | None) -> str | None:
    """Why ``url`` cannot be fetched at all, or None."""
    if not url:
        return "empty URL"
    if len(url) > 8192:
        return "URL longer than 8192 characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"malformed URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme or '(none)'!r} is not http or https"
    if not parts.hostname:
        return "URL has no host"
    return None


def plan_shards(reader: ListReader, out: str, config: CollectConfig, skip: set[str],
                run_id: str = "") -> Iterator[ShardTask]:
    """Cut the list into shard tasks, marking invalid and repeated URLs, skipping finished shards.

    Duplicates are found by a 64-bit hash of the URL over the WHOLE list (also the skipped
    part, so a resumed run judges exactly as the first one did): ~70 bytes of memory per
    distinct URL.
    """
    seen: set[int] = set()
    batch: list[tuple[InputRow, str | None, str]] = []
    shard_id = 0

    def flush() -> ShardTask | None:
        nonlocal batch, shard_id
        task = None if shard_name(shard_id) in skip else ShardTask(out, shard_id, batch, config, run_id)
        batch, shard_id = [], shard_id + 1
        return task

    for row in reader:
        problem = row.meta.pop("error", None) or url_problem(row.url)
        if problem:
            batch.append((row, "invalid_url", problem))
        else:
            h = int.from_bytes(hashlib.blake2b(row.url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
            if h in seen:
                batch.append((row, "duplicate_url", "the same URL appeared on an earlier row"))
            else:
                seen.add(h)
                batch.append((row, None, ""))
        if len(batch) >= config.samples_per_shard:
            task = flush()
            if task:
                yield task
    if batch:
        task = flush()
        if task:
            yield task


def collect_shard(task: ShardTask) -> ShardStats:
    """Download, check, resize and store one shard (runs in a worker process)."""
    return asyncio.run(_collect_shard(task))


async def _collect_shard(task: ShardTask) -> ShardStats:
    cfg = task.config
    fetch_cfg = cfg.fetch_config()
    limits = media.MediaLimits(max_bytes=cfg.max_bytes, max_pixels=cfg.max_pixels, min_side=cfg.min_side)
    start = time.monotonic()
    loop = asyncio.get_running_loop()
    # image work runs beside the event loop; Pillow releases the GIL while decoding and resizing
    pool = ThreadPoolExecutor(max_workers=2)
    # one slot covers download AND processing, so at most `concurrency` bodies sit in memory
    slots = asyncio.Semaphore(cfg.concurrency)
    downloaded = 0

    async def one(row: InputRow) -> tuple[Any, ...]:
        nonlocal downloaded
        async with slots:
            try:
                got = await fetcher.fetch(row.url)
            except FetchError as exc:
                return ("fail", exc.reason, exc.detail)
            downloaded += len(got.data)
            fetched_at = datetime.now(timezone.utc)
            try:
                processed = await loop.run_in_executor(
                    pool, lambda: media.process(got.data, size=cfg.image_size, resize_mode=cfg.resize_mode,
                                                encoding=cfg.encode, quality=cfg.quality, limits=limits))
            except ItemError as exc:
                return ("fail", exc.reason, exc.detail)
            return ("ok", got, processed, fetched_at)

    async with make_session(fetch_cfg) as session:
        fetcher = Fetcher(session, fetch_cfg, task.run_id)
        jobs = [one(row) if reason is None else _pre(reason, detail) for row, reason, detail in task.rows]
        outcomes = await asyncio.gather(*jobs)
    pool.shutdown(wait=False)

    writer = ShardWriter(task.out, task.shard_id, index_schema())
    reasons: dict[str, int] = {}
    try:
        for (row, _, _), outcome in zip(task.rows, outcomes):
            if outcome[0] == "fail":
                _, reason, detail = outcome
                reasons[reason] = reasons.get(reason, 0) + 1
                writer.fail(row=row.row, source=row.url, url=row.url, reason=reason, detail=detail)
                continue
            _, got, processed, fetched_at = outcome
            writer.write(_sample_row(row, got, processed, fetched_at, cfg), processed.data, processed.ext)
        result = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return ShardStats(task.shard_id, len(task.rows), result.samples, downloaded, time.monotonic() - start, reasons)


async def _pre(reason: str, detail: str) -> tuple[str, str, str]:
    return ("fail", reason, detail)


def _sample_row(row: InputRow, got, processed: media.Processed, fetched_at: datetime,
                cfg: CollectConfig) -> dict[str, Any]:
    meta = dict(row.meta)
    if got.url != row.url:
        meta["final_url"] = got.url
    return {
        "key": f"{row.row:09d}",
        "source_kind": "url",
        "source": row.url,
        "caption": row.caption,
        "caption_source": "dataset" if row.caption is not None else None,
        "boxes": [],
        "license": row.license or cfg.license,
        "license_url": row.license_url,
        "attribution": row.attribution,
        "width": processed.width,
        "height": processed.height,
        "orig_width": processed.orig_width,
        "orig_height": processed.orig_height,
        "format": processed.format,
        "sha256": processed.sha256,
        "phash": processed.phash,
        "fetched_at": fetched_at,
        "http_status": got.status,
        "meta": encode_meta(meta),
    }


def collect_urls(list_path: str, out: str, config: CollectConfig, *, resume: bool = False,
                 overwrite: bool = False) -> CollectResult:
    """Download every URL of ``list_path`` into a new dataset at ``out``.

    Each input row ends as exactly one sample or one failure row. With ``resume``, finished
    shards are kept and the rest of the list is fetched again.
    """
    config.validate()
    reader = ListReader(list_path, url_col=config.url_col, caption_col=config.caption_col,
                        keep_cols=tuple(config.keep_cols))
    reader.validate()
    prepare_output(out, overwrite=overwrite, resume=resume)
    if resume:
        remove_partial(out)
    done = set(completed_shards(out))
    start = time.monotonic()
    totals = {"rows": 0, "samples": 0, "bytes": 0}
    with track("collect urls") as bar:
        for stats in run_tasks(collect_shard, plan_shards(reader, out, config, done, uuid.uuid4().hex), backend=config.backend,
                               processes=config.processes):
            totals["rows"] += stats.rows
            totals["samples"] += stats.samples
            totals["bytes"] += stats.bytes_downloaded
            bar.advance(stats.rows)
    seconds = time.monotonic() - start
    lineage_config = config_to_dict(config)
    lineage_config["list"] = list_path
    ds = finalize(out, name=out.rstrip("/").rsplit("/", 1)[-1], schema=index_schema(),
                  lineage=Lineage(command="collect urls", config=lineage_config, inputs=[]),
                  stats={"seconds": round(seconds, 3),
                         "images_per_second": round(totals["samples"] / seconds, 2) if seconds else 0.0,
                         "bytes_downloaded": totals["bytes"], "rows_this_run": totals["rows"],
                         "shards_resumed": len(done), "opt_outs_honoured": not config.ignore_opt_outs})
    stats = ds.stats()
    n_fail = ds.info["num_failures"]
    return CollectResult(out=out, input_rows=ds.num_samples + n_fail, samples=ds.num_samples, failures=n_fail,
                         failure_reasons=stats["failure_reasons"], seconds=round(seconds, 3),
                         images_per_second=stats["images_per_second"], bytes_downloaded=totals["bytes"],
                         shards_resumed=len(done))
