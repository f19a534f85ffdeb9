"""`pixelforge curate FOLDER`: a plain image folder imported and curated in one pass.

The reference is the two commands it replaces: `import folder` then `curate` on the dataset must
give the same rows, the same stored bytes and the same failure reasons.
"""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pixelforge.cli import main
from pixelforge.curate.columns import CURATE_FIELDS
from pixelforge.curate.folder import FolderWriteTask, write_window
from pixelforge.store import Dataset, index_schema
from tests.curate.conftest import photo

CLI = "import sys; from pixelforge.cli import main; sys.exit(main(sys.argv[1:]))"


def _jpeg(img: Image.Image, quality: int = 90, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return exif.tobytes()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """20 images of every kind an import meets, with captions, a sidecar and three bad files."""
    root = tmp_path_factory.mktemp("folder") / "images"
    (root / "sub").mkdir(parents=True)
    a = photo(1)
    files = {
        "a.png": a,
        "a_copy.png": a,  # exact duplicates
        "a_small.jpg": _jpeg(a.resize((67, 67)), 70),  # a near duplicate
        "sub/b.jpg": _jpeg(photo(2)),
        "sub/c.webp": photo(3),
        "d.bmp": photo(4),  # BMP: stored as PNG
        "rotated.jpg": _jpeg(photo(5, 80).resize((80, 60)), exif=_rotated_exif()),  # stored upright, re-encoded
        "grey.png": Image.new("RGB", (64, 64), (90, 90, 90)),
        "not_image.jpg": b"<html>not an image</html>",
        "truncated.png": None,
    }
    for i in range(10):
        files[f"p{i:02d}.png"] = photo(10 + i, 48)
    for name, content in files.items():
        path = root / name
        if content is None:
            buf = io.BytesIO()
            photo(30).save(buf, "PNG")
            path.write_bytes(buf.getvalue()[:80])
        elif isinstance(content, bytes):
            path.write_bytes(content)
        elif name.endswith(".webp"):
            content.save(path, "WEBP", quality=90)
        else:
            content.save(path)
    (root / "a.txt").write_text("a colourful scene with round shapes")
    (root / "p00.txt").write_text("IMG_1234.jpg")
    (root / "sub" / "b.json").write_text(
        json.dumps({"license": "cc-by-4.0", "attribution": "B. Author", "source_url": "https://example.org/b"})
    )
    (root / "p01.json").write_text("{broken")
    return root


def _rows(path: Path) -> list[dict]:
    return sorted(pq.read_table(path / "index.parquet").to_pylist(), key=lambda r: r["key"])


def _failures(path: Path) -> list[tuple]:
    return sorted((r["source"], r["reason"]) for r in pq.read_table(path / "failures.parquet").to_pylist())


@pytest.mark.parametrize("extra", [["--only", "duplicates"], ["--no-watermark"]])
def test_one_pass_equals_import_then_curate(folder, tmp_path, extra):
    assert main(["curate", str(folder), "--out", str(tmp_path / "one"), *extra]) == 0
    assert main(["import", "folder", str(folder), "--out", str(tmp_path / "ds")]) == 0
    assert main(["curate", str(tmp_path / "ds"), "--out", str(tmp_path / "two"), *extra]) == 0
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    assert len(one) == 17 and one == two  # every column, shard and member included
    # the unreadable files are failures of the one pass (import's failures in the two-command route)
    assert (
        _failures(tmp_path / "one")
        == _failures(tmp_path / "ds")
        == sorted(
            [
                (str(folder / "not_image.jpg"), "not_image"),
                (str(folder / "p01.png"), "bad_annotation"),
                (str(folder / "truncated.png"), "decode_error"),
            ]
        )
    )
    # stored bytes: the same, and a kept file's are the file's own
    got = {s.key: s.image for s in Dataset.open(tmp_path / "one").iter_samples()}
    assert got == {s.key: s.image for s in Dataset.open(tmp_path / "two").iter_samples()}
    by_source = {r["source"]: r for r in one}
    assert got[by_source[str(folder / "sub" / "b.jpg")]["key"]] == (folder / "sub" / "b.jpg").read_bytes()
    assert by_source[str(folder / "d.bmp")]["member"].endswith(".png")
    rotated = by_source[str(folder / "rotated.jpg")]
    assert (rotated["width"], rotated["height"]) == (60, 80)
    b = by_source[str(folder / "sub" / "b.jpg")]
    assert (b["license"], b["attribution"]) == ("cc-by-4.0", "B. Author")
    assert by_source[str(folder / "a.png")]["caption"] == "a colourful scene with round shapes"
    assert by_source[str(folder / "p00.png")]["c_flags"] == ["too_short", "filename_like"]
    # the exact copy and the shrunk JPEG are one group with a.png
    groups = {by_source[str(folder / n)]["dup_group"] for n in ("a.png", "a_copy.png", "a_small.jpg")}
    assert len(groups) == 1 and by_source[str(folder / "a.png")]["dup_count"] == 3
    info = json.loads((tmp_path / "one" / "dataset.json").read_text())
    assert info["lineage"]["command"] == "curate" and info["lineage"]["inputs"] == [{"path": str(folder)}]
    assert json.loads((tmp_path / "one" / "curation.json").read_text())["input_samples"] == 20


def test_one_pass_filters_and_is_the_same_for_any_process_count(folder, tmp_path):
    args = ["curate", str(folder), "--only", "duplicates", "--drop-duplicates", "--where", "width >= 48"]
    assert main([*args, "--out", str(tmp_path / "p1"), "--processes", "1"]) == 0
    assert main([*args, "--out", str(tmp_path / "p2"), "--processes", "2"]) == 0
    assert _rows(tmp_path / "p1") == _rows(tmp_path / "p2")
    report = json.loads((tmp_path / "p1" / "curation.json").read_text())
    removed = {r["rule"]: r["removed"] for r in report["rules"]}
    assert removed == {"opt_out": 0, "where": 0, "duplicates": 2}  # a_small.jpg (67 px) goes as a duplicate
    kept = _rows(tmp_path / "p1")
    assert len(kept) == 15 and not any(r["source"].endswith(("a_copy.png", "a_small.jpg")) for r in kept)


def test_a_file_changed_after_scoring_is_a_failure_not_a_sample(tmp_path):
    path = tmp_path / "x.png"
    photo(3, 32).save(path)
    schema = index_schema(list(CURATE_FIELDS))
    row = {
        "key": "000000000",
        "source_kind": "folder",
        "source": str(path),
        "license": "unknown",
        "width": 32,
        "height": 32,
        "format": "png",
        "sha256": hashlib.sha256(b"other bytes").hexdigest(),
    }
    ok = dict(row, key="000000001", sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (tmp_path / "out" / ".work").mkdir(parents=True)
    assert write_window(FolderWriteTask(str(tmp_path / "out"), 0, [row, ok], set(), [], schema)) == 1
    fails = pq.read_table(tmp_path / "out" / ".work" / "000000.failures.parquet").to_pylist()
    assert [(f["reason"], f["row"], f["source"]) for f in fails] == [("changed_file", 0, str(path))]
    assert fails[0]["detail"] == "sample 000000000: its bytes differ from the ones scored"


def test_bad_folder_arguments_are_one_line_errors(folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["curate", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "neither a pixelforge dataset" in err and err.count("\n") == 1
    assert main(["curate", str(folder), "--out", str(folder / "curated")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert not (folder / "curated").exists()
    assert main(["curate", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "no such dataset or folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    """1,200 small distinct PNGs: five scoring windows, so a run can be stopped between them."""
    root = tmp_path_factory.mktemp("many") / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(1200):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((24, 24)).save(root / f"{i:04d}.png")
    return root


def test_one_pass_resumes_after_sigkill(many, tmp_path):
    out = tmp_path / "resumed"
    args = ["curate", str(many), "--out", str(out), "--only", "duplicates", "--processes", "1"]
    err = open(tmp_path / "stderr.txt", "wb")  # noqa: SIM115  (kept for the failure message below)
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if list((out / ".work").glob("scores-folder-*.arrow")) if (out / ".work").is_dir() else []:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.001)
    proc.wait()
    err.close()
    stderr = (tmp_path / "stderr.txt").read_text(errors="replace")[-2000:]
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be stopped: {stderr}"
    saved = {p.name: p.stat().st_mtime_ns for p in (out / ".work").glob("scores-folder-*.arrow")}
    assert 1 <= len(saved) < 5 and not (out / "dataset.json").exists()
    assert main(args) == 2  # without --resume a partly written --out is refused
    assert main([*args, "--resume"]) == 0
    assert main(["curate", str(many), "--out", str(tmp_path / "whole"), "--only", "duplicates"]) == 0
    assert _rows(out) == _rows(tmp_path / "whole") and len(_rows(out)) == 1200
