"""Per-host politeness for the crawler: robots.txt with crawl-delay, a paced request clock, TDMRep."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass

from pixelforge.collect.fetch import Fetcher, FetchError
from pixelforge.collect.optout import RobotsPolicy
from pixelforge.collect.throttle import MAX_CRAWL_DELAY


@dataclass
class HostRules:
    """What one origin's robots.txt and tdmrep.json say, loaded once per crawl."""

    robots: RobotsPolicy
    crawl_delay: float | None
    sitemaps: list[str]
    tdm_rules: list[tuple[re.Pattern[str], bool]]  # (location pattern, reserved), most specific first
    blocked: str | None = None  # the host resolves to a private address (and they are not allowed)

    def tdm_reserved(self, path: str) -> bool:
        for pattern, reserved in self.tdm_rules:
            if pattern.match(path):
                return reserved
        return False


def tdmrep_rules(body: bytes | None) -> list[tuple[re.Pattern[str], bool]]:
    """Parse /.well-known/tdmrep.json (W3C TDMRep): ``[{"location": "/gallery/*", "tdm-reservation": 1}]``.

    A location is matched like a robots.txt path: a prefix, ``*`` any characters, a final ``$``
    the end; the longest matching location decides.
    Malformed files or entries are ignored (no reservation).
    """
    try:
        doc = json.loads(body or b"")
    except ValueError:
        return []
    if not isinstance(doc, list):
        return []
    rules = []
    for entry in doc:
        if not isinstance(entry, dict) or not isinstance(entry.get("location"), str):
            continue
        loc = entry["location"].strip()
        if not loc.startswith("/"):
            loc = "/" + loc
        reserved = str(entry.get("tdm-reservation", "0")).strip() == "1"
        anchored = loc.endswith("$")
        regex = "".join(".*" if ch == "*" else re.escape(ch) for ch in loc.rstrip("$"))
        rules.append((len(loc), re.compile(regex + ("$" if anchored else "")), reserved))
    rules.sort(key=lambda r: -r[0])
    return [(p, r) for _, p, r in rules]


class Politeness:
    """Loads each origin's rules once and spaces requests to one host by max(--delay, crawl-delay)."""

    def __init__(
        self,
        fetcher: Fetcher,
        user_agent: str,
        delay: float,
        honour_opt_outs: bool,
        max_crawl_delay: float = MAX_CRAWL_DELAY,
    ):
        self.fetcher, self.user_agent, self.delay = fetcher, user_agent, delay
        self.honour = honour_opt_outs
        self.max_crawl_delay = max_crawl_delay
        self._rules: dict[str, asyncio.Future[HostRules]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._next: dict[str, float] = {}
        self.waited = 0.0  # seconds spent waiting on the pace (the politeness share of wall time)

    async def rules(self, origin: str) -> HostRules:
        fut = self._rules.get(origin)
        if fut is None:
            fut = self._rules[origin] = asyncio.ensure_future(self._load(origin))
        return await fut

    async def _get(self, url: str) -> tuple[int | None, bytes | None, str | None]:
        try:
            got = await self.fetcher.fetch(url)
            return got.status, got.data, None
        except FetchError as exc:
            return exc.status, None, exc.detail if exc.reason == "private_network_blocked" else None

    async def _load(self, origin: str) -> HostRules:
        async with self._host_lock(origin):
            await self._pace(origin, 0.0)
            status, body, blocked = await self._get(f"{origin}/robots.txt")
        if blocked:
            return HostRules(RobotsPolicy(None, allow_all=False, reason=blocked), None, [], [], blocked)
        policy = RobotsPolicy.from_response(status, body)
        delay = policy.crawl_delay(self.user_agent)
        sitemaps = list(policy.parser.sitemaps) if policy.parser is not None else None
        tdm: list[tuple[re.Pattern[str], bool]] = []
        if self.honour:
            async with self._host_lock(origin):
                await self._pace(origin, 0.0)
                t_status, t_body, _ = await self._get(f"{origin}/.well-known/tdmrep.json")
            if t_status is not None and 200 <= t_status < 300:
                tdm = tdmrep_rules(t_body)
        crawl_delay = None if delay is None else min(float(delay), self.max_crawl_delay)
        return HostRules(policy, crawl_delay, sitemaps or [], tdm)

    def _host_lock(self, origin: str) -> asyncio.Lock:
        lock = self._locks.get(origin)
        if lock is None:
            lock = self._locks[origin] = asyncio.Lock()
        return lock

    async def _pace(self, origin: str, crawl_delay: float) -> None:
        # called holding the host lock: requests to one host go one at a time, spaced by the delay
        now = time.monotonic()
        wait = self._next.get(origin, now) - now
        if wait > 0:
            self.waited += wait
            await asyncio.sleep(wait)
        self._next[origin] = time.monotonic() + max(self.delay, crawl_delay)

    def slot(self, origin: str, rules: HostRules) -> _Slot:
        """``async with politeness.slot(origin, rules):`` around one page request to ``origin``."""
        return _Slot(self, origin, rules.crawl_delay or 0.0)


class _Slot:
    def __init__(self, owner: Politeness, origin: str, crawl_delay: float):
        self.owner, self.origin, self.crawl_delay = owner, origin, crawl_delay

    async def __aenter__(self) -> None:
        self.lock = self.owner._host_lock(self.origin)
        await self.lock.acquire()
        await self.owner._pace(self.origin, self.crawl_delay)

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()
