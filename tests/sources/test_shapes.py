"""Tests for the synthetic shapes source: balance, determinism, exact captions and pixel truth."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from pixelforge.errors import UsageError
from pixelforge.sources.base import ImportOptions, run_import
from pixelforge.sources.shapes import (
    BACKGROUNDS,
    COLOURS,
    CORNERS,
    POSITIONS,
    SHAPE_COLOURS,
    SHAPES,
    SIZES,
    ShapeSpec,
    ShapesSource,
    caption,
    contrasts,
    design,
    render,
)
from pixelforge.store import Dataset

SIDE = 32


def colour_mask(img: np.ndarray, colour: str, tol: float = 60.0) -> np.ndarray:
    """Pixels within ``tol`` (RGB distance) of a named colour."""
    return np.linalg.norm(img.astype(float) - np.array(COLOURS[colour], float), axis=-1) < tol


def coverage(img: np.ndarray) -> np.ndarray:
    """Fraction of each pixel covered by a white shape drawn on black (anti-aliasing kept)."""
    lo, hi = COLOURS["black"][0], COLOURS["white"][0]
    return (img[..., 0].astype(float) - lo) / (hi - lo)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.mean()), float(ys.mean())


def in_position(x: float, y: float, position: str, side: int) -> bool:
    """The judge's rule: centre region within 12 % of the middle, else the quadrant of the centroid."""
    mid = side / 2
    if position == "center":
        return abs(x - mid) < 0.12 * side and abs(y - mid) < 0.12 * side
    want_left, want_top = "left" in position, "top" in position
    return (x < mid) == want_left and (y < mid) == want_top and max(abs(x - mid), abs(y - mid)) > 0.12 * side


def records(**kw):
    return list(ShapesSource(**kw).records())


# ---- balance ---------------------------------------------------------------------------------


def test_sixty_images_have_each_shape_exactly_ten_times():
    recs = records(n=60, size=SIDE, seed=0)
    assert Counter(r.label_name for r in recs) == {s: 10 for s in SHAPES}
    assert all(r.label == SHAPES.index(r.label_name) for r in recs)
    assert Counter(r.extra["colour"] for r in recs) == {c: 10 for c in SHAPE_COLOURS}


@pytest.mark.parametrize("n", [1, 7, 61, 100, 257])
@pytest.mark.parametrize("max_shapes", [1, 2])
def test_shape_colour_size_counts_differ_by_at_most_one(n, max_shapes):
    plan = design(n, seed=5, max_shapes=max_shapes)
    for attr, vocab in (("shape", SHAPES), ("colour", SHAPE_COLOURS), ("size", SIZES)):
        counts = Counter(getattr(specs[0], attr) for specs, _ in plan)
        full = [counts.get(v, 0) for v in vocab]
        assert max(full) - min(full) <= 1, (attr, counts)


def test_every_shape_colour_pair_appears_once_in_36():
    plan = design(36, seed=11)
    assert sorted((s[0].shape, s[0].colour) for s, _ in plan) == sorted((s, c) for s in SHAPES for c in SHAPE_COLOURS)


@pytest.mark.parametrize("max_shapes", [1, 2])
def test_positions_backgrounds_and_shape_counts_near_balanced(max_shapes):
    plan = design(120, seed=2, max_shapes=max_shapes)
    positions = Counter(s[0].position for s, _ in plan)
    assert set(positions) == set(POSITIONS) and max(positions.values()) - min(positions.values()) <= 1
    backgrounds = Counter(bg for _, bg in plan)
    assert set(backgrounds) == set(BACKGROUNDS) and max(backgrounds.values()) - min(backgrounds.values()) <= 4
    n_shapes = Counter(len(s) for s, _ in plan)
    assert n_shapes == ({1: 120} if max_shapes == 1 else {1: 60, 2: 60})


def test_shape_colour_never_equals_background():
    for specs, bg in design(300, seed=3, max_shapes=2):
        for spec in specs:
            assert spec.colour != bg
            assert contrasts(spec.colour, bg)
    assert not contrasts("blue", "blue") and not contrasts("purple", "gray")


