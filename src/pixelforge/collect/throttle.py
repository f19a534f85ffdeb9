"""HostLimits to every host a download touches: connections in flight, spacing, adaptive backoff.

In the spirit of Scrapy's per-domain concurrency (8 by default) and its AutoThrottle extension,
with the window of TCP's congestion control: each host has a window of connections in flight
(at most ``--per-host``) and a delay between request starts. A sign of overload (a timeout, a
dropped connection, 429, 502, 503 or 504) halves the host's window and doubles its delay; each
success shrinks the delay by a tenth and, after a window's worth of successes, lets one more
connection in. A server's Retry-After pauses the whole host. A host that gives no answer at all
(timeouts, refused or dropped connections) ``DOWN_AFTER`` rounds in a row, each after a longer
pause, is taken as down for the rest of the run: its remaining URLs fail at once with the same
reason (``collect retry`` fetches them later) instead of each waiting out its timeouts.

The budget is for the whole run: a worker process gets ``per_host // share`` connections and
``per_host_rps / share`` requests per second, ``share`` being the number of worker processes.
The numbers of a host outlive one shard (one event loop) in the worker process, so a host that
was slowed down stays slow in the next shard.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

MAX_DELAY = 30.0  # the adaptive delay between requests to one host never grows past this
FIRST_BACKOFF = 0.5  # the delay after a host's first sign of overload (seconds)
RECOVERY = 0.9  # each success multiplies the adaptive delay by this
MAX_CRAWL_DELAY = 60.0  # a robots.txt Crawl-delay over this is read as this
DOWN_AFTER = 5  # rounds of requests in a row without an answer that mark a host as down
HOSTS_KEPT = 50_000  # hosts whose numbers a worker process remembers across shards


@dataclass(frozen=True)
class HostLimits:
    """The per-host limits of a run (``--per-host``, ``--per-host-rps``), and how many processes share them."""

    per_host: int = 8  # connections in flight to one host over the run (0: no cap)
    per_host_rps: float = 0.0  # request starts per second to one host over the run (0: no cap)
    share: int = 1  # worker processes the budget is divided among

    def window(self) -> int:
        """Connections in flight one process may hold to one host (0: no cap)."""
        return max(1, self.per_host // self.share) if self.per_host else 0

    def interval(self) -> float:
        """Seconds between request starts to one host in one process (0: no cap)."""
        return self.share / self.per_host_rps if self.per_host_rps else 0.0


@dataclass
class HostState:
    """One host's numbers in one worker process."""

    window: int  # connections allowed in flight now (0: no cap)
    floor: float  # the least spacing: --per-host-rps, robots.txt Crawl-delay
    delay: float = 0.0  # the adaptive spacing on top of the floor
    next_start: float = 0.0  # time.monotonic() before which no request to the host starts
    streak: int = 0  # successes since the window last grew
    failed_in_row: int = 0  # rounds of requests without an answer since the last answer
    failed_at: float = float("-inf")  # when the last round failed (time.monotonic())
    down: str | None = None  # the failure reason that marked the host down
    slowed_at: float = float("-inf")  # when the host was last slowed down (time.monotonic())

    @property
    def spacing(self) -> float:
        return max(self.floor, self.delay)


# host -> numbers, kept across the shards of one run in a worker process
_hosts: OrderedDict[str, HostState] = OrderedDict()
_hosts_run: list[str] = [""]


class HostThrottle:
    """The per-host gate one worker's requests pass through (one per event loop)."""

    def __init__(self, limits: HostLimits, run_id: str = ""):
        self.limits = limits
        if _hosts_run[0] != run_id:
            _hosts.clear()
            _hosts_run[0] = run_id
        self._in_flight: dict[str, int] = {}
        self._changed: dict[str, asyncio.Condition] = {}
        self.backoffs = 0  # signs of overload seen through this gate
        self.hosts_down: set[str] = set()

    def state(self, host: str) -> HostState:
        st = _hosts.get(host)
        if st is None:
            st = _hosts[host] = HostState(window=self.limits.window(), floor=self.limits.interval())
            if len(_hosts) > HOSTS_KEPT:
                _hosts.popitem(last=False)
        return st

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[HostState]:
        """Wait for room in ``host``'s window and for its next start time; hold one connection's place."""
        st = self.state(host)
        changed = self._changed.setdefault(host, asyncio.Condition())
        async with changed:
            await changed.wait_for(
                lambda: st.down is not None or not st.window or self._in_flight.get(host, 0) < st.window
            )
            self._in_flight[host] = self._in_flight.get(host, 0) + 1
        try:
            now = time.monotonic()
            start = max(now, st.next_start)
            st.next_start = start + st.spacing
            if start > now and st.down is None:
                await asyncio.sleep(start - now)
            yield st
        finally:
            self._in_flight[host] -= 1
            async with changed:
                changed.notify()  # one place is free: wake one waiter (all of them is a storm of wake-ups)

    def succeeded(self, host: str) -> None:
        st = self.state(host)
        self.answered(host)
        st.delay = st.delay * RECOVERY if st.delay > 0.01 else 0.0
        cap = self.limits.window()
        st.streak += 1
        if cap and st.window < cap and st.streak >= st.window:
            st.window += 1
            st.streak = 0
            self._wake(host, 1)

    def overloaded(self, host: str, started: float, retry_after: float | None = None) -> None:
        """A sign the host is overwhelmed: halve its window, double its delay, honour Retry-After.

        ``started`` is when the failed request began (time.monotonic()): the requests of one burst
        that were sent before the last slow-down count once, as TCP reacts once per round trip.
        """
        st = self.state(host)
        if retry_after:
            st.next_start = max(st.next_start, time.monotonic() + retry_after)
        if started < st.slowed_at:
            return
        st.slowed_at = time.monotonic()
        self.backoffs += 1
        st.streak = 0
        if st.window:
            st.window = max(1, st.window // 2)
        st.delay = min(MAX_DELAY, max(FIRST_BACKOFF, st.delay * 2))

    def unanswered(self, host: str, reason: str, started: float) -> bool:
        """Count a request the host gave no answer to (timeout, refused or dropped connection); True
        when the host is now taken as down: DOWN_AFTER rounds in a row without an answer, a round
        being the requests sent before the last one failed (a burst that fails at once counts once)."""
        st = self.state(host)
        if started >= st.failed_at:
            st.failed_in_row += 1
            st.failed_at = time.monotonic()
        if st.failed_in_row >= DOWN_AFTER:
            self.mark_down(host, reason)
        return st.down is not None

    def answered(self, host: str) -> None:
        """The host answered (even 503 or 404): it is up."""
        self.state(host).failed_in_row = 0

    def mark_down(self, host: str, reason: str) -> None:
        """Take ``host`` as down for the rest of the run: its waiting requests fail with ``reason``."""
        st = self.state(host)
        if st.down is None:
            st.down = reason
            self.hosts_down.add(host)
            self._wake(host)

    def crawl_delay(self, host: str, seconds: float) -> None:
        """Honour robots.txt's Crawl-delay for ``host`` (shared among the processes, capped)."""
        st = self.state(host)
        st.floor = max(st.floor, min(seconds, MAX_CRAWL_DELAY) * self.limits.share)

    def _wake(self, host: str, n: int | None = None) -> None:
        """Wake ``n`` of the requests waiting for ``host`` (None: all)."""
        changed = self._changed.get(host)
        if changed is not None:
            asyncio.ensure_future(_notify(changed, n))


async def _notify(changed: asyncio.Condition, n: int | None) -> None:
    async with changed:
        if n is None:
            changed.notify_all()
        else:
            changed.notify(n)
