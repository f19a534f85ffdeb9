"""Opt-out rules: robots.txt for our user agent, X-Robots-Tag AI directives, TDM reservation, ai.txt,
and the user's own list (--opt-out-list)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from protego import Protego

from pixelforge.errors import UsageError

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


# -- ai.txt -------------------------------------------------------------------------------------
# Spawning's site-level opt-out: /ai.txt in robots.txt syntax, its rules naming file types
# (``Disallow: *.jpg``) or paths. Matched case-insensitively (a file type is .JPG as much as .jpg);
# a missing or unreadable ai.txt says nothing (unlike robots.txt, no standard makes it disallow).
AI_TXT_MAX_BYTES = 512 * 1024


class AiTxtPolicy:
    """A site's /ai.txt, or none."""

    def __init__(self, parser: Protego | None, origin: str = ""):
        self.parser, self.origin = parser, origin

    @classmethod
    def from_response(cls, origin: str, status: int | None, body: bytes | None) -> AiTxtPolicy:
        if status is not None and 200 <= status < 300 and body:
            return cls(Protego.parse(body.decode("utf-8", errors="replace").lower()), origin)
        return cls(None, origin)

    def why_not(self, url: str, token: str = ROBOTS_TOKEN) -> str | None:
        """Why ai.txt refuses ``url`` for AI training, or None."""
        if self.parser is None or self.parser.can_fetch(url.lower(), token):
            return None
        return f"{self.origin}/ai.txt disallows this URL for AI training"


# -- the user's opt-out list (--opt-out-list) ------------------------------------------------------
OPT_OUT_PHASH_BITS = 4  # a perceptual hash within this many bits of a listed one matches
_HEX = frozenset("0123456789abcdef")


@dataclass
class OptOutList:
    """Domains, URL prefixes, image sha256 and phash values whose images must not be collected.

    One entry per line, ``#`` starts a comment; an entry is read by its shape, or named with a
    prefix: ``domain:example.org`` (the host and its subdomains), ``url:https://example.org/art/``
    (a URL prefix), ``sha256:<64 hex>`` (the downloaded file), ``phash:<16 hex>`` (the image's
    64-bit perceptual hash, as the index's phash column; within OPT_OUT_PHASH_BITS bits).
    """

    path: str
    domains: dict[str, int] = field(default_factory=dict)  # entry -> line number
    prefixes: list[tuple[str, int]] = field(default_factory=list)
    sha256: dict[str, int] = field(default_factory=dict)
    phashes: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def parse(cls, path: str, text: str) -> OptOutList:
        out = cls(path)
        for n, raw in enumerate(text.splitlines(), 1):
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            kind, sep, value = entry.partition(":")
            kind = kind.lower()
            if not sep or kind not in ("domain", "url", "sha256", "phash"):
                kind, value = _shape(entry), entry
            value = value.strip()
            low = value.lower()
            if kind == "url" and low.startswith(("http://", "https://")):
                out.prefixes.append((value, n))
            elif kind == "sha256" and len(low) == 64 and set(low) <= _HEX:
                out.sha256[low] = n
            elif kind == "phash" and len(low) == 16 and set(low) <= _HEX:
                out.phashes.append((int(low, 16), n))
            elif kind == "domain" and _is_domain(low):
                out.domains[low.rstrip(".")] = n
            else:
                raise UsageError(
                    f"--opt-out-list {path} line {n}: {entry[:80]!r} is not a domain, URL prefix, "
                    "sha256 (64 hex digits) or phash (16 hex digits)"
                )
        return out

    def refuses_url(self, url: str) -> str | None:
        """Why ``url`` is on the list (its domain or a prefix), or None."""
        host = (urlsplit(url).hostname or "").lower()
        parts = host.split(".")
        for i in range(len(parts)):
            line = self.domains.get(".".join(parts[i:]))
            if line is not None:
                return f"domain {'.'.join(parts[i:])} is on --opt-out-list {self.path} (line {line})"
        for prefix, line in self.prefixes:
            if url.startswith(prefix):
                return f"URL prefix {prefix} is on --opt-out-list {self.path} (line {line})"
        return None

    def refuses_image(self, sha256: str, phash: int | None) -> str | None:
        """Why an image with these hashes is on the list, or None."""
        line = self.sha256.get(sha256)
        if line is not None:
            return f"sha256 {sha256} is on --opt-out-list {self.path} (line {line})"
        if phash is not None:
            for listed, line in self.phashes:
                bits = (listed ^ phash).bit_count()
                if bits <= OPT_OUT_PHASH_BITS:
                    return f"phash {listed:016x} ({bits} bits away) is on --opt-out-list {self.path} (line {line})"
        return None

    @property
    def checks_images(self) -> bool:
        return bool(self.sha256 or self.phashes)


def _shape(entry: str) -> str:
    low = entry.lower()
    if low.startswith(("http://", "https://")):
        return "url"
    if len(low) == 64 and set(low) <= _HEX:
        return "sha256"
    if len(low) == 16 and set(low) <= _HEX:
        return "phash"
    return "domain"


def _is_domain(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    return all(label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label) for label in labels)


_lists: dict[tuple[str, float, int], OptOutList] = {}


def load_opt_out_list(path: str) -> OptOutList:
    """Read and check --opt-out-list ``path`` (kept per process while the file is unchanged)."""
    import fsspec

    fs, inner = fsspec.core.url_to_fs(path)
    try:
        info = fs.info(inner)
    except FileNotFoundError:
        raise UsageError(f"--opt-out-list {path}: no such file") from None
    key = (path, float(info.get("mtime") or info.get("LastModified", 0) or 0), int(info.get("size") or 0))
    if key not in _lists:
        with fs.open(inner, "rb") as f:
            _lists.clear()
            _lists[key] = OptOutList.parse(path, f.read().decode("utf-8", errors="replace"))
    return _lists[key]