def test_two_shape_images_use_two_different_corners_without_overlap():
    for specs, _ in design(100, seed=4, max_shapes=2):
        if len(specs) == 2:
            a, b = specs
            assert a.position in CORNERS and b.position in CORNERS and a.position != b.position
            ax0, ay0, ax1, ay1 = a.box(SIDE)
            bx0, by0, bx1, by1 = b.box(SIDE)
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


# ---- determinism -----------------------------------------------------------------------------


def test_design_is_deterministic_per_seed():
    assert design(50, seed=9, max_shapes=2) == design(50, seed=9, max_shapes=2)
    assert design(50, seed=9) != design(50, seed=10)


def test_same_seed_gives_identical_png_bytes_and_different_seed_differs(tmp_path):
    def import_(name, seed):
        run_import(ShapesSource(n=24, size=SIDE, seed=seed, max_shapes=2), ImportOptions(out=str(tmp_path / name)))
        return Dataset.open(str(tmp_path / name)).index(["sha256", "caption"]).to_pydict()

    a, b, c = import_("a", 1), import_("b", 1), import_("c", 2)
    assert a["sha256"] == b["sha256"] and a["caption"] == b["caption"]
    assert a["sha256"] != c["sha256"]
    assert len(set(a["sha256"])) == 24  # jitter makes every image distinct, so dedup keeps them all


def test_import_writes_rows_with_extra_columns(tmp_path):
    result = run_import(ShapesSource(n=12, size=SIDE, seed=0), ImportOptions(out=str(tmp_path / "s")))
    assert result.samples == 12 and result.failures == 0
    rows = Dataset.open(str(tmp_path / "s")).index().to_pylist()
    row = rows[0]
    assert row["source_kind"] == "shapes" and row["source"] == "shapes://seed=0/0"
    assert row["license"] == "cc0-1.0" and row["attribution"] == "pixelforge synthetic shapes"
    assert row["caption_source"] == "dataset" and (row["width"], row["height"]) == (SIDE, SIDE)
    assert row["label_name"] == row["shape"] and row["n_shapes"] == 1
    meta = json.loads(row["meta"])
    assert meta["seed"] == 0 and meta["index"] == 0 and meta["shapes"][0]["shape"] == row["shape"]
    assert row["caption"] == caption([ShapeSpec(**d) for d in meta["shapes"]], row["background"])


# ---- records ---------------------------------------------------------------------------------


def test_record_fields_match_the_drawn_specs():
    for i, r in enumerate(records(n=30, size=48, seed=6, max_shapes=2)):
        specs = [ShapeSpec(**d) for d in r.meta["shapes"]]
        bg = r.meta["background"]
        assert r.source == f"shapes://seed=6/{i}" and r.meta["index"] == i
        assert r.caption == caption(specs, bg)
        assert np.array_equal(r.image, render(specs, bg, 48))  # meta is enough to redraw the image
        first = specs[0]
        assert r.extra == {
            "shape": first.shape,
            "colour": first.colour,
            "background": bg,
            "size_name": first.size,
            "position": first.position,
            "n_shapes": len(specs),
        }
        assert [b["label"] for b in r.boxes] == [SHAPES.index(s.shape) for s in specs]
        for b in r.boxes:
            assert 0 <= b["x0"] < b["x1"] <= 48 and 0 <= b["y0"] < b["y1"] <= 48


# ---- captions --------------------------------------------------------------------------------


def test_caption_of_one_shape():
    spec = ShapeSpec("circle", "red", "small", "top left")
    assert caption(spec, "blue") == "a small red circle in the top left on a blue background"
    assert caption([ShapeSpec("cross", "white", "large", "center")], "black") == (
        "a large white cross in the center on a black background"
    )


def test_caption_of_two_shapes():
    specs = [ShapeSpec("circle", "red", "small", "top left"), ShapeSpec("star", "green", "large", "bottom right")]
    assert caption(specs, "blue") == (
        "a small red circle in the top left and a large green star in the bottom right on a blue background"
    )


def test_spec_rejects_words_outside_the_vocabulary():
    with pytest.raises(ValueError, match="orange"):
        ShapeSpec("circle", "orange")
    with pytest.raises(ValueError, match="middle"):
        ShapeSpec("circle", "red", position="middle")


