"""The report in a real browser (headless Chromium): every heading, every image decoded, no console error."""

from __future__ import annotations

import pytest

from pixelforge.cli import main
from tests.report.conftest import sections_of

pytestmark = pytest.mark.browser


def test_report_renders_in_chromium(tiny, tmp_path, browser_page):
    out = tmp_path / "report.html"
    kinds = ("shapes", "curated", "audit", "clf", "diff", "gan", "vae", "gen", "fid", "cond", "mem")
    assert main(["report", *(tiny[k] for k in kinds), "--out", str(out)]) == 0
    expected = list(sections_of(out.read_text(encoding="utf-8")))
    page = browser_page
    page.goto(out.as_uri(), wait_until="load")
    headings = page.eval_on_selector_all("section.report > h2", "hs => hs.map(h => h.lastChild.textContent.trim())")
    assert headings == expected and len(headings) == 12
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.alt])")
    assert len(images) > 100
    assert [alt for complete, width, alt in images if not complete or width == 0] == []
    assert page.console_errors == []
    page.screenshot(path=str(tmp_path / "report-laptop.png"), full_page=True)
    # a phone: nothing wider than the screen except inside the scrolling table wrappers
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(tmp_path / "report-phone.png"))
    assert (tmp_path / "report-laptop.png").stat().st_size > 10_000
    assert (tmp_path / "report-phone.png").stat().st_size > 10_000
