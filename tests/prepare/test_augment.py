"""Tests for prepare/augment.py: the SPEC grammar, errors naming the ops, determinism, size."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from pixelforge.errors import UsageError
from pixelforge.prepare.augment import OPS, parse_params, parse_spec

IMG = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8))


def test_full_spec_parses_and_keeps_size():
    aug = parse_spec("hflip,rotate=10,crop=0.9,brightness=0.2,contrast=0.2,jitter=0.1")
    out = aug(IMG)
    assert out.size == IMG.size and out.mode == "RGB"
    names = [type(t).__name__ for t in aug.pipeline.transforms]
    assert names == ["RandomHorizontalFlip", "RandomAffine", "SameSizeResizedCrop", "ColorJitter"]


def test_bare_ops_take_defaults_and_order_is_fixed():
    assert parse_params("vflip, hflip=1") == {"vflip": 0.5, "hflip": 1.0}
    assert parse_params(" grayscale ") == {"grayscale": 0.1}
    a, b = parse_spec("brightness=0.3,hflip"), parse_spec("hflip,brightness=0.3")
    assert repr(a.pipeline) == repr(b.pipeline)


@pytest.mark.parametrize("spec", ["", "none", "NONE"])
def test_empty_spec_is_identity(spec):
    assert parse_spec(spec)(IMG) is IMG


def test_hflip_1_mirrors_exactly():
    out = parse_spec("hflip=1")(IMG)
    assert np.array_equal(np.asarray(out), np.asarray(IMG)[:, ::-1])


def test_seed_fixes_output_and_pipeline_pickles():
    aug = pickle.loads(pickle.dumps(parse_spec("rotate=30,crop=0.5,jitter=0.5,blur=2")))
    torch.manual_seed(3)
    a = np.asarray(aug(IMG))
    torch.manual_seed(3)
    b = np.asarray(aug(IMG))
    torch.manual_seed(4)
    c = np.asarray(aug(IMG))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("sharpen", "unknown op 'sharpen'; allowed ops: hflip"),
        ("rotate", "op 'rotate' needs a value"),
        ("rotate=200", "rotate=200 is outside 0..180"),
        ("crop=abc", "crop='abc' is not a number"),
        ("hflip,hflip", "op 'hflip' given twice"),
    ],
)
def test_bad_specs_name_the_problem(spec, words):
    with pytest.raises(UsageError) as err:
        parse_spec(spec)
    assert words in str(err.value) and str(err.value).startswith(f"--augment {spec!r}")
    if "unknown" in words:
        assert all(op in str(err.value) for op in OPS)
