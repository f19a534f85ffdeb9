"""Tests for the CIFAR importer: official layouts, exact pixels and labels, and the pickle allow-list."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tarfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from pixelforge.errors import UsageError
from pixelforge.sources.base import ImportOptions, run_import
from pixelforge.sources.cifar import CifarSource, UnsafePickle, restricted_load
from pixelforge.store import Dataset

RED = np.array([255] * 1024 + [0] * 2048, np.uint8)  # R plane full, G and B planes empty
C10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
C10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FINE_NAMES = [f"fine{i}" for i in range(100)]
COARSE_NAMES = [f"coarse{i}" for i in range(20)]


class _Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings (BINSTRING), as the official batches have them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        op = (
            pickle.SHORT_BINSTRING + bytes([len(raw)])
            if len(raw) < 256
            else pickle.BINSTRING + struct.pack("<i", len(raw))
        )
        self.write(op + raw)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_py2_string


def py2_dumps(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (which wrote the official files) names its module numpy.core
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def py3_dumps(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)  # bytes become _codecs.encode(..., "latin1") calls


def pixel_rows(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def cifar10_batches(dumps=py3_dumps) -> tuple[dict[str, bytes], dict[str, dict]]:
    """Six batches (2 train images each, 3 test images) and batches.meta, pickled; and the batch dicts."""
    dicts = {}
    for b, name in enumerate(C10_BATCHES):
        n = 3 if name == "test_batch" else 2
        data = pixel_rows(b, n)
        if name == "data_batch_1":
            data[0] = RED
        dicts[name] = {
            b"batch_label": f"batch {b}".encode(),
            b"labels": [(b + i) % 10 for i in range(n)],
            b"data": data,
            b"filenames": [f"{name}_img{i}.png".encode() for i in range(n)],
        }
    files = {name: dumps(d) for name, d in dicts.items()}
    files["batches.meta"] = dumps(
        {b"num_cases_per_batch": 2, b"label_names": [s.encode() for s in C10_NAMES], b"num_vis": 3072}
    )
    return files, dicts


def cifar100_batches(dumps=py3_dumps) -> tuple[dict[str, bytes], dict[str, dict]]:
    dicts = {
        "train": {
            b"fine_labels": [0, 99, 5, 42],
            b"coarse_labels": [4, 19, 0, 3],
            b"data": pixel_rows(10, 4),
            b"filenames": [f"train{i}.png".encode() for i in range(4)],
            b"batch_label": b"training",
        },
        "test": {
            b"fine_labels": [7, 8],
            b"coarse_labels": [1, 2],
            b"data": pixel_rows(11, 2),
            b"filenames": [b"test0.png", b"test1.png"],
            b"batch_label": b"testing",
        },
    }
    files = {name: dumps(d) for name, d in dicts.items()}
    files["meta"] = dumps(
        {
            b"fine_label_names": [s.encode() for s in FINE_NAMES],
            b"coarse_label_names": [s.encode() for s in COARSE_NAMES],
        }
    )
    return files, dicts


def write_tar(path, folder: str, files: dict[str, bytes]) -> str:
    """A .tar.gz in the official layout: FOLDER/ with the batches, in a scrambled order as the real one."""
    with tarfile.open(path, "w:gz") as tar:
        d = tarfile.TarInfo(folder)
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name in sorted(files, reverse=True) + ["readme.html"]:
            data = files.get(name, b"<html></html>")
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def write_dir(root, folder: str, files: dict[str, bytes]) -> str:
    d = root / folder
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    return str(d)


def import_(tmp_path, source: CifarSource) -> Dataset:
    run_import(source, ImportOptions(out=str(tmp_path / "out")))
    return Dataset.open(tmp_path / "out")


def decoded(ds: Dataset) -> dict[str, np.ndarray]:
    return {s.row["source"]: np.asarray(Image.open(io.BytesIO(s.image))) for s in ds.iter_samples()}


def expected_cifar10(path: str, dicts: dict[str, dict], skip=()) -> list[tuple[str, str, int, np.ndarray]]:
    out = []
    for name in C10_BATCHES:
        if name in skip:
            continue
        d = dicts[name]
        for i, label in enumerate(d[b"labels"]):
            out.append(
                (
                    f"{path}#{name}/{i}",
                    "test" if name == "test_batch" else "train",
                    label,
                    d[b"data"][i].reshape(3, 32, 32).transpose(1, 2, 0),
                )
            )
    return out


# ---- official layouts --------------------------------------------------------------------------


def test_cifar10_archive_imports_every_image_with_labels_names_and_exact_pixels(tmp_path):
    files, dicts = cifar10_batches()
    path = write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    ds = import_(tmp_path, CifarSource(path))
    rows = ds.index().to_pylist()
    want = expected_cifar10(path, dicts)
    assert ds.num_samples == 13 and len(rows) == 13
    assert Counter(r["split"] for r in rows) == {"train": 10, "test": 3}
    # train batches 1..5 then test, whatever the order inside the archive
    assert [r["source"] for r in rows] == [w[0] for w in want]
    assert [(r["split"], r["label"], r["label_name"]) for r in rows] == [(w[1], w[2], C10_NAMES[w[2]]) for w in want]
    assert {r["source_kind"] for r in rows} == {"cifar10"}
    assert {(r["width"], r["height"], r["format"]) for r in rows} == {(32, 32, "png")}
    assert json.loads(rows[3]["meta"]) == {"batch": "data_batch_2", "index": 1, "filename": "data_batch_2_img1.png"}
    assert "coarse_label" not in ds.schema.names
    pixels = decoded(ds)
    for source, _, _, image in want:
        assert pixels[source].shape == (32, 32, 3)
        assert np.array_equal(pixels[source], image)
    red = pixels[f"{path}#data_batch_1/0"]
    assert (red[..., 0] == 255).all() and (red[..., 1:] == 0).all()  # planes are R, G, B in that order
    assert ds.failures().num_rows == 0


def test_cifar10_extracted_python2_batches_read_from_the_folder_or_its_parent(tmp_path):
    files, dicts = cifar10_batches(dumps=py2_dumps)
    assert b"cnumpy.core.multiarray\n_reconstruct" in files["data_batch_1"]  # as the 2009 files
    folder = write_dir(tmp_path / "data", "cifar-10-batches-py", files)
    for n, path in enumerate((folder, str(tmp_path / "data"))):
        run_import(CifarSource(path), ImportOptions(out=str(tmp_path / f"out{n}")))
        ds = Dataset.open(tmp_path / f"out{n}")
        rows = ds.index().to_pylist()
        assert len(rows) == 13
        assert [r["label_name"] for r in rows[:3]] == ["airplane", "automobile", "automobile"]
        assert rows[0]["source"] == f"{path}#data_batch_1/0"
        assert json.loads(rows[12]["meta"])["filename"] == "test_batch_img2.png"
        pixels = decoded(ds)
        for source, _, _, image in expected_cifar10(path, dicts):
            assert np.array_equal(pixels[source], image)


def test_cifar100_archive_has_fine_labels_and_coarse_columns(tmp_path):
    files, dicts = cifar100_batches()
    path = write_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", files)
    source = CifarSource(path, variant="cifar100")
    assert source.kind == "cifar100"
    ds = import_(tmp_path, source)
    rows = ds.index().to_pylist()
    assert ds.schema.names[-2:] == ["coarse_label", "coarse_label_name"]
    assert [(r["split"], r["label"], r["label_name"], r["coarse_label"], r["coarse_label_name"]) for r in rows] == [
        ("train", 0, "fine0", 4, "coarse4"),
        ("train", 99, "fine99", 19, "coarse19"),
        ("train", 5, "fine5", 0, "coarse0"),
        ("train", 42, "fine42", 3, "coarse3"),
        ("test", 7, "fine7", 1, "coarse1"),
        ("test", 8, "fine8", 2, "coarse2"),
    ]
    assert {r["source_kind"] for r in rows} == {"cifar100"}
    pixels = decoded(ds)
    assert np.array_equal(pixels[f"{path}#test/1"], dicts["test"][b"data"][1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert json.loads(rows[0]["meta"]) == {"batch": "train", "index": 0, "filename": "train0.png"}
    lineage = ds.info["lineage"]
    assert lineage["command"] == "import cifar100"
    assert lineage["config"]["source"] == {"path": path, "variant": "cifar100"}


# ---- the pickle allow-list ---------------------------------------------------------------------


class RunsShell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CreatesFile:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_payloads_are_live_when_unpickled_normally(tmp_path):
    # the control: the same payloads really do run under plain pickle, so the import tests mean something
    pickle.loads(py3_dumps({b"data": RunsShell(tmp_path / "a")}))
    pickle.loads(py3_dumps({b"data": CreatesFile(tmp_path / "b")})).get(b"data").close()
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()


def test_malicious_batches_do_not_run_and_become_unsafe_pickle_failures(tmp_path):
    files, dicts = cifar10_batches()
    shell, created = tmp_path / "shell-ran", tmp_path / "file-created"
    files["data_batch_2"] = py3_dumps({b"labels": [1, 2], b"data": RunsShell(shell)})
    files["data_batch_4"] = py2_dumps({b"labels": [1, 2], b"data": CreatesFile(created)})
    path = write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    ds = import_(tmp_path, CifarSource(path))
    assert not shell.exists() and not created.exists()
    assert ds.failures().select(["source", "reason", "detail"]).to_pylist() == [
        {
            "source": f"{path}#data_batch_2",
            "reason": "unsafe_pickle",
            "detail": f"global '{os.system.__module__}.system' is not allowed",
        },
        {
            "source": f"{path}#data_batch_4",
            "reason": "unsafe_pickle",
            "detail": f"global '{open.__module__}.open' is not allowed",
        },
    ]
    # the other batches still import
    rows = ds.index().to_pylist()
    assert [r["source"] for r in rows] == [
        w[0] for w in expected_cifar10(path, dicts, skip=("data_batch_2", "data_batch_4"))
    ]
    assert len(rows) == 9
    assert ds.stats()["failure_reasons"] == {"unsafe_pickle": 2}


def test_malicious_meta_keeps_the_labels_without_names(tmp_path):
    files, _ = cifar10_batches()
    marker = tmp_path / "meta-ran"
    files["batches.meta"] = py3_dumps({b"label_names": RunsShell(marker)})
    path = write_dir(tmp_path, "cifar-10-batches-py", files)
    ds = import_(tmp_path, CifarSource(path))
    assert not marker.exists()
    rows = ds.index().to_pylist()
    assert len(rows) == 13 and {r["label_name"] for r in rows} == {None}
    assert rows[1]["label"] == 1
    assert ds.failures().select(["source", "reason"]).to_pylist() == [
        {"source": f"{path}#batches.meta", "reason": "unsafe_pickle"}
    ]


def _global_call(module: str, name: str, arg: bytes = b"") -> bytes:
    """A protocol-2 pickle that calls MODULE.NAME(arg) (or with no argument)."""
    args = (b"X" + struct.pack("<I", len(arg)) + arg + b"\x85") if arg else b")"
    return b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + args + b"R."


@pytest.mark.parametrize(
    "module,name",
    [
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("__builtin__", "eval"),
        ("os", "system"),
        ("posix", "system"),
        ("subprocess", "Popen"),
        ("numpy", "load"),
        ("numpy.testing", "_private"),
        ("copyreg", "_reconstructor"),
    ],
)
def test_restricted_load_refuses_every_global_outside_the_allow_list(module, name):
    with pytest.raises(UnsafePickle, match=f"^global '{module}.{name}' is not allowed$"):
        restricted_load(io.BytesIO(_global_call(module, name, b"id")))


def test_codecs_encode_is_allowed_only_for_latin1():
    payload = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickle, match="only for latin1"):
        restricted_load(io.BytesIO(payload))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_load_reads_numpy_arrays_scalars_and_containers(protocol):
    obj = {
        b"data": np.arange(6, dtype=np.uint8).reshape(2, 3),
        b"labels": np.array([3, 4], np.int64),
        b"scalar": np.float32(1.5),
        b"set": {1, 2},
        b"names": [b"a", "b"],
        b"t": (1, None),
    }
    back = restricted_load(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
    assert np.array_equal(back[b"data"], obj[b"data"]) and back[b"data"].dtype == np.uint8
    assert back[b"labels"].tolist() == [3, 4] and back[b"scalar"] == np.float32(1.5)
    assert back[b"set"] == {1, 2} and back[b"names"] == [b"a", "b"] and back[b"t"] == (1, None)


# ---- damaged batches ---------------------------------------------------------------------------


def test_malformed_missing_and_out_of_range_batches_are_failures(tmp_path):
    files, dicts = cifar10_batches()
    files["data_batch_1"] = py3_dumps({b"labels": [0, 1], b"data": np.zeros((2, 3000), np.uint8)})
    files["data_batch_2"] = py3_dumps({b"labels": [0, 1, 2], b"data": pixel_rows(1, 2)})
    files["data_batch_3"] = files["data_batch_3"][:100]  # cut inside the pickle
    files["data_batch_4"] = py3_dumps([1, 2])
    dicts["data_batch_5"][b"labels"] = [3, 10]
    files["data_batch_5"] = py3_dumps(dicts["data_batch_5"])
    del files["test_batch"]
    path = write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", files)
    ds = import_(tmp_path, CifarSource(path))
    fails = ds.failures().select(["source", "reason", "detail"]).to_pylist()
    assert [(f["source"], f["reason"]) for f in fails] == [
        (f"{path}#data_batch_1", "bad_record"),
        (f"{path}#data_batch_2", "bad_record"),
        (f"{path}#data_batch_3", "bad_record"),
        (f"{path}#data_batch_4", "bad_record"),
        (f"{path}#data_batch_5/1", "bad_record"),
        (f"{path}#test_batch", "missing_file"),
    ]
    assert fails[0]["detail"] == "data_batch_1: data is uint8 (2, 3000), expected uint8 (N, 3072)"
    assert fails[1]["detail"] == "data_batch_2: labels has 3 values, expected 2 integers"
    assert fails[2]["detail"].startswith("cannot unpickle data_batch_3: ")
    assert fails[3]["detail"] == "data_batch_4 holds a list, not a dict"
    assert fails[4]["detail"] == "label 10 is outside 0..9"
    assert fails[5]["detail"] == f"test_batch is missing from {path}"
    rows = ds.index().to_pylist()
    assert [(r["source"], r["label"], r["label_name"]) for r in rows] == [(f"{path}#data_batch_5/0", 3, "cat")]


# ---- validate ----------------------------------------------------------------------------------


def test_validate_names_the_path_and_the_expected_files(tmp_path):
    expects = (
        "expects the CIFAR-10 python version: cifar-10-python.tar.gz or the extracted cifar-10-batches-py/ directory"
    )
    with pytest.raises(UsageError) as e:
        CifarSource(str(tmp_path / "nope")).validate()
    assert str(e.value) == f"cifar10 {tmp_path / 'nope'}: does not exist; {expects}"
    with pytest.raises(UsageError) as e:
        CifarSource(str(tmp_path)).validate()
    assert str(e.value) == f"cifar10 {tmp_path}: no CIFAR-10 batch found; {expects}"
    (tmp_path / "x.tar.gz").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(UsageError, match=r"x\.tar\.gz: not a tar archive; expects the CIFAR-10"):
        CifarSource(str(tmp_path / "x.tar.gz")).validate()
    c100 = write_tar(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", cifar100_batches()[0])
    with pytest.raises(UsageError, match=r"it looks like CIFAR-100: use `pixelforge import cifar100`$"):
        CifarSource(c100).validate()
    with pytest.raises(UsageError, match=r"^variant 'cifar1000': choose one of cifar10, cifar100$"):
        CifarSource(c100, variant="cifar1000").validate()
    CifarSource(c100, variant="cifar100").validate()
    c10 = write_dir(tmp_path / "c10", "cifar-10-batches-py", cifar10_batches()[0])
    with pytest.raises(
        UsageError,
        match=r"no CIFAR-100 batch found; expects the CIFAR-100 python version: "
        r"cifar-100-python.tar.gz or the extracted cifar-100-python/ directory; "
        r"it looks like CIFAR-10: use `pixelforge import cifar10`$",
    ):
        CifarSource(c10, variant="cifar100").validate()
