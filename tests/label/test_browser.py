"""The web app in headless Chromium: keyboard labelling, a box drawn with the mouse, a caption edit, reload."""

from __future__ import annotations

import pytest

from pixelforge.label.db import AnnotationDB
from pixelforge.label.project import Project, ProjectConfig
from pixelforge.label.server import create_app

from .conftest import LiveServer

pytestmark = pytest.mark.browser


def _wait_text(page, selector: str, prefix: str) -> None:
    """Wait for the element's text to start with ``prefix``; 30 s, as `make test` shares the 2 cores between
    two test workers, Chromium and the app's server. A miss names what the page shows and its console errors."""
    try:
        page.wait_for_function(
            "([s, p]) => document.querySelector(s).textContent.startsWith(p)", arg=[selector, prefix], timeout=30_000
        )
    except Exception as exc:
        shown = page.text_content(selector)
        raise AssertionError(f"{selector} shows {shown!r}, not {prefix!r}; console: {page.console_errors}") from exc


def test_label_draw_caption_reload(browser_page, shapes, tmp_path):
    page = browser_page
    db_path = str(tmp_path / "ann.sqlite")
    classify = Project(ProjectConfig(shapes, task="classify", db=db_path))
    keys, classes = classify.order, classify.classes
    with LiveServer(create_app(classify)) as server:
        page.goto(server.url + "/")
        page.fill("#annotator", "ann")
        page.dispatch_event("#annotator", "change")
        page.press("#annotator", "Escape")  # leave the name field: keys now label
        _wait_text(page, "#position", "1 of 12")
        chosen = []
        for i in range(5):  # label five images with the number keys: each key labels, accepts and moves on
            n = i % len(classes) + 1
            chosen.append(classes[n - 1])
            page.keyboard.press(str(n))
            _wait_text(page, "#position", f"{i + 2} of 12")
        _wait_text(page, "#progress", "5 / 12")
        db = AnnotationDB(db_path)
        current = db.all_current()
        assert [current[k]["label"]["value"] for k in keys[:5]] == chosen
        assert all(
            current[k]["status"]["value"] == "accepted" and current[k]["label"]["annotator"] == "ann" for k in keys[:5]
        )
        page.goto(f"{server.url}/#{keys[2]}")
        page.reload()  # everything comes back from the server
        _wait_text(page, "#position", f"3 of 12: {keys[2]}")
        assert page.text_content("#classes button.current").endswith(chosen[2])
        assert page.text_content("#status").startswith("accepted (ann)")
        _wait_text(page, "#progress", "5 / 12 done")

    review = Project(ProjectConfig(shapes, task="review", db=db_path))
    key = keys[5]
    with LiveServer(create_app(review)) as server:
        page.goto(f"{server.url}/#{key}")
        _wait_text(page, "#position", f"6 of 12: {key}")
        page.wait_for_selector(".frame .box")  # the dataset's own box
        assert page.locator(".frame .box").count() == 1
        frame = page.locator(".frame").first.bounding_box()
        scale = frame["width"] / 32 if frame["width"] < 500 else 448 / 32
        page.mouse.move(frame["x"] + 50, frame["y"] + 60)
        page.mouse.down()
        page.mouse.move(frame["x"] + 120, frame["y"] + 150, steps=5)
        page.mouse.move(frame["x"] + 200, frame["y"] + 250, steps=5)
        page.mouse.up()
        page.wait_for_function("document.getElementById('boxlist').textContent.startsWith('2 box')")
        page.wait_for_function(f"fetch('/api/item/{key}').then(r => r.json()).then(j => 'boxes' in j.current)")
        page.click("#caption")
        page.fill("#caption", "a hand-written caption")
        page.keyboard.press("Enter")  # saves the caption, accepts, moves on
        _wait_text(page, "#position", "7 of 12")
        current = AnnotationDB(db_path).current(key)
        boxes = current["boxes"]["value"]
        assert len(boxes) == 2
        drawn = boxes[1]
        border = 1  # the frame's border
        assert drawn["x0"] == pytest.approx((50 - border) / scale, abs=0.15)
        assert drawn["y1"] == pytest.approx((250 - border) / scale, abs=0.15)
        assert current["caption"]["value"] == "a hand-written caption"
        assert current["status"]["value"] == "accepted"
        page.goto(f"{server.url}/#{key}")
        page.reload()
        _wait_text(page, "#position", f"6 of 12: {key}")
        page.wait_for_function("document.querySelectorAll('.frame .box').length === 2")
        assert page.input_value("#caption") == "a hand-written caption"
        assert page.text_content("#status").startswith("accepted")
    assert page.console_errors == []


def test_two_browsers_on_one_image_both_told(browser_page, shapes, tmp_path):
    """ann and bob open the same image; ann labels first, bob (not having seen it) second: bob's label wins,
    both are in the history, bob is told whose edit he replaced and ann gets a notice."""
    ann = browser_page
    project = Project(ProjectConfig(shapes, task="review", db=str(tmp_path / "two.sqlite")))
    key, (first, second) = project.order[0], project.classes[:2]
    with LiveServer(create_app(project)) as server:
        bob = ann.context.browser.new_page()  # a context of its own: another browser
        for page, name in ((ann, "ann"), (bob, "bob")):
            page.goto(f"{server.url}/#{key}")
            _wait_text(page, "#position", f"1 of 12: {key}")
            page.fill("#annotator", name)
            page.press("#annotator", "Escape")
        ann.keyboard.press("1")
        ann.wait_for_function(f"fetch('/api/item/{key}').then(r => r.json()).then(j => 'label' in j.current)")
        bob.keyboard.press("2")
        bob.wait_for_selector("#toasts .toast:has-text('replaced an edit by ann')")
        ann.wait_for_selector("#toasts .toast:has-text('bob replaced your label')", timeout=10_000)
        edits = AnnotationDB(project.db.path).history(key)
        assert [(e["annotator"], e["value"], e["conflict"]) for e in edits] == [
            ("ann", first, False),
            ("bob", second, True),
        ]
        bob.close()
    assert ann.console_errors == []
