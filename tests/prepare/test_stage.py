"""Tests of `pixelforge prepare`: sizes, boxes and masks follow the resize, denoisers, augmented copies."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from pixelforge import media
from pixelforge.cli import main
from pixelforge.media import resize_geometry
from pixelforge.prepare.denoise import DENOISERS
from pixelforge.prepare.worker import move_boxes, move_mask
from pixelforge.store import Dataset, DatasetBuilder, Lineage


@pytest.fixture(scope="module")
def boxed(tmp_path_factory):
    """Three 40x20 images with a box and a mask over their right half; splits train, val, null."""
    path = tmp_path_factory.mktemp("prep") / "in"
    b = DatasetBuilder(str(path), samples_per_shard=2)
    for i, split in enumerate(["train", "val", None]):
        arr = np.zeros((20, 40, 3), np.uint8)
        arr[:, 20:] = (200, 50 * i, 30)
        mask = np.zeros((20, 40), np.uint8)
        mask[:, 20:] = 7
        buf = io.BytesIO()
        Image.fromarray(mask).save(buf, "PNG")
        b.add(
            {
                "key": f"s{i}",
                "source_kind": "folder",
                "source": f"/s{i}",
                "split": split,
                "width": 40,
                "height": 20,
                "boxes": [{"x0": 20.0, "y0": 0.0, "x1": 40.0, "y1": 20.0, "label": 1}],
            },
            media.encode(Image.fromarray(arr), "png"),
            "png",
            mask=buf.getvalue(),
        )
    b.add({"key": "bad", "source_kind": "folder", "source": "/bad", "width": 1, "height": 1}, b"junk", "png")
    b.finish(name="boxed", lineage=Lineage("test"))
    return str(path)


@pytest.mark.parametrize(
    "mode, box",
    [
        ("center_crop", {"x0": 8.0, "y0": 0.0, "x1": 16.0, "y1": 16.0, "label": 1}),  # the centre 20x20 cut
        ("keep_ratio", {"x0": 8.0, "y0": 0.0, "x1": 16.0, "y1": 8.0, "label": 1}),
        ("pad", {"x0": 8.0, "y0": 4.0, "x1": 16.0, "y1": 12.0, "label": 1}),
    ],
)
def test_boxes_follow_each_resize_mode(mode, box):
    geo = resize_geometry(40, 20, 16, mode)
    assert move_boxes([{"x0": 20.0, "y0": 0.0, "x1": 40.0, "y1": 20.0, "label": 1}], geo) == [box]
    out = media.resize(Image.new("RGB", (40, 20)), 16, mode)
    assert out.size == geo[2]


def test_box_cropped_away_is_dropped():
    geo = resize_geometry(40, 20, 16, "center_crop")
    assert move_boxes([{"x0": 0.0, "y0": 0.0, "x1": 9.0, "y1": 5.0, "label": 0}], geo) == []


def test_mask_follows_pad_with_ids_kept():
    mask = np.zeros((20, 40), np.uint8)
    mask[:, 20:] = 7
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, "PNG")
    out = np.asarray(Image.open(io.BytesIO(move_mask(buf.getvalue(), resize_geometry(40, 20, 16, "pad")))))
    assert out.shape == (16, 16) and set(np.unique(out)) == {0, 7}
    assert (out[4:12, 8:] == 7).all() and (out[:4] == 0).all() and (out[4:12, :8] == 0).all()


@pytest.mark.parametrize("name", list(DENOISERS))
def test_denoisers_keep_size_and_reduce_noise(name):
    rng = np.random.default_rng(0)
    clean = np.full((32, 32, 3), 120, np.uint8)
    noisy = np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8)  # sensor-like noise
    out = np.asarray(DENOISERS[name](Image.fromarray(noisy)), dtype=np.float64)
    assert out.shape == clean.shape
    err = np.abs(out - clean).mean()
    assert err < 3 if name != "none" else err > 6  # measured: none 6.4, median 2.7, nlm 1.0


def test_prepare_end_to_end(boxed, tmp_path, capsys):
    out = tmp_path / "p"
    capsys.readouterr()
    assert (
        main(
            [
                "prepare",
                boxed,
                "--out",
                str(out),
                "--size",
                "16",
                "--resize-mode",
                "pad",
                "--denoise",
                "median",
                "--augment",
                "hflip=1",
                "--copies",
                "2",
                "--processes",
                "1",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    # 3 good samples; copies only for the train and unsplit ones (2 each)
    assert result == {**result, "input_samples": 4, "samples": 7, "augmented": 4, "failures": 1}
    ds = Dataset.open(out)
    rows = {r["key"]: r for r in ds.iter_rows()}
    assert sorted(rows) == ["s0", "s0_aug1", "s0_aug2", "s1", "s2", "s2_aug1", "s2_aug2"]
    assert all((r["width"], r["height"], r["format"]) == (16, 16, "png") for r in rows.values())
    assert rows["s1"]["boxes"] == [{"x0": 8.0, "y0": 4.0, "x1": 16.0, "y1": 12.0, "label": 1}]
    assert rows["s0_aug1"]["aug_of"] == "s0" and rows["s0_aug2"]["aug_index"] == 2 and rows["s0"]["aug_of"] is None
    assert rows["s0_aug1"]["boxes"] == [] and rows["s0_aug1"]["mask"] is None and rows["s0"]["mask"] == "s0.mask.png"
    samples = {s.key: s for s in ds.iter_samples()}
    orig = np.asarray(samples["s0"].decode())
    flipped = np.asarray(samples["s0_aug1"].decode())
    assert np.array_equal(flipped, orig[:, ::-1])  # hflip=1 mirrors every copy
    assert ds.failures().column("reason").to_pylist() == ["not_image"]
    assert json.loads((out / "dataset.json").read_text())["lineage"]["config"]["augment"] == "hflip=1"


@pytest.mark.parametrize(
    "args, words",
    [
        (["--resize-mode", "fit"], "--resize-mode 'fit': choose one of center_crop, keep_ratio, pad, none"),
        (["--denoise", "bm3d"], "--denoise 'bm3d': choose one of none, median, nlm"),
        (["--augment", "zoom=2", "--copies", "1"], "unknown op 'zoom'; allowed ops: hflip"),
        (["--copies", "2"], "--copies 2 needs --augment SPEC"),
        (["--augment", "hflip"], "--augment needs --copies K"),
    ],
)
def test_bad_prepare_flags(boxed, tmp_path, capsys, args, words):
    assert main(["prepare", boxed, "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_pillow_warnings_are_counted_in_stats(tmp_path, recwarn):
    import struct

    from pixelforge.prepare.stage import PrepareConfig, prepare
    from pixelforge.run import ExecutorSettings

    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 40, 40)).save(buf, "JPEG")
    tiff = b"II*\x00\x08\x00\x00\x00" + b"\x05\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x01\x00" + b"\xff" * 6
    app1 = b"Exif\x00\x00" + tiff
    bad_exif = buf.getvalue()[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + buf.getvalue()[2:]
    b = DatasetBuilder(str(tmp_path / "in"), samples_per_shard=2)
    for i in range(3):
        b.add(
            {"key": f"s{i}", "source_kind": "folder", "source": f"/{i}.jpg", "width": 16, "height": 12}, bad_exif, "jpg"
        )
    b.finish(name="in", lineage=Lineage("test"))
    res = prepare(str(tmp_path / "in"), str(tmp_path / "out"), PrepareConfig(size=8, executor=ExecutorSettings(1)))
    assert res.samples == 3
    assert Dataset.open(res.out).stats()["image_warnings"] == {"corrupt_exif": 3}
    assert recwarn.list == []
