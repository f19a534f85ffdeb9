"""Shared fixtures of the evaluate tests: one random FID Inception weights file and two image folders per session."""

from __future__ import annotations

import pytest

from tests.evaluate.fixtures import make_weights, smooth_images, write_folder

N_IMAGES = 66  # more than the 64 feature dimensions the parity tests use


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A calibrated random FID Inception state dict saved under the official file name."""
    return make_weights(tmp_path_factory.mktemp("weights") / "pt_inception-2015-12-05-6726825d.pth")


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """(real, fake) folders of 66 PNGs, 32 px: smooth noise at two different smoothness levels."""
    root = tmp_path_factory.mktemp("images")
    real = write_folder(root / "real", smooth_images(N_IMAGES, 32, seed=1, grid=5))
    fake = write_folder(root / "fake", smooth_images(N_IMAGES, 32, seed=2, grid=3))
    return real, fake


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    """Keep the user cache (plain folders' statistics) and the torch hub inside the test's tmp dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("PIXELFORGE_INCEPTION_WEIGHTS", raising=False)
