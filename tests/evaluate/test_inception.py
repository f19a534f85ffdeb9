"""Tests for the Inception extractor: where weights come from, parity with torch-fidelity's network, batch size."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.metric_isc import isc_features_to_metric

from pixelforge.errors import UsageError
from pixelforge.evaluate.images import extract, open_images
from pixelforge.evaluate.inception import (
    WEIGHTS_FILE,
    InceptionFeatures,
    find_weights,
    hub_weights_paths,
    resize_like_tensorflow1x,
)
from pixelforge.evaluate.metrics import features_to_statistics, frechet_distance, inception_score
from tests.evaluate.fixtures import smooth_images, write_folder


def test_weights_come_from_flag_then_env_then_hub_cache(weights, tmp_path, monkeypatch):
    assert find_weights(str(weights)) == weights
    monkeypatch.setenv("PIXELFORGE_INCEPTION_WEIGHTS", str(weights))
    assert find_weights(None) == weights
    monkeypatch.delenv("PIXELFORGE_INCEPTION_WEIGHTS")
    hub = hub_weights_paths()[0]
    assert str(hub).startswith(str(tmp_path))  # TORCH_HOME points into the test's tmp dir
    hub.parent.mkdir(parents=True)
    shutil.copy(weights, hub)
    assert find_weights(None) == hub


def test_missing_weights_is_one_line_naming_the_file_and_three_places():
    with pytest.raises(UsageError) as e:
        find_weights(None)
    msg = str(e.value)
    assert "\n" not in msg and WEIGHTS_FILE in msg
    assert "--inception-weights" in msg and "$PIXELFORGE_INCEPTION_WEIGHTS" in msg and "torch hub cache" in msg
    assert "--download" in msg
    with pytest.raises(UsageError, match="--inception-weights /no/such.pth: no such file"):
        find_weights("/no/such.pth")


def test_a_file_that_is_not_the_weights_is_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(UsageError, match="not a readable"):
        InceptionFeatures(bad)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(UsageError, match="not an FID Inception state dict"):
        InceptionFeatures(other)


@pytest.mark.parametrize("shape", [(5, 3, 32, 32), (2, 3, 64, 48), (1, 3, 400, 333), (1, 3, 299, 299)])
def test_resize_is_bit_exact_torch_fidelity(shape):
    x = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 255).round()
    theirs = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(resize_like_tensorflow1x(x, 299), theirs)


@pytest.mark.slow
def test_features_logits_and_inception_score_equal_torch_fidelity_network(weights):
    # The same weights through torch-fidelity's own extractor: features at 64 and 2048 and the
    # unbiased logits agree up to float32 rounding of our folded BatchNorm / channels_last. With
    # the metric functions equal on the same arrays (test_metrics, 2,100 x 2,048 for FID), this
    # is the 2,048-d parity: a full-rank end-to-end run would need 2 x 2,049 images through the
    # 299 px network per tool, minutes of CPU.
    images = smooth_images(4, 40, seed=3)
    theirs_net = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["64", "2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
    )
    with torch.no_grad():
        t64, t2048, tlogits = theirs_net(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    ours64 = InceptionFeatures(weights, dims=64).features(x)
    ours2048, ours_logits = InceptionFeatures(weights, dims=2048).features_and_logits(x, logits=True)
    for ours, theirs in ((ours64, t64), (ours2048, t2048), (ours_logits, tlogits)):
        scale = theirs.abs().max()
        assert scale > 0.1  # calibrated weights: activations did not vanish
        assert (ours - theirs).abs().max() / scale < 1e-4
    ours_is = inception_score(ours_logits.numpy(), splits=2)
    theirs_is = isc_features_to_metric(tlogits, splits=2)
    assert ours_is[0] == pytest.approx(theirs_is["inception_score_mean"], rel=1e-4)
    assert ours_is[0] > 1.01  # the random classifier does spread its predictions


def test_results_do_not_depend_on_batch_size_or_workers(weights, tmp_path):
    folder = write_folder(tmp_path / "imgs", smooth_images(13, 32, seed=4))
    images = open_images(str(folder), "--fake")
    model = InceptionFeatures(weights, dims=64)
    a = extract(images, model, batch_size=13, workers=0)
    b = extract(images, model, batch_size=4, workers=2)
    assert a.keys == b.keys == [f"{i:05d}.png" for i in range(13)]
    np.testing.assert_allclose(a.features, b.features, rtol=1e-5, atol=1e-6)
    half = len(a.features) // 2
    fa = frechet_distance(*features_to_statistics(a.features[:half]), *features_to_statistics(a.features[half:]))
    fb = frechet_distance(*features_to_statistics(b.features[:half]), *features_to_statistics(b.features[half:]))
    assert fa == pytest.approx(fb, rel=1e-5)


def test_bad_dims_and_impl_are_refused(weights):
    with pytest.raises(UsageError, match="--dims 100: choose one of 64, 192, 768, 2048"):
        InceptionFeatures(weights, dims=100)
    with pytest.raises(UsageError, match="--fid-impl 'clean-fid': choose one of torch-fidelity, pytorch-fid"):
        InceptionFeatures(weights, impl="clean-fid")
