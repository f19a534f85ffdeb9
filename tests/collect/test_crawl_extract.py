"""Unit tests of the crawler's parts: canonical URLs, the extractor, licences, TDMRep, charsets, sitemaps."""

import gzip

import pytest

from pixelforge.collect.crawl.crawler import decode_html, sitemap_urls
from pixelforge.collect.crawl.extract import extract_page, largest_srcset
from pixelforge.collect.crawl.licences import licence_id, parse_jsonld
from pixelforge.collect.crawl.politeness import tdmrep_rules
from pixelforge.collect.crawl.urlnorm import Scope, canonical_url, url_pattern

PAGE = "http://site.test/blog/post.html"


@pytest.mark.parametrize(
    "url,base,want",
    [
        ("HTTP://Site.TEST:80/a/./b/../c.html#frag", None, "http://site.test/a/c.html"),
        ("https://site.test:443/x?b=2&a=1&utm_source=news&fbclid=z&gclid=q", None, "https://site.test/x?a=1&b=2"),
        ("https://site.test:8443", None, "https://site.test:8443/"),
        ("http://site.test:8080/a/b.jpg", None, "http://site.test:8080/a/b.jpg"),  # already canonical
        ("https://site.test:443/a/b.jpg", None, "https://site.test/a/b.jpg"),
        ("http://Site.test./a/.well-known/x", None, "http://site.test/a/.well-known/x"),
        ("/gallery/1.html?utm_medium=web#top", PAGE, "http://site.test/gallery/1.html"),
        ("img/a%7eb.jpg", PAGE, "http://site.test/blog/img/~b.jpg".replace("~b", "a~b")),
        ("//cdn.test/i.jpg", PAGE, "http://cdn.test/i.jpg"),
        ("../up.html?z=&a=1", PAGE, "http://site.test/up.html?a=1&z="),
        ("mailto:me@site.test", PAGE, None),
        ("javascript:void(0)", PAGE, None),
        ("ftp://site.test/x", None, None),
        ("http://[::1]:80/x", None, "http://[::1]/x"),
        ("http://bad:port/", None, None),
        ("  ", PAGE, None),
    ],
)
def test_canonical_url(url, base, want):
    assert canonical_url(url, base) == want


def test_url_pattern_and_scope():
    assert url_pattern("http://s.test/calendar/day/17.html?view=week&x=3") == "s.test/calendar/day/#.html?view=&x="
    assert url_pattern("http://s.test/calendar/day/2.html") == url_pattern("http://s.test/calendar/day/999.html")
    seeds = ["http://www.s.test/gallery/index.html"]
    site, domain, prefix = Scope("site", seeds), Scope("domain", seeds), Scope("prefix", seeds)
    assert site.allows("http://www.s.test/about.html") and not site.allows("http://img.s.test/a.html")
    assert domain.allows("http://img.s.test/a.html") and domain.allows("http://s.test/")
    assert not domain.allows("http://evil-s.test/") and not domain.allows("http://s.test.evil.org/")
    assert prefix.allows("http://www.s.test/gallery/2.html") and not prefix.allows("http://www.s.test/about.html")


def _one(html, **kw):
    info = extract_page(f"<html><head>{kw.get('head', '')}</head><body>{html}</body></html>", PAGE)
    return info


@pytest.mark.parametrize(
    "body,caption,source",
    [
        ('<img src="a.jpg" alt=" An  alt\ntext " title="t" aria-label="l">', "An alt text", "alt"),
        (
            '<figure><img src="a.jpg" title="t"><figcaption>The <b>figure</b> caption</figcaption></figure>',
            "The figure caption",
            "figcaption",
        ),
        ('<figure><div><img src="a.jpg"></div><figcaption>deep</figcaption></figure>', "deep", "figcaption"),
        ('<img src="a.jpg" title="A title" aria-label="l">', "A title", "title"),
        ('<img src="a.jpg" aria-label="An aria label">', "An aria label", "aria-label"),
        ('<h2>Near heading</h2><p>first para</p><div><img src="a.jpg"></div>', "first para", "context"),
        (
            '<section><h3>Section head</h3><div><span><img src="a.jpg"></span></div></section>',
            "Section head",
            "context",
        ),
        ('<div><img src="a.jpg"></div><p>after the image</p>', "after the image", "context"),
        ('<div><img src="a.jpg"></div>', None, None),
    ],
)
def test_caption_sources_in_order(body, caption, source):
    [img] = _one(body).images
    assert (img.url, img.caption, img.caption_source) == ("http://site.test/blog/a.jpg", caption, source)


