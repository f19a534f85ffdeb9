"""`collect crawl`: crawl web pages for captioned images and download them through `collect urls`' path."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from pixelforge.collect.crawl.config import CrawlConfig
from pixelforge.collect.crawl.crawler import PAGE_ERRORS, CandidateRows, Crawler, CrawlOutcome

__all__ = ["CrawlConfig", "CrawlResult", "PAGE_ERRORS", "PAGES_FILE", "crawl", "pages_schema"]

PAGES_FILE = "pages.parquet"


@dataclass
class CrawlResult:
    out: str
    pages_fetched: int
    pages_failed: int
    pages_opted_out: int
    page_errors: dict[str, int]
    images_found: int
    images_decorative: int
    samples: int
    failures: int
    failure_reasons: dict[str, int]
    crawl_seconds: float
    politeness_floor_seconds: float
    parse_seconds: float
    download_seconds: float


def pages_schema():
    """The columns of pages.parquet: one row per page the crawl fetched or refused."""
    import pyarrow as pa

    return pa.schema([
        pa.field("url", pa.string(), nullable=False), pa.field("final_url", pa.string()),
        pa.field("parent", pa.string()), pa.field("depth", pa.int32()), pa.field("status", pa.int16()),
        pa.field("content_type", pa.string()), pa.field("charset", pa.string()), pa.field("bytes", pa.int64()),
        pa.field("images_found", pa.int32()), pa.field("links_found", pa.int32()),
        pa.field("opt_out", pa.string()), pa.field("license", pa.string()), pa.field("canonical", pa.string()),
        pa.field("error", pa.string()), pa.field("detail", pa.string()),
        pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
    ])


def _write_pages(out: str, outcome: CrawlOutcome) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pixelforge.store import fs as fsutil

    fs, root = fsutil.resolve(out)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(outcome.pages, schema=pages_schema()), sink)
    fsutil.atomic_write_bytes(fs, fsutil.join(root, PAGES_FILE), sink.getvalue())


def crawl(out: str, config: CrawlConfig, *, overwrite: bool = False) -> CrawlResult:
    """Crawl from ``config.seeds`` and download the images found into a new dataset at ``out``.

    Pages go to ``out/pages.parquet``; each image found ends as one sample (source_kind
    ``crawl``, page_url and caption_source filled) or one failure row, opted-out images
    included (never downloaded unless ``download.ignore_opt_outs``).
    """
    from pixelforge.collect.urls import download_rows
    from pixelforge.store import config_to_dict
    from pixelforge.store.dataset import prepare_output

    config.validate()
    prepare_output(out, overwrite=overwrite)
    outcome = asyncio.run(Crawler(config).run())
    _write_pages(out, outcome)
    errors: dict[str, int] = {}
    for p in outcome.pages:
        if p["error"]:
            errors[p["error"]] = errors.get(p["error"], 0) + 1
    fetched = sum(1 for p in outcome.pages if p["status"] is not None)
    parsed_ok = sum(1 for p in outcome.pages if p["error"] is None)
    opted = sum(1 for p in outcome.pages if p["opt_out"])
    crawl_stats = {"crawl": {
        "seconds": round(outcome.seconds, 3), "politeness_floor_seconds": round(outcome.politeness_floor_seconds, 3),
        "parse_seconds": round(outcome.parse_seconds, 3), "pages": len(outcome.pages), "pages_fetched": fetched,
        "pages_parsed": parsed_ok, "pages_opted_out": opted, "page_errors": dict(sorted(errors.items())),
        "skipped_urls": dict(sorted(outcome.skipped.items())),
        "decorative_images": dict(sorted(outcome.decorative.items())),
        "duplicate_images": outcome.duplicate_images, "images_found": len(outcome.images)}}
    lineage = {k: v for k, v in config_to_dict(config).items() if k != "download"}
    result = download_rows(CandidateRows(outcome.images, not config.download.ignore_opt_outs), out,
                           config.download, plan_source="crawl:" + " ".join(config.seeds), command="collect crawl",
                           output_ready=True, lineage_extra={"crawl": lineage}, stats_extra=crawl_stats)
    return CrawlResult(out=out, pages_fetched=fetched, pages_failed=len(outcome.pages) - parsed_ok,
                       pages_opted_out=opted, page_errors=dict(sorted(errors.items())),
                       images_found=len(outcome.images), images_decorative=sum(outcome.decorative.values()),
                       samples=result.samples, failures=result.failures, failure_reasons=result.failure_reasons,
                       crawl_seconds=round(outcome.seconds, 3),
                       politeness_floor_seconds=round(outcome.politeness_floor_seconds, 3),
                       parse_seconds=round(outcome.parse_seconds, 3), download_seconds=result.seconds)
