"""`collect crawl`: walk pages politely, find captioned images, hand them to the `collect urls` download path."""

from __future__ import annotations

import asyncio
import codecs
import gzip
import hashlib
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pixelforge.collect.crawl.config import CrawlConfig
from pixelforge.collect.crawl.extract import ImageCandidate, PageInfo, extract_page
from pixelforge.collect.crawl.politeness import HostRules, Politeness
from pixelforge.collect.crawl.urlnorm import Scope, canonical_url, origin_of, url_pattern
from pixelforge.collect.fetch import FetchConfig, Fetcher, FetchError, make_session
from pixelforge.collect.lists import InputRow
from pixelforge.collect.optout import header_opt_out
from pixelforge.collect.throttle import HostLimits
from pixelforge.progress import track

HTML_TYPES = ("text/html", "application/xhtml+xml")
# links whose path ends like this are files, not pages: never fetched as pages
NOT_PAGE_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".webp",
    ".avif",
    ".svg",
    ".bmp",
    ".tif",
    ".tiff",
    ".ico",
    ".pdf",
    ".zip",
    ".gz",
    ".tar",
    ".mp4",
    ".webm",
    ".mp3",
    ".css",
    ".js",
    ".json",
    ".xml",
)
MAX_SITEMAPS = 50  # sitemap files read per crawl (an index may point at more)
MAX_SITEMAP_BYTES = 10 * 1024 * 1024
_LOC = re.compile(rb"<loc>\s*(.*?)\s*</loc>", re.S | re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
# what pages.parquet's `error` column may hold (null for a page that was read and parsed)
PAGE_ERRORS = (
    "http_4xx",
    "http_5xx",
    "timeout",
    "connection_error",
    "too_large",
    "redirect_limit",
    "invalid_url",
    "private_network_blocked",
    "opt_out_robots",
    "not_html",
    "duplicate",
    "out_of_scope_redirect",
)
# why a discovered URL was not fetched: counted in stats.json under crawl.skipped
SKIP_KINDS = ("max_pages", "max_depth", "out_of_scope", "excluded", "not_a_page", "pattern_cap", "nofollow")


@dataclass
class CrawlOutcome:
    """What the walk found: one row per page, the images to download (or refuse), counts."""

    pages: list[dict[str, Any]] = field(default_factory=list)
    images: list[tuple[ImageCandidate, str, str | None, str | None]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    decorative: dict[str, int] = field(default_factory=dict)
    duplicate_images: int = 0
    seconds: float = 0.0
    parse_seconds: float = 0.0
    politeness_floor_seconds: float = 0.0


def decode_html(data: bytes, content_type: str | None) -> tuple[str, str]:
    """Decode a page: BOM, then the header charset, then <meta charset>, then UTF-8, else windows-1252.

    A declared charset that is unknown or does not decode the bytes is passed over, so a page
    with a wrong or missing charset still parses (undecodable bytes become U+FFFD at worst).
    """
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(name, errors="replace"), name
    candidates = []
    m = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type or "", re.I)
    if m:
        candidates.append(m.group(1))
    m2 = _META_CHARSET.search(data[:4096])
    if m2:
        candidates.append(m2.group(1).decode("ascii", "replace"))
    candidates.append("utf-8")
    for name in candidates:
        try:
            codec = codecs.lookup(name).name
        except LookupError:
            continue
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, ValueError):
            continue
    return data.decode("cp1252", errors="replace"), "cp1252"


def sitemap_urls(data: bytes) -> tuple[list[str], bool]:
    """The <loc> URLs of a sitemap (gzipped or not) and whether it is a sitemap index."""
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                data = f.read(MAX_SITEMAP_BYTES + 1)[:MAX_SITEMAP_BYTES]
        except (OSError, EOFError):
            return [], False
    is_index = b"<sitemapindex" in data[:2048].lower()
    locs = [m.group(1).decode("utf-8", "replace").replace("&amp;", "&") for m in _LOC.finditer(data)]
    return locs, is_index