def test_decorative_images_are_skipped_and_counted():
    info = _one(
        '<img src="logo.png" alt=""><img src="r.png" role="presentation" alt="x">'
        '<img src="h.png" aria-hidden="true" alt="x"><img src="w.png" width="31" alt="x">'
        '<img src="h2.png" height="16px" alt="x"><img src="/pixel.gif?id=3" alt="x">'
        '<img src="/t/track.gif" alt="x"><img src="data:image/png;base64,AAAA" alt="x"><img alt="x">'
        '<img src="ok.png" width="32" height="32" alt="kept">'
    )
    assert [i.caption for i in info.images] == ["kept"]
    assert info.skipped == {
        "empty_alt": 1,
        "presentation": 2,
        "small_declared": 2,
        "tracking_pixel": 2,
        "data_uri": 1,
        "no_src": 1,
    }


def test_srcset_picture_og_image_and_base_href():
    info = _one(
        '<img src="s.jpg" srcset="s-320.jpg 320w, s-1280.jpg 1280w, s-640.jpg 640w" alt="a">'
        '<img src="d.jpg" srcset="d1.jpg, d3.jpg 3x, d2.jpg 2x" alt="b">'
        '<picture><source srcset="p-800.webp 800w, p-400.webp 400w" type="image/webp">'
        '<source srcset="p-1600.jpg 1600w"><img src="p.jpg" alt="c"></picture>'
        '<img src="s-1280.jpg" alt="dup">',
        head='<base href="https://cdn.test/m/"><meta property="og:image" content="/og.jpg">'
        '<meta property="og:image:alt" content="the og alt">',
    )
    got = [(i.url, i.caption, i.caption_source, i.element) for i in info.images]
    assert got == [
        ("https://cdn.test/m/s-1280.jpg", "a", "alt", "img"),
        ("https://cdn.test/m/d3.jpg", "b", "alt", "img"),
        ("https://cdn.test/m/p-1600.jpg", "c", "alt", "picture"),
        ("https://cdn.test/og.jpg", "the og alt", "alt", "og:image"),
    ]
    assert largest_srcset("a.jpg 1.5x, b.jpg 2x") == ("b.jpg", 2.0)
    assert largest_srcset("") == (None, -1.0)


def test_links_are_canonical_and_unique():
    info = _one(
        '<a href="/x.html#a">1</a><a href="/x.html?utm_source=y">2</a><a href="mailto:a@b">m</a>'
        '<map><area href="y.html"></map><a>no href</a>'
    )
    assert info.links == ["http://site.test/x.html", "http://site.test/blog/y.html"]


@pytest.mark.parametrize(
    "head,body,lic,url,source",
    [
        (
            "",
            '<footer><a rel="license noopener" href="https://creativecommons.org/licenses/by/4.0/">x</a></footer>',
            "cc-by-4.0",
            "https://creativecommons.org/licenses/by/4.0/",
            "page-link",
        ),
        (
            '<link rel="license" href="https://creativecommons.org/licenses/by-nc/4.0/deed.de">',
            "",
            "cc-by-nc-4.0",
            "https://creativecommons.org/licenses/by-nc/4.0/deed.de",
            "link",
        ),
        (
            '<script type="application/ld+json">{"@graph": [{"@type": "WebPage", "license": '
            '{"@id": "https://creativecommons.org/licenses/by-sa/3.0/"}}]}</script>',
            "",
            "cc-by-sa-3.0",
            "https://creativecommons.org/licenses/by-sa/3.0/",
            "jsonld",
        ),
        (
            '<meta name="DC.rights" content="(c) 2026 Someone. All Rights Reserved.">',
            "",
            "all-rights-reserved",
            None,
            "meta dc.rights",
        ),
        (
            '<meta name="dcterms.license" content="https://creativecommons.org/publicdomain/zero/1.0/">',
            "",
            "cc0-1.0",
            "https://creativecommons.org/publicdomain/zero/1.0/",
            "meta dcterms.license",
        ),
        (
            '<meta name="dcterms.license" content="https://example.org/our-terms">',
            "",
            "unknown",
            "https://example.org/our-terms",
            "meta dcterms.license",
        ),
    ],
)
def test_each_page_licence_form(head, body, lic, url, source):
    [img] = _one('<img src="a.jpg" alt="a">' + body, head=head).images
    assert (img.licence.id, img.licence.url, img.licence.source) == (lic, url, source)


