"""Tests for curate/quality.py: JPEG quality estimates, quality scores on known images, dhash parity."""

import io

import imagehash
import numpy as np
import pytest
from PIL import Image

from pixelforge.curate.quality import dhash64, jpeg_quality, luma_quant_table, quality_scores


def _jpeg(img, quality):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 90, 95, 100])
def test_jpeg_quality_recovers_pillow_quality(quality):
    img = Image.fromarray(np.random.default_rng(quality).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    assert jpeg_quality(_jpeg(img, quality)) == quality
    assert jpeg_quality(_jpeg(img.convert("L"), quality)) == quality


def test_jpeg_quality_is_none_for_other_formats():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    assert jpeg_quality(buf.getvalue()) is None
    assert jpeg_quality(b"\xff\xd8\xff") is None  # truncated header
    assert luma_quant_table(b"") is None


def test_scores_of_a_flat_grey_image():
    s = quality_scores(Image.new("RGB", (300, 100), (128, 128, 128)), b"")
    assert s["q_min_side"] == 100 and s["q_aspect"] == 3.0
    assert s["q_blur"] == 0.0 and s["q_entropy"] == 0.0 and s["q_contrast"] == 0.0
    assert s["q_brightness"] == pytest.approx(128 / 255, abs=1e-3)
    assert s["q_grayscale"] is True and s["q_jpeg_quality"] is None


def test_scores_of_a_checkerboard():
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    s = quality_scores(Image.fromarray(board).convert("RGB"), b"")
    assert s["q_entropy"] == pytest.approx(1.0) and s["q_contrast"] == pytest.approx(0.5)
    assert s["q_brightness"] == pytest.approx(0.5) and s["q_grayscale"] is True
    sharp = s["q_blur"]
    blurred = quality_scores(Image.fromarray(board).convert("RGB").resize((16, 16)).resize((64, 64)), b"")
    assert sharp > 10 * blurred["q_blur"]


def test_colour_image_is_not_grayscale_and_true_size_wins():
    img = Image.new("RGB", (20, 20), (200, 30, 30))
    s = quality_scores(img, b"", size=(800, 400))
    assert s["q_grayscale"] is False and s["q_min_side"] == 400 and s["q_aspect"] == 2.0


def test_dhash64_matches_imagehash():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    assert dhash64(img) == int(str(imagehash.dhash(img)), 16)
