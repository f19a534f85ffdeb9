"""A local image server on 127.0.0.1 with a route for every way a download can fail."""

from __future__ import annotations

import gzip
import io
import struct
import threading
import time
import zlib
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


@lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """64 MiB of zeros, gzipped to ~64 KB (compressed once: on a busy machine it takes seconds)."""
    return gzip.compress(b"\x00" * (64 * 1024 * 1024), 9)


ROBOTS = b"User-agent: *\nDisallow: /private/\n\nUser-agent: pixelforge\nDisallow: /private/\nDisallow: /robots-only/\n"


@lru_cache(maxsize=512)
def jpeg(n: int, w: int = 320, h: int = 240, quality: int = 90) -> bytes:
    """A deterministic, natural-looking JPEG (smooth gradients + noise) for image ``n``."""
    rng = np.random.default_rng(n)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, size=3)
    freq = rng.uniform(0.005, 0.05, size=3)
    img = np.stack([base[c] / 2 + 60 * np.sin(x * freq[c] + y * freq[(c + 1) % 3] + n) for c in range(3)], -1)
    img += rng.normal(0, 12, size=img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img + 64, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@lru_cache(maxsize=64)
def png(n: int, w: int = 200, h: int = 150) -> bytes:
    rng = np.random.default_rng(10_000 + n)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 4), dtype=np.uint8), "RGBA").save(buf, "PNG")
    return buf.getvalue()


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header declares width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ImageServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/jpeg", headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: C901 - one branch per route is the point
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits[path] = self.server.hits.get(path, 0) + 1
            count = self.server.hits[path]
        parts = path.strip("/").split("/")
        name = parts[-1]
        num = int("".join(ch for ch in name.split(".")[0] if ch.isdigit()) or 0)
        head = parts[0]
        if path == "/ai.txt":
            if self.server.ai_txt is None:
                return self._send(404, b"not found", "text/plain")
            return self._send(200, self.server.ai_txt, "text/plain")
        if path == "/robots.txt":
            if self.server.robots_status == 200:
                return self._send(200, self.server.robots, "text/plain")
            return self._send(self.server.robots_status, b"", "text/plain")
        if head in ("img", "private", "robots-only"):
            return self._send(200, jpeg(num))
        if head == "concurrent":  # holds each request briefly and records the most at once
            with self.server.lock:
                self.server.active += 1
                self.server.max_active = max(self.server.max_active, self.server.active)
            time.sleep(0.15)
            with self.server.lock:
                self.server.active -= 1
            return self._send(200, jpeg(num))
        if head == "busy":  # a server that refuses (503) while more than busy_limit requests are in progress
            with self.server.lock:
                self.server.active += 1
                self.server.max_active = max(self.server.max_active, self.server.active)
                self.server.starts.append(time.monotonic())
                refuse = self.server.active > self.server.busy_limit
                self.server.refused += refuse
            try:
                if refuse:
                    return self._send(503, b"busy", "text/plain")
                time.sleep(0.05)
                return self._send(200, jpeg(num))
            finally:
                with self.server.lock:
                    self.server.active -= 1
        if head == "recover":  # 500 until the test sets server.recovered
            if not self.server.recovered:
                return self._send(500, b"down for maintenance", "text/plain")
            return self._send(200, jpeg(num))
        if head == "big":
            return self._send(200, jpeg(num, 1600, 1200))
        if head == "png":
            return self._send(200, png(num), "image/png")
        if head == "tiny":
            return self._send(200, jpeg(num, 16, 16))
        if head == "noai":
            return self._send(200, jpeg(num), headers={"X-Robots-Tag": "noai"})
        if head == "noindex-scoped-other":
            return self._send(200, jpeg(num), headers={"X-Robots-Tag": "googlebot: noindex"})
        if head == "noimageai-ours":
            return self._send(200, jpeg(num), headers={"X-Robots-Tag": "pixelforge: noimageai"})
        if head == "tdm":
            return self._send(200, jpeg(num), headers={"tdm-reservation": "1"})
        if head == "status":
            return self._send(num, b"error", "text/plain")
        if head == "flaky":  # 503 with Retry-After the first time, then the image
            if count == 1:
                return self._send(503, b"busy", "text/plain", {"Retry-After": "0"})
            return self._send(200, jpeg(num))
        if head == "redirect":  # /redirect/N/x.jpg: N hops, then the image
            hops = int(parts[1])
            target = "/img/7.jpg" if hops <= 1 else f"/redirect/{hops - 1}/x.jpg"
            return self._send(302, b"", "text/plain", {"Location": target})
        if head == "loop":
            return self._send(302, b"", "text/plain", {"Location": path})
        if head == "to-other-host":  # redirect to the same server under another loopback address
            return self._send(
                302, b"", "text/plain", {"Location": f"http://{self.server.other_host}:{self.server.port}/img/1.jpg"}
            )
        if head == "html":
            return self._send(200, b"<html><body>not an image</body></html>", "image/jpeg")
        if head == "truncated":
            return self._send(200, jpeg(num)[:2000])
        if head == "bomb":
            return self._send(200, png_bomb(), "image/png")
        if head == "gzip-bomb":
            return self._send(200, gzip_bomb(), "image/jpeg", {"Content-Encoding": "gzip"})
        if head == "lying-length":  # says 100 bytes, sends a whole big image
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(jpeg(num, 1600, 1200))
            self.close_connection = True
            return None
        if head == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            deadline = time.monotonic() + self.server.max_stall
            try:
                while time.monotonic() < deadline:
                    self.wfile.write(b"\xff" * 65536)
            except OSError:
                pass
            self.close_connection = True
            return None
        if head == "slow":  # headers at once, then one byte every 0.2 s
            body = jpeg(num)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            deadline = time.monotonic() + self.server.max_stall
            try:
                for b in body:
                    if time.monotonic() > deadline:
                        break
                    self.wfile.write(bytes([b]))
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            self.close_connection = True
            return None
        if head == "hang":
            time.sleep(self.server.max_stall)
            self.close_connection = True
            return None
        if head == "reset":
            import socket

            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return None
        return self._send(404, b"not found", "text/plain")


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, other_host: str = "127.0.0.2", max_stall: float = 6.0):
        super().__init__((host, port), Handler)
        self.host, self.port = host, self.server_address[1]
        self.other_host = other_host
        self.max_stall = max_stall  # upper bound on how long a stalling route keeps a thread
        self.robots_status = 200
        self.robots = ROBOTS
        self.ai_txt: bytes | None = None  # /ai.txt's body (None: 404)
        self.busy_limit = 2  # /busy/ answers 503 while more requests than this are in progress
        self.refused = 0
        self.recovered = False  # /recover/ answers 500 until set
        self.starts: list[float] = []  # when each /busy/ request began (time.monotonic())
        self.hits: dict[str, int] = {}
        self.active = self.max_active = 0
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address) -> None:
        pass  # clients that give up (timeouts, size limits) reset connections on purpose

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def __enter__(self) -> ImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _SmallHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            body, ctype = b"User-agent: *\nAllow: /\n", "text/plain"
        else:
            body, ctype = jpeg(int(self.path.rsplit("/", 1)[-1].split(".")[0]) % 64), "image/jpeg"
        time.sleep(0.02)  # a little work per request, so requests overlap
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class SmallServer(ThreadingHTTPServer):
    """A deliberately small host: Python's threaded server with a listen backlog of 5.

    Connections beyond the backlog are dropped by the kernel; a client that opens many at
    once sees timeouts. /i/N.jpg is an image for every N.
    """

    request_queue_size = 5
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmallHandler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address) -> None:
        pass

    def __enter__(self) -> SmallServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
