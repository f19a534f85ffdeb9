"""Write the bundled site's static pages (www/); run `python -m pixelforge.collect.site.build` after editing.

Every image is a synthetic shape whose URL names what it shows, and its caption (alt text,
figcaption, title, aria-label or nearby heading) is the exact description, so a crawl of the
site yields true image-text pairs. No third-party content.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from pixelforge.sources.shapes import caption, design

OUT = Path(__file__).resolve().parent / "www"
CC = "https://creativecommons.org/licenses"
ROBOTS = """User-agent: *
Disallow: /private/
Crawl-delay: 0.05
Sitemap: {origin}/sitemap.xml
"""
TDMREP = [{"location": "/reserved/*", "tdm-reservation": 1, "tdm-policy": "{origin}/reserved/policy.json"}]


def _images(gallery: str, n: int, seed: int, ext: str = "jpg") -> list[tuple[str, str]]:
    """(url, caption) of ``n`` single-shape images; the URL spells the drawing out for the server."""
    out = []
    for i, (specs, bg) in enumerate(design(n, seed)):
        s = specs[0]
        name = f"{i:03d}-{s.size}-{s.colour}-{s.shape}-{s.position.replace(' ', '-')}-on-{bg}.{ext}"
        out.append((f"/images/{gallery}/{name}", caption(s, bg)))
    return out


def _page(title: str, body: str, head: str = "", nav: bool = True) -> str:
    links = (
        (
            '<nav><a href="/">Home</a> <a href="/gallery/">Galleries</a> <a href="/blog/">Blog</a> '
            '<a href="/about.html#team">About</a></nav>'
        )
        if nav
        else ""
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f'{head}</head>\n<body>\n<img src="/images/site/000-small-white-circle-center-on-black.png" alt="" '
        f'class="logo">\n{links}\n<h1>{html.escape(title)}</h1>\n{body}\n'
        f'<img src="/pixel.gif?page={html.escape(title[:8])}" width="1" height="1" alt="">\n</body></html>\n'
    )


def _grid(images: list[tuple[str, str]], attr: str = "alt") -> str:
    cells = []
    for url, text in images:
        cells.append(f'<div class="cell"><img src="{url}" {attr}="{html.escape(text)}" width="96" height="96"></div>')
    return '<div class="grid">\n' + "\n".join(cells) + "\n</div>"


def pages() -> dict[str, str]:
    """Path -> file text of every static page."""
    p: dict[str, str] = {}
    galleries = [
        (
            "1",
            "Circles and friends (CC BY)",
            "",
            f'<footer>Licensed <a rel="license" href="{CC}/by/4.0/">CC BY 4.0</a>.</footer>',
        ),
        ("2", "Shapes on grey (CC BY-NC)", f'<link rel="license" href="{CC}/by-nc/4.0/">', ""),
        (
            "3",
            "Studio collection (all rights reserved)",
            '<meta name="dc.rights" content="(c) 2026 Example Studio. All rights reserved.">'
            '<meta name="author" content="Example Studio">',
            "<footer>(c) 2026 Example Studio. All rights reserved.</footer>",
        ),
        (
            "4",
            "Open shapes (JSON-LD, CC BY-SA)",
            '<script type="application/ld+json">'
            + json.dumps(
                {
                    "@context": "https://schema.org",
                    "@type": "ImageGallery",
                    "license": f"{CC}/by-sa/4.0/",
                    "creator": {"@type": "Person", "name": "Ada Shape"},
                }
            )
            + "</script>",
            "",
        ),
    ]
    for gid, title, head, foot in galleries:
        imgs = _images(f"g{gid}", 30, seed=int(gid))
        body = (
            f"<p>Thirty shapes, each described in its alt text.</p>\n{_grid(imgs)}\n"
            f'<p><a href="/gallery/{gid}.html?sort=name&amp;utm_source=gallery">Sort by name</a> '
            f'<a href="/gallery/{gid}.html#top">Top</a></p>\n{foot}'
        )
        p[f"gallery/{gid}.html"] = _page(title, body, head)

    # 5: figures with figcaptions; each figure carries its own licence link; page-wide dcterms meta
    imgs = _images("g5", 30, seed=5)
    figs = []
    for i, (url, text) in enumerate(imgs):
        lic = '<a rel="license" href="https://creativecommons.org/publicdomain/zero/1.0/">CC0</a>' if i % 2 == 0 else ""
        figs.append(
            f'<figure><img src="{url}" width="96" height="96"><figcaption>{html.escape(text)}'
            f"</figcaption>{lic}</figure>"
        )
    p["gallery/5.html"] = _page(
        "Figures (per-figure licences)", "\n".join(figs), f'<meta name="dcterms.license" content="{CC}/by-nc-sa/4.0/">'
    )

    # 6: picture/srcset, title, aria-label and context captions; no licence stated
    imgs = _images("g6", 30, seed=6)
    parts = []
    for i, (url, text) in enumerate(imgs):
        stem, ext = url.rsplit(".", 1)
        t = html.escape(text)
        kind = i % 4
        if kind == 0:
            parts.append(
                f'<picture><source type="image/webp" srcset="{stem}.webp 96w, {stem}@2x.webp 192w">'
                f'<img src="{url}" alt="{t}"></picture>'
            )
        elif kind == 1:
            parts.append(f'<img src="{url}" srcset="{url} 1x, {stem}@2x.{ext} 2x" title="{t}">')
        elif kind == 2:
            parts.append(f'<img src="{url}" aria-label="{t}">')
        else:
            parts.append(f'<section><h3>{t}</h3><div><img src="{url}"></div></section>')
    p["gallery/6.html"] = _page("Many ways to say what an image shows", "\n".join(parts))

    # 7: JSON-LD ImageObject per image, each with its licence and creator
    imgs = _images("g7", 30, seed=7)
    graph = [
        {
            "@type": "ImageObject",
            "contentUrl": url,
            "license": f"{CC}/{'by' if i % 3 else 'by-nd'}/4.0/",
            "creator": {"@type": "Person", "name": f"Artist {i % 5}"},
        }
        for i, (url, _) in enumerate(imgs)
    ]
    p["gallery/7.html"] = _page(
        "Credited images (JSON-LD per image)",
        _grid(imgs),
        '<script type="application/ld+json">'
        + json.dumps({"@context": "https://schema.org", "@graph": graph})
        + "</script>",
    )

    # 8: og:image and relative URLs under <base href>
    imgs = _images("g8", 30, seed=8)
    rel = [(u.replace("/images/g8/", ""), t) for u, t in imgs]
    p["gallery/8.html"] = _page(
        "Relative links under a base",
        _grid(rel),
        '<base href="/images/g8/">'
        '<meta property="og:image" '
        'content="/images/og/000-large-blue-star-center-on-white.jpg">'
        '<meta property="og:image:alt" content="a large blue star in the center on a white '
        'background">',
    )
    # opt-outs: meta robots, X-Robots-Tag (added by the server), TDM meta, image-level attributes
    p["gallery/members.html"] = _page(
        "Members only (meta robots noai)",
        _grid(_images("members", 12, 11)),
        '<meta name="robots" content="noai, noimageai">',
    )
    p["gallery/press.html"] = _page("Press kit (X-Robots-Tag noai)", _grid(_images("press", 8, 12)))
    p["gallery/tdm-meta.html"] = _page(
        "TDM reserved (meta)", _grid(_images("tdm", 6, 13)), '<meta name="tdm-reservation" content="1">'
    )
    imgs = _images("noai", 8, 14)
    cells = []
    for i, (url, text) in enumerate(imgs):
        extra = " data-noai" if i % 4 == 0 else ' data-robots="noimageai"' if i % 4 == 1 else ""
        cells.append(f'<img src="{url}" alt="{html.escape(text)}"{extra}>')
    p["gallery/noai-images.html"] = _page("Some images opt out", "\n".join(cells))
    p["gallery/hidden.html"] = _page("Only in the sitemap", _grid(_images("hidden", 6, 15)))
    p["reserved/index.html"] = _page("Reserved by tdmrep.json", _grid(_images("reserved", 8, 16)))
    p["private/index.html"] = _page("Private (robots.txt disallows)", _grid(_images("private", 10, 17)))
    gal_links = "".join(f'<li><a href="/gallery/{g}.html">Gallery {g}</a></li>' for g in range(1, 9))
    extra = "".join(
        f'<li><a href="/gallery/{n}.html">{n}</a></li>' for n in ("members", "press", "tdm-meta", "noai-images")
    )
    p["gallery/index.html"] = _page("Galleries", f"<ul>{gal_links}{extra}</ul>")

    # blog: images without alt, captioned by the nearest heading or paragraph
    posts = []
    for n in range(1, 6):
        imgs = _images(f"blog{n}", 4, 20 + n)
        body = []
        for url, text in imgs:
            body.append(
                f'<h2>{html.escape(text.capitalize())}</h2>\n<p><img src="{url}"></p>\n'
                "<p>More words about this picture follow here.</p>"
            )
        nxt = f'<a href="/blog/{n + 1}.html?utm_campaign=next&amp;utm_medium=web">Next post</a>' if n < 5 else ""
        p[f"blog/{n}.html"] = _page(f"Post {n}", "<article>" + "\n".join(body) + f"</article>\n{nxt}")
        posts.append(f'<li><a href="/blog/{n}.html">Post {n}</a></li>')
    p["blog/index.html"] = _page(
        "Blog",
        f"<ul>{''.join(posts)}</ul>"
        '<a href="/blog/index.html?page=1">page 1</a> '
        '<a href="/blog/?utm_source=self">self</a>',
    )
    p["calendar/index.html"] = _page("Calendar", '<a href="/calendar/day/1.html">Day 1</a>')
    # malformed markup: unclosed tags, stray end tags, unquoted attributes, a broken comment
    imgs = _images("broken", 5, 30)
    broken = "".join(f"<td><img src={u} alt='{html.escape(t)}'><p>unclosed<b>bold</td>" for u, t in imgs)
    p["legacy/broken.html"] = (
        "<html><head><title>Broken page</title></head><body><table><tr>"
        + broken
        + "</div></span><!-- never closed comment <a href=/gallery/1.html>x</a>"
    )
    imgs = _images("latin1", 5, 31)
    cells = "".join(f'<img src="{u}" alt="café: {html.escape(t)}">' for u, t in imgs)
    p["legacy/latin1.html"] = (
        '<html><head><meta charset="windows-1252"><title>Café</title></head><body>'
        f"<h1>Café gallery</h1>{cells}</body></html>"
    )
    p["about.html"] = _page(
        "About this site",
        '<p id="team">A demo site for pixelforge: every image is drawn by '
        'code.</p><a href="/docs/notes.txt">notes</a> <a href="/missing.html">gone</a> '
        '<a href="/loop.html">loop</a> <a href="/legacy/broken.html">old page</a> '
        '<a href="/legacy/latin1.html">old café page</a> '
        '<a href="https://example.org/elsewhere.html">elsewhere</a>',
        '<meta name="author" content="The pixelforge authors">',
    )
    home = (
        "<p>Shapes, drawn by code, with true captions.</p><ul>"
        '<li><a href="/gallery/">Galleries</a></li><li><a href="/blog/">Blog</a></li>'
        '<li><a href="/calendar/">Calendar</a></li><li><a href="/private/">Private</a></li>'
        '<li><a href="/reserved/">Reserved</a></li><li><a href="/about.html">About</a></li>'
        '<li><a href="/index.html?utm_source=home&amp;fbclid=abc#x">Home again</a></li></ul>'
    )
    p["index.html"] = _page("Pixelforge demo site", home)
    return p


def write(out: Path = OUT) -> int:
    """Write every page plus robots.txt, sitemap.xml and tdmrep.json; return the number of pages."""
    made = pages()
    for rel, text in made.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text.encode("cp1252") if rel == "legacy/latin1.html" else text.encode("utf-8")
        path.write_bytes(data)
    (out / "robots.txt").write_text(ROBOTS)
    (out / ".well-known").mkdir(exist_ok=True)
    (out / ".well-known" / "tdmrep.json").write_text(json.dumps(TDMREP, indent=1) + "\n")
    (out / "docs").mkdir(exist_ok=True)
    (out / "docs" / "notes.txt").write_text("Plain text, not a page.\n")
    locs = ["/", "/gallery/", "/gallery/hidden.html", "/blog/"] + [f"/gallery/{g}.html" for g in range(1, 9)]
    (out / "sitemap.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        + "".join(f"  <url><loc>{{origin}}{loc}</loc></url>\n" for loc in locs)
        + "</urlset>\n"
    )
    return len(made)


if __name__ == "__main__":
    print(f"wrote {write()} pages to {OUT}")
