"""The app's map of a clustered dataset: its API, tags on a selection, a tag as the queue, `label apply`'s
tags column, and the scatter in Chromium (hover, lasso, click)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pixelforge.cli import main
from pixelforge.label.db import AnnotationDB
from pixelforge.label.project import Project, ProjectConfig
from pixelforge.label.server import create_app
from pixelforge.store import Dataset

from .conftest import LiveServer
from .test_browser import _wait_text


@pytest.fixture()
def project(clustered, tmp_path) -> Project:
    return Project(ProjectConfig(clustered, task="classify", db=str(tmp_path / "ann.sqlite")))


@pytest.fixture()
def client(project) -> TestClient:
    return TestClient(create_app(project), base_url="http://127.0.0.1")


def test_map_gives_every_sample_its_point_cluster_and_caption(client, clustered):
    m = client.get("/api/map").json()
    rows = Dataset.open(clustered).index(columns=["key", "map_x", "map_y", "cluster", "caption"]).to_pylist()
    assert m["keys"] == [r["key"] for r in rows]
    assert m["x"] == [round(r["map_x"], 5) for r in rows] and m["y"] == [round(r["map_y"], 5) for r in rows]
    assert m["cluster"] == [r["cluster"] for r in rows] and sorted(set(m["cluster"])) == [0, 1, 2]
    assert m["caption"] == [r["caption"] for r in rows]
    stats = Dataset.open(clustered).stats()
    assert m["names"] == {str(c["id"]): c["name"] for c in stats["clusters"]}


def test_no_map_without_cluster_says_what_to_run(shapes, tmp_path):
    app = create_app(Project(ProjectConfig(shapes, db=str(tmp_path / "a.sqlite"))))
    r = TestClient(app, base_url="http://127.0.0.1").get("/api/map")
    assert r.status_code == 404 and "run `pixelforge embed` and `pixelforge cluster`" in r.json()["error"]


def test_tag_a_selection_then_label_only_it(client, project, clustered, tmp_path):
    keys = project.order
    picked = [keys[7], keys[3], keys[40]]
    r = client.post("/api/tag", json={"keys": picked, "tag": "odd ones", "annotator": "ann"}).json()
    assert r == {"ok": True, "changed": 3, "tag": "odd ones"}
    assert client.post("/api/tag", json={"keys": picked, "tag": "odd ones", "annotator": "ann"}).json()["changed"] == 0
    client.post("/api/tag", json={"keys": [keys[3]], "tag": "blue", "annotator": "bob"})
    assert client.get("/api/tags").json() == {"tags": {"blue": 1, "odd ones": 3}}
    q = client.get("/api/queue", params={"tag": "odd ones"}).json()
    assert q["keys"] == [keys[3], keys[7], keys[40]] and q["finished"] == [False] * 3  # queue order
    assert q["total"] == 60  # progress is the whole project's
    assert client.get(f"/api/item/{keys[3]}").json()["current"]["tags"]["value"] == ["blue", "odd ones"]
    untag = {"keys": [keys[3], keys[7]], "tag": "odd ones", "annotator": "ann", "remove": True}
    r = client.post("/api/tag", json=untag)
    assert r.json()["changed"] == 2
    assert client.get("/api/queue", params={"tag": "odd ones"}).json()["keys"] == [keys[40]]
    # label one tagged sample and apply: labels need "accepted", tags are kept whatever the status
    client.post("/api/annotate", json={"key": keys[40], "field": "label", "value": "circle", "annotator": "ann"})
    client.post("/api/annotate", json={"key": keys[40], "field": "status", "value": "accepted", "annotator": "ann"})
    out = str(tmp_path / "applied")
    assert main(["label", "apply", clustered, "--out", out, "--db", project.db.path.as_posix()]) == 0
    tags = {r["key"]: r["tags"] for r in Dataset.open(out).index(columns=["key", "tags"]).to_pylist()}
    assert {k: v for k, v in tags.items() if v} == {keys[3]: ["blue"], keys[40]: ["odd ones"]}
    assert tags[keys[7]] is None  # its only tag was removed


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [  # K stands for a real key
        ({"keys": ["K", "nope"], "tag": "x", "annotator": "ann"}, 404, "no item 'nope'"),
        ({"keys": [], "tag": "x", "annotator": "ann"}, 400, "keys: a non-empty list"),
        ({"keys": "K", "tag": "x", "annotator": "ann"}, 400, "keys: a non-empty list"),
        ({"keys": ["K"], "tag": "a/b", "annotator": "ann"}, 400, "tag 'a/b': 1-64 letters"),
        ({"keys": ["K"], "tag": "", "annotator": "ann"}, 400, "tag '': 1-64 letters"),
        ({"keys": ["K"], "tag": "x", "annotator": ""}, 400, "annotator ''"),
        ({"keys": ["K"], "tag": "x", "annotator": "ann", "colour": 1}, 400, "unknown fields ['colour']"),
        ({"keys": ["K"], "tag": "x", "annotator": "ann", "remove": "false"}, 400, "remove: true or false"),
    ],
)
def test_bad_tag_requests_are_refused_and_nothing_is_written(client, project, body, status, error):
    real = project.order[0]
    keys = body["keys"]
    body = dict(body, keys=[real if k == "K" else k for k in keys] if isinstance(keys, list) else real)
    r = client.post("/api/tag", json=body)
    assert r.status_code == status and r.json()["error"].startswith(error)
    assert AnnotationDB(project.db.path).count() == 0


def test_compare_has_no_tags(shapes, tmp_path):
    project = Project(ProjectConfig(shapes, task="compare", compare_with=shapes, db=str(tmp_path / "c.sqlite")))
    client = TestClient(create_app(project), base_url="http://127.0.0.1")
    r = client.post("/api/tag", json={"keys": [project.order[0]], "tag": "x", "annotator": "ann"})
    assert r.status_code == 400 and r.json()["error"] == "the compare task has no tags"
    assert client.get("/api/map").status_code == 404


@pytest.mark.browser
def test_map_hover_lasso_label_these_and_click(browser_page, clustered, tmp_path):
    page = browser_page
    db_path = str(tmp_path / "ann.sqlite")
    project = Project(ProjectConfig(clustered, task="classify", db=db_path))
    shown = {k: f"{k} · {r['label_name']} · {r['caption']}" for k, r in project.rows.items()}
    with LiveServer(create_app(project)) as server:
        page.goto(server.url + "/#!map")
        page.wait_for_selector("body[data-map='drawn']")
        assert page.text_content("#mapinfo").startswith("60 samples")
        assert page.locator("#maplegend > div").count() == 3
        pts = page.evaluate("Array.from(mapState.px).map((x, i) => [x, mapState.py[i], mapState.data.keys[i]])")
        box = page.locator("#map").bounding_box()
        # hover: the point under the mouse shows its thumbnail and caption
        x, y, key = pts[0]
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_selector("#maptip:not([hidden])")
        assert page.text_content("#maptip div") == shown[key]  # key, label, caption
        assert page.get_attribute("#maptip img", "src") == f"/api/image/{key}"
        page.wait_for_function("() => document.querySelector('#maptip img').naturalWidth === 24")
        # lasso: a rectangle around the left half of the map selects exactly the points inside it
        # split the map at the widest gap between dots near the middle: no dot within a pixel of the lasso
        xs = sorted(p[0] for p in pts)
        n_left = max(range(20, 41), key=lambda i: xs[i] - xs[i - 1])
        mid, half = (xs[n_left] + xs[n_left - 1]) / 2, (xs[n_left] - xs[n_left - 1]) / 2
        assert half > 1
        ys = [p[1] for p in pts]
        x0, x1, y0, y1 = min(p[0] for p in pts) - 5, mid, min(ys) - 5, max(ys) + 5
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        for cx, cy in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
            page.mouse.move(box["x"] + cx, box["y"] + cy, steps=4)
        page.mouse.up()
        want = {k for px, py, k in pts if x0 < px < x1 and y0 < py < y1}
        assert len(want) == n_left
        page.wait_for_selector("#mapsel:not([hidden])")
        assert page.text_content("#mapcount") == f"{n_left} selected"
        page.fill("#annotator", "ann")
        page.dispatch_event("#annotator", "change")
        page.fill("#maptag", "left half")
        page.click("#maplabel")  # tags the selection and makes it the queue
        page.wait_for_selector("#stage:not([hidden])")
        _wait_text(page, "#position", f"1 of {n_left}")
        assert page.text_content("#queuetag") == f'queue: tagged "left half" ({n_left})'
        tags = AnnotationDB(db_path).current_values("tags")
        assert {k for k, v in tags.items() if v == ["left half"]} == want and len(tags) == n_left
        queued = page.evaluate("state.queue")
        assert queued == [k for k in project.order if k in want]
        page.keyboard.press("1")  # labelling works as ever on the tagged queue
        _wait_text(page, "#position", f"2 of {n_left}")
        # click a point outside the tag: the whole queue comes back and the sample opens
        page.keyboard.press("m")
        page.wait_for_selector("#mapview:not([hidden])")
        outside = next(p for p in pts if p[2] not in want)
        page.mouse.click(box["x"] + outside[0], box["y"] + outside[1])
        page.wait_for_function(
            "k => document.getElementById('position').textContent.endsWith(': ' + k)", arg=outside[2]
        )
        assert page.is_hidden("#queueinfo") and page.evaluate("state.queue.length") == 60
        # a second selection, no name typed: a tag of its own, and the queue is that selection only
        page.keyboard.press("m")
        page.wait_for_selector("#mapview:not([hidden])")
        x0, x1 = mid, max(p[0] for p in pts) + 5
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        for cx, cy in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
            page.mouse.move(box["x"] + cx, box["y"] + cy, steps=4)
        page.mouse.up()
        page.wait_for_function(
            "n => document.getElementById('mapcount').textContent === n + ' selected'", arg=60 - n_left
        )
        page.fill("#maptag", "")
        page.click("#maplabel")
        _wait_text(page, "#queuetag", 'queue: tagged "selection-')
        assert page.text_content("#queuetag").endswith(f'" ({60 - n_left})')
        assert set(page.evaluate("state.queue")) == {k for _, _, k in pts} - want
    assert page.console_errors == []
