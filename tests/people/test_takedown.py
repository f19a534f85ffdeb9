"""takedown: samples named by key, URL, hash or a copy of the photo are removed with their bytes; the
request lines that matched are recorded; datasets, runs and generated sets made from the old data are found."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixelforge import media
from pixelforge.cli import main
from pixelforge.people.takedown import TakedownConfig, find_derived, takedown
from pixelforge.store import Dataset, DatasetBuilder, Lineage
from tests.curate.conftest import photo

N = 12


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture()
def web(tmp_path) -> str:
    """12 photos (160 px JPEGs) as collected from https://example.org/p/N.jpg, in 3 shards."""
    path = tmp_path / "web"
    b = DatasetBuilder(str(path), samples_per_shard=4)
    for i in range(N):
        img = photo(300 + i, 160)
        data = jpeg(img)
        row = {
            "key": f"{i:06d}",
            "source_kind": "url",
            "source": f"https://example.org/p/{i}.jpg",
            "page_url": f"https://example.org/gallery/{i // 4}.html",
            "caption": f"photo {i}",
            "width": 160,
            "height": 160,
            "orig_width": 160,
            "orig_height": 160,
            "format": "jpeg",
            "sha256": hashlib.sha256(data).hexdigest(),
            "phash": media.phash64(media.decode(data)),
        }
        b.add(row, data, "jpg")
    b.finish(name="web", lineage=Lineage(command="test"))
    return str(path)


