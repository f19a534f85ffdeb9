"""The Tree-Ring mark: the key in the starting noise, found again by inverting the run's sampler."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixelforge.cli import main
from pixelforge.generate.attacks import ATTACKS
from pixelforge.generate.treering import Z_MIN, _key, false_positive_rate, initial_noise, read_treering
from pixelforge.train.rundir import load_run
from tests.generate.test_generate import TRAIN


@pytest.fixture(scope="module")
def run32(tmp_path_factory):
    root = tmp_path_factory.mktemp("treering")
    assert main(["import", "shapes", "--n", "48", "--size", "32", "--out", str(root / "shapes")]) == 0
    args = ["train", "diffusion", "--data", str(root / "shapes"), "--out", str(root / "run"), "--condition", "text"]
    assert main([*args, "--image-size", "32", *TRAIN]) == 0
    return root / "run"


def test_the_key_replaces_one_channel_of_the_noise_spectrum():
    plain = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(5))
    marked = initial_noise(2, 32, torch.Generator().manual_seed(5))
    assert torch.equal(marked[:, 1:], plain[:, 1:])  # the other channels are the same draw
    values, mask, _ = _key(32)
    spectrum = torch.fft.fftshift(torch.fft.fft2(marked[:, 0].double()), dim=(-2, -1)).numpy()
    assert np.allclose(spectrum[:, mask].real, values[mask], atol=1e-3) and np.abs(spectrum[:, mask].imag).max() < 1e-3
    assert mask.sum() == 80 and not mask[16, 16]  # radius 1..5 about the centre, the constant term kept
    assert abs(float(marked[:, 0].std()) - 1.0) < 0.15  # still noise of unit size
    assert false_positive_rate() == 1 / 1960  # measured: the inverted noise of unmarked images is not white


def test_generate_marks_the_noise_and_verify_finds_it_with_the_run(run32, tmp_path, capsys):
    prompt = ["--prompt", "a large red circle in the center on a white background", "--n", "4", "--steps", "50"]
    marked, plain = tmp_path / "marked", tmp_path / "plain"
    assert main(["generate", str(run32), *prompt, "--mark", "treering,tile", "--out", str(marked)]) == 0
    assert main(["generate", str(run32), *prompt, "--mark", "tile", "--out", str(plain)]) == 0
    run = load_run(str(run32), "best", torch.device("cpu"))
    images = [Image.open(p) for p in sorted((marked / "images").iterdir())]
    unmarked = [Image.open(p) for p in sorted((plain / "images").iterdir())]
    found = read_treering(images, run)
    assert all(r.found and r.z >= Z_MIN for r in found)
    assert not any(r.found for r in read_treering(unmarked, run))
    # a resize does not matter: the image goes to the model's side anyway
    assert all(r.found for r in read_treering([ATTACKS["resize0.5"](img) for img in images], run))
    capsys.readouterr()
    first = str(marked / "images" / "000000000.png")
    assert main(["verify", first, "--run", str(run32), "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["watermark_methods"] == ["tile", "treering"]
    ring = next(m for m in r["marks"] if m["method"] == "treering")
    assert ring["tag_bits_matched"] is None and ring["score"] >= Z_MIN
    assert main(["verify", first, "--json"]) == 0  # without the run: the pixel marks only
    (r,) = json.loads(capsys.readouterr().out)
    assert [m["method"] for m in r["marks"]] == ["tile", "dwtdctsvd"]


def test_treering_needs_a_diffusion_run(tmp_path, capsys):
    data = str(tmp_path / "digits")
    assert main(["import", "digits", "--size", "8", "--out", data]) == 0
    gan = str(tmp_path / "gan")
    assert main(["train", "gan", "--data", data, "--out", gan, "--image-size", "8", "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["generate", gan, "--n", "1", "--mark", "treering", "--out", str(tmp_path / "g")]) == 2
    assert "--mark treering: only diffusion runs start from noise" in capsys.readouterr().err
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    assert main(["verify", str(tmp_path / "x.png"), "--run", gan]) == 2
    assert "has no Tree-Ring mark (diffusion only)" in capsys.readouterr().err
