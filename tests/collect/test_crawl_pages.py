"""`collect crawl` against pages served by the test on 127.0.0.1: politeness, opt-outs, limits, bad arguments."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.collect.config import CollectConfig
from pixelforge.collect.crawl import CrawlConfig, crawl
from pixelforge.errors import UsageError
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import Dataset
from tests.collect.imageserver import jpeg


class PageServer(ThreadingHTTPServer):
    """Serves ``routes`` {path (with query): (status, headers, body)}; /img/N.jpg is always a JPEG."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, routes, robots=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes, self.robots = routes, robots
        self.log: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def paths(self):
        return [p for p, _ in self.log]

    def handle_error(self, request, client_address):
        pass

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.log.append((self.path, time.monotonic()))
        if self.path == "/robots.txt":
            status, headers, body = (
                (200, {"Content-Type": "text/plain"}, srv.robots.encode()) if srv.robots else (404, {}, b"")
            )
        elif self.path.startswith("/img/"):
            num = int("".join(c for c in self.path if c.isdigit()) or 0)
            status, headers, body = 200, {"Content-Type": "image/jpeg"}, jpeg(num, 64, 48)
        elif self.path in srv.routes:
            status, headers, body = srv.routes[self.path]
            body = body.encode() if isinstance(body, str) else body
            headers = {"Content-Type": "text/html; charset=utf-8", **headers}
        else:
            status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def page(body, head=""):
    return 200, {}, f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


def run(srv, tmp_path, *seeds, **kw):
    download = dict(
        allow_private_networks=True, executor=ExecutorSettings(processes=1), image_size=32, timeout=5.0, retries=0
    )
    download.update(kw.pop("download", {}))
    cfg = CrawlConfig(
        seeds=tuple(srv.url(s) for s in seeds or ["/"]),
        delay=kw.pop("delay", 0.0),
        download=CollectConfig(**download),
        **kw,
    )
    res = crawl(str(tmp_path / "out"), cfg)
    table = pq.read_table(tmp_path / "out" / "pages.parquet")
    pages = {r["url"].replace(srv.url(""), ""): r for r in table.to_pylist()}
    return res, pages, Dataset.open(str(tmp_path / "out"))


def test_robots_disallow_and_crawl_delay(tmp_path):
    robots = (
        "User-agent: *\nDisallow: /nobody/\n\nUser-agent: pixelforge\nDisallow: /secret/\n"
        "Disallow: /img/9\nCrawl-delay: 0.2\n"
    )
    routes = {
        "/": page(
            '<a href="/a.html">a</a><a href="/b.html">b</a><a href="/secret/s.html">s</a>'
            '<img src="/img/1.jpg" alt="one"><img src="/img/9.jpg" alt="nine">'
        ),
        "/a.html": page('<img src="/img/2.jpg" alt="two">'),
        "/b.html": page("<p>b</p>"),
        "/secret/s.html": page('<img src="/img/3.jpg" alt="three">'),
    }
    with PageServer(routes, robots) as srv:
        res, pages, ds = run(srv, tmp_path)
        site_files = ("/.well-known/tdmrep.json", "/ai.txt")  # ai.txt: asked once, by the image downloads
        assert [p for p, _ in srv.log].count("/ai.txt") == 1
        log = [(p, t) for p, t in srv.log if not p.startswith("/img/") and p not in site_files]
    assert pages["/secret/s.html"]["error"] == "opt_out_robots" and pages["/secret/s.html"]["status"] is None
    assert "/secret/s.html" not in srv.paths() and "/img/3.jpg" not in srv.paths() and "/img/9.jpg" not in srv.paths()
    assert [r["reason"] for r in ds.failures().to_pylist()] == ["opt_out_robots"]  # /img/9, by the download path
    assert (res.samples, res.pages_fetched, res.politeness_floor_seconds) == (2, 3, 0.4)
    # robots.txt first; then the three pages, each at least Crawl-delay after the one before
    page_times = [t for p, t in log if p != "/robots.txt"]
    assert [p for p, _ in log][:1] == ["/robots.txt"] and len(page_times) == 3
    # (without pacing the gaps are ~1 ms; the margin absorbs scheduling noise on a busy machine)
    assert all(b - a >= 0.15 for a, b in zip(page_times, page_times[1:]))


