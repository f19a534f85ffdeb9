"""Tests for what stages ask a dataset for instead of reaching into its files: shards, bytes, offsets, checks."""

import hashlib

import pytest

from pixelforge.errors import DatasetError
from pixelforge.store import (
    DatasetBuilder,
    Lineage,
    ShardWriter,
    default_name,
    is_dataset,
    is_partial,
    split_member,
    work_path,
)
from pixelforge.store.schema import index_schema


def _row(i, **kw):
    return {"key": f"{i:09d}", "source_kind": "folder", "source": f"/src/{i}.png", "width": 4, "height": 3, **kw}


def _build(path, n=5, per_shard=3):
    b = DatasetBuilder(str(path), samples_per_shard=per_shard)
    for i in range(n):
        b.add(
            _row(i, caption=f"c{i}" if i % 2 else None),
            bytes([i]) * (i + 1),
            "png",
            mask=b"mask%d" % i if i == 2 else None,
        )
    return b.finish(name="t", lineage=Lineage(command="test"))


def test_read_shard_yields_each_sample_s_members_in_order(tmp_path):
    ds = _build(tmp_path / "d")
    first = list(ds.read_shard("000000.tar"))
    assert [k for k, _ in first] == ["000000000", "000000001", "000000002"]
    assert sorted(first[1][1]) == ["json", "png", "txt"]
    assert first[2][1]["mask.png"] == b"mask2" and first[2][1]["png"] == b"\x02" * 3
    some = list(ds.read_shard("000001.tar", keys={"000000004"}))
    assert [(k, f["png"]) for k, f in some] == [("000000004", b"\x04" * 5)]


def test_image_bytes_by_row(tmp_path):
    ds = _build(tmp_path / "d")
    rows = list(ds.iter_rows())
    assert [ds.image_bytes(r) for r in rows] == [bytes([i]) * (i + 1) for i in range(5)]
    with pytest.raises(DatasetError, match="not in shard"):
        ds.image_bytes(dict(rows[0], member="999999999.png"))


def test_member_offsets_and_read_member(tmp_path):
    ds = _build(tmp_path / "d")
    offsets = ds.member_offsets("000000.tar")
    assert set(offsets) >= {"000000000.png", "000000001.txt", "000000002.mask.png", "000000002.json"}
    assert ds.read_member("000000.tar", *offsets["000000001.png"]) == b"\x01" * 2
    assert ds.read_member("000000.tar", *offsets["000000002.mask.png"]) == b"mask2"
    assert ds.read_member("000000.tar", *offsets["000000001.txt"]) == b"c1"


def test_index_digest_is_the_index_file_s_hash(tmp_path):
    ds = _build(tmp_path / "d")
    assert ds.index_digest() == hashlib.sha256((tmp_path / "d" / "index.parquet").read_bytes()).hexdigest()
    assert _build(tmp_path / "e", n=4).index_digest() != ds.index_digest()


def test_is_dataset_is_partial_and_work_path(tmp_path):
    assert not is_dataset(tmp_path / "none") and not is_partial(tmp_path / "none")
    (tmp_path / "folder").mkdir()
    assert not is_dataset(tmp_path / "folder") and not is_partial(tmp_path / "folder")
    w = ShardWriter(str(tmp_path / "p"), 0, index_schema())  # a run stopped before finalize
    w.abort()
    assert is_partial(tmp_path / "p") and not is_dataset(tmp_path / "p")
    ds = _build(tmp_path / "d")
    assert is_dataset(ds.path) and not is_partial(ds.path)
    path = work_path(str(tmp_path / "q"), "scores.arrow")
    assert path == str(tmp_path / "q" / ".work" / "scores.arrow") and is_partial(tmp_path / "q")


def test_work_path_inside_a_file_system(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    path = work_path("/pf-work/out", "x.json", fs=fs)
    assert path == "/pf-work/out/.work/x.json" and fs.isdir("/pf-work/out/.work")


def test_default_name_and_split_member():
    assert default_name("/data/cats/") == "cats" and default_name("s3://b/dogs") == "dogs"
    assert default_name("/") == "dataset"
    assert split_member("000001.jpg") == ("000001", "jpg")
    assert split_member("000001.mask.png") == ("000001", "mask.png")
