"""`collect retry`: a new dataset with an earlier collection's samples plus what now downloads of its failures.

The earlier dataset is never modified. Its shards are carried over unchanged (hard-linked when
local), the failure rows whose reason is asked for are fetched again from the same list with the
same image options, and every other failure row is kept as it was. The new dataset's lineage
names the earlier one; its stats say how many rows were tried again and how many came back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pixelforge.collect.config import CollectConfig
from pixelforge.collect.lists import InputRow, ListReader
from pixelforge.collect.urls import download_rows
from pixelforge.configfile import merge
from pixelforge.errors import UsageError
from pixelforge.store import FAILURE_REASONS, Dataset, completed_shards, open_input, shard_id_of, shard_name
from pixelforge.store.derive import carry_shards
from pixelforge.store.shards import ShardWriter

# what is worth asking again by default: failures that say nothing against the image itself
TRANSIENT_REASONS = ("timeout", "connection_error", "http_5xx", "dns_error")
RETRYABLE_COMMANDS = ("collect urls", "collect retry")
# options that say how the download runs, not what it makes: a retry may change them
RUN_OPTIONS = (
    "timeout",
    "retries",
    "concurrency",
    "per_host",
    "per_host_rps",
    "processes",
    "backend",
    "ray_address",
    "ray_task_cpus",
)


@dataclass
class RetryResult:
    out: str
    retried: int  # failure rows fetched again
    recovered: int  # of them, now samples
    samples: int
    failures: int
    failure_reasons: dict[str, int]
    seconds: float


def check_reasons(reasons: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [r for r in reasons if r not in FAILURE_REASONS]
    if unknown or not reasons:
        raise UsageError(
            f"--reasons {','.join(reasons) or '(none)'}: choose failure reasons such as {','.join(TRANSIENT_REASONS)} "
            "(`pixelforge info DIR` lists a dataset's)"
        )
    return reasons


def retry_config(lineage: dict[str, Any], overrides: dict[str, Any]) -> tuple[CollectConfig, str]:
    """The CollectConfig and list of the run that made a dataset, with ``overrides`` (RUN_OPTIONS) applied."""
    saved = dict(lineage["config"])
    list_path = saved.pop("list")
    fields = {f.name for f in dataclasses.fields(CollectConfig)} - {"executor"}
    values = {k: v for k, v in saved.items() if k in fields}  # not retry_of, reasons (a retry's lineage)
    values["keep_cols"] = tuple(values.get("keep_cols", ()))
    values.update(saved.get("executor", {}))  # merge routes the executor's keys into config.executor
    values.update({k: v for k, v in overrides.items() if v is not None})
    return merge(CollectConfig, CollectConfig(), values, "collect retry"), list_path


class _RetryRows:
    """The list's rows whose failure is retried (the list read again, in order), checked against the failures."""

    def __init__(self, reader: ListReader, wanted: dict[int, str]):
        self.reader, self.wanted = reader, wanted

    def estimate_rows(self) -> int:
        return len(self.wanted)

    def __iter__(self) -> Iterator[InputRow]:
        found = 0
        for row in self.reader:
            url = self.wanted.get(row.row)
            if url is None:
                continue
            if row.url != url:
                raise UsageError(
                    f"row {row.row} of {self.reader.path} is now {row.url!r}, not the {url!r} that failed: "
                    "the list changed since the collection; pass the list it was made from with --list"
                )
            found += 1
            row.meta.pop("error", None)
            yield row
        if found < len(self.wanted):
            raise UsageError(
                f"{self.reader.path} has fewer rows than the collection had; pass the list it was made from with --list"
            )


def collect_retry(
    inp: str,
    out: str,
    *,
    reasons: tuple[str, ...] = TRANSIENT_REASONS,
    list_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> RetryResult:
    """Write ``out``: ``inp``'s samples, its failures of ``reasons`` fetched again, its other failures kept."""
    reasons = check_reasons(tuple(reasons))
    unknown = sorted(set(overrides or {}) - set(RUN_OPTIONS))
    if unknown:
        raise UsageError(
            f"collect retry: {', '.join(unknown)} cannot change (the image options stay the earlier run's)"
        )
    earlier = Dataset.open(inp)
    lineage = earlier.info.get("lineage") or {}
    if lineage.get("command") not in RETRYABLE_COMMANDS:
        raise UsageError(
            f"collect retry: {inp} was made by `{lineage.get('command')}`, not `collect urls`; "
            "retry works on datasets collected from a URL list (a crawl: run it again with --resume)"
        )
    config, saved_list = retry_config(lineage, overrides or {})
    config.validate()
    reader = ListReader(
        list_path or saved_list,
        url_col=config.url_col,
        caption_col=config.caption_col,
        keep_cols=tuple(config.keep_cols),
        consent_col=config.consent_col,
        bbox_col=config.bbox_col,
    )
    ds, _, _ = open_input(inp, out, overwrite=overwrite, resume=resume)  # the list is there: now make --out
    failures = ds.failures().to_pylist()
    wanted = {f["row"]: f["url"] for f in failures if f["reason"] in reasons and f["row"] is not None}
    kept_failures = [f for f in failures if not (f["reason"] in reasons and f["row"] is not None)]

    # the earlier shards under their own names, then one empty shard holding the kept failure rows
    shards = ds.shards()
    carry_id = max((shard_id_of(s) for s in shards), default=-1) + 1
    done = set(completed_shards(out)) if resume else set()
    carry_shards(ds, out, done)
    if shard_name(carry_id) not in done:
        writer = ShardWriter(out, carry_id, ds.schema)
        for f in kept_failures:
            writer.fail(**f)
        writer.commit()

    result = download_rows(
        _RetryRows(reader, wanted),
        out,
        config,
        plan_source=reader.path,
        command="collect retry",
        resume=resume,
        output_ready=True,
        lineage_extra={"retry_of": inp, "reasons": list(reasons)},
        stats_extra={"retry": {"of": inp, "reasons": list(reasons), "rows": len(wanted)}},
        first_shard=carry_id + 1,
        inputs=(inp,),
    )
    return RetryResult(
        out=out,
        retried=len(wanted),
        recovered=result.samples - ds.num_samples,
        samples=result.samples,
        failures=result.failures,
        failure_reasons=result.failure_reasons,
        seconds=result.seconds,
    )
