"""`collect crawl`: crawl web pages for captioned images and download them through `collect urls`' path."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from pixelforge.collect.crawl.config import CrawlConfig
from pixelforge.collect.crawl.crawler import PAGE_ERRORS, CandidateRows, Crawler, CrawlOutcome  # noqa: F401

__all__ = ["CrawlConfig", "CrawlResult", "PAGE_ERRORS", "PAGES_FILE", "crawl", "pages_schema"]

PAGES_FILE = "pages.parquet"
OUTCOME_FILE = "crawl_outcome.json"  # under .work/: the crawl's result, saved before any download starts


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

    return pa.schema(
        [
            pa.field("url", pa.string(), nullable=False),
            pa.field("final_url", pa.string()),
            pa.field("parent", pa.string()),
            pa.field("depth", pa.int32()),
            pa.field("status", pa.int16()),
            pa.field("content_type", pa.string()),
            pa.field("charset", pa.string()),
            pa.field("bytes", pa.int64()),
            pa.field("images_found", pa.int32()),
            pa.field("links_found", pa.int32()),
            pa.field("opt_out", pa.string()),
            pa.field("license", pa.string()),
            pa.field("canonical", pa.string()),
            pa.field("error", pa.string()),
            pa.field("detail", pa.string()),
            pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _write_pages(out: str, outcome: CrawlOutcome) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pixelforge.store import fs as fsutil

    fs, root = fsutil.resolve(out)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(outcome.pages, schema=pages_schema()), sink)
    fsutil.atomic_write_bytes(fs, fsutil.join(root, PAGES_FILE), sink.getvalue())


class _SavedRows:
    """The image rows of a finished crawl, read back for a resumed download."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def estimate_rows(self) -> int:
        return len(self.rows)

    def __iter__(self):
        from pixelforge.collect.lists import InputRow

        for r in self.rows:
            yield InputRow(**{**r, "failure": tuple(r["failure"]) if r["failure"] else None})


def _save_outcome(out: str, doc: dict) -> None:
    import json

    from pixelforge.store import fs as fsutil
    from pixelforge.store import work_path

    fs, root = fsutil.resolve(out)
    fsutil.atomic_write_bytes(fs, work_path(root, OUTCOME_FILE, fs), json.dumps(doc).encode())


def _load_outcome(out: str) -> dict | None:
    import json

    from pixelforge.store import fs as fsutil
    from pixelforge.store import work_path

    fs, root = fsutil.resolve(out)
    path = work_path(root, OUTCOME_FILE, fs)  # resumed: prepare_output kept the work folder
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def crawl(out: str, config: CrawlConfig, *, overwrite: bool = False, resume: bool = False) -> CrawlResult:
    """Crawl from ``config.seeds`` and download the images found into a new dataset at ``out``.

    Pages go to ``out/pages.parquet``; each image found ends as one sample (source_kind
    ``crawl``, page_url and caption_source filled) or one failure row, opted-out images
    included (never downloaded unless ``download.ignore_opt_outs``). The crawl's outcome is
    saved before the first download, so ``resume`` after a kill continues the downloads
    without crawling again (a run killed during the crawl crawls again: nothing was written).
    """
    import dataclasses
    import json

    from pixelforge.collect.urls import download_rows
    from pixelforge.errors import UsageError
    from pixelforge.store import config_to_dict
    from pixelforge.store.dataset import prepare_output

    config.validate()
    prepare_output(out, overwrite=overwrite, resume=resume)
    lineage = json.loads(json.dumps({k: v for k, v in config_to_dict(config).items() if k != "download"}))
    saved = _load_outcome(out) if resume else None
    if saved is not None and saved["config"] != lineage:
        raise UsageError(
            f"--resume: {out} was crawled with other options ({saved['config']}); pass the same "
            "seeds and crawl options or use --overwrite"
        )
    if saved is None:
        outcome = asyncio.run(Crawler(config).run())
        _write_pages(out, outcome)
        errors: dict[str, int] = {}
        for p in outcome.pages:
            if p["error"]:
                errors[p["error"]] = errors.get(p["error"], 0) + 1
        fetched = sum(1 for p in outcome.pages if p["status"] is not None)
        parsed_ok = sum(1 for p in outcome.pages if p["error"] is None)
        opted = sum(1 for p in outcome.pages if p["opt_out"])
        crawl_stats = {
            "crawl": {
                "seconds": round(outcome.seconds, 3),
                "politeness_floor_seconds": round(outcome.politeness_floor_seconds, 3),
                "parse_seconds": round(outcome.parse_seconds, 3),
                "pages": len(outcome.pages),
                "pages_fetched": fetched,
                "pages_parsed": parsed_ok,
                "pages_opted_out": opted,
                "page_errors": dict(sorted(errors.items())),
                "skipped_urls": dict(sorted(outcome.skipped.items())),
                "decorative_images": dict(sorted(outcome.decorative.items())),
                "duplicate_images": outcome.duplicate_images,
                "images_found": len(outcome.images),
            }
        }
        rows = [dataclasses.asdict(r) for r in CandidateRows(outcome.images, not config.download.ignore_opt_outs)]
        saved = {
            "config": lineage,
            "stats": crawl_stats,
            "rows": rows,
            "summary": {
                "pages_fetched": fetched,
                "pages_failed": len(outcome.pages) - parsed_ok,
                "pages_opted_out": opted,
                "images_decorative": sum(outcome.decorative.values()),
            },
        }
        _save_outcome(out, saved)
    stats, summary = saved["stats"], saved["summary"]
    result = download_rows(
        _SavedRows(saved["rows"]),
        out,
        config.download,
        plan_source="crawl:" + " ".join(config.seeds),
        command="collect crawl",
        resume=resume,
        output_ready=True,
        lineage_extra={"crawl": lineage},
        stats_extra=stats,
    )
    c = stats["crawl"]
    return CrawlResult(
        out=out,
        pages_fetched=summary["pages_fetched"],
        pages_failed=summary["pages_failed"],
        pages_opted_out=summary["pages_opted_out"],
        page_errors=c["page_errors"],
        images_found=c["images_found"],
        images_decorative=summary["images_decorative"],
        samples=result.samples,
        failures=result.failures,
        failure_reasons=result.failure_reasons,
        crawl_seconds=c["seconds"],
        politeness_floor_seconds=c["politeness_floor_seconds"],
        parse_seconds=c["parse_seconds"],
        download_seconds=result.seconds,
    )
