"""The bundled demo web site: static pages (package data) and shape images drawn by code on first request.

Image URLs spell out what they show (``/images/g1/007-large-red-circle-top-left-on-blue.jpg``),
so the server draws exactly what the page's alt text says. A few routes are made by code on
purpose: an endless calendar (``/calendar/day/N.html``), a redirect loop, a header opt-out.
"""

from __future__ import annotations

import io
import mimetypes
import re
import threading
import zlib
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import unquote, urlsplit

IMAGE_SIDE = 96
PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_IMAGE = re.compile(r"^/images/[\w-]+/(\d+)-(small|large)-(\w+)-(\w+)-([a-z-]+?)-on-(\w+?)(@2x)?\.(jpg|png|webp)$")
_CALENDAR = re.compile(r"^/calendar/day/(\d+)\.html$")
EXTRA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".xml": "application/xml",
}
# pages served with a header that the file itself cannot carry
HEADERS = {"/gallery/press.html": {"X-Robots-Tag": "noai, noimageai"}}


def www():
    """The folder of static files (a Traversable inside the installed package)."""
    return resources.files(__name__) / "www"


@lru_cache(maxsize=2048)
def draw(path: str) -> tuple[bytes, str] | None:
    """The image for an /images/... path: (bytes, content type), or None when the name is not one of ours."""
    m = _IMAGE.match(path)
    if not m:
        return None
    import numpy as np
    from PIL import Image

    from pixelforge.sources.shapes import _jittered, render

    _, size, colour, shape, position, background, double, ext = m.groups()
    try:
        spec = _jittered(
            shape, colour, size, position.replace("-", " "), np.random.default_rng(zlib.crc32(path.encode()))
        )
        pixels = render(spec, background, IMAGE_SIDE * (2 if double else 1))
    except (ValueError, KeyError):
        return None
    buf = io.BytesIO()
    kind = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext]
    Image.fromarray(pixels).save(buf, kind, **({"quality": 90} if kind != "PNG" else {}))
    return buf.getvalue(), f"image/{'jpeg' if ext == 'jpg' else ext}"


def calendar_page(day: int) -> bytes:
    """Day N of the endless calendar: every day links to the next, forever (a crawler trap)."""
    return (
        f"<!doctype html><html><head><title>Calendar: day {day}</title></head><body>"
        f"<h1>Events on day {day}</h1><p>Nothing happens today.</p>"
        f'<a href="/calendar/day/{day + 1}.html">next day</a> '
        f'<a href="/calendar/day/{max(day - 1, 1)}.html">previous day</a> '
        f'<a href="/calendar/day/{day}.html?view=week">week view</a></body></html>'
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SiteServer

    def log_message(self, *args) -> None:
        if self.server.verbose:
            super().log_message(*args)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.server.lock:
            self.server.hits[path] = self.server.hits.get(path, 0) + 1
        if path.startswith("/images/"):
            got = draw(path)
            return self._send(200, *got) if got else self._send(404, b"no such image", "text/plain")
        m = _CALENDAR.match(path)
        if m:
            return self._send(200, calendar_page(int(m.group(1))), EXTRA_TYPES[".html"])
        if path == "/pixel.gif":  # a 1x1 tracking pixel, as analytics services serve them
            return self._send(200, PIXEL_GIF, "image/gif")
        if path == "/loop.html":
            return self._send(302, b"", "text/plain", {"Location": "/loop-again.html"})
        if path == "/loop-again.html":
            return self._send(302, b"", "text/plain", {"Location": "/loop.html"})
        if path.endswith("/"):
            path += "index.html"
        node = www()
        for part in path.strip("/").split("/"):
            if part in ("", ".", ".."):
                return self._send(404, b"not found", "text/plain")
            node = node / part
        if not node.is_file():
            return self._send(404, b"<html><body>not found</body></html>", "text/html")
        ext = "." + path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
        ctype = EXTRA_TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path == "/legacy/latin1.html":
            ctype = "text/html; charset=utf-8"  # on purpose: the file is windows-1252 (a wrong charset)
        body = node.read_bytes()
        if ext in (".txt", ".xml", ".json"):  # robots.txt, sitemap.xml, tdmrep.json name absolute URLs
            body = body.replace(b"{origin}", self.server.url("").encode())
        return self._send(200, body, ctype, HEADERS.get(path))


class SiteServer(ThreadingHTTPServer):
    """Serves the bundled site on ``host:port`` (port 0 picks a free one) in a background thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default 5 drops connects when a crawl opens 64 at once

    def __init__(self, port: int = 0, host: str = "127.0.0.1", verbose: bool = False):
        super().__init__((host, port), _Handler)
        self.host, self.port = host, self.server_address[1]
        self.verbose = verbose
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up early are not our concern

    def __enter__(self) -> SiteServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
