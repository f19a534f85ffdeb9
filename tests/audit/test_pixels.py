"""Brightness of uncurated datasets: decoded per shard, equal to curate's q_brightness."""

import io

import numpy as np
from PIL import Image

from pixelforge import media
from pixelforge.audit import pixels
from pixelforge.audit.stage import AuditConfig, audit
from pixelforge.curate.quality import image_signals
from pixelforge.curate.worker import DRAFT_SIDE
from pixelforge.store import Dataset, DatasetBuilder, Lineage


def _images():
    rng = np.random.default_rng(0)
    out = []
    for i, level in enumerate((0, 60, 120, 250)):
        arr = np.clip(level + rng.integers(-5, 6, (40 + 20 * i, 300, 3)), 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        if i % 2:
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            out.append((buf.getvalue(), "jpg"))
        else:
            out.append((media.encode(img, "png"), "png"))
    out.append((b"not an image at all", "png"))
    return out


def _dataset(path) -> str:
    b = DatasetBuilder(str(path), samples_per_shard=2)
    for i, (data, ext) in enumerate(_images()):
        b.add({"key": f"k{i}", "source_kind": "folder", "width": 300, "height": 40 + 20 * i, "format": ext}, data, ext)
    b.finish(name="pixels", lineage=Lineage(command="test"))
    return str(path)


def _curate_brightness(data: bytes) -> float:
    """q_brightness exactly as curate's worker computes it."""
    img = media.decode(data, draft_size=(DRAFT_SIDE, DRAFT_SIDE))
    return image_signals(img, data, img.size)[0]["q_brightness"]


def test_decoded_brightness_equals_curates(tmp_path):
    ds = _dataset(tmp_path / "ds")
    expected = sorted(_curate_brightness(d) for d, _ in _images()[:4])
    props = audit(ds, str(tmp_path / "a")).report["image_properties"]
    b = props["brightness"]
    assert props["brightness_source"] == "decoded" and props["unreadable_images"] == 1
    assert b["count"] == 4 and b["min"] == round(expected[0], 6) and b["max"] == round(expected[-1], 6)
    assert b["quantiles"]["p50"] == round(expected[1], 6)  # nearest rank: index floor(3 * 0.5) = 1
    assert b["mean"] == round(sum(expected) / 4, 6)
    off = audit(ds, str(tmp_path / "b"), AuditConfig(pixels=False)).report["image_properties"]
    assert off["brightness"] is None and off["brightness_source"] is None and off["unreadable_images"] is None


def test_worker_pool_gives_the_same(tmp_path, monkeypatch):
    ds = Dataset.open(_dataset(tmp_path / "ds"))
    one = pixels.dataset_brightness(ds, processes=1)
    monkeypatch.setattr(pixels, "POOL_FROM", 0)  # use the process pool even for five samples
    keys, values, unreadable, image_warnings = pixels.dataset_brightness(ds, processes=2)
    assert dict(zip(keys, values)) == dict(zip(one[0], one[1])) and unreadable == one[2] == 1
    assert image_warnings == one[3] == {}
    assert sorted(keys) == ["k0", "k1", "k2", "k3"]
