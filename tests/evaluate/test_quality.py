"""End-to-end tests of `pixelforge evaluate`: parity with torch-fidelity and pytorch-fid, cache, JSON, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch_fidelity
from pytorch_fid.fid_score import calculate_fid_given_paths

from pixelforge.cli import main
from pixelforge.errors import UsageError
from pixelforge.evaluate.quality import EvaluateConfig, evaluate
from tests.evaluate.conftest import N_IMAGES
from tests.evaluate.fixtures import smooth_images, write_folder

PAIR_METRICS = ("fid", "kid", "precision", "recall")


def fidelity(real, fake, weights, dims: str, isc: bool = False, subset: int = N_IMAGES) -> dict:
    """torch-fidelity's own numbers on the same folders and weights (input1 is the generated set)."""
    return torch_fidelity.calculate_metrics(
        input1=str(fake),
        input2=str(real),
        cuda=False,
        fid=True,
        kid=True,
        prc=True,
        isc=isc,
        feature_extractor="inception-v3-compat",
        feature_layer_fid=dims,
        feature_layer_kid=dims,
        feature_layer_prc=dims,
        feature_extractor_weights_path=str(weights),
        kid_subset_size=subset,
        verbose=False,
        cache=False,
        save_cpu_ram=True,
    )


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.fixture(scope="module")
def parity_64(folders, weights):
    real, fake = folders
    ours = evaluate(
        str(real),
        str(fake),
        EvaluateConfig(
            metrics=PAIR_METRICS, dims=64, inception_weights=str(weights), kid_subset_size=N_IMAGES, cache=False
        ),
    )
    return ours, fidelity(real, fake, weights, "64")


def test_fid_kid_precision_recall_equal_torch_fidelity_at_64d(parity_64):
    ours, theirs = parity_64
    assert ours.n_real == ours.n_fake == N_IMAGES and ours.dims == 64 and ours.fid_impl == "torch-fidelity"
    assert rel(ours.metrics["fid"], theirs["frechet_inception_distance"]) < 1e-3
    assert rel(ours.metrics["kid"], theirs["kernel_inception_distance_mean"]) < 1e-3
    # one image crossing a ball boundary would move these by 1/66; float32 rounding never did here
    assert ours.metrics["precision"] == pytest.approx(theirs["precision"], abs=1 / N_IMAGES)
    assert ours.metrics["recall"] == pytest.approx(theirs["recall"], abs=1 / N_IMAGES)
    assert ours.warnings == []  # 66 samples > 64 dims: no bias warning


def test_fid_equals_pytorch_fid_in_its_mode_and_the_modes_differ(folders, weights, tmp_path, monkeypatch, parity_64):
    real, fake = folders
    # pytorch-fid reads the weights only from the torch hub cache, under their official name
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub-home"))
    hub = tmp_path / "hub-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(weights, hub / weights.name)
    theirs = calculate_fid_given_paths([str(real), str(fake)], batch_size=50, device="cpu", dims=64, num_workers=0)
    ours = evaluate(
        str(real),
        str(fake),
        EvaluateConfig(metrics=("fid",), dims=64, fid_impl="pytorch-fid", inception_weights=str(weights), cache=False),
    )
    assert ours.fid_impl == "pytorch-fid"
    assert rel(ours.metrics["fid"], theirs) < 1e-3
    # the two references resize differently; the difference is real, not rounding
    assert rel(ours.metrics["fid"], parity_64[0].metrics["fid"]) > 1e-3


