"""Tests of the shipped watermark detector: size, loading, batch invariance, separation on held-out pairs."""

import numpy as np
import pytest

from pixelforge.curate.synth import add_watermark, clean_photo, example_pair
from pixelforge.curate.watermark import WEIGHTS, WatermarkDetector, detector
from pixelforge.errors import UsageError

HELDOUT = 10_000_000  # scripts/train_watermark_detector.py never trains on seeds from here


def test_weights_are_small_and_carry_config_and_metrics():
    assert WEIGHTS.stat().st_size < 2 * 2**20
    det = detector()
    assert det.config.input_size == 128 and det.config.threshold == 0.5
    assert {"precision", "recall", "auc", "n"} <= set(det.metrics)


def test_scores_do_not_depend_on_batching():
    det = detector()
    images = [example_pair(HELDOUT + i)[1] for i in range(5)]
    together = det.score(images)
    alone = np.concatenate([det.score([im]) for im in images])
    assert together.shape == (5,) and together.dtype == np.float32
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert ((together >= 0) & (together <= 1)).all()
    assert det.score([]).shape == (0,)


def test_detector_separates_held_out_pairs():
    det = detector()
    pairs = [example_pair(HELDOUT + 100 + i) for i in range(24)]
    clean = det.score([c for c, _, _ in pairs])
    marked = det.score([m for _, m, _ in pairs])
    # measured with the shipped weights: 20 of 24 marked above 0.5, no clean one
    assert (marked > 0.5).sum() >= 18 and (clean > 0.5).sum() <= 2
    assert marked.mean() > clean.mean() + 0.4


def test_tiled_text_is_found_on_photos():
    clean, marked = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        base = clean_photo(rng)
        clean.append(base)
        marked.append(add_watermark(base, rng, kind="text", placement="tiled")[0])
    det = detector()
    # measured with the shipped weights: all 12 marked above 0.68, all 12 clean below 0.11
    assert (det.score(marked) > 0.5).all() and (det.score(clean) < 0.5).all()


def test_missing_weights_name_the_fix(tmp_path):
    with pytest.raises(UsageError, match="train_watermark_detector.py"):
        WatermarkDetector(tmp_path / "none.safetensors")
