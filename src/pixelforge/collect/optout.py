"""Opt-out rules: robots.txt for our user agent, X-Robots-Tag AI directives, TDM reservation."""

from __future__ import annotations

from collections.abc import Mapping

from protego import Protego

# Directives in X-Robots-Tag that withdraw an image from AI training sets:
#   noai, noimageai      - the owner asks not to train AI on the content (DeviantArt / Spawning usage)
#   noindex, noimageindex - the owner asks crawlers not to keep the content at all
#   none                 - shorthand for noindex, nofollow
# img2dataset treats the same set as opted out by default.
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai", "noindex", "noimageindex", "none"})
ROBOTS_TOKEN = "pixelforge"  # the product token robots.txt groups are matched against


def x_robots_opt_out(values: list[str], token: str = ROBOTS_TOKEN) -> str | None:
    """Return the opting-out directive found in X-Robots-Tag header values, or None.

    A value may address one crawler (``googlebot: noindex``); such a value applies only when
    it names our token. Unscoped values apply to everyone. Several values, and several
    comma-separated directives per value, are all considered.
    """
    for value in values:
        scope, sep, rest = value.partition(":")
        directives = value
        if sep and scope.strip() and " " not in scope.strip() and "," not in scope:
            # `agent: directives` — but `unavailable_after: DATE` is a directive, not an agent
            if scope.strip().lower() != "unavailable_after":
                if scope.strip().lower() != token:
                    continue
                directives = rest
        for directive in directives.split(","):
            d = directive.strip().lower()
            if d in OPT_OUT_DIRECTIVES:
                return d
    return None


def header_opt_out(headers: Mapping[str, str] | object, token: str = ROBOTS_TOKEN) -> str | None:
    """Why response ``headers`` opt the resource out (``x-robots-tag: noai``, ``tdm-reservation: 1``), or None."""
    getall = getattr(headers, "getall", None)
    values = (
        list(getall("X-Robots-Tag", [])) if getall else ([headers["X-Robots-Tag"]] if "X-Robots-Tag" in headers else [])
    )  # type: ignore[operator,index]
    directive = x_robots_opt_out(values, token)
    if directive:
        return f"x-robots-tag: {directive}"
    tdm = headers.get("tdm-reservation") if hasattr(headers, "get") else None  # type: ignore[union-attr]
    if tdm is not None and tdm.strip() == "1":
        return "tdm-reservation: 1"
    return None


class RobotsPolicy:
    """A parsed robots.txt, or the RFC 9309 verdict when it could not be read."""

    def __init__(self, parser: Protego | None, allow_all: bool, reason: str = ""):
        self.parser, self.allow_all, self.reason = parser, allow_all, reason

    @classmethod
    def from_response(cls, status: int | None, body: bytes | None) -> RobotsPolicy:
        """Apply RFC 9309 2.3.1: 2xx parse, 4xx allow all, 5xx or unreachable disallow all."""
        if status is not None and 200 <= status < 300 and body is not None:
            return cls(Protego.parse(body.decode("utf-8", errors="replace")), allow_all=False)
        if status is not None and 400 <= status < 500:
            return cls(None, allow_all=True)
        what = f"status {status}" if status is not None else "unreachable"
        return cls(None, allow_all=False, reason=f"robots.txt {what}: RFC 9309 treats the site as disallowed")

    def allows(self, url: str, user_agent: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return self.parser.can_fetch(url, user_agent)

    def crawl_delay(self, user_agent: str) -> float | None:
        """The Crawl-delay robots.txt asks of ``user_agent`` (seconds), or None."""
        delay = self.parser.crawl_delay(user_agent) if self.parser is not None else None
        return float(delay) if delay else None

    def why_not(self, url: str) -> str:
        return self.reason or "robots.txt disallows this path for our user agent"
