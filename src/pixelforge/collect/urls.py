"""`collect urls`: download a URL list into a dataset, shard by shard, resumably, honouring opt-outs."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pixelforge.collect.config import CollectConfig
from pixelforge.collect.lists import InputRow, ListReader
from pixelforge.collect.worker import ShardTask, collect_schema, collect_shard
from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.store import Lineage, completed_shards, config_to_dict, finalize
from pixelforge.store.dataset import prepare_output, read_plan, remove_partial, write_plan
from pixelforge.store.shards import shard_id_of, shard_name

__all__ = [
    "CollectConfig",
    "CollectResult",
    "collect_urls",
    "download_rows",
    "plan_shards",
    "shard_size_for",
    "url_problem",
]


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


MIN_AUTO_SHARD = 64  # smallest shard the automatic sizing makes (a task has fixed costs)
SHARDS_PER_PROCESS = 4  # a small list is cut into at least this many shards per process


def shard_size_for(rows: int, samples_per_shard: int, processes: int) -> int:
    """Samples per shard: ``samples_per_shard`` at most, less when the list is short.

    A shard is one task on one process, so a 3,000-row list cut into three 1,000-row shards
    leaves one of two processes idle for a third of the run. Cutting short lists into at
    least SHARDS_PER_PROCESS shards per process keeps every process busy to near the end.
    """
    balanced = -(-rows // (SHARDS_PER_PROCESS * processes))
    return min(samples_per_shard, max(MIN_AUTO_SHARD, balanced))


def plan_shards(
    reader: ListReader,
    out: str,
    config: CollectConfig,
    skip: set[str],
    run_id: str = "",
    shard_size: int | None = None,
    first_shard: int = 0,
) -> Iterator[ShardTask]:
    """Cut the list into shard tasks, marking invalid and repeated URLs, skipping finished shards.

    Duplicates are found by a 64-bit hash of the URL over the WHOLE list (also the skipped
    part, so a resumed run judges exactly as the first one did): ~70 bytes of memory per
    distinct URL.
    """
    seen: set[int] = set()
    batch: list[tuple[InputRow, str | None, str]] = []
    shard_id = first_shard

    def flush() -> ShardTask | None:
        nonlocal batch, shard_id
        task = None if shard_name(shard_id) in skip else ShardTask(out, shard_id, batch, config, run_id)
        batch, shard_id = [], shard_id + 1
        return task

    for row in reader:
        problem = row.meta.pop("error", None) or url_problem(row.url)
        if row.failure:
            batch.append((row, *row.failure))
        elif problem:
            batch.append((row, "invalid_url", problem))
        else:
            h = int.from_bytes(hashlib.blake2b(row.url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
            if h in seen:
                batch.append((row, "duplicate_url", "the same URL appeared on an earlier row"))
            else:
                seen.add(h)
                batch.append((row, None, ""))
        if len(batch) >= (shard_size or config.samples_per_shard):
            task = flush()
            if task:
                yield task
    if batch:
        task = flush()
        if task:
            yield task


def collect_urls(
    list_path: str, out: str, config: CollectConfig, *, resume: bool = False, overwrite: bool = False
) -> CollectResult:
    """Download every URL of ``list_path`` into a new dataset at ``out``.

    Each input row ends as exactly one sample or one failure row. With ``resume``, finished
    shards are kept and the rest of the list is fetched again.
    """
    config.validate()
    reader = ListReader(
        list_path,
        url_col=config.url_col,
        caption_col=config.caption_col,
        keep_cols=tuple(config.keep_cols),
        consent_col=config.consent_col,
        bbox_col=config.bbox_col,
    )
    reader.validate()
    return download_rows(
        reader, out, config, plan_source=list_path, command="collect urls", resume=resume, overwrite=overwrite
    )


def download_rows(
    reader: Any,
    out: str,
    config: CollectConfig,
    *,
    plan_source: str,
    command: str,
    resume: bool = False,
    overwrite: bool = False,
    output_ready: bool = False,
    lineage_extra: dict[str, Any] | None = None,
    stats_extra: dict[str, Any] | None = None,
    first_shard: int = 0,
    inputs: tuple[str, ...] = (),
) -> CollectResult:
    """The download path shared by `collect urls`, `collect crawl` and `collect retry`.

    ``reader`` is any iterable of InputRow with ``estimate_rows()``; rows carrying a ``failure``
    become failure rows without a request. ``output_ready`` says the caller already ran
    ``prepare_output`` (the crawler checks --out before it crawls; retry copies the kept shards
    first). New shards are numbered from ``first_shard``; ``inputs`` are datasets the lineage names.
    """
    config.executor.check_output(out)
    if not output_ready:
        prepare_output(out, overwrite=overwrite, resume=resume)
    plan = read_plan(out) if resume else None
    if plan is None:
        rows = reader.estimate_rows()
        plan = {
            "list": plan_source,
            "rows": rows,
            "shard_size": shard_size_for(rows, config.samples_per_shard, config.executor.processes),
        }
        if any(shard_id_of(name) >= first_shard for name in completed_shards(out)):
            raise UsageError(
                f"--out {out} has shards but no plan of the run that made them: pass --overwrite to start again"
            )
        write_plan(out, plan)
    elif plan["list"] != plan_source:
        raise UsageError(
            f"--resume: {out} was started from {plan['list']}, not {plan_source}; pass the same list or use --overwrite"
        )
    if resume:
        remove_partial(out)
    done = set(completed_shards(out))
    resumed = sum(shard_id_of(name) >= first_shard for name in done)  # not the shards a retry carried over
    start = time.monotonic()
    totals = {"rows": 0, "samples": 0, "bytes": 0, "retries": 0, "backoffs": 0}
    hosts_down: set[str] = set()
    with track(command) as bar:
        tasks = plan_shards(reader, out, config, done, uuid.uuid4().hex, plan["shard_size"], first_shard)
        for stats in config.executor.run(collect_shard, tasks):
            totals["rows"] += stats.rows
            totals["samples"] += stats.samples
            totals["bytes"] += stats.bytes_downloaded
            totals["retries"] += stats.politeness.get("retries", 0)
            totals["backoffs"] += stats.politeness.get("backoffs", 0)
            hosts_down.update(stats.politeness.get("hosts_down", ()))
            bar.advance(stats.rows)
    seconds = time.monotonic() - start
    lineage_config = config_to_dict(config)
    lineage_config["list"] = plan_source
    lineage_config.update(lineage_extra or {})
    ds = finalize(
        out,
        name=out.rstrip("/").rsplit("/", 1)[-1],
        schema=collect_schema(),
        lineage=Lineage(command=command, config=lineage_config, inputs=list(inputs)),
        stats={
            "seconds": round(seconds, 3),
            "images_per_second": round(totals["samples"] / seconds, 2) if seconds else 0.0,
            "bytes_downloaded": totals["bytes"],
            "rows_this_run": totals["rows"],
            "shards_resumed": resumed,
            "samples_per_shard": plan["shard_size"],
            "opt_outs_honoured": not config.ignore_opt_outs,
            "politeness": {
                "per_host": config.per_host,
                "per_host_rps": config.per_host_rps,
                "retries": totals["retries"],
                "backoffs": totals["backoffs"],
                "hosts_down": sorted(hosts_down),
            },
            **(stats_extra or {}),
        },
    )
    stats = ds.stats()
    n_fail = ds.info["num_failures"]
    return CollectResult(
        out=out,
        input_rows=ds.num_samples + n_fail,
        samples=ds.num_samples,
        failures=n_fail,
        failure_reasons=stats["failure_reasons"],
        seconds=round(seconds, 3),
        images_per_second=stats["images_per_second"],
        bytes_downloaded=totals["bytes"],
        shards_resumed=resumed,
    )