def test_delay_flag_spaces_requests_when_robots_says_nothing(tmp_path):
    routes = {"/": page('<a href="/a.html">a</a><a href="/b.html">b</a>'), "/a.html": page(""), "/b.html": page("")}
    with PageServer(routes) as srv:
        res, pages, _ = run(srv, tmp_path, delay=0.15)
        times = [t for p, t in srv.log if p.endswith(".html") or p == "/"]
    assert len(pages) == 3 and res.politeness_floor_seconds == 0.3
    assert all(b - a >= 0.1 for a, b in zip(times, times[1:]))


def test_header_and_tdm_opt_outs(tmp_path):
    tdmrep = '[{"location": "/img/7*", "tdm-reservation": 1}]'
    routes = {
        "/": page("".join(f'<a href="/{n}.html">{n}</a>' for n in ("xrt", "scoped", "ours", "tdmh", "open"))),
        "/xrt.html": (200, {"X-Robots-Tag": "noimageai"}, page('<img src="/img/1.jpg" alt="a">')[2]),
        "/scoped.html": (200, {"X-Robots-Tag": "otherbot: noai"}, page('<img src="/img/2.jpg" alt="b">')[2]),
        "/ours.html": (200, {"X-Robots-Tag": "pixelforge: noindex"}, page('<img src="/img/3.jpg" alt="c">')[2]),
        "/tdmh.html": (200, {"tdm-reservation": "1"}, page('<img src="/img/4.jpg" alt="d">')[2]),
        "/open.html": page('<img src="/img/5.jpg" alt="e"><img src="/img/70.jpg" alt="f">'),
        "/.well-known/tdmrep.json": (200, {"Content-Type": "application/json"}, tdmrep),
    }
    with PageServer(routes) as srv:
        res, pages, ds = run(srv, tmp_path)
        fetched = {p for p in srv.paths() if p.startswith("/img/")}
    assert {u: p["opt_out"] for u, p in pages.items() if p["opt_out"]} == {
        "/xrt.html": "x-robots-tag: noimageai",
        "/ours.html": "x-robots-tag: noindex",
        "/tdmh.html": "tdm-reservation: 1",
    }
    fails = {
        f["url"].replace(srv.url(""), ""): (f["reason"], f["detail"].split(" (page")[0])
        for f in ds.failures().to_pylist()
    }
    assert fails == {
        "/img/1.jpg": ("opt_out_header", "x-robots-tag: noimageai"),
        "/img/3.jpg": ("opt_out_header", "x-robots-tag: noindex"),
        "/img/4.jpg": ("opt_out_header", "tdm-reservation: 1"),
        "/img/70.jpg": ("opt_out_page", "tdmrep.json reserves TDM rights for this image"),
    }
    assert fetched == {"/img/2.jpg", "/img/5.jpg"} and res.samples == 2


def test_ignore_opt_outs_downloads_and_records_why(tmp_path):
    routes = {
        "/": page(
            '<a href="/secret/s.html">s</a><img src="/img/1.jpg" alt="a" data-noai>',
            '<meta name="robots" content="noai">',
        ),
        "/secret/s.html": page('<img src="/img/2.jpg" alt="b">'),
    }
    with PageServer(routes, "User-agent: *\nDisallow: /secret/\n") as srv:
        res, pages, ds = run(srv, tmp_path, download={"ignore_opt_outs": True})
    rows = {r["source"].replace(srv.url(""), ""): r["opt_out"] for r in ds.index().to_pylist()}
    assert rows == {"/img/1.jpg": "meta robots: noai", "/img/2.jpg": None}
    assert pages["/secret/s.html"]["error"] is None and res.failures == 0
    lineage = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert lineage["lineage"]["config"]["ignore_opt_outs"] is True


