"""The tile watermark: exact bits, what it survives, what it never finds, its false-positive rate, and
stacking marks through generate and verify."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as skimage_data

from pixelforge.cli import main
from pixelforge.generate.attacks import ATTACKS, GOAL_ATTACKS
from pixelforge.generate.mark import (
    MARKS,
    mark_image,
    marked_png,
    parse_marks,
    payload_bits,
    payload_hex,
    read_marks,
    tail_probability,
)
from pixelforge.generate.tilemark import PAYLOAD_BITS, embed_tile, read_tile
from pixelforge.store.dataset import Dataset
from tests.generate.test_generate import class_run  # noqa: F401  (the module-scoped run fixture)

RUN = "run@step_0000042"


def flat(background, colour=(200, 30, 30), side=256) -> Image.Image:
    """What the shapes model draws: a flat background and one flat shape."""
    img = Image.new("RGB", (side, side), background)
    ImageDraw.Draw(img).ellipse((70, 60, 190, 180), fill=colour)
    return img


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((256, 256), Image.Resampling.LANCZOS)


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_bits_read_back_exactly_with_the_lattice_unchanged():
    bits = [int(b) for b in np.random.default_rng(3).integers(0, 2, PAYLOAD_BITS)]
    for img in (flat((255, 255, 255)), flat((20, 120, 200)), photo("chelsea")):
        reading = read_tile(embed_tile(np.asarray(img), bits))
        assert reading.bits == bits and (reading.period, reading.angle) == (64.0, 0.0)
        assert reading.sync_score > 8
    with pytest.raises(ValueError, match="carries 48 bits, got 3"):
        embed_tile(np.asarray(flat((0, 0, 0))), [1, 0, 1])


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (20, 120, 200)])
def test_the_goal_attacks_keep_the_mark_on_generated_looking_images(background):
    original = flat(background)
    marked = mark_image(original, RUN, ("tile",))
    assert psnr(original, marked) >= 38.0
    for name in GOAL_ATTACKS:
        (reading,) = read_marks(ATTACKS[name](marked), ("tile",))
        assert reading.found and reading.run_hash == int(payload_hex(RUN)[-4:], 16), name
    # where the repeat went tells what happened to the image
    assert read_tile(np.asarray(ATTACKS["resize0.5"](marked))).period == pytest.approx(32, abs=0.5)
    assert abs(read_tile(np.asarray(ATTACKS["rotate5"](marked))).angle) == pytest.approx(5, abs=0.5)


def test_the_older_mark_is_lost_to_crops_the_tile_is_not():
    marked = mark_image(flat((20, 120, 200)), RUN, ("tile", "dwtdctsvd"))
    found = {r.method: r.found for r in read_marks(marked)}
    assert found == {"tile": True, "dwtdctsvd": True}  # stacked: both read on the untouched image
    cropped = {r.method: r.found for r in read_marks(ATTACKS["crop50"](marked))}
    assert cropped == {"tile": True, "dwtdctsvd": False}


def test_unmarked_images_are_never_found():
    images = [flat(c) for c in ((255, 255, 255), (0, 0, 0), (20, 120, 200))]
    images += [photo(n) for n in ("astronaut", "coffee", "chelsea", "camera", "rocket")]
    for img in images:
        for name in ("none", "jpeg50", "crop50", "rotate5", "screenshot"):
            for r in read_marks(ATTACKS[name](img)):
                assert not r.found and r.tag_bits_matched <= 24, (r.method, name)


def test_false_positive_rates_are_the_binomial_tails():
    assert MARKS["tile"].false_positive_rate == tail_probability(28) == 41_449 / 2**32
    assert tail_probability(27) == 242_825 / 2**32
    assert MARKS["dwtdctsvd"].false_positive_rate == tail_probability(28) == 41_449 / 2**32
    assert tail_probability(32) == 1 / 2**32 and tail_probability(0) == 1.0


def test_mark_names_are_checked_and_written_into_the_metadata():
    assert parse_marks("dwtdctsvd, tile") == ("tile", "dwtdctsvd") and parse_marks("none") == ()
    with pytest.raises(Exception, match=r"--mark rivagan: choose one or more of treering, tile, dwtdctsvd"):
        parse_marks("rivagan")
    png = marked_png(flat((255, 255, 255), side=64), RUN, {"prompt": "a circle"}, 256, ("tile",))
    img = Image.open(__import__("io").BytesIO(png))
    assert img.size == (256, 256)
    assert (img.text["watermark"], img.text["watermark_payload"]) == ("tile", payload_hex(RUN))
    assert payload_hex(RUN) == f"{int(''.join(map(str, payload_bits(RUN))), 2):012x}"


def test_generate_stacks_marks_and_verify_reports_which_found_what(class_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "g"
    args = ["generate", str(class_run), "--class", "5", "--n", "1", "--steps", "3", "--out", str(out)]
    assert main([*args, "--mark", "tile,dwtdctsvd"]) == 0
    assert Dataset.open(str(out)).index().to_pylist()[0]["meta"].count('"watermark": ["tile", "dwtdctsvd"]') == 1
    (image,) = sorted((out / "images").iterdir())
    capsys.readouterr()
    assert main(["verify", str(image), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["watermark_methods"] == ["tile", "dwtdctsvd"] and r["bits_matched"] == 32
    assert {m["method"]: m["false_positive_rate"] for m in r["marks"]} == {
        "tile": tail_probability(28),
        "dwtdctsvd": tail_probability(28),
    }
    assert main(["verify", str(image), "--attacks", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert list(report["attacks"]) == list(ATTACKS)
    assert set(GOAL_ATTACKS) <= set(report["survived"]["tile"])
    assert "crop50" not in report["survived"]["dwtdctsvd"] and "jpeg90" in report["survived"]["dwtdctsvd"]
    assert main(["verify", str(image), "--attacks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["attack", "tile", "dwtdctsvd"] and lines[2].split()[:2] == ["none", "32/32"]
    assert main([*args, "--mark", "rivagan", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--mark rivagan: choose one or more of treering, tile, dwtdctsvd (comma-separated), or none" in err
    assert main([*args, "--mark", "none", "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["verify", str(image), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert not r["watermark_found"] and r["metadata_found"]  # provenance metadata still, no watermark
