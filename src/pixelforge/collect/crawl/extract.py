"""Parse one HTML page (selectolax/Lexbor): links, candidate images with captions, licences, opt-outs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from pixelforge.collect.crawl.licences import JsonLd, Licence, licence_from, parse_jsonld
from pixelforge.collect.crawl.urlnorm import canonical_url
from pixelforge.collect.optout import x_robots_opt_out

MIN_DECLARED_SIDE = 32  # an <img> declaring a smaller width or height is an icon or a spacer
CONTEXT_LEVELS = 4  # ancestors searched for a nearby heading or paragraph
MAX_CAPTION_CHARS = 500
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
CONTEXT_TAGS = HEADINGS | {"p"}
ROBOTS_META_NAMES = frozenset({"robots", "pixelforge"})  # "pixelforge" addresses our crawler only
LICENCE_META_NAMES = ("dcterms.license", "dc.license", "dc.rights", "dcterms.rights")
OG_IMAGE_PROPERTIES = ("og:image", "og:image:url", "og:image:secure_url")
# URL pieces of analytics beacons and spacer images: never a picture
_TRACKER = re.compile(
    r"(^|[/._-])(pixel|spacer|blank|beacon|tracking|tracker|track|1x1|clear)"
    r"([/._-]|$)|/(collect|analytics|b/ss)(/|\?|$)",
    re.I,
)
_SPACE = re.compile(r"\s+")
# why an <img> was not taken; counted per page and in the crawl's stats
SKIP_REASONS = ("empty_alt", "presentation", "small_declared", "tracking_pixel", "data_uri", "no_src")


@dataclass
class ImageCandidate:
    """One image found on a page, with the caption, licence and opt-out that apply to it."""

    url: str  # canonical absolute URL
    caption: str | None
    caption_source: str | None  # alt | figcaption | title | aria-label | context | None
    element: str  # img | picture | og:image
    licence: Licence | None = None
    attribution: str | None = None
    opt_out: str | None = None  # image-level: data-noai, img robots: noai


@dataclass
class PageInfo:
    """Everything the crawler keeps from one HTML page."""

    links: list[str] = field(default_factory=list)
    images: list[ImageCandidate] = field(default_factory=list)
    canonical: str | None = None
    title: str | None = None
    licence: Licence | None = None
    attribution: str | None = None
    opt_out: str | None = None  # page-level, from its <meta> tags
    nofollow: bool = False
    skipped: dict[str, int] = field(default_factory=dict)


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = _SPACE.sub(" ", text).strip()
    return text[:MAX_CAPTION_CHARS] or None


def _text(node: LexborNode | None) -> str | None:
    return None if node is None else _clean(node.text(deep=True, separator=" "))


def _rel_tokens(node: LexborNode) -> set[str]:
    return set((node.attributes.get("rel") or "").lower().split())


def _declared_px(value: str | None) -> int | None:
    m = re.match(r"\s*(\d+)\s*(px)?\s*$", value or "")
    return int(m.group(1)) if m else None


def largest_srcset(srcset: str | None) -> tuple[str | None, float]:
    """The URL of the largest entry of a srcset and its descriptor (640w -> 640, 2x -> 2, none -> 1).

    A srcset uses either width or density descriptors, so within one attribute they compare.
    """
    best, best_key = None, -1.0
    for entry in (srcset or "").split(","):
        bits = entry.strip().split()
        if not bits:
            continue
        key = 1.0
        if len(bits) > 1:
            try:
                key = float(bits[-1][:-1]) if bits[-1][-1:].lower() in ("w", "x") else 0.0
            except ValueError:
                key = 0.0
        if key > best_key:
            best, best_key = bits[0], key
    return best, best_key


def _ancestor(node: LexborNode, tag: str, levels: int = 8) -> LexborNode | None:
    cur = node.parent
    for _ in range(levels):
        if cur is None:
            return None
        if cur.tag == tag:
            return cur
        cur = cur.parent
    return None


def _context(node: LexborNode) -> str | None:
    """The nearest heading or paragraph: siblings before (nearest first), then after, level by level."""
    cur = node
    for _ in range(CONTEXT_LEVELS):
        for step in ("prev", "next"):
            sib = getattr(cur, step)
            while sib is not None:
                if sib.tag in CONTEXT_TAGS:
                    text = _text(sib)
                    if text:
                        return text
                sib = getattr(sib, step)
        cur = cur.parent
        if cur is None or cur.tag in ("body", "html"):
            return None
    return None


def _robots_directive(values: list[str]) -> str | None:
    return x_robots_opt_out(values)


def _image_opt_out(attrs: dict[str, str | None]) -> str | None:
    if "data-noai" in attrs and (attrs["data-noai"] or "").strip().lower() not in ("false", "0", "no"):
        return "data-noai"
    for name in ("data-robots", "robots"):
        if attrs.get(name):
            d = x_robots_opt_out([attrs[name] or ""])
            if d:
                return f"img {name}: {d}"
    return None


def extract_page(html: str, page_url: str) -> PageInfo:
    """Parse ``html`` fetched from ``page_url`` (canonical) into links and captioned images.

    Relative URLs resolve against ``<base href>`` when present, else the page. Decorative
    images (empty alt, role=presentation or aria-hidden, declared side under 32 px, tracking
    pixels, data: URIs) are counted in ``skipped``, not returned.
    """
    tree = LexborHTMLParser(html)
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        base = canonical_url(base_node.attributes.get("href") or "", page_url) or page_url
    head = read_head(tree, base)
    images, skipped = read_images(tree, base, head)
    return PageInfo(
        links=read_links(tree, base),
        images=images,
        canonical=head.canonical,
        title=head.title,
        licence=head.licence,
        attribution=head.attribution,
        opt_out=head.opt_out,
        nofollow=head.nofollow,
        skipped=skipped,
    )


@dataclass
class PageHead:
    """What a page says about itself (head meta, rel links, JSON-LD), and the hints its images take."""

    title: str | None = None
    canonical: str | None = None
    licence: Licence | None = None
    attribution: str | None = None
    opt_out: str | None = None
    nofollow: bool = False
    og_images: list[str] = field(default_factory=list)  # og:image contents, in page order
    og_alt: str | None = None
    jsonld_images: dict[str | None, tuple[str | None, str | None]] = field(default_factory=dict)  # (licence, creator)


def read_head(tree: LexborHTMLParser, base: str) -> PageHead:
    """Title, canonical, robots and TDM meta, licence meta and rel=license links, author, JSON-LD."""
    head = PageHead(title=_text(tree.css_first("title")))
    robots_values: list[str] = []
    meta_licence: Licence | None = None
    meta_author = None
    for meta in tree.css("meta"):
        a = meta.attributes
        name = (a.get("name") or "").strip().lower()
        prop = (a.get("property") or "").strip().lower()
        content = (a.get("content") or "").strip()
        if name in ROBOTS_META_NAMES:
            robots_values.append(content)
        elif name == "tdm-reservation" and content == "1" and head.opt_out is None:
            head.opt_out = "tdm-reservation meta: 1"
        elif name in LICENCE_META_NAMES and meta_licence is None:
            meta_licence = licence_from(content, f"meta {name}")
        elif name == "author" and content:
            meta_author = meta_author or _clean(content)
        elif prop in OG_IMAGE_PROPERTIES and content:
            head.og_images.append(content)
        elif prop == "og:image:alt" and content:
            head.og_alt = head.og_alt or _clean(content)
    directive = _robots_directive(robots_values)
    if directive and head.opt_out is None:
        head.opt_out = f"meta robots: {directive}"
    lowered = [d.strip().lower() for v in robots_values for d in v.split(",")]
    head.nofollow = "nofollow" in lowered or "none" in lowered
    jsonld: JsonLd = parse_jsonld([s.text(deep=True) for s in tree.css('script[type="application/ld+json"]')])

    page_link = head_link = None
    for node in tree.css("a[rel], link[rel], area[rel]"):
        rels = _rel_tokens(node)
        if "canonical" in rels and node.tag == "link" and head.canonical is None:
            head.canonical = canonical_url(node.attributes.get("href") or "", base)
        if "license" in rels and _ancestor(node, "figure") is None:
            href = node.attributes.get("href")
            if node.tag == "link":
                head_link = head_link or licence_from(href and canonical_url(href, base) or href, "link")
            else:
                page_link = page_link or licence_from(href and canonical_url(href, base) or href, "page-link")
    jsonld_licence = licence_from(jsonld.license, "jsonld")
    head.licence = page_link or head_link or jsonld_licence or meta_licence
    head.attribution = jsonld.attribution or meta_author
    head.jsonld_images = {canonical_url(u, base): v for u, v in (jsonld.images or {}).items()}
    return head


def read_links(tree: LexborHTMLParser, base: str) -> list[str]:
    """The canonical URLs of the page's <a href> and <area href>, first occurrence each, in page order."""
    links: list[str] = []
    seen: set[str] = set()
    for a in tree.css("a[href], area[href]"):
        url = canonical_url(a.attributes.get("href") or "", base)
        if url and url not in seen:
            seen.add(url)
            links.append(url)
    return links