class Crawler:
    """One crawl: a breadth-first frontier, per-host politeness, one row per page."""

    def __init__(self, config: CrawlConfig):
        self.cfg = config
        dl = config.download
        self.honour = not dl.ignore_opt_outs
        self.fetch_cfg = FetchConfig(
            timeout=dl.timeout,
            retries=dl.retries,
            max_bytes=config.max_page_bytes,
            user_agent=dl.user_agent,
            honour_opt_outs=False,
            allow_private_networks=dl.allow_private_networks,
            concurrency=config.page_concurrency,
            host_limits=HostLimits(per_host=0),  # the crawler paces pages itself (politeness.py)
        )
        self.seeds = config.canonical_seeds()
        self.scope = Scope(config.scope, self.seeds)
        self.include = [re.compile(p) for p in config.include]
        self.exclude = [re.compile(p) for p in config.exclude]
        self.out = CrawlOutcome()
        self.seen: set[str] = set()  # every URL queued or fetched, canonical
        self.image_seen: set[str] = set()
        self.bodies: set[bytes] = set()  # digests of parsed pages: the same page under another URL
        self.patterns: dict[str, int] = {}
        self.requests: dict[str, int] = {}  # page requests per origin, for the politeness floor
        self.started = 0  # pages whose fetch began (the --max-pages budget)

    # ---- frontier -------------------------------------------------------------------------------

    def _skip(self, kind: str) -> None:
        self.out.skipped[kind] = self.out.skipped.get(kind, 0) + 1

    def _admit(self, url: str, depth: int) -> bool:
        """Whether a newly found URL joins the frontier (each canonical URL at most once)."""
        if url in self.seen:
            return False
        self.seen.add(url)
        if depth > self.cfg.max_depth:
            self._skip("max_depth")
            return False
        if not self.scope.allows(url):
            self._skip("out_of_scope")
            return False
        if (self.include and not any(p.search(url) for p in self.include)) or any(p.search(url) for p in self.exclude):
            self._skip("excluded")
            return False
        if urlsplit(url).path.lower().endswith(NOT_PAGE_SUFFIXES):
            self._skip("not_a_page")
            return False
        pattern = url_pattern(url)
        n = self.patterns.get(pattern, 0)
        if n >= self.cfg.max_per_pattern:
            self._skip("pattern_cap")
            return False
        self.patterns[pattern] = n + 1
        return True

    async def run(self) -> CrawlOutcome:
        start = time.monotonic()
        queue: asyncio.Queue[tuple[str, int, str | None] | None] = asyncio.Queue()
        for seed in self.seeds:
            self.seen.add(seed)
            self.patterns[url_pattern(seed)] = self.patterns.get(url_pattern(seed), 0) + 1
            queue.put_nowait((seed, 0, None))
        async with make_session(self.fetch_cfg) as session:
            self.fetcher = Fetcher(session, self.fetch_cfg)
            self.fetcher.redirect_filter = self._refuse_redirect
            self.polite = Politeness(self.fetcher, self.fetch_cfg.user_agent, self.cfg.delay, self.honour)
            if self.cfg.sitemaps:
                for url in await self._sitemap_pages():
                    if self._admit(url, 0):
                        queue.put_nowait((url, 0, None))
            with track("crawl pages", total=None) as bar:

                async def worker() -> None:
                    while True:
                        item = await queue.get()
                        if item is None:
                            return
                        try:
                            await self._page(*item, queue)
                        finally:
                            bar.advance(1)
                            queue.task_done()

                workers = [asyncio.ensure_future(worker()) for _ in range(self.cfg.page_concurrency)]
                await queue.join()
                for _ in workers:
                    queue.put_nowait(None)
                await asyncio.gather(*workers)
        self.out.seconds = time.monotonic() - start
        delays = {o: max(self.cfg.delay, (r.crawl_delay or 0.0)) for o, r in self._loaded_rules().items()}
        self.out.politeness_floor_seconds = max(
            [(n - 1) * delays.get(o, self.cfg.delay) for o, n in self.requests.items() if n > 0] or [0.0]
        )
        return self.out

    def _refuse_redirect(self, url: str) -> str | None:
        target = canonical_url(url)
        if target is None or not self.scope.allows(target):
            return f"redirect to {url[:200]} leaves the --scope {self.cfg.scope}"
        return None

    def _loaded_rules(self) -> dict[str, HostRules]:
        return {o: f.result() for o, f in self.polite._rules.items() if f.done() and not f.exception()}

    async def _sitemap_pages(self) -> list[str]:
        todo: list[str] = []
        for origin in dict.fromkeys(origin_of(s) for s in self.seeds):
            rules = await self.polite.rules(origin)
            todo += rules.sitemaps or [f"{origin}/sitemap.xml"]
        pages: list[str] = []
        done: set[str] = set()
        while todo and len(done) < MAX_SITEMAPS:
            url = todo.pop(0)
            if url in done:
                continue
            done.add(url)
            origin = origin_of(canonical_url(url) or url)
            rules = await self.polite.rules(origin)
            if self.honour and not rules.robots.allows(url, self.fetch_cfg.user_agent):
                continue
            try:
                async with self.polite.slot(origin, rules):
                    got = await self.fetcher.fetch(url)
            except FetchError:
                continue
            locs, is_index = sitemap_urls(got.data)
            if is_index:
                todo += locs
            else:
                pages += [c for c in (canonical_url(u) for u in locs) if c]
        return pages

    # ---- one page -------------------------------------------------------------------------------

    def _row(self, url: str, depth: int, parent: str | None, **kw: Any) -> dict[str, Any]:
        row = {
            "url": url,
            "final_url": None,
            "parent": parent,
            "depth": depth,
            "status": None,
            "content_type": None,
            "charset": None,
            "bytes": None,
            "images_found": 0,
            "links_found": 0,
            "opt_out": None,
            "license": None,
            "canonical": None,
            "error": None,
            "detail": None,
            "fetched_at": None,
        }
        row.update(kw)
        self.out.pages.append(row)
        return row

    async def _page(self, url: str, depth: int, parent: str | None, queue: asyncio.Queue) -> None:
        origin = origin_of(url)
        rules = await self.polite.rules(origin)
        if rules.blocked:
            self._row(url, depth, parent, error="private_network_blocked", detail=rules.blocked)
            return
        if self.honour and not rules.robots.allows(url, self.fetch_cfg.user_agent):
            self._row(url, depth, parent, error="opt_out_robots", detail=rules.robots.why_not(url))
            return
        if self.started >= self.cfg.max_pages:
            self._skip("max_pages")
            return
        self.started += 1
        self.requests[origin] = self.requests.get(origin, 0) + 1
        try:
            async with self.polite.slot(origin, rules):
                got = await self.fetcher.fetch(url)
        except FetchError as exc:
            self._row(
                url, depth, parent, status=exc.status, error=exc.reason, detail=exc.detail, fetched_at=datetime.now(UTC)
            )
            return
        fetched_at = datetime.now(UTC)
        ctype = (got.headers or {}).get("Content-Type", "") if got.headers is not None else ""
        final = canonical_url(got.url) or url
        row = self._row(
            url,
            depth,
            parent,
            final_url=final if final != url else None,
            status=got.status,
            content_type=ctype or None,
            bytes=len(got.data),
            fetched_at=fetched_at,
        )
        if final != url:
            if not self.scope.allows(final):
                row.update(error="out_of_scope_redirect", detail=f"redirected to {final[:200]}")
                return
            if final in self.seen and final != url:
                # another queued or fetched URL already stands for this page
                row.update(error="duplicate", detail=f"redirected to {final[:200]}, already queued or crawled")
                return
            self.seen.add(final)
            if self.honour and not (await self.polite.rules(origin_of(final))).robots.allows(
                final, self.fetch_cfg.user_agent
            ):
                row.update(error="opt_out_robots", detail=f"redirected to {final[:200]}, which robots.txt disallows")
                return
        if ctype.split(";")[0].strip().lower() not in HTML_TYPES:
            row.update(error="not_html", detail=f"Content-Type {ctype or '(none)'} is not HTML")
            return
        digest = hashlib.blake2b(got.data, digest_size=16).digest()
        if digest in self.bodies:
            row.update(error="duplicate", detail="the same bytes as a page already crawled")
            return
        self.bodies.add(digest)
        text, charset = decode_html(got.data, ctype)
        t0 = time.perf_counter()
        info = extract_page(text, final)
        self.out.parse_seconds += time.perf_counter() - t0
        row.update(
            charset=charset,
            links_found=len(info.links),
            canonical=info.canonical,
            license=info.licence.id if info.licence else None,
        )
        if info.canonical and info.canonical != final:
            if info.canonical in self.seen and info.canonical != url:
                row.update(error="duplicate", detail=f"rel=canonical names {info.canonical[:200]}, already crawled")
                return
            self.seen.add(info.canonical)
        for kind, n in info.skipped.items():
            self.out.decorative[kind] = self.out.decorative.get(kind, 0) + n
        page_opt_out, page_reason = self._page_opt_out(got.headers, info, rules, final)
        row["opt_out"] = page_opt_out
        row["images_found"] = len(info.images)
        for image in info.images:
            if image.url in self.image_seen:
                self.out.duplicate_images += 1
                continue
            self.image_seen.add(image.url)
            reason, why = (page_reason, page_opt_out) if page_opt_out else (None, None)
            if why is None and image.opt_out:
                reason, why = "opt_out_image", image.opt_out
            if why is None and self.honour:
                img_rules = await self.polite.rules(origin_of(image.url))
                if img_rules.tdm_reserved(urlsplit(image.url).path):
                    reason, why = "opt_out_page", "tdmrep.json reserves TDM rights for this image"
            self.out.images.append((image, final, reason, why))
        if info.nofollow:
            self._skip("nofollow")
            return
        for link in info.links:
            if self._admit(link, depth + 1):
                queue.put_nowait((link, depth + 1, final))

    def _page_opt_out(self, headers: Any, info: PageInfo, rules: HostRules, url: str) -> tuple[str | None, str | None]:
        """(why, failure reason) when the page withdraws its images; (None, None) otherwise."""
        if headers is not None:
            why = header_opt_out(headers)
            if why:
                return why, "opt_out_header"
        if info.opt_out:
            return info.opt_out, "opt_out_page"
        if rules.tdm_reserved(urlsplit(url).path):
            return "tdmrep.json: tdm-reservation 1", "opt_out_page"
        return None, None


class CandidateRows:
    """The images found, as the InputRows the `collect urls` download path takes."""

    def __init__(self, images: list[tuple[ImageCandidate, str, str | None, str | None]], honour: bool):
        self.images, self.honour = images, honour

    def estimate_rows(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[InputRow]:
        for n, (image, page, reason, why) in enumerate(self.images):
            lic = image.licence
            meta = {"element": image.element}
            if lic is not None:
                meta["license_source"] = lic.source
            failure = None
            if why and self.honour:
                failure = (reason or "opt_out_page", f"{why} (page {page})")
            yield InputRow(
                n,
                image.url,
                caption=image.caption,
                license=lic.id if lic is not None else None,
                license_url=lic.url if lic is not None else None,
                attribution=image.attribution,
                meta=meta,
                source_kind="crawl",
                page_url=page,
                caption_source=image.caption_source,
                opt_out=why,
                failure=failure,
            )
