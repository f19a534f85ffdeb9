"""Fixtures shared by every test package: a headless Chromium page for the browser tests."""

from __future__ import annotations

import os
import shutil

import pytest

# Under pytest-xdist (`make test` runs two workers, one per core) each worker and the commands it
# starts keep to one thread: two workers of two threads each on two cores spend their time waiting.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

# Debian's chromium (installed by `make test` when missing); PIXELFORGE_CHROMIUM overrides.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium_path() -> str | None:
    if os.environ.get("PIXELFORGE_CHROMIUM"):
        return os.environ["PIXELFORGE_CHROMIUM"]
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture()
def browser_page():
    """A Playwright page in headless Chromium; console errors collect in ``page.console_errors``.

    Skipped, with the reason shown, only when neither the playwright package nor a Chromium can be had.
    """
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium found (make test installs Debian's chromium; or set PIXELFORGE_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.console_errors = []
        page.on("console", lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
        try:
            yield page
        finally:
            browser.close()
