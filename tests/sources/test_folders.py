"""Tests for the imagefolder, folder and digits importers (through the CLI where it matters)."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.sources.base import ImportOptions, run_import
from pixelforge.sources.digits import DigitsSource
from pixelforge.sources.folders import FolderSource, ImageFolderSource
from pixelforge.store import Dataset


def _jpeg(colour, size=(20, 10)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _png(colour, size=(12, 12)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def imagenet(tmp_path):
    root = tmp_path / "train"
    for cls, colour in (("n01_cat", "red"), ("n02_dog", "blue")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.jpg").write_bytes(_jpeg(colour))
    (root / "n02_dog" / "broken.jpg").write_bytes(_jpeg("blue")[:300])
    (root / "n02_dog" / "notes.txt").write_text("not an image")
    (root / "n01_cat" / "sub").mkdir()
    (root / "n01_cat" / "sub" / "deep.png").write_bytes(_png("red"))
    return root


def test_imagefolder_labels_and_failures(imagenet, tmp_path):
    res = run_import(ImageFolderSource(str(imagenet)), ImportOptions(out=str(tmp_path / "out"), license="cc0-1.0"))
    assert (res.samples, res.failures, res.failure_reasons) == (7, 1, {"decode_error": 1})
    ds = Dataset.open(res.out)
    rows = ds.index().to_pylist()
    assert [(r["label"], r["label_name"]) for r in rows] == [(0, "n01_cat")] * 4 + [(1, "n02_dog")] * 3
    assert {r["license"] for r in rows} == {"cc0-1.0"}
    assert rows[0]["format"] == "jpeg" and (rows[0]["width"], rows[0]["height"]) == (20, 10)
    (fail,) = ds.failures().to_pylist()
    assert fail["source"].endswith("n02_dog/broken.jpg") and fail["reason"] == "decode_error"
    # source bytes are kept unchanged for JPEG
    first = next(ds.iter_samples())
    assert first.image == (imagenet / "n01_cat" / "0.jpg").read_bytes()


def test_imagefolder_without_classes_is_usage_error(tmp_path):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(_jpeg("red"))
    with pytest.raises(UsageError, match="has no class sub-folders.*import folder"):
        run_import(ImageFolderSource(str(tmp_path / "flat")), ImportOptions(out=str(tmp_path / "o")))


def test_folder_captions_sidecars_and_meta(tmp_path):
    root = tmp_path / "ft"
    root.mkdir()
    (root / "a.png").write_bytes(_png("green"))
    (root / "a.txt").write_text("  a green square \n")
    (root / "a.json").write_text(
        json.dumps(
            {
                "license": "cc-by-4.0",
                "license_url": "https://creativecommons.org/licenses/by/4.0/",
                "attribution": "Ada",
                "source_url": "https://example.org/a",
                "camera": "x100",
            }
        )
    )
    (root / "b.jpg").write_bytes(_jpeg("white"))
    (root / "c.jpg").write_bytes(_jpeg("black"))
    (root / "c.json").write_text("{not json")
    res = run_import(FolderSource(str(root)), ImportOptions(out=str(tmp_path / "out"), attribution="Team"))
    ds = Dataset.open(res.out)
    a, b = ds.index().to_pylist()
    assert a["caption"] == "a green square" and a["caption_source"] == "sidecar"
    assert (a["license"], a["attribution"]) == ("cc-by-4.0", "Ada")
    assert json.loads(a["meta"]) == {"camera": "x100", "source_url": "https://example.org/a"}
    assert a["source"] == str(root / "a.png")
    assert (b["caption"], b["caption_source"], b["license"], b["attribution"]) == (None, None, "unknown", "Team")
    (fail,) = ds.failures().to_pylist()
    assert fail["reason"] == "bad_annotation" and "c.json" in fail["detail"]


def test_digits_real_data(tmp_path):
    res = run_import(DigitsSource(size=16), ImportOptions(out=str(tmp_path / "d")))
    ds = Dataset.open(res.out)
    assert ds.num_samples == 1797
    counts = {
        r["label"]: r["n"]
        for r in __import__("pixelforge.store", fromlist=["query"])
        .query(ds, "SELECT label, count(*) AS n FROM samples GROUP BY label")
        .to_pylist()
    }
    assert counts == {0: 178, 1: 182, 2: 177, 3: 183, 4: 181, 5: 182, 6: 181, 7: 179, 8: 174, 9: 180}
    first = next(ds.iter_samples())
    img = np.asarray(first.decode())
    assert img.shape == (16, 16, 3) and first.row["label_name"] == "0" and first.row["license"] == "cc-by-4.0"
    from sklearn.datasets import load_digits

    at8 = np.asarray(Image.fromarray(img[..., 0]).resize((8, 8), Image.BOX), dtype=float)
    # the stored image is the real digit: downsampled back it correlates with the original
    assert np.corrcoef(at8.ravel(), load_digits().images[0].ravel())[0, 1] > 0.95


def test_digits_size_validated(capsys, tmp_path):
    assert main(["import", "digits", "--size", "4", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "Error: --size 4: choose a side between 8 and 512 pixels"


def test_parallel_import_equals_one_process(imagenet, tmp_path, monkeypatch):
    """Windows decoded by 2 worker processes come back in order: same rows, failures and shard bytes."""
    from pixelforge.sources import base

    monkeypatch.setattr(base, "WINDOW", 2)  # 9 items -> 5 windows, finishing in any order
    monkeypatch.setattr(base, "MIN_PARALLEL_ITEMS", 0)
    out = {}
    for processes in (1, 2):
        res = run_import(
            ImageFolderSource(str(imagenet)), ImportOptions(out=str(tmp_path / f"p{processes}"), processes=processes)
        )
        assert (res.samples, res.failures) == (7, 1)
        ds = Dataset.open(res.out)
        out[processes] = (
            ds.index().to_pylist(),
            ds.failures().to_pylist(),
            [(s.key, s.image) for s in ds.iter_samples()],
        )
    assert out[2] == out[1]
    assert [r["key"] for r in out[2][0]] == sorted(r["key"] for r in out[2][0])


def test_import_processes_checked(capsys, tmp_path, imagenet):
    assert main(["import", "imagefolder", str(imagenet), "--out", str(tmp_path / "o"), "--processes", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["Error: --processes 0: must be at least 1"]
    assert not (tmp_path / "o").exists()


def test_pillow_warnings_are_counted_in_stats_not_printed(tmp_path, monkeypatch, recwarn):
    """A JPEG with corrupt EXIF makes Pillow warn; the import counts it in stats.json, in any process."""
    import struct
    import warnings

    from pixelforge.sources import base

    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 40, 40)).save(buf, "JPEG")
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x05\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x01\x00" + b"\xff" * 6
    app1 = b"Exif\x00\x00" + tiff
    bad_exif = buf.getvalue()[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + buf.getvalue()[2:]
    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"{i}.jpg").write_bytes(bad_exif if i != 1 else buf.getvalue())
    monkeypatch.setattr(base, "WINDOW", 2)
    monkeypatch.setattr(base, "MIN_PARALLEL_ITEMS", 0)
    for processes in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = run_import(
                FolderSource(str(tmp_path / "in")),
                ImportOptions(out=str(tmp_path / f"o{processes}"), processes=processes),
            )
        assert res.samples == 3
        assert Dataset.open(res.out).stats()["image_warnings"] == {"corrupt_exif": 2}
    assert recwarn.list == []
