"""The labelling API: items and images, validation, concurrent edits, token, host and body-size guards."""

from __future__ import annotations

import json
import sqlite3
import threading

import httpx
import pytest
from fastapi.testclient import TestClient

from pixelforge.label.db import AnnotationDB
from pixelforge.label.project import Project, ProjectConfig
from pixelforge.label.server import ServerConfig, create_app

from .conftest import LiveServer


@pytest.fixture()
def project(digits, tmp_path) -> Project:
    return Project(ProjectConfig(digits, task="classify", db=str(tmp_path / "ann.sqlite")))


@pytest.fixture()
def client(project) -> TestClient:
    return TestClient(create_app(project), base_url="http://127.0.0.1")


def post(client, **body):
    return client.post("/api/annotate", json=body)


def test_session_queue_item_image(client, digits):
    s = client.get("/api/session").json()
    assert s == {
        "task": "classify",
        "classes": [str(i) for i in range(10)],
        "dataset": "digits",
        "fields": ["label", "status", "tags"],
        "max_body": 256 * 1024,
        "done": 0,
        "total": 1797,
    }
    q = client.get("/api/queue?offset=0&limit=3").json()
    assert q["keys"] == ["000000000", "000000001", "000000002"] and q["finished"] == [False] * 3
    item = client.get("/api/item/000000001").json()
    assert item["label"] == "1" and (item["width"], item["height"]) == (16, 16) and item["current"] == {}
    img = client.get("/api/image/000000001")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert img.content.startswith(b"\x89PNG") and img.headers["x-content-type-options"] == "nosniff"
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body>")[1]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/image/..%2F..%2Fdataset.json",
        "/api/image/%2E%2E",
        "/api/image/000000001.png",
        "/api/item/..%2Findex",
        "/api/image/000000001?side=../b",
        "/api/history/a%00b",
        "/static/..%2Findex.html",
        "/static/../db.py",
    ],
)
def test_keys_cannot_traverse_paths(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), r.text
    assert b"PNG" not in r.content and b"schema_version" not in r.content


