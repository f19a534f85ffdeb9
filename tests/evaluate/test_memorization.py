"""Tests for `pixelforge evaluate memorization`: planted exact and altered copies are found, clean fakes are not."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.evaluate.features import ClassifierFeatures
from pixelforge.evaluate.memorization import MemorizationConfig, find_memorized, nearest_neighbours, relative_scores
from tests.evaluate.fixtures import PooledJudge, smooth_images, write_folder


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """60 training images; 20 clean fakes plus 4 planted copies of training images 3, 10, 20 and 30."""
    root = tmp_path_factory.mktemp("mem")
    train = smooth_images(60, 32, seed=11)
    train_dir = write_folder(root / "train", train)
    rng = np.random.default_rng(0)
    copies = {
        "copy-exact.png": train[3],
        "copy-noise.png": np.clip(train[10] + rng.normal(0, 5, train[10].shape), 0, 255).astype(np.uint8),
        "copy-jpeg.png": jpeg(train[20], 75),
        "copy-bright.png": np.clip(train[30].astype(int) + 10, 0, 255).astype(np.uint8),
    }
    fake_dir = write_folder(root / "fake", smooth_images(20, 32, seed=12))
    for name, a in copies.items():
        Image.fromarray(a).save(fake_dir / name)
    expected = {
        "copy-exact.png": "00003.png",
        "copy-noise.png": "00010.png",
        "copy-jpeg.png": "00020.png",
        "copy-bright.png": "00030.png",
    }
    return train_dir, fake_dir, expected


def test_relative_score_is_carlinis():
    dist = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.2, 1.0, 1.2]])
    # d1 / (0.5 * mean of the 3 nearest)
    assert relative_scores(dist).tolist() == pytest.approx([0.0, 2.0, 0.2 / (0.5 * 0.8)])


def test_nearest_neighbours_match_brute_force_across_chunks(monkeypatch):
    from pixelforge.evaluate import memorization

    monkeypatch.setattr(memorization, "TRAIN_CHUNK", 7)
    rng = np.random.default_rng(1)
    q, b = rng.random((5, 12)), rng.random((30, 12))
    d, i = nearest_neighbours(q, b, 4, "l2")
    brute = np.sqrt(((q[:, None] - b[None]) ** 2).mean(-1))
    assert (i == np.argsort(brute, axis=1)[:, :4]).all()
    np.testing.assert_allclose(d, np.sort(brute, axis=1)[:, :4], rtol=1e-5)


def test_planted_copies_are_found_and_clean_fakes_are_not(planted):
    train, fake, expected = planted
    result = find_memorized(str(train), str(fake), MemorizationConfig(workers=0))
    assert {p["fake"]: p["train"] for p in result.flagged} == expected
    assert (result.n_fake, result.n_train, result.n_flagged) == (24, 60, 4)
    assert result.share == pytest.approx(4 / 24)
    scores = {p["fake"]: p["score"] for p in result.top}
    assert scores["copy-exact.png"] < 0.01  # float32 rounding of |a|^2 + |b|^2 - 2ab, not 0
    # the calibration documented in the README's Evaluate section: copies far under 1/3, clean fakes far over
    assert max(scores[k] for k in expected) < 0.25
    clean = [p["score"] for p in result.top if not p["fake"].startswith("copy")]
    assert len(result.top) == 20 and min(clean) > 0.8


def test_feature_criterion_flags_the_same_copies(planted):
    train, fake, expected = planted
    model = ClassifierFeatures(PooledJudge(), ["red", "green", "blue"], None, name="pooled-judge")
    result = find_memorized(str(train), str(fake), MemorizationConfig(workers=0, threshold=0.01), model=model)
    # pixels flag only the exact copy at this threshold; the features find the rest
    assert {p["fake"]: p["train"] for p in result.flagged} == expected
    by = {p["fake"]: p["by"] for p in result.flagged}
    assert by["copy-exact.png"] == "pixels" and by["copy-noise.png"] == "features"
    features = [p for p in result.flagged if p["by"] == "features"]
    assert len(features) == 3 and all(p["score"] < 0.1 and p["cosine"] > 0.95 for p in features)


def test_cli_json_schema_and_saved_output(planted, tmp_path, capsys):
    train, fake, expected = planted
    capsys.readouterr()
    saved = tmp_path / "memorization.json"
    assert (
        main(
            [
                "evaluate",
                "memorization",
                "--train",
                str(train),
                "--fake",
                str(fake),
                "--workers",
                "0",
                "--out",
                str(saved),
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    doc = json.loads(saved.read_text())
    assert doc["command"] == "evaluate memorization" and doc["config"]["threshold"] == pytest.approx(1 / 3)
    assert doc["result"]["n_flagged"] == out["n_flagged"] and doc["result"]["train"] == str(train)
    assert (out["n_fake"], out["n_flagged"], out["share"]) == (24, 4, pytest.approx(4 / 24))
    assert {(f["fake"], f["train"]) for f in out["flagged"]} == set(expected.items())
    assert all(set(f) >= {"fake", "train", "score"} for f in out["flagged"])


def test_bad_arguments(planted, tmp_path):
    train, fake, _ = planted
    with pytest.raises(UsageError, match="--threshold 3"):
        find_memorized(str(train), str(fake), MemorizationConfig(threshold=3))
    one = write_folder(tmp_path / "one", smooth_images(1, 16, seed=1))
    with pytest.raises(UsageError, match="at least 2 images"):
        find_memorized(str(one), str(fake))
    result = find_memorized(
        str(write_folder(tmp_path / "few", smooth_images(5, 16, seed=2))), str(fake), MemorizationConfig(workers=0)
    )
    assert result.warnings == ["--neighbours 50 lowered to 5, the number of training images"]


@pytest.mark.parametrize("pixel_size", [32, 16])
def test_crops_and_rotations_of_training_images_are_found_by_alignment(tmp_path, pixel_size):
    """Pixel distance misses a 8% crop and a 4 degree rotation; alignment finds both and nothing else
    (on its own 32 px copies whatever --pixel-size)."""
    from tests.curate.conftest import photo

    train = np.stack([np.asarray(photo(s, 96)) for s in range(100, 130)])
    train_dir = write_folder(tmp_path / "train", train)
    fake_dir = write_folder(tmp_path / "fake", np.stack([np.asarray(photo(s, 96)) for s in range(200, 206)]))
    photo(103, 96).crop((7, 2, 95, 90)).resize((96, 96)).save(fake_dir / "crop.png")
    photo(107, 96).rotate(4, resample=Image.Resampling.BICUBIC).save(fake_dir / "rotated.png")
    config = MemorizationConfig(workers=0, pixel_size=pixel_size, aligned=False)
    pixels_only = find_memorized(str(train_dir), str(fake_dir), config)
    assert pixels_only.flagged == []
    config.aligned = True
    result = find_memorized(str(train_dir), str(fake_dir), config)
    assert {p["fake"]: (p["train"], p["by"]) for p in result.flagged} == {
        "crop.png": ("00003.png", "alignment"),
        "rotated.png": ("00007.png", "alignment"),
    }
    assert all(p["aligned"] >= 0.95 and p["score"] <= 1 / 3 for p in result.flagged)
    clean = [p for p in result.top if p["fake"].startswith("0")]
    assert max(p["aligned_score"] for p in clean) < 0.95  # unrelated photos never align
    assert "alignment score >= 0.95" in result.criterion["alignment"]
