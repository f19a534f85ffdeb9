"""Colour-aware duplicates: same shape in another colour is not a duplicate; near copies still are."""

import hashlib
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from pixelforge import media
from pixelforge.cli import main
from pixelforge.curate.dedup import colour_distance, hashes_to_groups
from pixelforge.curate.quality import (
    colour_input,
    colour_signature,
    colour_signatures,
    dhash64,
    dhash_input,
    dhashes,
    phash_input,
    phashes,
)
from pixelforge.store import Dataset, DatasetBuilder, Lineage

from .conftest import photo


def shape(fill, side=96) -> Image.Image:
    """A flat star-like polygon on a dark grey ground: grey hashes cannot tell its colour."""
    img = Image.new("RGB", (side, side), (40, 40, 40))
    pts = [
        (side * x, side * y)
        for x, y in (
            (0.5, 0.1),
            (0.62, 0.4),
            (0.9, 0.45),
            (0.66, 0.62),
            (0.75, 0.9),
            (0.5, 0.74),
            (0.25, 0.9),
            (0.34, 0.62),
            (0.1, 0.45),
            (0.38, 0.4),
        )
    ]
    ImageDraw.Draw(img).polygon(pts, fill=fill)
    return img


RED, BLUE = (210, 40, 40), (40, 60, 210)


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def near_copies(img: Image.Image) -> dict[str, bytes]:
    """The copies that must stay in one group with ``img``: JPEG q40, 0.6x resize, brightness +-20%."""
    return {
        "jpeg": _jpeg(img, 40),
        "resize": media.encode(img.resize((58, 58), Image.Resampling.BICUBIC), "png"),
        "bright": media.encode(ImageEnhance.Brightness(img).enhance(1.2), "png"),
        "dark": media.encode(ImageEnhance.Brightness(img).enhance(0.8), "png"),
    }


def test_colour_distance_separates_colours_and_keeps_copies():
    red, blue = colour_signature(shape(RED)), colour_signature(shape(BLUE))
    # the grey hashes hardly tell the two apart: phash 2 bits, dhash 3 bits (a near pair by any radius)
    assert bin(media.phash64(shape(RED)) ^ media.phash64(shape(BLUE))).count("1") == 2
    assert bin(dhash64(shape(RED)) ^ dhash64(shape(BLUE))).count("1") == 3
    assert colour_distance(red[None], blue[None])[0] == pytest.approx(2.0, abs=0.05)
    copies = [colour_signature(media.decode(d)) for d in near_copies(shape(RED)).values()]
    d = colour_distance(np.repeat(red[None], 4, 0), np.stack(copies))
    assert (d < 0.15).all()
    # a grey copy of a colour image is a copy (its signature is zero: only saturation changed)
    grey = colour_signature(shape(RED).convert("L"))
    assert grey.sum() == 0 and colour_distance(red[None], grey[None])[0] == 0.0


def test_colour_signature_pinned_and_batch_invariant():
    # a half red, half blue image: saturation 170/210 on each side, hue sectors 0 (red) and 8 (blue)
    img = Image.new("RGB", (16, 16), RED)
    img.paste(Image.new("RGB", (8, 16), (40, 40, 210)), (8, 0))
    sig = colour_signature(img)
    expected = np.zeros(12, np.float32)
    expected[0] = expected[8] = 0.5 * 170 / 210
    np.testing.assert_allclose(sig, expected, atol=1e-6)
    imgs = [img, shape(RED), photo(3)]
    batch = colour_signatures(np.stack([colour_input(i) for i in imgs]))
    np.testing.assert_allclose(batch, np.stack([colour_signature(i) for i in imgs]), atol=1e-7)


def test_batched_phash_equals_imagehash():
    imgs = [photo(s) for s in range(6)] + [shape(RED), Image.new("RGB", (40, 30), (9, 9, 9))]
    got = phashes(np.stack([phash_input(i) for i in imgs]))
    assert got.dtype == np.uint64 and got.tolist() == [media.phash64(i) for i in imgs]


def test_batched_dhash_equals_imagehash():
    import imagehash

    imgs = [photo(s) for s in range(6)] + [shape(RED), Image.new("RGB", (40, 30), (9, 9, 9)), photo(7).resize((5, 70))]
    want = [int(str(imagehash.dhash(i, hash_size=8)), 16) for i in imgs]
    got = dhashes(np.stack([dhash_input(i) for i in imgs]))
    assert got.dtype == np.uint64 and got.tolist() == want and [dhash64(i) for i in imgs] == want
    assert len(set(want)) == len(want)  # distinct images, distinct hashes
    assert dhashes(np.zeros((0, 8, 9), np.uint8)).tolist() == []


