"""`collect crawl` end to end against the bundled demo site (served on 127.0.0.1), through the CLI."""

import json
import os
import subprocess
import sys
import urllib.request

import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.collect.site import SiteServer, draw
from pixelforge.store import Dataset, query

FAST = ["--allow-private-networks", "--delay", "0", "--processes", "1", "--image-size", "32", "--json"]


@pytest.fixture(scope="module")
def site():
    with SiteServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def crawled(site, tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl") / "site"
    assert main(["collect", "crawl", site.url("/"), "--out", str(out)] + FAST) == 0
    pages = {r["url"].replace(site.url(""), ""): r for r in pq.read_table(out / "pages.parquet").to_pylist()}
    return Dataset.open(str(out)), pages, json.loads((out / "stats.json").read_text())


def _q(ds, sql):
    return query(ds, sql).to_pylist()


def test_pages_table(crawled, site):
    ds, pages, stats = crawled
    assert len(pages) == 38
    errors = {u: p["error"] for u, p in pages.items() if p["error"]}
    assert errors == {
        "/private/": "opt_out_robots",
        "/missing.html": "http_4xx",
        "/docs/notes.txt": "not_html",
        "/loop.html": "redirect_limit",
        "/index.html": "duplicate",
        "/blog/index.html?page=1": "duplicate",
        "/gallery/1.html?sort=name": "duplicate",
        "/gallery/2.html?sort=name": "duplicate",
        "/gallery/3.html?sort=name": "duplicate",
        "/gallery/4.html?sort=name": "duplicate",
        "/calendar/day/1.html?view=week": "duplicate",
    }
    assert pages["/"]["depth"] == 0 and pages["/gallery/1.html"]["depth"] == 2
    assert pages["/gallery/1.html"]["parent"] == site.url("/gallery/")
    assert pages["/gallery/1.html"]["content_type"] == "text/html; charset=utf-8"
    assert pages["/missing.html"]["status"] == 404 and pages["/private/"]["status"] is None
    assert pages["/docs/notes.txt"]["detail"] == "Content-Type text/plain; charset=utf-8 is not HTML"
    found = {u: p["images_found"] for u, p in pages.items() if p["images_found"]}
    assert found == {
        "/gallery/1.html": 30,
        "/gallery/2.html": 30,
        "/gallery/3.html": 30,
        "/gallery/4.html": 30,
        "/gallery/5.html": 30,
        "/gallery/6.html": 30,
        "/gallery/7.html": 30,
        "/gallery/8.html": 31,
        "/gallery/members.html": 12,
        "/gallery/press.html": 8,
        "/gallery/tdm-meta.html": 6,
        "/gallery/noai-images.html": 8,
        "/reserved/": 8,
        "/blog/1.html": 4,
        "/blog/2.html": 4,
        "/blog/3.html": 4,
        "/blog/4.html": 4,
        "/blog/5.html": 4,
        "/legacy/broken.html": 5,
        "/legacy/latin1.html": 5,
    }
    licences = {u: p["license"] for u, p in pages.items() if p["license"]}
    assert licences == {
        "/gallery/1.html": "cc-by-4.0",
        "/gallery/2.html": "cc-by-nc-4.0",
        "/gallery/3.html": "all-rights-reserved",
        "/gallery/4.html": "cc-by-sa-4.0",
        "/gallery/5.html": "cc-by-nc-sa-4.0",
    }
    opted = {u: p["opt_out"] for u, p in pages.items() if p["opt_out"]}
    assert opted == {
        "/gallery/members.html": "meta robots: noai",
        "/gallery/press.html": "x-robots-tag: noai",
        "/gallery/tdm-meta.html": "tdm-reservation meta: 1",
        "/reserved/": "tdmrep.json: tdm-reservation 1",
    }
    assert pages["/legacy/latin1.html"]["charset"] == "cp1252"
    crawl = stats["crawl"]
    assert crawl["skipped_urls"] == {"max_depth": 2, "out_of_scope": 3}
    assert crawl["decorative_images"] == {"empty_alt": 23, "tracking_pixel": 23}
    # robots.txt asks for Crawl-delay 0.05 (over our --delay 0): 37 page requests, 36 gaps
    assert crawl["pages_fetched"] == 36 and crawl["politeness_floor_seconds"] == 1.8


def test_robots_disallowed_and_opted_out_never_requested(crawled, site):
    paths = set(site.hits)
    assert not [p for p in paths if p.startswith("/private/")]
    withheld = ("/images/members/", "/images/press/", "/images/tdm/", "/images/reserved/", "/images/private/")
    assert not [p for p in paths if p.startswith(withheld)]
    noai = sorted(p.rsplit("/", 1)[1][:3] for p in paths if p.startswith("/images/noai/"))
    assert noai == ["002", "003", "006", "007"]  # 000/004 data-noai and 001/005 data-robots were withheld
    # robots.txt: once by the crawler, once by the download worker; tdmrep.json once
    assert site.hits["/robots.txt"] == 2 and site.hits["/.well-known/tdmrep.json"] == 1


def test_samples_and_failures(crawled):
    ds, _, _ = crawled
    assert ds.num_samples == 275 and ds.info["num_failures"] == 38
    fails = ds.failures().to_pylist()
    by_reason = {}
    for f in fails:
        by_reason[f["reason"]] = by_reason.get(f["reason"], 0) + 1
    assert by_reason == {"opt_out_header": 8, "opt_out_image": 4, "opt_out_page": 26}
    members = [f for f in fails if "/members/" in f["url"]]
    assert len(members) == 12 and members[0]["detail"].startswith("meta robots: noai (page http://")
    assert {f["detail"].split(" (")[0] for f in fails if "/noai/" in f["url"]} == {
        "data-noai",
        "img data-robots: noimageai",
    }
    rows = _q(ds, "SELECT caption_source, license, count(*) AS n FROM samples GROUP BY ALL ORDER BY ALL")
    assert [(r["caption_source"], r["license"], r["n"]) for r in rows] == [
        ("alt", "all-rights-reserved", 30),
        ("alt", "cc-by-4.0", 50),
        ("alt", "cc-by-nc-4.0", 30),
        ("alt", "cc-by-nd-4.0", 10),
        ("alt", "cc-by-sa-4.0", 30),
        ("alt", "unknown", 53),
        ("aria-label", "unknown", 7),
        ("context", "unknown", 27),
        ("figcaption", "cc-by-nc-sa-4.0", 15),
        ("figcaption", "cc0-1.0", 15),
        ("title", "unknown", 8),
    ]
    assert (
        _q(
            ds,
            "SELECT count(*) AS n FROM samples WHERE source_kind = 'crawl' AND page_url IS NOT NULL "
            "AND caption IS NOT NULL AND opt_out IS NULL AND width = 32",
        )[0]["n"]
        == 275
    )


def _described(name):
    """The caption a site image's file name spells: 003-large-red-circle-top-left-on-blue.jpg -> a large ..."""
    stem = name.rsplit("/", 1)[1].rsplit(".", 1)[0].replace("@2x", "")
    words, background = stem.split("-on-")
    _, size, colour, shape, *position = words.split("-")
    return f"a {size} {colour} {shape} in the {' '.join(position)} on a {background} background"


def test_captions_are_true_descriptions(crawled):
    ds, _, _ = crawled
    rows = _q(ds, "SELECT source, caption, caption_source, attribution, meta FROM samples ORDER BY source")
    by_name = {r["source"].rsplit("/images/", 1)[1]: r for r in rows}
    # every caption, whatever its source, is the exact description of the drawn image
    assert all(r["caption"].lower().removeprefix("café: ") == _described(n) for n, r in by_name.items())
    r = by_name["g5/001-large-red-circle-center-on-gray.jpg"]
    assert (r["caption"], r["caption_source"]) == (
        "a large red circle in the center on a gray background",
        "figcaption",
    )
    r = by_name["blog1/000-small-yellow-cross-center-on-gray.jpg"]
    assert (r["caption"], r["caption_source"]) == ("A small yellow cross in the center on a gray background", "context")
    g7 = [r for n, r in by_name.items() if n.startswith("g7/")]
    assert len(g7) == 30 and {json.loads(r["meta"])["license_source"] for r in g7} == {"jsonld-image"}
    assert sorted({r["attribution"] for r in g7}) == [f"Artist {i}" for i in range(5)]
    assert by_name["g3/000-large-purple-star-bottom-right-on-white.jpg"]["attribution"] == "Example Studio"
    g6 = [n for n in by_name if n.startswith("g6/")]
    assert len(g6) == 30
    assert sum(n.endswith("@2x.webp") for n in g6) == 8  # the largest <picture><source> entry
    assert sum(n.endswith("@2x.jpg") for n in g6) == 8  # the 2x srcset entry
    latin = [r["caption"] for n, r in by_name.items() if n.startswith("latin1/")]
    assert len(latin) == 5 and all(c.startswith("café: a ") for c in latin)
    assert by_name["og/000-large-blue-star-center-on-white.jpg"]["caption_source"] == "alt"
    assert len([n for n in by_name if n.startswith("g8/")]) == 30  # relative to <base href="/images/g8/">


def test_calendar_trap_is_bounded(site, tmp_path, capsys):
    out = tmp_path / "cal"
    assert (
        main(
            [
                "collect",
                "crawl",
                site.url("/calendar/"),
                "--out",
                str(out),
                "--scope",
                "prefix",
                "--max-depth",
                "40",
                "--max-per-pattern",
                "5",
            ]
            + FAST
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert (res["pages_fetched"], res["page_errors"], res["samples"]) == (11, {"duplicate": 5}, 0)
    urls = [r["url"].replace(site.url(""), "") for r in pq.read_table(out / "pages.parquet").to_pylist()]
    assert sorted(u for u in urls if "?" not in u) == ["/calendar/"] + [f"/calendar/day/{d}.html" for d in range(1, 6)]
    stats = json.loads((out / "stats.json").read_text())["crawl"]
    assert stats["skipped_urls"] == {"out_of_scope": 4, "pattern_cap": 1}
    # the same trap under --max-pages: stops at exactly that many fetches
    assert (
        main(
            [
                "collect",
                "crawl",
                site.url("/calendar/"),
                "--out",
                str(tmp_path / "c2"),
                "--scope",
                "prefix",
                "--max-depth",
                "1000",
                "--max-per-pattern",
                "1000",
                "--max-pages",
                "7",
            ]
            + FAST
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert res["pages_fetched"] == 7


def test_sitemaps_add_pages_only_listed_there(site, tmp_path, capsys):
    out = tmp_path / "sm"
    assert main(["collect", "crawl", site.url("/"), "--out", str(out), "--sitemaps", "--max-depth", "0"] + FAST) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["pages_fetched"], res["images_found"], res["samples"]) == (12, 247, 247)
    urls = {r["url"].replace(site.url(""), "") for r in pq.read_table(out / "pages.parquet").to_pylist()}
    assert "/gallery/hidden.html" in urls and "/blog/1.html" not in urls


def test_site_images_are_drawn_from_their_names():
    data, ctype = draw("/images/x/003-large-red-circle-top-left-on-blue.png")
    assert ctype == "image/png" and data.startswith(b"\x89PNG")
    from io import BytesIO

    from PIL import Image

    img = Image.open(BytesIO(data)).convert("RGB")
    assert img.size == (96, 96)
    assert img.getpixel((20, 20)) == (220, 30, 30) and img.getpixel((90, 90)) == (30, 80, 230)
    assert draw("/images/x/003-large-red-circle-top-left-on-blue@2x.webp")[1] == "image/webp"
    assert draw("/images/x/1-huge-red-circle-center-on-blue.png") is None
    assert draw("/images/x/1-large-pink-circle-center-on-blue.png") is None


def test_serve_site_command(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixelforge.cli", "serve-site", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        robots = urllib.request.urlopen(url + "robots.txt", timeout=10).read().decode()
        assert "Disallow: /private/" in robots and f"Sitemap: {url}sitemap.xml" in robots
        home = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "<title>Pixelforge demo site</title>" in home
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_site_bad_port(capsys):
    assert main(["serve-site", "--port", "70000"]) == 2
    assert capsys.readouterr().err == "Error: --port 70000: choose a port from 0 to 65535\n"