def test_bad_pages_are_rows_never_fatal(tmp_path):
    routes = {
        "/": page(
            "".join(
                f'<a href="{u}">x</a>'
                for u in (
                    "/big.html",
                    "/pdf.html",
                    "/err.html",
                    "/away.html",
                    "/same.html",
                    "/img.png",
                    "/slash",
                    "/ok.html",
                )
            )
        ),
        "/big.html": page("<p>" + "x" * 5000 + "</p>"),
        "/pdf.html": (200, {"Content-Type": "application/pdf"}, b"%PDF-1.4"),
        "/err.html": (500, {}, "boom"),
        "/away.html": (302, {"Location": "http://127.0.0.2:1/elsewhere.html"}, ""),
        "/same.html": (301, {"Location": "/ok.html"}, ""),
        "/slash": (200, {"Content-Type": "text/html"}, b"<img src='/gone/missing.jpg' alt='gone'>"),
        "/ok.html": page('<img src="/img/6.jpg" alt="ok">'),
    }
    with PageServer(routes) as srv:
        res, pages, ds = run(srv, tmp_path, max_page_bytes=4096)
    got = {u: (p["status"], p["error"]) for u, p in pages.items()}
    assert got == {
        "/": (200, None),
        "/big.html": (None, "too_large"),
        "/pdf.html": (200, "not_html"),
        "/err.html": (500, "http_5xx"),
        "/away.html": (302, "out_of_scope_redirect"),
        "/same.html": (200, "duplicate"),
        "/slash": (200, None),
        "/ok.html": (200, None),
    }
    assert pages["/same.html"]["final_url"] == srv.url("/ok.html")
    assert pages["/same.html"]["detail"].endswith("/ok.html, already queued or crawled")
    assert pages["/away.html"]["detail"] == "redirect to http://127.0.0.2:1/elsewhere.html leaves the --scope site"
    assert [f["reason"] for f in ds.failures().to_pylist()] == ["http_4xx"]  # the missing image
    assert res.samples == 1 and "/img.png" not in srv.paths()


def test_scope_include_exclude_and_max_pages(tmp_path):
    links = "".join(f'<a href="{u}">x</a>' for u in ("/a/1.html", "/a/2.html", "/b/1.html", "/a/skip.html"))
    routes = {
        "/a/": page(links),
        "/a/1.html": page(links),
        "/a/2.html": page(""),
        "/b/1.html": page(""),
        "/a/skip.html": page(""),
    }
    with PageServer(routes) as srv:
        _, pages, _ = run(srv, tmp_path, "/a/", scope="prefix", exclude=("skip",))
        assert sorted(pages) == ["/a/", "/a/1.html", "/a/2.html"]
        _, pages, _ = run(srv, tmp_path / "2", "/a/", include=(r"/a/\d",))
        assert sorted(pages) == ["/a/", "/a/1.html", "/a/2.html"]
        res, pages, _ = run(srv, tmp_path / "3", "/a/", max_pages=2)
        assert len(pages) == 2
        res, pages, _ = run(srv, tmp_path / "4", "/a/", max_depth=0)
        assert list(pages) == ["/a/"]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["ftp://x.org/"],
            "Error: SEED_URL 'ftp://x.org/': not an http(s) URL with a host; "
            "write it like https://example.org/gallery/",
        ),
        (
            ["http://127.0.0.1:9/"],
            "Error: SEED_URL 'http://127.0.0.1:9/' is a loopback/private address: "
            "pass --allow-private-networks to crawl it",
        ),
        (["http://x.org/", "--scope", "world"], "Error: --scope 'world': choose one of site, domain, prefix"),
        (["http://x.org/", "--max-pages", "0"], "Error: --max-pages 0: must be at least 1"),
        (["http://x.org/", "--max-depth", "-1"], "Error: --max-depth -1: must be at least 0"),
        (["http://x.org/", "--delay", "-1"], "Error: --delay -1.0: must be 0 or more seconds"),
        (
            ["http://x.org/", "--include", "a(b"],
            "Error: --include 'a(b' is not a valid regular expression "
            "(missing ), unterminated subpattern at position 1); escape special "
            "characters such as ? and ( with a backslash",
        ),
        (["http://x.org/", "--resize-mode", "fit"], None),
        (["http://x.org/", "--image-size", "2"], "Error: --image-size 2: must be at least 8"),
    ],
)
def test_bad_arguments_one_line_exit_2(tmp_path, capsys, args, message):
    assert main(["collect", "crawl", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and err.count("\n") == 1
    if message:
        assert err == message + "\n"
    assert not (tmp_path / "o").exists()  # nothing was written, no request was made


def test_out_must_be_new(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "dataset.json").write_text("{}")
    assert main(["collect", "crawl", "http://x.org/", "--out", str(tmp_path / "o")]) == 2
    assert "already holds a finished dataset" in capsys.readouterr().err
    with pytest.raises(UsageError, match="give at least one SEED_URL"):
        CrawlConfig().validate()