def test_veto_applies_to_near_pairs_only():
    ph = np.array([0, 0, 0], np.uint64)  # all three hash alike
    colour = np.stack([colour_signature(shape(RED)), colour_signature(shape(BLUE)), colour_signature(shape(BLUE))])
    dups = hashes_to_groups(["a", "b", "b"], ph, ph, 8, 24, colour, 0.5)
    # red-blue pairs refused; the two blues are byte-identical and near: one group
    assert dups.groups[1] == dups.groups[2] != dups.groups[0]
    assert dups.colour_vetoed == 2 and dups.near.tolist() == [[1, 2]]
    off = hashes_to_groups(["a", "b", "b"], ph, ph, 8, 24, colour, None)
    assert len(set(off.groups.tolist())) == 1 and off.colour_vetoed == 0


@pytest.fixture(scope="module")
def shapes_ds(tmp_path_factory):
    """red star, blue star, four near copies of the red one, and an unrelated photo."""
    items = {
        "red": media.encode(shape(RED), "png"),
        "blue": media.encode(shape(BLUE), "png"),
        **{f"red_{k}": v for k, v in near_copies(shape(RED)).items()},
        "photo": media.encode(photo(9), "png"),
    }
    path = tmp_path_factory.mktemp("colour") / "in"
    b = DatasetBuilder(str(path), samples_per_shard=4)
    for key, data in items.items():
        img = media.decode(data)
        jpeg = data[:2] == b"\xff\xd8"
        b.add(
            {
                "key": key,
                "source_kind": "folder",
                "source": f"/{key}",
                "caption": "a star",
                "width": img.width,
                "height": img.height,
                "orig_width": img.width,
                "orig_height": img.height,
                "format": "jpeg" if jpeg else "png",
                "sha256": hashlib.sha256(data).hexdigest(),
                "phash": media.phash64(img),
            },
            data,
            "jpg" if jpeg else "png",
        )
    b.finish(name="stars", lineage=Lineage(command="test"))
    return str(path)


def _groups(path) -> dict[str, str]:
    return {r["key"]: r["dup_group"] for r in Dataset.open(path).iter_rows(columns=["key", "dup_group"])}


@pytest.mark.parametrize("only", [[], ["--only", "duplicates"]])
def test_curate_keeps_colours_apart(shapes_ds, tmp_path, only):
    out = tmp_path / "c"
    assert main(["curate", shapes_ds, "--out", str(out), "--no-watermark", "--processes", "1", *only]) == 0
    groups = _groups(out)
    reds = {k for k in groups if k.startswith("red")}
    assert len({groups[k] for k in reds}) == 1 and len(reds) == 5  # every near copy joins the red star
    assert groups["blue"] == "blue" and groups["photo"] == "photo"  # the blue star stays alone
    report = json.loads((out / "curation.json").read_text())["duplicates"]
    assert report["colour"] == 0.5 and report["colour_vetoed_pairs"] == 5  # blue against each red


def test_colour_check_off_groups_by_shape(shapes_ds, tmp_path):
    out = tmp_path / "c"
    assert main(["curate", shapes_ds, "--out", str(out), "--no-watermark", "--processes", "1", "--colour", "2"]) == 0
    groups = _groups(out)
    assert groups["blue"] == groups["red"] and groups["photo"] == "photo"
    assert json.loads((out / "curation.json").read_text())["duplicates"]["colour"] is None


def test_only_duplicates_skips_the_image_scores(fixture_ds, tmp_path):
    full, fast = tmp_path / "full", tmp_path / "fast"
    assert main(["curate", fixture_ds, "--out", str(full), "--no-drop-opt-out", "--processes", "1"]) == 0
    assert (
        main(
            ["curate", fixture_ds, "--out", str(fast), "--no-drop-opt-out", "--processes", "2", "--only", "duplicates"]
        )
        == 0
    )
    cols = ["key", "dup_group", "dup_count", "dup_keep", "q_jpeg_quality", "q_blur", "q_watermark", "c_words"]
    a = {r["key"]: r for r in Dataset.open(full).iter_rows(columns=cols)}
    b = {r["key"]: r for r in Dataset.open(fast).iter_rows(columns=cols)}
    assert a.keys() == b.keys() and len(a) == 10
    for k in a:  # the same groups and representatives; JPEG quality and captions still there
        assert [b[k][c] for c in cols[:5] + ["c_words"]] == [a[k][c] for c in cols[:5] + ["c_words"]]
        assert b[k]["q_blur"] is None and b[k]["q_watermark"] is None and a[k]["q_blur"] is not None
    assert b["k02"]["q_jpeg_quality"] == 70 and b["k00"]["dup_count"] == 3
    # unreadable images are failure rows with the same reasons on the fast path
    fails = pq.read_table(fast / "failures.parquet").to_pylist()
    assert sorted((f["reason"], f["source"]) for f in fails) == [("decode_error", "/src/9"), ("not_image", "/src/8")]


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["--only", "duplicates", "--min-side", "32"],
            "--min-side needs the image scores that --only duplicates skips",
        ),
        (["--only", "quality"], "--only 'quality': choose one of duplicates"),
        (["--colour", "-1"], "--colour -1.0: choose a colour distance from 0 to 2"),
    ],
)
def test_bad_only_and_colour_flags(fixture_ds, tmp_path, capsys, args, words):
    assert main(["curate", fixture_ds, "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
