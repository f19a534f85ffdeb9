"""HTTP fetching for collection: limits, manual redirects, retries with backoff, opt-out checks."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from pixelforge import __version__
from pixelforge.collect.netguard import GuardedConnector, PrivateNetworkBlocked
from pixelforge.collect.optout import AI_TXT_MAX_BYTES, AiTxtPolicy, RobotsPolicy, header_opt_out, load_opt_out_list
from pixelforge.collect.throttle import HostLimits, HostThrottle
from pixelforge.errors import ItemError

DEFAULT_USER_AGENT = (
    f"pixelforge/{__version__} (image dataset collector; +https://github.com/pixelforge/pixelforge#for-site-owners)"
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # tried again after the host cools down
OVERLOAD_STATUSES = frozenset({429, 502, 503, 504})  # ... and the host is slowed down
MAX_RETRY_AFTER = 60.0  # never sleep longer than this on a server's Retry-After
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least the first 500 KiB
SITE_CACHE_SIZE = 50_000  # origins whose robots.txt and ai.txt a worker process remembers across shards

# origin -> policy, kept across shards of one worker process (RFC 9309 allows caching for 24 h)
_site_cache: OrderedDict[str, SitePolicy] = OrderedDict()
_site_cache_run: list[str] = [""]  # the run the cache belongs to; a new run starts it afresh


class FetchError(ItemError):
    """A URL that gave no image bytes; ``reason`` is a FAILURE_REASONS key."""

    def __init__(self, reason: str, detail: str, status: int | None = None):
        super().__init__(detail, reason=reason)
        self.status = status


@dataclass(frozen=True)
class FetchConfig:
    timeout: float = 10.0
    retries: int = 2
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    honour_opt_outs: bool = True
    allow_private_networks: bool = False
    concurrency: int = 64
    host_limits: HostLimits = HostLimits()
    opt_out_list: str | None = None  # --opt-out-list: domains and URL prefixes never requested


@dataclass(frozen=True)
class SitePolicy:
    """What an origin's robots.txt and ai.txt say."""

    robots: RobotsPolicy
    ai_txt: AiTxtPolicy


@dataclass
class Fetched:
    url: str  # final URL after redirects
    status: int
    data: bytes
    seconds: float
    headers: Any = None  # the final response's headers (a CIMultiDictProxy): the crawler reads them


def make_session(config: FetchConfig) -> aiohttp.ClientSession:
    """One session per worker: the guarded connector, our user agent, no cookies kept."""
    connector = GuardedConnector(
        limit=config.concurrency,
        limit_per_host=config.host_limits.window(),
        allow_private=config.allow_private_networks,
        ttl_dns_cache=300,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": config.user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
    )