def test_licence_precedence_figure_then_jsonld_image_then_page():
    head = (
        '<link rel="license" href="https://creativecommons.org/licenses/by-nc/4.0/">'
        '<meta name="author" content="Meta Author">'
        '<script type="application/ld+json">[{"@type": "ImageObject", "contentUrl": "/blog/j.jpg", '
        '"license": "https://creativecommons.org/licenses/by-nd/2.0/", "creator": [{"name": "A"}, "B"]}]'
        "</script>"
    )
    body = (
        '<figure><img src="f.jpg" alt="f"><a rel="license" href="https://creativecommons.org/licenses/by/2.5/">'
        'l</a></figure><img src="j.jpg" alt="j"><img src="p.jpg" alt="p">'
    )
    got = [(i.licence.id, i.licence.source, i.attribution) for i in _one(body, head=head).images]
    assert got == [
        ("cc-by-2.5", "figure-link", "Meta Author"),
        ("cc-by-nd-2.0", "jsonld-image", "A, B"),
        ("cc-by-nc-4.0", "link", "Meta Author"),
    ]
    assert _one('<img src="a.jpg" alt="a">').images[0].licence is None


@pytest.mark.parametrize(
    "text,want",
    [
        ("https://creativecommons.org/licenses/by-nc-sa/4.0/", "cc-by-nc-sa-4.0"),
        ("http://creativecommons.org/licenses/by-nc-nd/3.0/de/", "cc-by-nc-nd-3.0"),
        ("https://creativecommons.org/publicdomain/mark/1.0/", "pdm-1.0"),
        ("CC BY-NC 4.0", "cc-by-nc-4.0"),
        ("cc-by-sa-2.0", "cc-by-sa-2.0"),
        ("CC BY", "cc-by-4.0"),
        ("CC0", "cc0-1.0"),
        ("All rights reserved.", "all-rights-reserved"),
        ("MIT", "unknown"),
        ("", "unknown"),
    ],
)
def test_licence_ids(text, want):
    assert licence_id(text) == want


def test_jsonld_attribution_and_malformed_blocks():
    ld = parse_jsonld(
        [
            "{not json",
            '{"@type": "Article", "author": {"@type": "Person", "name": "Ann"}}',
            '{"license": "CC BY-NC 4.0", "creator": "Bob"}',
        ]
    )
    assert (ld.license, ld.attribution) == ("CC BY-NC 4.0", "Ann")


@pytest.mark.parametrize(
    "head,img_attrs,page,image",
    [
        ('<meta name="robots" content="index, noai">', "", "meta robots: noai", None),
        ('<meta name="ROBOTS" content="noimageai">', "", "meta robots: noimageai", None),
        ('<meta name="robots" content="noindex, follow">', "", "meta robots: noindex", None),
        ('<meta name="pixelforge" content="noai">', "", "meta robots: noai", None),
        ('<meta name="googlebot" content="noai">', "", None, None),
        ('<meta name="tdm-reservation" content="1">', "", "tdm-reservation meta: 1", None),
        ('<meta name="tdm-reservation" content="0">', "", None, None),
        ("", "data-noai", None, "data-noai"),
        ("", 'data-noai="true"', None, "data-noai"),
        ("", 'data-noai="false"', None, None),
        ("", 'data-robots="noimageai"', None, "img data-robots: noimageai"),
        ("", 'robots="noai"', None, "img robots: noai"),
    ],
)
def test_each_opt_out_form_in_html(head, img_attrs, page, image):
    info = _one(f'<img src="a.jpg" alt="a" {img_attrs}>', head=head)
    assert (info.opt_out, info.images[0].opt_out) == (page, image)