def read_images(tree: LexborHTMLParser, base: str, head: PageHead) -> tuple[list[ImageCandidate], dict[str, int]]:
    """The page's images (<img>, <picture>, then og:image), each URL once, and the skipped <img> by reason."""
    images: list[ImageCandidate] = []
    skipped: dict[str, int] = {}
    seen: set[str] = set()
    for img in tree.css("img"):
        picture = img.parent if img.parent is not None and img.parent.tag == "picture" else None
        url, reason = _img_url(img, picture, base)
        if reason is not None:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        if url in seen:
            continue
        seen.add(url)
        images.append(_img_candidate(img, picture, url, base, head))

    for content in head.og_images:
        url = canonical_url(content, base)
        if url is None or url in seen:
            continue
        seen.add(url)
        ld_licence, ld_creator = head.jsonld_images.get(url, (None, None))
        caption, source = (head.og_alt, "alt") if head.og_alt else (_text(tree.css_first("h1")), "context")
        images.append(
            ImageCandidate(
                url,
                caption,
                source if caption else None,
                "og:image",
                licence_from(ld_licence, "jsonld-image") or head.licence,
                ld_creator or head.attribution,
                None,
            )
        )
    return images, skipped


def _img_url(img: LexborNode, picture: LexborNode | None, base: str) -> tuple[str | None, str | None]:
    """(canonical URL of the largest source, None), or (None, the SKIP_REASONS entry it is skipped for)."""
    a = img.attributes
    src, key = largest_srcset(a.get("srcset"))
    if src is None:
        src = a.get("src") or a.get("data-src")
    if picture is not None:
        for source in picture.css("source[srcset]"):
            s_url, s_key = largest_srcset(source.attributes.get("srcset"))
            if s_url and s_key > key:
                src, key = s_url, s_key
    if not src or not src.strip():
        return None, "no_src"
    if src.strip().lower().startswith("data:"):
        return None, "data_uri"
    url = canonical_url(src, base)
    if url is None:
        return None, "no_src"
    if _TRACKER.search(urlsplit(url).path + ("?" + urlsplit(url).query if urlsplit(url).query else "")):
        return None, "tracking_pixel"
    if (a.get("role") or "").strip().lower() in ("presentation", "none") or (
        a.get("aria-hidden") or ""
    ).strip().lower() == "true":
        return None, "presentation"
    w, h = _declared_px(a.get("width")), _declared_px(a.get("height"))
    if (w is not None and w < MIN_DECLARED_SIDE) or (h is not None and h < MIN_DECLARED_SIDE):
        return None, "small_declared"
    alt = a.get("alt")
    if alt is not None and not alt.strip():
        return None, "empty_alt"
    return url, None