class Fetcher:
    """Fetches URLs for one worker, with a per-origin robots.txt cache."""

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig, run_id: str = ""):
        self.session, self.config = session, config
        self.throttle = HostThrottle(config.host_limits, run_id)
        # bounds the bodies held at once: a request's place is kept while its caller processes it
        self.gate = asyncio.Semaphore(config.concurrency)
        self.retries = 0  # attempts made again after a transient failure
        self.opt_outs = load_opt_out_list(config.opt_out_list) if config.opt_out_list else None
        # the crawler's scope check: a redirect it refuses is not followed (reason out_of_scope_redirect)
        self.redirect_filter: Callable[[str], str | None] | None = None
        self._sites: dict[str, asyncio.Future[SitePolicy]] = {}
        self._paced: set[str] = set()  # origins whose Crawl-delay the throttle has been told
        if _site_cache_run[0] != run_id:
            _site_cache.clear()
            _site_cache_run[0] = run_id

    async def fetch(self, url: str) -> Fetched:
        """GET ``url`` within the limits; raise FetchError with a failure reason otherwise."""
        async with self.fetching(url) as got:
            return got

    @asynccontextmanager
    async def fetching(self, url: str) -> AsyncIterator[Fetched]:
        """GET ``url`` politely and hold a place of the ``gate`` while the caller uses the body.

        Each attempt waits for room at the host (throttle.py) first and for the gate second, so
        requests queued for a slow host never keep others from the gate. A transient failure
        (timeout, dropped connection, 429 or 5xx) is retried after the host has cooled down, up
        to ``retries`` times; the host slows down on every sign of overload.
        """
        host = urlsplit(url).hostname or ""
        start = time.monotonic()
        attempt = 0
        if self.opt_outs is not None and (why := self.opt_outs.refuses_url(url)):
            raise FetchError("opt_out_list", why)  # not one request to a listed site
        if self.config.honour_opt_outs:
            await self._policy(url)  # before the first request: its Crawl-delay spaces them all
        while True:
            async with self.throttle.slot(host) as st:
                if st.down is not None:
                    raise FetchError(st.down, f"not tried: {host} was taken as down ({st.down}) earlier in the run")
                await self.gate.acquire()
                began = time.monotonic()
                try:
                    status, data, final, headers = await self._attempt(url)
                except FetchError as exc:
                    self.gate.release()
                    if not self._again(host, exc, attempt, began):
                        raise
                    attempt += 1
                    self.retries += 1
                    continue
                except BaseException:
                    self.gate.release()
                    raise
                self.throttle.succeeded(host)
            try:
                yield Fetched(final, status, data, time.monotonic() - start, headers)
            finally:
                self.gate.release()
            return

    async def _attempt(self, url: str) -> tuple[int, bytes, str, Any]:
        """One try at ``url`` (redirects followed), every error as a FetchError with its reason."""
        try:
            return await asyncio.wait_for(self._follow(url), timeout=self.config.timeout)
        except TimeoutError:
            raise FetchError("timeout", f"no complete answer within {self.config.timeout:g} s") from None
        except PrivateNetworkBlocked as exc:
            raise FetchError("private_network_blocked", str(exc)) from None
        except aiohttp.ClientConnectorDNSError as exc:
            raise FetchError("dns_error", _describe(exc)) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
            raise FetchError("connection_error", _describe(exc)) from None
        except aiohttp.InvalidURL as exc:
            raise FetchError("invalid_url", f"invalid URL: {exc}") from None

    def _again(self, host: str, exc: FetchError, attempt: int, began: float) -> bool:
        """Whether a failed attempt is tried again; tells the throttle what the failure says of the host."""
        if exc.reason == "dns_error":
            self.throttle.mark_down(host, exc.reason)  # a name that does not resolve will not resolve soon
            return False
        overload = exc.reason in ("timeout", "connection_error") or exc.status in OVERLOAD_STATUSES
        if overload:
            self.throttle.overloaded(host, began, getattr(exc, "retry_after", None))
        if exc.status is not None:
            self.throttle.answered(host)  # a 404 or a 503 is still an answer: the host is up
            down = False
        else:
            down = self.throttle.unanswered(host, exc.reason, began) if overload else False
        transient = overload or exc.status in RETRY_STATUSES
        return transient and attempt < self.config.retries and not down

    async def _follow(self, url: str) -> tuple[int, bytes, str, Any]:
        current = url
        seen = {url}
        for _ in range(self.config.max_redirects + 1):
            if self.opt_outs is not None:
                why = self.opt_outs.refuses_url(current)
                if why:
                    raise FetchError("opt_out_list", why)
            if self.config.honour_opt_outs:
                await self._check_site(current)
            async with self.session.get(current, allow_redirects=False) as resp:
                if resp.status in REDIRECT_STATUSES:
                    location = resp.headers.get("Location")
                    if not location:
                        raise FetchError(
                            "http_4xx" if resp.status < 500 else "http_5xx",
                            f"redirect {resp.status} without Location",
                            resp.status,
                        )
                    nxt = urljoin(str(resp.url), location)
                    if urlsplit(nxt).scheme not in ("http", "https"):
                        raise FetchError("invalid_url", f"redirect to a non-http URL: {nxt[:200]}")
                    if nxt in seen:
                        raise FetchError("redirect_limit", f"redirect loop back to {nxt[:200]}")
                    why = self.redirect_filter(nxt) if self.redirect_filter is not None else None
                    if why:
                        raise FetchError("out_of_scope_redirect", why, resp.status)
                    seen.add(nxt)
                    current = nxt
                    continue
                return resp.status, await self._body(resp), current, resp.headers
        raise FetchError("redirect_limit", f"more than {self.config.max_redirects} redirects")

    async def _body(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.status >= 400:
            err = FetchError("http_4xx" if resp.status < 500 else "http_5xx", f"HTTP {resp.status}", resp.status)
            err.retry_after = _retry_after(resp.headers.get("Retry-After"))  # type: ignore[attr-defined]
            raise err
        if self.config.honour_opt_outs:
            why = header_opt_out(resp.headers)
            if why:
                raise FetchError("opt_out_header", why, resp.status)
        limit = self.config.max_bytes
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise FetchError("too_large", f"Content-Length {declared} bytes is over --max-bytes {limit}")
        # read one byte past the limit: a body that reaches it is too large (also when it lied
        # about its length, streamed without one, or decompressed into a bomb)
        chunks, size = [], 0
        while size <= limit:
            chunk = await resp.content.read(limit + 1 - size)  # returns what has arrived, up to n
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise FetchError("too_large", f"body is over --max-bytes {limit}")
        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if declared is not None and not encoded and len(data) < declared:
            raise FetchError("connection_error", f"body ended after {len(data)} of {declared} bytes")
        return data

    async def _check_site(self, url: str) -> None:
        """Refuse ``url`` when its site's robots.txt or ai.txt opts it out."""
        site = await self._policy(url)
        if not site.robots.allows(url, self.config.user_agent):
            raise FetchError("opt_out_robots", site.robots.why_not(url))
        why = site.ai_txt.why_not(url)
        if why:
            raise FetchError("opt_out_ai_txt", why)

    async def _policy(self, url: str) -> SitePolicy:
        """The robots.txt and ai.txt of ``url``'s origin (read once per run and process); Crawl-delay paces the host."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        site = _site_cache.get(origin)
        if site is None:
            # concurrent requests to one origin share a single download of each file
            fut = self._sites.get(origin)
            if fut is None:
                fut = self._sites[origin] = asyncio.ensure_future(self._load_site(origin))
            site = await fut
            _site_cache[origin] = site
            if len(_site_cache) > SITE_CACHE_SIZE:
                _site_cache.popitem(last=False)
        if origin not in self._paced:
            self._paced.add(origin)
            delay = site.robots.crawl_delay(self.config.user_agent)
            if delay:
                self.throttle.crawl_delay(parts.hostname or "", delay)
        return site

    async def _load_site(self, origin: str) -> SitePolicy:
        (r_status, r_body), (a_status, a_body) = await asyncio.gather(
            self._small_file(f"{origin}/robots.txt", ROBOTS_MAX_BYTES),
            self._small_file(f"{origin}/ai.txt", AI_TXT_MAX_BYTES),
        )
        return SitePolicy(
            RobotsPolicy.from_response(r_status, r_body), AiTxtPolicy.from_response(origin, a_status, a_body)
        )

    async def _small_file(self, url: str, max_bytes: int) -> tuple[int | None, bytes | None]:
        """(status, body of a 2xx) of a site file; status None when the site could not be reached."""
        try:
            async with self.session.get(
                url,
                allow_redirects=True,
                max_redirects=5,
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            ) as resp:
                body = await resp.content.read(max_bytes) if 200 <= resp.status < 300 else None
                return resp.status, body
        except PrivateNetworkBlocked as exc:
            raise FetchError("private_network_blocked", str(exc)) from None
        except aiohttp.ClientConnectorDNSError as exc:
            raise FetchError("dns_error", _describe(exc)) from None
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None, None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
