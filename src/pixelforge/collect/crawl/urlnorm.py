"""URL canonicalisation, crawl scope and trap patterns: each page is fetched once under one name."""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

# Query parameters that only track the visitor; they never change what a page shows.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "spm",
    }
)
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")
DEFAULT_PORTS = {"http": 80, "https": 443}
SCOPES = ("site", "domain", "prefix")
# characters kept as they are in a path; everything else is percent-encoded once
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_DIGITS = re.compile(r"\d+")
_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
# a URL already in canonical form (the usual image or page link): no work beyond this match
_SIMPLE = re.compile(r"^https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?::\d{1,5})?/[A-Za-z0-9._~!$&'()*+,;=:@/-]*$")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # has a scheme: http:, mailto:, javascript: ...


def _is_tracking(name: str) -> bool:
    low = name.lower()
    return low in TRACKING_PARAMS or low.startswith(TRACKING_PREFIXES)


def _normalise_path(path: str) -> str:
    # decode then re-encode, so /a%7Eb, /a~b and /a%7eb are one path; "%2F" stays encoded
    parts = [quote(unquote(p), safe=_PATH_SAFE.replace("/", "").replace("%", "")) for p in path.split("/")]
    return "/".join(parts) or "/"


def canonical_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of ``url`` (resolved against ``base``), or None when it is not http(s).

    Lower-case scheme and host, no default port, no fragment, no user info, dot segments
    removed, one percent-encoding, tracking parameters (utm_*, fbclid, gclid, ...) dropped and
    the remaining query parameters sorted.
    """
    url = url.strip()
    if not url:
        return None
    if base and not _ABSOLUTE.match(url):
        if url.startswith("/") and not url.startswith("//"):
            # the common case (menus, galleries): an absolute path needs only the base's origin
            m = _ORIGIN.match(base)
            if m is None:
                return None
            url = m.group(0) + url
        else:
            try:
                url = urljoin(base, url)
            except ValueError:
                return None
    return _canonical_absolute(url)


@lru_cache(maxsize=1 << 16)
def _canonical_absolute(url: str) -> str | None:
    # cached: every page of a site repeats its menu links, so most calls are repeats
    if _SIMPLE.match(url) and "/." not in url:
        port_at = url.find(":", url.find("//"))
        default = ":80/" if url.startswith("http:") else ":443/"
        if port_at < 0 or url.find(default, 6) != port_at:
            return url  # already canonical: lower-case host, no query, fragment, dot segment or escape
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _normalise_path(urljoin("/", parts.path) if parts.path else "/")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))


def host_of(url: str) -> str:
    """``host[:port]`` of a canonical URL: the unit of politeness (one robots.txt, one pace)."""
    return urlsplit(url).netloc


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def url_pattern(url: str) -> str:
    """The shape of a URL with numbers and query values blanked: /day/17?x=3 -> host/day/#?x=.

    An endless calendar (/day/1, /day/2, ...) or one page under many query strings keeps the
    same pattern, so a cap per pattern bounds such traps.
    """
    parts = urlsplit(url)
    keys = "&".join(f"{k}=" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return f"{parts.netloc}{_DIGITS.sub('#', parts.path)}" + (f"?{keys}" if keys else "")


class Scope:
    """Which URLs a crawl may fetch, decided by the seeds: same site, same domain, or under a prefix."""

    def __init__(self, kind: str, seeds: list[str]):
        self.kind = kind
        self.hosts = {urlsplit(s).netloc for s in seeds}
        self.domains = {_domain(urlsplit(s).hostname or "") for s in seeds}
        self.prefixes = [s[: s.rfind("/") + 1] for s in seeds]

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if self.kind == "site":
            return parts.netloc in self.hosts
        if self.kind == "domain":
            host = parts.hostname or ""
            return any(host == d or host.endswith("." + d) for d in self.domains)
        return any(url.startswith(p) for p in self.prefixes)


def _domain(host: str) -> str:
    # the seed host without a leading "www.": its subdomains are in the domain scope
    return host[4:] if host.startswith("www.") else host
