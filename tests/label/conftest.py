"""Fixtures of the label tests: small datasets, an API client, a live uvicorn server on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pixelforge.cli import main


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("label") / "digits"
    assert main(["import", "digits", "--size", "16", "--out", str(out)]) == 0
    return str(out)


@pytest.fixture()
def shapes(tmp_path) -> str:
    """12 shapes with one labelled box each; a fresh copy per test (the app writes annotations.sqlite beside it)."""
    out = tmp_path / "shapes"
    assert main(["import", "shapes", "--n", "12", "--size", "32", "--seed", "1", "--out", str(out)]) == 0
    return str(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an ASGI app in a thread; ``url`` is its 127.0.0.1 address."""

    def __init__(self, app, host: str = "127.0.0.1"):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=self.port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def clustered(tmp_path_factory) -> str:
    """60 shapes embedded by pixels and clustered into 3 with a PCA map: the app's map has something to draw."""
    root = tmp_path_factory.mktemp("label-map")
    shapes, embedded, out = (str(root / n) for n in ("shapes", "emb", "clustered"))
    assert main(["import", "shapes", "--n", "60", "--size", "24", "--seed", "3", "--out", shapes]) == 0
    assert main(["embed", shapes, "--out", embedded, "--processes", "1"]) == 0
    assert main(["cluster", embedded, "--out", out, "--k", "3", "--map", "pca"]) == 0
    return out