def request(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "request.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_every_kind_of_entry_removes_its_sample_and_its_bytes(web, tmp_path):
    ds = Dataset.open(web)
    rows = {r["key"]: r for r in ds.index().to_pylist()}
    # a copy of photo 7 as its owner has it: smaller and re-encoded; a 9% crop of photo 9
    photo(307, 160).resize((100, 100)).save(tmp_path / "mine.jpg", quality=70)
    photo(309, 160).crop((14, 3, 160, 149)).save(tmp_path / "cropped.jpg", quality=85)
    req = request(
        tmp_path,
        "# removal requests of 2026-12-07",
        "key:000001",
        "url:https://example.org/p/2.jpg",
        f"sha256:{rows['000003']['sha256']}",
        f"phash:{rows['000004']['phash']:016x}",
        "image:mine.jpg",
        "image:cropped.jpg",
        "url-prefix:https://elsewhere.example/",  # matches nothing: reported
    )
    out = str(tmp_path / "out")
    result = takedown(web, out, TakedownConfig(match=req))
    gone = {"000001": [2], "000002": [3], "000003": [4], "000004": [5], "000007": [6], "000009": [7]}
    report = json.loads((Path(out) / "takedown.json").read_text())
    assert {r["key"]: r["lines"] for r in report["removed"]} == gone
    assert report["unmatched_lines"] == [8]
    assert (result.removed, result.samples, result.input_samples) == (6, 6, 12)
    assert result.by_kind == {"key": 1, "url": 1, "sha256": 1, "phash": 1, "image": 2}
    new = Dataset.open(out)
    assert sorted(new.index(columns=["key"]).column("key").to_pylist()) == sorted(set(rows) - set(gone))
    # 000000-000003 sit in shard 0, 000004-000007 in 1, 000008-000011 in 2: each lost a sample, so
    # each was written again; a takedown that spares a shard carries it (next test)
    stored = b"".join(Path(p).read_bytes() for p in Path(out, "shards").glob("*.tar"))
    for key in gone:  # the bytes are gone, not just the rows
        data = Dataset.open(web).read_member(*_member(ds, key))
        assert data not in stored
    lineage = new.info["lineage"]
    assert lineage["command"] == "takedown" and lineage["config"]["removed"] == sorted(gone)
    assert new.stats()["takedown"] == {"removed": 6, "by_kind": result.by_kind}


def _member(ds: Dataset, key: str):
    row = next(r for r in ds.index(columns=["key", "shard", "member"]).to_pylist() if r["key"] == key)
    offset, size = ds.member_offsets(row["shard"])[row["member"]]
    return row["shard"], offset, size


def test_a_crop_is_found_only_with_alignment(web, tmp_path):
    photo(309, 160).crop((14, 3, 160, 149)).save(tmp_path / "cropped.jpg", quality=85)
    req = request(tmp_path, "image:cropped.jpg")
    plain = takedown(web, str(tmp_path / "a"), TakedownConfig(match=req, aligned=False))
    assert plain.removed == 0 and plain.unmatched_lines == [1]  # the crop's phash is too far
    aligned = takedown(web, str(tmp_path / "b"), TakedownConfig(match=req))
    assert aligned.removed == 1


def test_unrelated_photos_match_nothing(web, tmp_path):
    for i in range(5):
        photo(900 + i, 160).save(tmp_path / f"other{i}.jpg", quality=90)
    req = request(tmp_path, *(f"image:other{i}.jpg" for i in range(5)))
    result = takedown(web, str(tmp_path / "out"), TakedownConfig(match=req))
    assert result.removed == 0 and result.unmatched_lines == [1, 2, 3, 4, 5]


def test_derived_datasets_runs_and_generated_sets_are_listed(web, tmp_path):
    root = tmp_path / "work"
    root.mkdir()
    curated, split = root / "curated", root / "split"
    assert main(["curate", web, "--out", str(curated), "--only", "duplicates"]) == 0
    assert main(["split", str(curated), "--out", str(split)]) == 0
    other = root / "other"
    assert main(["import", "shapes", "--n", "8", "--size", "16", "--out", str(other)]) == 0
    run = root / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"family": "diffusion", "dataset": {"path": str(split)}}))
    unrelated_run = root / "runs" / "r2"
    unrelated_run.mkdir()
    (unrelated_run / "config.json").write_text(json.dumps({"family": "gan", "dataset": {"path": str(other)}}))
    moved = root / "runs" / "r3"  # its data recorded under another path: known by name and creation time
    moved.mkdir()
    info = Dataset.open(str(split)).info
    record = {"path": "elsewhere/split", "name": info["name"], "created_at": info["created_at"]}
    (moved / "config.json").write_text(json.dumps({"family": "classifier", "dataset": record}))
    gen = root / "generated"
    b = DatasetBuilder(str(gen))
    b.add({"key": "g0", "source_kind": "generated", "width": 16, "height": 16}, jpeg(photo(1, 16)), "jpg")
    b.finish(name="generated", lineage=Lineage(command="generate", config={"run": str(run)}, inputs=[str(split)]))
    reports = root / "reports"
    reports.mkdir()
    assert main(["report", str(curated), "--out", str(reports / "curated.html")]) == 0
    assert main(["report", str(gen), "--out", str(reports / "generated.html")]) == 0
    assert main(["report", str(other), "--out", str(reports / "other.html")]) == 0
    (reports / "notes.html").write_text("<html><head></head><body>not a report</body></html>")
    found = find_derived(str(root), Dataset.open(web))
    expected = {
        "datasets": [str(curated), str(split)],
        "runs": [str(run), str(moved)],
        "generated": [str(gen)],
        "reports": [str(reports / "curated.html"), str(reports / "generated.html")],
    }
    assert found == expected
    # the CLI lists them too, and keeps them in takedown.json
    req = request(tmp_path, "key:000000")
    out = tmp_path / "out"
    assert main(["takedown", web, "--out", str(out), "--match", req, "--find-derived", str(root), "--json"]) == 0
    assert json.loads((out / "takedown.json").read_text())["derived"] == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("colour:red", "line 1: 'colour:red': write KIND:VALUE with KIND one of key, url, url-prefix"),
        ("sha256:abc", "line 1: 'sha256:abc': write KIND:VALUE"),
        ("phash:zz00000000000000", "line 1: 'phash:zz00000000000000'"),
        ("url:example.org/x.jpg", "line 1: 'url:example.org/x.jpg'"),
        ("image:missing.jpg", "line 1: image 'missing.jpg': no such file (paths are relative to"),
        ("image:notes.txt", "line 1: "),  # a file that is no image
    ],
)
def test_a_bad_request_line_is_a_usage_error_naming_it(web, tmp_path, capsys, line, message):
    (tmp_path / "notes.txt").write_text("not an image")
    req = request(tmp_path, line)
    assert main(["takedown", web, "--out", str(tmp_path / "o"), "--match", req]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_embeddings_are_carried_without_the_removed_rows(web, tmp_path):
    emb = str(tmp_path / "emb")
    assert main(["embed", web, "--out", emb, "--processes", "1"]) == 0
    req = request(tmp_path, "key:000005", "key:000006")
    out = str(tmp_path / "out")
    takedown(emb, out, TakedownConfig(match=req))
    before, after = Dataset.open(emb).embeddings(), Dataset.open(out).embeddings()
    assert after.keys == [k for k in before.keys if k not in ("000005", "000006")]
    rows = [before.keys.index(k) for k in after.keys]
    assert np.array_equal(np.asarray(after.vectors), np.asarray(before.vectors)[rows])


def test_the_page_a_photo_was_found_on_names_its_samples(web, tmp_path):
    req = request(tmp_path, "url:https://example.org/gallery/2.html   # the page", "url-prefix:https://example.org/p/1")
    result = takedown(web, str(tmp_path / "out"), TakedownConfig(match=req))
    report = json.loads((tmp_path / "out" / "takedown.json").read_text())
    # the page holds samples 8-11; the prefix .../p/1 is p/1.jpg, p/10.jpg and p/11.jpg
    assert {r["key"]: r["lines"] for r in report["removed"]} == {
        "000001": [2],
        "000008": [1],
        "000009": [1],
        "000010": [1, 2],
        "000011": [1, 2],
    }
    assert result.by_kind == {"url": 4, "url-prefix": 3}


def test_out_may_not_be_or_hold_the_input(web, tmp_path, capsys):
    req = request(tmp_path, "key:000001")
    link = tmp_path / "link"
    link.symlink_to(web)
    for out in (str(link), str(tmp_path)):  # a link to the input; the folder holding it
        assert main(["takedown", web, "--out", out, "--match", req, "--overwrite"]) == 2
        assert "is or holds the input dataset: inputs are never modified" in capsys.readouterr().err
    assert Dataset.open(web).num_samples == N


def test_a_request_saved_with_a_byte_order_mark_reads(web, tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("key:000002\n".encode("utf-8-sig"))
    assert takedown(web, str(tmp_path / "out"), TakedownConfig(match=str(path))).removed == 1


def test_shards_that_lose_nothing_are_carried_unchanged(web, tmp_path):
    req = request(tmp_path, "key:000005")
    out = tmp_path / "out"
    takedown(web, str(out), TakedownConfig(match=req))
    for shard in ("000000.tar", "000002.tar"):  # hard links to the input's files: the same bytes, no copy
        assert (out / "shards" / shard).stat().st_ino == (Path(web) / "shards" / shard).stat().st_ino
    assert (out / "shards" / "000001.tar").stat().st_ino != (Path(web) / "shards" / "000001.tar").stat().st_ino
    new = Dataset.open(str(out))
    assert new.num_samples == N - 1 and "000005" not in new.index(columns=["key"]).column("key").to_pylist()
    assert sorted(s.row["key"] for s in new.iter_samples()) == [f"{i:06d}" for i in range(N) if i != 5]