def _img_candidate(img: LexborNode, picture: LexborNode | None, url: str, base: str, head: PageHead) -> ImageCandidate:
    """An <img> kept at ``url``: its caption (alt, figcaption, title, aria-label, context), licence, author."""
    a = img.attributes
    figure = _ancestor(img, "figure")
    caption, source = _clean(a.get("alt")), "alt"
    if caption is None and figure is not None:
        caption, source = _text(figure.css_first("figcaption")), "figcaption"
    if caption is None:
        caption, source = _clean(a.get("title")), "title"
    if caption is None:
        caption, source = _clean(a.get("aria-label")), "aria-label"
    if caption is None:
        caption, source = _context(figure or picture or img), "context"
    licence = None
    if figure is not None:
        for link in figure.css("a[rel], link[rel]"):
            if "license" in _rel_tokens(link):
                href = link.attributes.get("href")
                licence = licence_from(href and canonical_url(href, base) or href, "figure-link")
                break
    ld_licence, ld_creator = head.jsonld_images.get(url, (None, None))
    licence = licence or licence_from(ld_licence, "jsonld-image") or head.licence
    return ImageCandidate(
        url,
        caption,
        source if caption else None,
        "picture" if picture is not None else "img",
        licence,
        ld_creator or head.attribution,
        _image_opt_out(a),
    )
