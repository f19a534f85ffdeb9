"""Tests for the MNIST importer: IDX parsing (gzip or plain), exact pixels and labels, damaged files."""

from __future__ import annotations

import gzip
import io
import re
import struct
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from pixelforge.errors import UsageError
from pixelforge.sources import mnist
from pixelforge.sources.base import ImportOptions, run_import
from pixelforge.sources.mnist import IMAGES_MAGIC, LABELS_MAGIC, MnistSource
from pixelforge.store import Dataset

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else (IMAGES_MAGIC if arr.ndim == 3 else LABELS_MAGIC)
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def write(path, data: bytes, gz: bool) -> None:
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)


def images(seed: int, n: int) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    arr[0] = np.arange(28, dtype=np.uint8)[None, :] * 9  # a horizontal ramp: shows any transposition
    return arr


TRAIN, TEST = images(0, 5), images(1, 3)
TRAIN_LABELS, TEST_LABELS = np.array([0, 1, 2, 3, 4]), np.array([7, 8, 9])


def make_mnist(d, gz: bool = True, names=None) -> None:
    """The four official files in ``d``; ``names`` overrides a file's name (key: its official name)."""
    d.mkdir(exist_ok=True)
    suffix = ".gz" if gz else ""
    files = {
        "train-images-idx3-ubyte": TRAIN,
        "train-labels-idx1-ubyte": TRAIN_LABELS,
        "t10k-images-idx3-ubyte": TEST,
        "t10k-labels-idx1-ubyte": TEST_LABELS,
    }
    for name, arr in files.items():
        write(d / (names or {}).get(name, name + suffix), idx_bytes(arr), gz)


def import_(tmp_path, source: MnistSource) -> Dataset:
    run_import(source, ImportOptions(out=str(tmp_path / "out")))
    return Dataset.open(tmp_path / "out")


def decoded(ds: Dataset) -> dict[str, np.ndarray]:
    return {s.row["source"]: np.asarray(Image.open(io.BytesIO(s.image))) for s in ds.iter_samples()}


def fails(ds: Dataset) -> list[dict]:
    return ds.failures().select(["source", "reason", "detail"]).to_pylist()


def test_gzip_files_import_both_splits_with_exact_pixels_and_labels(tmp_path):
    d = tmp_path / "mnist"
    make_mnist(d, gz=True)
    source = MnistSource(str(d))
    assert source.count() == 8
    ds = import_(tmp_path, source)
    rows = ds.index().to_pylist()
    train, test = d / "train-images-idx3-ubyte.gz", d / "t10k-images-idx3-ubyte.gz"
    assert [r["source"] for r in rows] == [f"{train}#{i}" for i in range(5)] + [f"{test}#{i}" for i in range(3)]
    assert Counter(r["split"] for r in rows) == {"train": 5, "test": 3}
    assert [(r["label"], r["label_name"]) for r in rows] == [(i, str(i)) for i in (0, 1, 2, 3, 4, 7, 8, 9)]
    assert {(r["source_kind"], r["width"], r["height"], r["format"]) for r in rows} == {("mnist", 28, 28, "png")}
    pixels = decoded(ds)
    for i in range(5):
        assert np.array_equal(pixels[f"{train}#{i}"], TRAIN[i])
    for i in range(3):
        assert np.array_equal(pixels[f"{test}#{i}"], TEST[i])
    assert pixels[f"{train}#0"][5, 3] == 27 and pixels[f"{train}#0"][3, 5] == 45  # x varies along a row
    assert fails(ds) == []


def test_plain_files_other_spelling_gzip_without_suffix_and_fashion_names(tmp_path):
    d = tmp_path / "fashion"
    make_mnist(
        d,
        gz=False,
        names={"t10k-images-idx3-ubyte": "t10k-images.idx3-ubyte", "t10k-labels-idx1-ubyte": "t10k-labels.idx1-ubyte"},
    )
    # gzip content under a plain name: the magic bytes decide, not the suffix
    write(d / "train-labels-idx1-ubyte", idx_bytes(TRAIN_LABELS), gz=True)
    ds = import_(tmp_path, MnistSource(str(d), label_names="fashion"))
    rows = ds.index().to_pylist()
    assert [r["label_name"] for r in rows] == [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
    assert rows[5]["source"] == f"{d / 't10k-images.idx3-ubyte'}#0"
    pixels = decoded(ds)
    assert np.array_equal(pixels[f"{d / 'train-images-idx3-ubyte'}#4"], TRAIN[4])
    assert np.array_equal(pixels[f"{d / 't10k-images.idx3-ubyte'}#2"], TEST[2])


def test_streaming_in_small_chunks_gives_the_same_images(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "CHUNK_BYTES", 2 * 784 + 5)  # two images per read, the last read short
    d = tmp_path / "mnist"
    make_mnist(d, gz=True)
    ds = import_(tmp_path, MnistSource(str(d)))
    pixels = decoded(ds)
    assert len(pixels) == 8
    assert all(np.array_equal(pixels[f"{d / 'train-images-idx3-ubyte.gz'}#{i}"], TRAIN[i]) for i in range(5))


def test_truncated_plain_image_file_keeps_complete_images_and_one_failure(tmp_path):
    d = tmp_path / "mnist"
    make_mnist(d, gz=False)
    f = d / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[: 16 + 3 * 784 + 400])  # 3 whole images and part of the 4th
    ds = import_(tmp_path, MnistSource(str(d)))
    rows = ds.index().to_pylist()
    assert Counter(r["split"] for r in rows) == {"train": 3, "test": 3}
    assert fails(ds) == [
        {
            "source": str(f),
            "reason": "bad_record",
            "detail": "train-images-idx3-ubyte is truncated: its header declares 5 images, "
            "the file holds 3 complete ones",
        }
    ]
    pixels = decoded(ds)
    assert all(np.array_equal(pixels[f"{f}#{i}"], TRAIN[i]) for i in range(3))


