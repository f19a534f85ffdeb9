"""Shared benchmark helpers: a reference tool's own venv, peak-memory sampling, a static file server."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
BENCH_VENV = ROOT / ".venv-bench"
# turn off the reference tools' telemetry and update checks
QUIET_ENV = {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "WANDB_MODE": "disabled",
    "WANDB_SILENT": "true",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TQDM_DISABLE": "1",
}


def reference_python(requirement: str) -> str:
    """Python of a separate venv holding ``requirement`` (kept apart: its pins clash with ours)."""
    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    name = requirement.split("==")[0]
    have = subprocess.run([str(py), "-m", "pip", "show", name], capture_output=True, text=True)
    if requirement.split("==")[-1] not in have.stdout:
        subprocess.run([str(py), "-m", "pip", "install", "-q", requirement], check=True)
    return str(py)


def run_pixelforge(*args: str) -> tuple[str, float, float]:
    """Run `.venv/bin/pixelforge ARGS` (exit on failure); return (stdout, wall seconds, CPU seconds of the child)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "pixelforge"), *args],
        env=dict(os.environ, **QUIET_ENV),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"pixelforge {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_measured(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> tuple[float, int, int]:
    """Run ``cmd``; return (seconds, peak RSS of the whole process tree in bytes, exit code)."""
    full_env = dict(os.environ, **QUIET_ENV, **(env or {}))
    start = time.perf_counter()
    proc = psutil.Popen(cmd, env=full_env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            procs = [proc] + proc.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-3000:])
    return seconds, peak, proc.returncode


class StaticServer:
    """Serve a folder on 127.0.0.1: nginx when installed (as a real web server would), else Python threads."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = _free_port()
        self.kind = "nginx" if shutil.which("nginx") else "python-threaded"
        self._proc = None
        self._httpd = None
        self._tmp = None

    def __enter__(self) -> StaticServer:
        if self.kind == "nginx":
            self._tmp = tempfile.mkdtemp(prefix="pf-nginx-")
            conf = Path(self._tmp) / "nginx.conf"
            conf.write_text(f"""
worker_processes 1;
daemon off;
pid {self._tmp}/nginx.pid;
error_log {self._tmp}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {self._tmp};
  proxy_temp_path {self._tmp};
  fastcgi_temp_path {self._tmp};
  uwsgi_temp_path {self._tmp};
  scgi_temp_path {self._tmp};
  types {{ image/jpeg jpg; image/png png; text/plain txt; }}
  sendfile on;
  keepalive_requests 100000;
  server {{ listen 127.0.0.1:{self.port}; root {self.folder}; }}
}}
""")
            self._proc = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", self._tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        else:
            handler = functools.partial(_QuietHandler, directory=str(self.folder))
            self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
            self._httpd.daemon_threads = True
            threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        _wait_port(self.port)
        return self

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __exit__(self, *exc) -> None:
        if self._proc:
            self._proc.terminate()
            self._proc.wait()
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._httpd:
            self._httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")