# ---- pixels ----------------------------------------------------------------------------------


def test_render_is_a_pure_uint8_function():
    spec = ShapeSpec("star", "yellow", "large", "bottom left", 0.01, -0.01, 1.05)
    a, b = render(spec, "gray", SIDE), render([spec], "gray", SIDE)
    assert a.dtype == np.uint8 and a.shape == (SIDE, SIDE, 3)
    assert np.array_equal(a, b)


def test_large_red_circle_top_left_on_blue():
    spec = ShapeSpec("circle", "red", "large", "top left")
    img = render(spec, "blue", SIDE)
    cx, cy = (int(v * SIDE) for v in spec.centre())
    assert math.dist(img[cy, cx], COLOURS["red"]) < 10
    assert tuple(img[SIDE - 1, SIDE - 1]) == COLOURS["blue"]
    # flat background: every pixel of the other three quadrants is exactly the background colour
    assert (img[SIDE // 2 :, :] == COLOURS["blue"]).all() and (img[:, SIDE // 2 :] == COLOURS["blue"]).all()


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("size", SIZES)
def test_red_centroid_lies_in_the_stated_position(position, size):
    for shape in SHAPES:
        img = render(ShapeSpec(shape, "red", size, position), "blue", SIDE)
        x, y = centroid(colour_mask(img, "red"))
        assert in_position(x, y, position, SIDE), (shape, x, y)


@pytest.mark.parametrize("side", [16, 32, 64])
def test_every_designed_shape_is_inside_the_image_and_its_position(side):
    for specs, bg in design(120, seed=7, max_shapes=2):
        for spec in specs:
            img = render(spec, bg, side)
            mask = colour_mask(img, spec.colour)
            assert mask.any()
            # a margin around the box, and (where it is at least 0.8 px) no mostly-covered border pixel
            if side >= 32:
                assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
            x0, y0, x1, y1 = spec.box(side)
            margin = 0.02 * side
            assert min(x0, y0) >= margin and max(x1, y1) <= side - margin
            assert in_position(*centroid(mask), spec.position, side), (spec, side)
            if spec.position != "center":  # a corner shape stays inside its quadrant, with the margin
                h = side / 2
                assert (x1 <= h - margin or x0 >= h + margin) and (y1 <= h - margin or y0 >= h + margin)


def test_small_shapes_cover_fewer_pixels_than_large():
    for shape in SHAPES:
        for position in POSITIONS:
            small = colour_mask(render(ShapeSpec(shape, "green", "small", position), "white", SIDE), "green")
            large = colour_mask(render(ShapeSpec(shape, "green", "large", position), "white", SIDE), "green")
            assert large.sum() > 1.8 * small.sum(), (shape, position)


def test_shapes_are_distinguishable_at_32px():
    for size, min_pixels in (("large", 25.0), ("small", 10.0)):
        cover = {s: coverage(render(ShapeSpec(s, "white", size, "center"), "black", SIDE)) for s in SHAPES}
        for i, a in enumerate(SHAPES):
            for b in SHAPES[i + 1 :]:
                if size == "large":  # hard masks differ by whole pixels
                    diff = float(((cover[a] > 0.5) ^ (cover[b] > 0.5)).sum())
                else:  # at 9 px the anti-aliased coverage carries the difference
                    diff = float(np.abs(cover[a] - cover[b]).sum())
                assert diff >= min_pixels, (size, a, b, diff)


# ---- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, flag",
    [
        ({"n": 0}, "--n"),
        ({"size": 15}, "--size"),
        ({"size": 1025}, "--size"),
        ({"size": 32.0}, "--size"),
        ({"max_shapes": 3}, "--max-shapes"),
        ({"max_shapes": 0}, "--max-shapes"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_validate_names_the_flag(kw, flag):
    with pytest.raises(UsageError, match=flag):
        ShapesSource(**kw).validate()


def test_validate_accepts_bounds_and_count_is_n():
    ShapesSource(n=1, size=16, max_shapes=2).validate()
    ShapesSource(size=1024).validate()
    assert ShapesSource(n=17).count() == 17
