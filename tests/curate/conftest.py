"""A small dataset made in code with one sample of every kind curate must judge."""

import hashlib
import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from pixelforge import media
from pixelforge.curate import synth
from pixelforge.store import DatasetBuilder, Lineage

KEYS = {  # what each fixture key is
    "k00": "photo A",
    "k01": "byte copy of k00",
    "k02": "photo A shrunk and re-encoded as JPEG",
    "k03": "photo B with a file-name caption",
    "k04": "photo C, opted out",
    "k05": "16 px photo",
    "k06": "flat grey (blurry, no information)",
    "k07": "photo D with a tiled watermark",
    "k08": "not an image",
    "k09": "truncated PNG",
    "k10": "photo E",
    "k11": "photo F",
}


def photo(seed: int, side: int = 96) -> Image.Image:
    """A distinct natural-looking image: synthetic scene plus a few random shapes."""
    rng = np.random.default_rng(seed)
    img = synth.clean_photo(rng).resize((side, side))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, side, 2))
        size = int(rng.integers(side // 6, side // 2))
        draw.ellipse((x0, y0, x0 + size, y0 + size), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def _png(img: Image.Image) -> bytes:
    return media.encode(img, "png")


def build(path, split=None) -> str:
    """Write the fixture dataset to ``path``; returns the path."""
    a = photo(1)
    buf = io.BytesIO()
    a.resize((67, 67)).save(buf, "JPEG", quality=70)
    marked, _ = synth.add_watermark(photo(4), np.random.default_rng(0), kind="text", placement="tiled")
    good = "a colourful scene with round shapes"
    items = [
        (_png(a), good, None),
        (_png(a), good, None),
        (buf.getvalue(), good, None),
        (_png(photo(2)), "IMG_1234.jpg", None),
        (_png(photo(3)), good, "robots.txt"),
        (_png(photo(5, 16)), good, None),
        (_png(Image.new("RGB", (96, 96), (90, 90, 90))), good, None),
        (_png(marked), good, None),
        (b"this is not an image", good, None),
        (_png(photo(6))[:60], good, None),
        (_png(photo(7)), good, None),
        (_png(photo(8)), good, None),
    ]
    b = DatasetBuilder(str(path), samples_per_shard=5, extra_fields=[pa.field("note", pa.string())])
    for i, (data, caption, opt_out) in enumerate(items):
        try:
            img = media.decode(data)
            size, ph = img.size, media.phash64(img)
        except media.MediaError:
            size, ph = (96, 96), None
        row = {
            "key": f"k{i:02d}",
            "source_kind": "folder",
            "source": f"/src/{i}",
            "caption": caption,
            "caption_source": "sidecar",
            "label": i % 2,
            "label_name": str(i % 2),
            "opt_out": opt_out,
            "width": size[0],
            "height": size[1],
            "orig_width": size[0],
            "orig_height": size[1],
            "format": "jpeg" if data[:2] == b"\xff\xd8" else "png",
            "sha256": hashlib.sha256(data).hexdigest(),
            "phash": ph,
            "note": KEYS[f"k{i:02d}"],
            "split": split[i] if split else None,
        }
        b.add(row, data, "jpg" if data[:2] == b"\xff\xd8" else "png")
    b.finish(name="fixture", lineage=Lineage(command="test"))
    return str(path)


@pytest.fixture(scope="session")
def fixture_ds(tmp_path_factory) -> str:
    return build(tmp_path_factory.mktemp("curate") / "in")
