"""Licence statements on web pages to ids: Creative Commons URLs and names, rights notices, JSON-LD."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

UNKNOWN = "unknown"
ALL_RIGHTS_RESERVED = "all-rights-reserved"
CC_KINDS = ("by", "by-sa", "by-nc", "by-nd", "by-nc-sa", "by-nc-nd")

# creativecommons.org/licenses/by-nc/4.0/  (optionally a jurisdiction port: /3.0/de/)
_CC_URL = re.compile(r"creativecommons\.org/licenses/(by(?:-nc)?(?:-sa|-nd)?)/(\d\.\d)", re.I)
_CC_ZERO = re.compile(r"creativecommons\.org/publicdomain/zero/(\d\.\d)", re.I)
_CC_MARK = re.compile(r"creativecommons\.org/publicdomain/mark/(\d\.\d)", re.I)
# "CC BY-NC 4.0", "CC-BY-SA-3.0", "cc by 4.0 international"
_CC_NAME = re.compile(r"\bcc[\s-]+(by(?:[\s-]+nc)?(?:[\s-]+(?:sa|nd))?)(?:[\s-]+(\d\.\d))?\b", re.I)
_CC0_NAME = re.compile(r"\bcc[\s-]?0\b|\bcc[\s-]+zero\b", re.I)
_RESERVED = re.compile(r"all\s+rights\s+reserved", re.I)


@dataclass(frozen=True)
class Licence:
    """A licence as found: its id, the URL or text it came from, and where on the page it was."""

    id: str
    url: str | None
    source: str  # figure-link | link | jsonld-image | jsonld | meta


def licence_id(text: str | None) -> str:
    """Map a licence URL or name to an id: cc-by-4.0, cc-by-nc-sa-3.0, cc0-1.0, all-rights-reserved, unknown.

    A Creative Commons name without a version (``CC BY``) maps to version 4.0, the current one.
    """
    if not text:
        return UNKNOWN
    t = text.strip()
    if m := _CC_URL.search(t):
        return f"cc-{m.group(1).lower()}-{m.group(2)}"
    if m := _CC_ZERO.search(t):
        return f"cc0-{m.group(1)}"
    if m := _CC_MARK.search(t):
        return f"pdm-{m.group(1)}"
    if _CC0_NAME.search(t):
        return "cc0-1.0"
    if m := _CC_NAME.search(t):
        kind = re.sub(r"[\s-]+", "-", m.group(1).lower())
        return f"cc-{kind}-{m.group(2) or '4.0'}"
    if _RESERVED.search(t):
        return ALL_RIGHTS_RESERVED
    return UNKNOWN


def licence_from(value: str | None, source: str) -> Licence | None:
    """A Licence from a link href, meta content or JSON-LD value; None when there is no value."""
    if not value or not value.strip():
        return None
    value = value.strip()
    url = value if value.lower().startswith(("http://", "https://", "//")) else None
    return Licence(licence_id(value), url, source)


@dataclass
class JsonLd:
    """What the page's JSON-LD says about licences and authors: page-wide and per image URL."""

    license: str | None = None
    attribution: str | None = None
    images: dict[str, tuple[str | None, str | None]] | None = None  # contentUrl -> (license, creator)


def parse_jsonld(blocks: list[str]) -> JsonLd:
    """Read ``<script type="application/ld+json">`` blocks; malformed blocks are skipped."""
    found = JsonLd(images={})
    for text in blocks:
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        for node in _nodes(doc):
            lic = _text_of(node.get("license"))
            who = _names(node.get("creator")) or _names(node.get("author"))
            kind = node.get("@type")
            kinds = kind if isinstance(kind, list) else [kind]
            content = node.get("contentUrl") or node.get("url")
            if "ImageObject" in kinds and isinstance(content, str):
                found.images[content] = (lic, who)  # type: ignore[index]
                continue
            if lic and found.license is None:
                found.license = lic
            if who and found.attribution is None:
                found.attribution = who
    return found


def _nodes(doc: Any, depth: int = 0) -> list[dict[str, Any]]:
    # a document, a list of documents, or an @graph; nested objects (image of an article) too
    if depth > 4:
        return []
    out: list[dict[str, Any]] = []
    if isinstance(doc, list):
        for d in doc:
            out += _nodes(d, depth + 1)
    elif isinstance(doc, dict):
        out.append(doc)
        for key in ("@graph", "image", "associatedMedia", "hasPart"):
            if key in doc:
                out += _nodes(doc[key], depth + 1)
    return out


def _text_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        return _text_of(value.get("url") or value.get("@id") or value.get("name"))
    if isinstance(value, list) and value:
        return _text_of(value[0])
    return None


def _names(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        name = value.get("name")
        return name.strip() if isinstance(name, str) and name.strip() else None
    if isinstance(value, list):
        names = [n for n in (_names(v) for v in value) if n]
        return ", ".join(names) or None
    return None
