"""The options of `collect crawl` as one dataclass, checked before any request."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pixelforge.collect.config import CollectConfig
from pixelforge.collect.crawl.urlnorm import SCOPES, canonical_url
from pixelforge.errors import UsageError


@dataclass
class CrawlConfig:
    """Options of `pixelforge collect crawl`; ``download`` holds the options shared with `collect urls`."""

    seeds: tuple[str, ...] = ()
    max_pages: int = 1000
    max_depth: int = 3
    scope: str = "site"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sitemaps: bool = False
    delay: float = 0.5  # seconds between requests to one host (robots.txt crawl-delay wins when larger)
    max_page_bytes: int = 5 * 1024 * 1024
    max_per_pattern: int = 100  # pages per URL pattern (/day/#): bounds calendars and query-string traps
    page_concurrency: int = 8  # pages in flight over all hosts (one at a time per host)
    download: CollectConfig = field(default_factory=CollectConfig)

    def validate(self) -> None:
        self.download.validate()
        for flag, col in (("--consent-col", self.download.consent_col), ("--bbox-col", self.download.bbox_col)):
            if col:
                raise UsageError(f"{flag} {col!r}: a crawl has no list columns; use --consent or --faces instead")
        if not self.seeds:
            raise UsageError("give at least one SEED_URL (an http or https page to start from)")
        for seed in self.seeds:
            if canonical_url(seed) is None:
                raise UsageError(
                    f"SEED_URL {seed!r}: not an http(s) URL with a host; write it like https://example.org/gallery/"
                )
            host = urlsplit(seed.strip()).hostname or ""
            if not self.download.allow_private_networks and _is_private_literal(host):
                raise UsageError(
                    f"SEED_URL {seed!r} is a loopback/private address: pass --allow-private-networks to crawl it"
                )
        if self.scope not in SCOPES:
            raise UsageError(f"--scope {self.scope!r}: choose one of {', '.join(SCOPES)}")
        for flag, value, low in (
            ("--max-pages", self.max_pages, 1),
            ("--max-depth", self.max_depth, 0),
            ("--max-page-bytes", self.max_page_bytes, 1024),
            ("--max-per-pattern", self.max_per_pattern, 1),
            ("--page-concurrency", self.page_concurrency, 1),
        ):
            if value < low:
                raise UsageError(f"{flag} {value}: must be at least {low}")
        if self.delay < 0:
            raise UsageError(f"--delay {self.delay}: must be 0 or more seconds")
        for flag, patterns in (("--include", self.include), ("--exclude", self.exclude)):
            for p in patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    raise UsageError(
                        f"{flag} {p!r} is not a valid regular expression ({exc}); "
                        "escape special characters such as ? and ( with a backslash"
                    ) from None

    def canonical_seeds(self) -> list[str]:
        out: list[str] = []
        for s in self.seeds:
            c = canonical_url(s)
            if c and c not in out:
                out.append(c)
        return out


def _is_private_literal(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local
