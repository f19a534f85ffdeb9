"""HTML parse + extract speed: the crawler's selectolax extractor against BeautifulSoup(lxml) on the same pages.

Both sides take the same decoded HTML and produce the same fields: links (canonicalised),
images from <img>/srcset/<picture>/og:image with caption and caption source (alt, figcaption,
title, aria-label, nearest heading/paragraph), the licence (figure link, rel=license, JSON-LD,
dc meta), attribution and the meta robots / tdm-reservation opt-out. URL canonicalisation and
licence-id mapping are shared code, so the timing compares parsing and tree walking only. The
script counts the pages on which both sides give identical output before it times them.

Corpora: the bundled site's 27 pages (small) and N synthetic article pages (~50 KB each: a
150-link menu, inline scripts and styles, JSON-LD, 10-30 figures and inline images), made by
code from a seed. The outputs differ only on pages with <picture>: libxml2 parses HTML4 and
does not nest <source> in <picture> as an HTML5 parser (Lexbor, browsers) does, so the
reference misses the <source> candidates. Then it crawls the bundled site on 127.0.0.1 and
prints the crawl's wall time next to the floor its politeness settings impose (requests x
delay per host), and the time spent parsing.

    nice -n 10 .venv/bin/python benchmarks/crawl_parse.py [--pages 300] [--rounds 3] [--delay 0.1]

Measured here (2 cores shared with other jobs; best of 3 rounds): see docs/crawl.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bs4 import BeautifulSoup  # noqa: E402

from pixelforge.collect.crawl.extract import (  # noqa: E402
    _TRACKER,
    CONTEXT_TAGS,
    LICENCE_META_NAMES,
    MIN_DECLARED_SIDE,
    ROBOTS_META_NAMES,
    extract_page,
    largest_srcset,
)
from pixelforge.collect.crawl.licences import licence_from, parse_jsonld  # noqa: E402
from pixelforge.collect.crawl.urlnorm import _canonical_absolute, canonical_url  # noqa: E402
from pixelforge.collect.optout import x_robots_opt_out  # noqa: E402

_SPACE = re.compile(r"\s+")


def _clean(text):
    if text is None:
        return None
    text = _SPACE.sub(" ", text).strip()
    return text[:500] or None


def bs4_extract(html: str, page_url: str) -> dict:
    """The reference: the same fields with BeautifulSoup on lxml, written the way its docs suggest."""
    soup = BeautifulSoup(html, "lxml")
    base = page_url
    b = soup.find("base", href=True)
    if b:
        base = canonical_url(b["href"], page_url) or page_url
    robots, opt_out, meta_lic, author, og = [], None, None, None, []
    og_alt = None
    for m in soup.find_all("meta"):
        name = (m.get("name") or "").strip().lower()
        prop = (m.get("property") or "").strip().lower()
        content = (m.get("content") or "").strip()
        if name in ROBOTS_META_NAMES:
            robots.append(content)
        elif name == "tdm-reservation" and content == "1":
            opt_out = opt_out or "tdm-reservation meta: 1"
        elif name in LICENCE_META_NAMES and meta_lic is None:
            meta_lic = licence_from(content, "meta")
        elif name == "author" and content:
            author = author or content
        elif prop in ("og:image", "og:image:url", "og:image:secure_url") and content:
            og.append(content)
        elif prop == "og:image:alt" and content:
            og_alt = og_alt or _clean(content)
    d = x_robots_opt_out(robots)
    if d and opt_out is None:
        opt_out = f"meta robots: {d}"
    jsonld = parse_jsonld([s.get_text() for s in soup.find_all("script", type="application/ld+json")])
    page_link = head_link = None
    for node in soup.find_all(["a", "link", "area"], rel=True):
        rels = [r.lower() for r in node.get("rel", [])]
        if "license" in rels and node.find_parent("figure") is None:
            href = node.get("href")
            lic = licence_from(href and canonical_url(href, base) or href, "x")
            if node.name == "link":
                head_link = head_link or lic
            else:
                page_link = page_link or lic
    page_lic = page_link or head_link or licence_from(jsonld.license, "jsonld") or meta_lic
    links = []
    seen = set()
    for a in soup.find_all(["a", "area"], href=True):
        u = canonical_url(a["href"], base)
        if u and u not in seen:
            seen.add(u)
            links.append(u)
    images, seen_img = [], set()
    ld_images = {canonical_url(u, base): v for u, v in (jsonld.images or {}).items()}
    for img in soup.find_all("img"):
        picture = img.parent if img.parent is not None and img.parent.name == "picture" else None
        src, key = largest_srcset(img.get("srcset"))
        if src is None:
            src = img.get("src") or img.get("data-src")
        if picture is not None:
            for s in picture.find_all("source", srcset=True):
                su, sk = largest_srcset(s.get("srcset"))
                if su and sk > key:
                    src, key = su, sk
        if not src or not src.strip() or src.strip().lower().startswith("data:"):
            continue
        url = canonical_url(src, base)
        parts = urlsplit(url) if url else None
        if parts is None or _TRACKER.search(parts.path + ("?" + parts.query if parts.query else "")):
            continue
        if (img.get("role") or "").lower() in ("presentation", "none") or (img.get("aria-hidden") or "") == "true":
            continue
        small = False
        for attr in ("width", "height"):
            m = re.match(r"\s*(\d+)\s*(px)?\s*$", img.get(attr) or "")
            small = small or (m is not None and int(m.group(1)) < MIN_DECLARED_SIDE)
        alt = img.get("alt")
        if small or (alt is not None and not alt.strip()) or url in seen_img:
            continue
        seen_img.add(url)
        figure = img.find_parent("figure")
        cap, source = _clean(alt), "alt"
        if cap is None and figure is not None:
            fc = figure.find("figcaption")
            cap, source = (_clean(fc.get_text(" ")) if fc else None), "figcaption"
        if cap is None:
            cap, source = _clean(img.get("title")), "title"
        if cap is None:
            cap, source = _clean(img.get("aria-label")), "aria-label"
        if cap is None:
            cap, source = _bs4_context(figure or picture or img), "context"
        lic = None
        if figure is not None:
            for link in figure.find_all(["a", "link"], rel=True):
                if "license" in [r.lower() for r in link.get("rel", [])]:
                    href = link.get("href")
                    lic = licence_from(href and canonical_url(href, base) or href, "figure-link")
                    break
        ld_lic, ld_who = ld_images.get(url, (None, None))
        lic = lic or licence_from(ld_lic, "jsonld-image") or page_lic
        images.append(
            (url, cap, source if cap else None, lic.id if lic else None, ld_who or jsonld.attribution or author)
        )
    for content in og:
        url = canonical_url(content, base)
        if url and url not in seen_img:
            seen_img.add(url)
            h1 = soup.find("h1")
            cap, source = (og_alt, "alt") if og_alt else ((_clean(h1.get_text(" ")) if h1 else None), "context")
            images.append((url, cap, source if cap else None, page_lic.id if page_lic else None, None))
    return {"links": links, "images": images, "opt_out": opt_out}


def _bs4_context(node):
    cur = node
    for _ in range(4):
        for sib in list(cur.previous_siblings) + list(cur.next_siblings):
            if getattr(sib, "name", None) in CONTEXT_TAGS:
                t = _clean(sib.get_text(" "))
                if t:
                    return t
        cur = cur.parent
        if cur is None or cur.name in ("body", "html"):
            return None
    return None


def ours(html: str, url: str) -> dict:
    info = extract_page(html, url)
    return {
        "links": info.links,
        "images": [(i.url, i.caption, i.caption_source) for i in info.images],
        "opt_out": info.opt_out,
    }


def article(n: int, rng: random.Random) -> str:
    """A ~60 KB news-style page: heavy menu, scripts, styles, JSON-LD, figures and inline images."""
    menu = "".join(f'<li><a href="/section/{i}/?utm_source=menu&amp;ref={i}">Section {i}</a></li>' for i in range(150))
    style = "<style>" + " ".join(f".c{i}{{margin:{i}px;color:#{i:06x}}}" for i in range(300)) + "</style>"
    script = "<script>" + ";".join(f"var v{i}={i}*2" for i in range(400)) + "</script>"
    ld = json.dumps(
        {
            "@context": "https://schema.org",
            "@type": "NewsArticle",
            "license": "https://creativecommons.org/licenses/by/4.0/",
            "author": {"name": f"Writer {n % 7}"},
        }
    )
    body = []
    for k in range(rng.randint(10, 30)):
        body.append(f"<h2>Part {k} of story {n}</h2>")
        body.append("<p>" + " ".join(f"word{rng.randint(0, 999)}" for _ in range(80)) + "</p>")
        kind = rng.randint(0, 3)
        src = f"/media/{n}/{k}.jpg"
        if kind == 0:
            body.append(
                f'<figure class="c{k}"><img src="{src}" srcset="{src} 640w, /media/{n}/{k}-xl.jpg 1280w">'
                f"<figcaption>Figure {k}: a scene from story {n}</figcaption></figure>"
            )
        elif kind == 1:
            body.append(f'<div class="c{k}"><img src="{src}" alt="Photo {k} of story {n}" width="640"></div>')
        elif kind == 2:
            body.append(f'<picture><source srcset="/media/{n}/{k}.webp 800w"><img src="{src}" title="t{k}"></picture>')
        else:
            body.append(f'<p><img src="{src}"></p>')
        body.append('<img src="/static/spacer.gif" width="1" height="1" alt="">')
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>Story {n}</title>{style}{script}'
        f'<script type="application/ld+json">{ld}</script><meta name="robots" content="index, follow">'
        f'<meta property="og:image" content="/media/{n}/lead.jpg"></head><body><header><ul>{menu}</ul>'
        f"</header><main><article><h1>Story {n}</h1>{''.join(body)}</article></main>"
        f"<aside>{menu[:4000]}</aside><footer>{script}</footer></body></html>"
    )


def corpora(n: int) -> dict[str, list[tuple[str, str]]]:
    from pixelforge.collect.site.build import pages

    site = [(html, f"http://127.0.0.1:8000/{path}") for path, html in pages().items()]
    rng = random.Random(0)
    arts = [(article(i, rng), f"https://news.example.org/story/{i}.html") for i in range(n)]
    return {"bundled site": site, "synthetic articles": arts}


def time_it(fn, pages, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        _canonical_absolute.cache_clear()  # each round starts cold, for both sides alike
        t = time.perf_counter()
        for html, url in pages:
            fn(html, url)
        best = min(best, time.perf_counter() - t)
    return len(pages) / best


def crawl_wall_time(delay: float) -> dict:
    from pixelforge.collect.config import CollectConfig
    from pixelforge.collect.crawl import CrawlConfig, crawl
    from pixelforge.collect.site import SiteServer
    from pixelforge.run.settings import ExecutorSettings

    with SiteServer() as srv, tempfile.TemporaryDirectory() as tmp:
        cfg = CrawlConfig(
            seeds=(srv.url("/"),),
            delay=delay,
            download=CollectConfig(allow_private_networks=True, executor=ExecutorSettings(processes=1), image_size=64),
        )
        r = crawl(str(Path(tmp) / "site"), cfg)
    return {
        "delay": delay,
        "pages": r.pages_fetched,
        "crawl_seconds": r.crawl_seconds,
        "politeness_floor_seconds": r.politeness_floor_seconds,
        "parse_seconds": r.parse_seconds,
        "images": r.images_found,
        "download_seconds": r.download_seconds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pages", type=int, default=300, help="synthetic article pages")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--delay", type=float, default=0.1, help="--delay of the timed crawl of the bundled site")
    args = p.parse_args()
    results = {}
    for name, pages in corpora(args.pages).items():
        same = 0
        for html, url in pages:  # same answers first: a fast wrong parser proves nothing
            a, b = ours(html, url), bs4_extract(html, url)
            b_images = [i[:3] for i in b["images"]]
            if b_images == a["images"] and a["links"] == b["links"] and a["opt_out"] == b["opt_out"]:
                same += 1
            elif same == 0 and len(pages) - same == 1:
                print(f"  first difference: {url}", file=sys.stderr)
        kb = sum(len(h) for h, _ in pages) / len(pages) / 1024
        ref = time_it(bs4_extract, pages, args.rounds)
        mine = time_it(ours, pages, args.rounds)
        results[name] = {
            "pages": len(pages),
            "mean_kb": round(kb, 1),
            "identical_output": same,
            "pixelforge_pages_per_s": round(mine, 1),
            "bs4_lxml_pages_per_s": round(ref, 1),
            "ratio": round(mine / ref, 2),
        }
        print(
            f"{name}: {len(pages)} pages of {kb:.1f} KB: pixelforge {mine:.1f} pages/s, "
            f"BeautifulSoup+lxml {ref:.1f} pages/s, ratio {mine / ref:.2f}x",
            file=sys.stderr,
        )
    results["crawl"] = crawl_wall_time(args.delay)
    c = results["crawl"]
    print(
        f"crawl of the bundled site at --delay {c['delay']}: {c['pages']} pages in {c['crawl_seconds']} s; "
        f"politeness floor {c['politeness_floor_seconds']} s; parsing {c['parse_seconds']} s",
        file=sys.stderr,
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