def test_annotation_validation(client):
    ok = post(client, key="000000005", field="label", value="7", annotator="ann", base_version=0)
    assert ok.status_code == 200 and ok.json()["version"] == 1
    cases = [
        (dict(key="000000005", field="label", value="eleven", annotator="ann"), "not one of the project's classes"),
        (dict(key="000000005", field="caption", value="x", annotator="ann"), "the classify task edits label, status"),
        (dict(key="../etc", field="label", value="1", annotator="ann"), "letters, digits"),
        (dict(key="999999999", field="label", value="1", annotator="ann"), "no item"),
        (dict(key="000000005", field="status", value="done", annotator="ann"), "accepted or skipped"),
        (dict(key="000000005", field="label", value="1", annotator="<script>"), "annotator"),
        (dict(key="000000005", field="label", value="1", annotator="ann", base_version=-1), "base_version"),
        (dict(key="000000005", field="label", value="1", annotator="ann", extra=1), "unknown fields"),
    ]
    for body, message in cases:
        r = post(client, **body)
        assert r.status_code in (400, 404) and message in r.json()["error"], (body, r.text)
    r = client.post("/api/annotate", content=b'{"key": 1', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/api/annotate", content=b"key=1", headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415  # a cross-site form post cannot write
    assert len(client.get("/api/history/000000005").json()["edits"]) == 1  # nothing else was stored


def test_boxes_are_checked_against_the_image(shapes, tmp_path):
    project = Project(ProjectConfig(shapes, task="boxes", db=str(tmp_path / "b.sqlite")))
    c = TestClient(create_app(project), base_url="http://127.0.0.1")
    item = c.get("/api/item/000000000").json()
    assert len(item["boxes"]) == 1 and item["boxes"][0]["label"] in project.classes
    good = [{"x0": 1, "y0": 2, "x1": 10.5, "y1": 31, "label": project.classes[0]}]
    r = post(c, key="000000000", field="boxes", value=good, annotator="ann")
    assert r.status_code == 200
    assert c.get("/api/item/000000000").json()["current"]["boxes"]["value"] == [
        {"x0": 1.0, "y0": 2.0, "x1": 10.5, "y1": 31.0, "label": project.classes[0]}
    ]
    for bad, message in [
        ([{"x0": 5, "y0": 0, "x1": 40, "y1": 4}], "not inside the 32x32 image"),
        ([{"x0": 5, "y0": 5, "x1": 4, "y1": 9}], "x0 < x1"),
        ([{"x0": 0, "y0": 0, "x1": 4, "y1": 4, "label": "dragon"}], "not one of the project's"),
        ([{"x0": "a", "y0": 0, "x1": 4, "y1": 4}], "must be numbers"),
        ("nope", "a list of at most 500"),
    ]:
        r = post(c, key="000000000", field="boxes", value=bad, annotator="ann")
        assert r.status_code == 400 and message in r.json()["error"]


def test_concurrent_edit_keeps_both_and_tells_the_other(client, project):
    # two browsers opened the same image at version 0; ann saves first, bob second without seeing it
    a = post(client, key="000000010", field="label", value="3", annotator="ann", base_version=0).json()
    b = post(client, key="000000010", field="label", value="8", annotator="bob", base_version=0).json()
    assert a["conflict"] is None and a["version"] == 1
    assert b["version"] == 2 and b["conflict"]["annotator"] == "ann" and b["conflict"]["value"] == "3"
    item = client.get("/api/item/000000010").json()
    assert item["current"]["label"]["value"] == "8" and item["current"]["label"]["annotator"] == "bob"  # last wins
    edits = client.get("/api/history/000000010").json()["edits"]
    assert [(e["annotator"], e["value"], e["previous"], e["conflict"]) for e in edits] == [
        ("ann", "3", None, False),
        ("bob", "8", "3", True),
    ]
    notices = client.get("/api/notices?annotator=ann").json()["notices"]
    assert [(n["key"], n["by"], n["your_value"], n["value"]) for n in notices] == [("000000010", "bob", "3", "8")]
    assert client.get(f"/api/notices?annotator=ann&after={notices[0]['id']}").json()["notices"] == []
    assert client.get("/api/notices?annotator=bob").json()["notices"] == []
    # a save by someone who had seen version 2 is no conflict
    c = post(client, key="000000010", field="label", value="9", annotator="ann", base_version=2).json()
    assert c["conflict"] is None and c["version"] == 3


def test_many_writers_lose_nothing(project):
    """8 threads x 2 connections each x 25 edits on the same field: every edit stored once, versions 1..400."""
    path = project.db.path
    errors = []

    def writer(i):
        db = AnnotationDB(path)  # its own connection, as another server process would have
        try:
            for j in range(25):
                for who in (f"w{i}", f"v{i}"):
                    db.save("000000001", "label", str(j % 10), who, base_version=0, client_id=f"client-{who}-{j:04d}")
            db.save("000000001", "label", "1", f"w{i}", client_id=f"client-w{i}-0000")  # a retry: no new row
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    edits = project.db.history("000000001")
    assert len(edits) == 400 and sorted(e["version"] for e in edits) == list(range(1, 401))
    assert len({e["client_id"] for e in edits}) == 400
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_body_size_cap_and_host_check(project):
    c = TestClient(create_app(project, ServerConfig(max_body=2048)), base_url="http://127.0.0.1")
    big = {"key": "000000001", "field": "label", "value": "1", "annotator": "a" * 10, "client_id": "x" * 3000}
    assert c.post("/api/annotate", json=big).status_code == 413

    def chunks():  # no Content-Length: the streamed body is counted
        for _ in range(10):
            yield b" " * 1000

    r = c.post("/api/annotate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert c.get("/api/session", headers={"host": "attacker.example"}).status_code == 421  # DNS rebinding
    assert c.get("/api/session", headers={"host": "localhost:8765"}).status_code == 200


def test_token_required_off_loopback(project):
    with pytest.raises(ValueError, match="needs a token"):
        create_app(project, ServerConfig(host="0.0.0.0"))
    token = "t0ken-" + "x" * 20
    app = create_app(project, ServerConfig(host="0.0.0.0", token=token))
    with LiveServer(app, host="0.0.0.0") as server:
        assert httpx.get(f"{server.url}/api/session").status_code == 401
        assert httpx.get(f"{server.url}/").status_code == 401
        assert httpx.get(f"{server.url}/api/image/000000001").status_code == 401
        wrong = httpx.get(f"{server.url}/api/session", headers={"authorization": "Bearer " + "y" * len(token)})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        r = httpx.post(
            f"{server.url}/api/annotate", json={"key": "000000001", "field": "label", "value": "1", "annotator": "eve"}
        )
        assert r.status_code == 401 and project.db.count() == 0
        ok = httpx.get(f"{server.url}/api/session", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["total"] == 1797
        with httpx.Client() as browser:  # ?token= once sets an HttpOnly cookie that later requests carry
            first = browser.get(f"{server.url}/?token={token}")
            assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
            assert browser.get(f"{server.url}/api/image/000000001").status_code == 200
            r = browser.post(
                f"{server.url}/api/annotate",
                json={"key": "000000001", "field": "label", "value": "1", "annotator": "ann"},
            )
            assert r.status_code == 200 and project.db.count() == 1


def test_compare_hides_models_and_maps_choices(tmp_path):
    from pixelforge.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["import", "shapes", "--n", "6", "--size", "16", "--seed", "4", "--out", str(a)]) == 0
    assert main(["import", "shapes", "--n", "6", "--size", "16", "--seed", "4", "--out", str(b)]) == 0
    project = Project(ProjectConfig(str(a), task="compare", compare_with=str(b), db=str(tmp_path / "c.sqlite")))
    c = TestClient(create_app(project), base_url="http://127.0.0.1")
    keys = c.get("/api/queue").json()["keys"]
    assert len(keys) == 6
    swapped = [project.swapped(k) for k in keys]
    assert 0 < sum(swapped) < 6  # the order is randomised per pair
    for k, sw in zip(keys, swapped):
        item = c.get(f"/api/item/{k}").json()
        assert item["images"] == (
            [f"/api/image/{k}?side=b", f"/api/image/{k}?side=a"]
            if sw
            else [f"/api/image/{k}?side=a", f"/api/image/{k}?side=b"]
        )
        assert post(c, key=k, field="compare", value="left", annotator="ann").status_code == 200
        assert c.get(f"/api/item/{k}").json()["current"]["compare"]["value"] == "left"  # shown as chosen
    stored = [e["value"] for e in project.db.history() if e["field"] == "compare"]
    assert stored == ["b" if sw else "a" for sw in swapped]  # "left" recorded as the model that was on the left
    assert json.loads(json.dumps(project.progress())) == {"done": 0, "total": 6}


def test_rate_scores_are_validated(shapes, tmp_path):
    project = Project(ProjectConfig(shapes, task="rate", db=str(tmp_path / "r.sqlite")))
    c = TestClient(create_app(project), base_url="http://127.0.0.1")
    assert c.get("/api/session").json()["fields"] == ["realism", "faithfulness", "status", "tags"]
    assert post(c, key="000000003", field="realism", value=4, annotator="ann").status_code == 200
    for value in (0, 6, 3.5, "5", True):
        r = post(c, key="000000003", field="faithfulness", value=value, annotator="ann")
        assert r.status_code == 400 and "an integer score from 1 to 5" in r.json()["error"]
    assert post(c, key="000000003", field="label", value="circle", annotator="ann").status_code == 400


def test_serve_command_generates_a_token_off_loopback(digits, tmp_path):
    import subprocess
    import sys
    import time

    from .conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pixelforge.cli",
            "label",
            "serve",
            digits,
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "s.sqlite"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "1797 items (classify) at http://0.0.0.0:" in line and "?token=" in line
        token = line.split("?token=")[1].split()[0]
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/session", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert r.status_code == 401
        ok = httpx.get(f"http://127.0.0.1:{port}/api/session", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_queue_puts_low_confidence_then_suspected_errors_first(shapes, tmp_path):
    import pyarrow as pa

    from pixelforge.label.rewrite import rewrite
    from pixelforge.store import Dataset, Lineage

    conf = {"000000003": 0.2, "000000007": 0.4, "000000001": 0.9}
    issue = {"000000005": 0.3, "000000009": 0.1}

    def update(row):
        row["suggested_label"] = row["label_name"] if row["key"] in conf else None
        row["suggested_confidence"] = conf.get(row["key"])
        row["label_issue"] = row["key"] in issue
        row["label_quality"] = issue.get(row["key"])
        return row

    out = tmp_path / "prio"
    rewrite(
        Dataset.open(shapes),
        str(out),
        update,
        [
            pa.field("suggested_label", pa.string()),
            pa.field("suggested_confidence", pa.float32()),
            pa.field("label_issue", pa.bool_()),
            pa.field("label_quality", pa.float32()),
        ],
        Lineage("test"),
    )
    project = Project(ProjectConfig(str(out), db=str(tmp_path / "p.sqlite")))
    assert project.order[:5] == ["000000003", "000000007", "000000009", "000000005", "000000000"]
    assert project.order[-1] == "000000001"  # a confident suggestion goes last


def test_serve_bad_arguments_are_one_line_errors(digits, capsys):
    from pixelforge.cli import main

    for args, message in [
        (["--task", "foo"], "--task 'foo': choose one of classify, boxes, caption, review, rate"),
        ([digits], "--task compare needs two datasets"),
        (["--host", "0.0.0.0", "--token", "short"], "--token: use at least 16 characters"),
        (["--port", "0"], "--port 0: choose 1-65535"),
    ]:
        assert main(["label", "serve", digits, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("Error: ") and message in err and err.count("\n") == 1