def test_real_statistics_are_cached_under_the_dataset(folders, weights, tmp_path, capsys):
    real, fake = folders
    ds = tmp_path / "real-ds"
    assert main(["import", "folder", str(real), "--out", str(ds)]) == 0
    config = EvaluateConfig(metrics=("fid",), dims=64, inception_weights=str(weights), n=8, workers=0)
    first = evaluate(str(ds), str(fake), config)
    cached = list((ds / ".cache").glob("*.npz"))
    assert len(cached) == 1 and first.real_cache == str(cached[0])
    name = cached[0].name  # {content hash}-{extractor}-{layer}.npz
    assert name.endswith("-64.npz") and "-inception-torch-fidelity-" in name
    second = evaluate(str(ds), str(fake), config)
    assert second.metrics == first.metrics and second.real_cache == first.real_cache
    # another selection of the same dataset is another content: a second cache file
    evaluate(
        str(ds), str(fake), EvaluateConfig(metrics=("fid",), dims=64, inception_weights=str(weights), n=9, workers=0)
    )
    assert len(list((ds / ".cache").glob("*.npz"))) == 2
    assert sorted(p.name for p in ds.iterdir()) == [
        ".cache",
        "dataset.json",
        "failures.parquet",
        "index.parquet",
        "shards",
        "stats.json",
    ]


def test_plain_folders_cache_in_the_user_cache_dir(folders, weights, tmp_path):
    real, fake = folders
    small_real = write_folder(tmp_path / "r", smooth_images(6, 32, seed=7))
    result = evaluate(
        str(small_real),
        str(fake),
        EvaluateConfig(metrics=("fid",), dims=64, n=6, workers=0, inception_weights=str(weights)),
    )
    assert result.real_cache.startswith(str(tmp_path / "xdg-cache" / "pixelforge" / "evaluate"))
    assert not (small_real / ".cache").exists()


def test_cli_json_has_exactly_the_asked_metrics(folders, weights, capsys):
    real, fake = folders
    code = main(
        [
            "evaluate",
            "--real",
            str(real),
            "--fake",
            str(fake),
            "--metrics",
            "fid,precision",
            "--dims",
            "64",
            "--n",
            "10",
            "--workers",
            "0",
            "--inception-weights",
            str(weights),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    out = json.loads(captured.out)
    assert set(out) == {"fid", "precision", "n_real", "n_fake", "features", "dims", "fid_impl"}
    assert (out["n_real"], out["n_fake"], out["features"], out["dims"], out["fid_impl"]) == (
        10,
        10,
        "inception",
        64,
        "torch-fidelity",
    )
    assert out["fid"] > 0 and 0 <= out["precision"] <= 1
    assert "Warning: FID from 10 real and 10 fake images of 64-d features is biased" in captured.err
    assert "use at least 65 images of each" in captured.err


def test_undecodable_images_are_left_out_and_counted(folders, weights, tmp_path):
    real, _ = folders
    fake = write_folder(tmp_path / "fake", smooth_images(6, 32, seed=8))
    (fake / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    result = evaluate(
        str(real), str(fake), EvaluateConfig(metrics=("fid",), dims=64, n=7, workers=0, inception_weights=str(weights))
    )
    assert result.n_fake == 6 and result.failed[0]["key"] == "broken.png"
    assert result.failed[0]["reason"].startswith("decode_error")
    assert any("1 images could not be decoded" in w for w in result.warnings)


def test_bad_input_stops_with_one_line_errors(folders, weights, tmp_path, capsys):
    real, fake = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--real", str(real), "--fake", str(empty)], f"--fake {empty}: no images"),
        (
            ["--real", str(real), "--fake", str(fake)],
            "Inception weights pt_inception-2015-12-05-6726825d.pth not found",
        ),
        (["--fake", str(fake), "--metrics", "fid"], "--real is needed for fid"),
        (["--real", str(real), "--fake", str(fake), "--dims", "100"], "--dims 100: choose one of 64, 192, 768, 2048"),
        (["--real", str(real)], "--fake is needed"),
        (["--real", str(real), "--fake", str(fake), "--features", "classifier:/no/run"], "classifier run /no/run"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["evaluate", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error: ") and message in err and "\n" not in err, err
    with pytest.raises(UsageError, match="--n 0"):
        evaluate(str(real), str(fake), EvaluateConfig(n=0))