def test_nofollow_and_canonical():
    info = _one(
        '<a href="/n.html">n</a>',
        head='<meta name="robots" content="nofollow"><link rel="canonical" href="/blog/post.html?utm_source=x">',
    )
    assert info.nofollow and info.opt_out is None and info.canonical == PAGE


def test_malformed_html_still_yields_images_and_links():
    html = (
        "<html><head><title>Broken</title><body><table><tr><td><img src=a.jpg alt='one'><p>open <b>bold"
        "</td><td><img src=b.jpg alt=two></div></span></i><a href=/next.html>next<a href='/x.html'>x"
        '<img src="c.jpg" alt="three" <div>stray</tr></table></body></html><!-- unterminated <a href=/z>'
    )
    info = extract_page(html, PAGE)
    assert [i.caption for i in info.images] == ["one", "two", "three"]
    assert info.links == ["http://site.test/next.html", "http://site.test/x.html"]
    assert extract_page("", PAGE).images == [] and extract_page("\x00\xff<<<>>>", PAGE).links == []


def test_tdmrep_rules():
    rules = tdmrep_rules(
        b'[{"location": "/reserved/*", "tdm-reservation": 1},'
        b' {"location": "/reserved/open/*", "tdm-reservation": 0},'
        b' {"location": "/exact.html$", "tdm-reservation": 1}, {"bad": 1}, 7]'
    )
    from pixelforge.collect.crawl.politeness import HostRules
    from pixelforge.collect.optout import RobotsPolicy

    host = HostRules(RobotsPolicy(None, True), None, [], rules)
    assert host.tdm_reserved("/reserved/a.jpg") and not host.tdm_reserved("/reserved/open/a.jpg")
    assert host.tdm_reserved("/exact.html") and not host.tdm_reserved("/exact.html/more")
    assert not host.tdm_reserved("/other.html")
    assert tdmrep_rules(b"{not json") == [] and tdmrep_rules(b'{"location": "/"}') == []


@pytest.mark.parametrize(
    "data,ctype,text,charset",
    [
        ("caf\u00e9".encode("utf-8"), "text/html; charset=utf-8", "caf\u00e9", "utf-8"),
        ("caf\u00e9".encode("cp1252"), "text/html; charset=utf-8", "caf\u00e9", "cp1252"),  # wrong header
        (
            b'<meta charset="iso-8859-7">' + "\u03b1".encode("iso-8859-7"),
            "text/html",
            '<meta charset="iso-8859-7">\u03b1',
            "iso8859-7",
        ),
        ("caf\u00e9".encode("utf-8"), "text/html; charset=nonsense-42", "caf\u00e9", "utf-8"),  # unknown charset
        (b"\xef\xbb\xbfhi", "text/html; charset=latin-1", "hi", "utf-8"),  # BOM wins
        (b"plain", None, "plain", "utf-8"),
    ],
)
def test_decode_html(data, ctype, text, charset):
    assert decode_html(data, ctype) == (text, charset)


def test_sitemap_urls():
    body = (
        b'<?xml version="1.0"?><urlset><url><loc> http://s.test/a.html?x=1&amp;y=2 </loc></url>'
        b"<url><loc>http://s.test/b.html</loc></url></urlset>"
    )
    assert sitemap_urls(body) == (["http://s.test/a.html?x=1&y=2", "http://s.test/b.html"], False)
    index = b"<sitemapindex><sitemap><loc>http://s.test/s1.xml</loc></sitemap></sitemapindex>"
    assert sitemap_urls(gzip.compress(index)) == (["http://s.test/s1.xml"], True)
    assert sitemap_urls(b"\x1f\x8bnot gzip") == ([], False)