def test_truncated_gzip_image_file_keeps_what_decompressed(tmp_path):
    d = tmp_path / "mnist"
    make_mnist(d, gz=True)
    f = d / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-1500])  # cut the deflate stream inside the 4th image
    ds = import_(tmp_path, MnistSource(str(d)))
    (fail,) = fails(ds)
    m = re.fullmatch(
        r"train-images-idx3-ubyte\.gz is truncated: its header declares 5 images, the file "
        r"holds (\d) complete ones \(EOFError: .+\)",
        fail["detail"],
    )
    assert m and fail["reason"] == "bad_record" and fail["source"] == str(f)
    kept = int(m.group(1))
    assert kept == 3
    rows = ds.index().to_pylist()
    assert Counter(r["split"] for r in rows) == {"train": kept, "test": 3}
    pixels = decoded(ds)
    assert all(np.array_equal(pixels[f"{f}#{i}"], TRAIN[i]) for i in range(kept))


def test_wrong_magic_fails_the_pair_and_the_other_split_imports(tmp_path):
    d = tmp_path / "mnist"
    make_mnist(d, gz=True)
    write(d / "t10k-images-idx3-ubyte.gz", idx_bytes(TEST, magic=0x00000D03), gz=True)  # float images
    write(d / "train-labels-idx1-ubyte.gz", idx_bytes(TRAIN), gz=True)  # an images file as labels
    ds = import_(tmp_path, MnistSource(str(d)))
    assert ds.num_samples == 0
    assert fails(ds) == [
        {
            "source": str(d / "train-labels-idx1-ubyte.gz"),
            "reason": "bad_record",
            "detail": "train-labels-idx1-ubyte.gz: magic number 0x00000803, expected 0x00000801 "
            "(unsigned-byte labels); no train image was imported",
        },
        {
            "source": str(d / "t10k-images-idx3-ubyte.gz"),
            "reason": "bad_record",
            "detail": "t10k-images-idx3-ubyte.gz: magic number 0x00000D03, expected 0x00000803 "
            "(unsigned-byte images); no test image was imported",
        },
    ]


def test_count_mismatch_truncated_labels_missing_partner_and_bad_label(tmp_path):
    d = tmp_path / "mnist"
    make_mnist(d, gz=False)
    write(d / "train-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 10, 3])), gz=False)  # 4 labels, one bad
    (d / "t10k-labels-idx1-ubyte").unlink()
    ds = import_(tmp_path, MnistSource(str(d)))
    imgs = d / "train-images-idx3-ubyte"
    assert fails(ds) == [
        {
            "source": str(imgs),
            "reason": "bad_record",
            "detail": "train-images-idx3-ubyte declares 5 images but train-labels-idx1-ubyte declares 4 labels: "
            "only the first 4 are paired",
        },
        {"source": f"{imgs}#2", "reason": "bad_record", "detail": "label 10 is outside 0..9"},
        {
            "source": str(d / "t10k-images-idx3-ubyte"),
            "reason": "missing_file",
            "detail": f"t10k-images-idx3-ubyte has no partner: t10k-labels-idx1-ubyte[.gz] is missing from {d}",
        },
    ]
    assert [(r["source"], r["label"]) for r in ds.index().to_pylist()] == [
        (f"{imgs}#0", 0),
        (f"{imgs}#1", 1),
        (f"{imgs}#3", 3),
    ]


def test_truncated_label_file_pairs_only_the_labels_it_holds(tmp_path):
    d = tmp_path / "mnist"
    make_mnist(d, gz=False)
    f = d / "train-labels-idx1-ubyte"
    f.write_bytes(f.read_bytes()[:-2])
    ds = import_(tmp_path, MnistSource(str(d)))
    assert fails(ds) == [
        {
            "source": str(f),
            "reason": "bad_record",
            "detail": "train-labels-idx1-ubyte is truncated: its header declares 5 labels, the file holds 3; "
            "images past that are not imported",
        }
    ]
    assert Counter(r["split"] for r in ds.index().to_pylist()) == {"train": 3, "test": 3}


def test_validate_names_the_directory_the_files_and_the_choices(tmp_path):
    with pytest.raises(UsageError) as e:
        MnistSource(str(tmp_path / "nope")).validate()
    assert str(e.value) == (
        f"mnist {tmp_path / 'nope'}: not a directory; pass the directory that holds "
        "train-images-idx3-ubyte[.gz] and the other MNIST IDX files"
    )
    with pytest.raises(UsageError) as e:
        MnistSource(str(tmp_path)).validate()
    assert str(e.value) == (
        f"mnist {tmp_path}: holds none of train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
        "t10k-labels-idx1-ubyte[.gz]; pass the directory that holds them"
    )
    with pytest.raises(UsageError, match=r"^--label-names 'kmnist': choose one of digits, fashion$"):
        MnistSource(str(tmp_path), label_names="kmnist").validate()
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(TEST_LABELS), gz=True)
    MnistSource(str(tmp_path)).validate()  # one file is enough to start; its missing partner is a failure row
    assert MnistSource(str(tmp_path)).count() == 0
