"""Tests for the dataset store: shard writing, finalising, opening, iterating, querying."""

import io
import json
import tarfile

import pyarrow as pa
import pytest

from pixelforge.errors import DatasetError, UsageError
from pixelforge.store import Dataset, DatasetBuilder, Lineage, ShardWriter, completed_shards, finalize, query
from pixelforge.store.dataset import prepare_output, remove_partial
from pixelforge.store.schema import index_schema


def _row(i, **kw):
    return {"key": f"{i:09d}", "source_kind": "folder", "source": f"/src/{i}.png", "width": 4, "height": 3, **kw}


def _build(path, n, per_shard=3, fail_every=0, extra=()):
    b = DatasetBuilder(str(path), samples_per_shard=per_shard, extra_fields=extra)
    for i in range(n):
        if fail_every and i % fail_every == 0:
            b.fail(row=i, source=f"/src/{i}.png", reason="decode_error", detail="truncated")
            continue
        b.add(_row(i, caption=f"caption {i}" if i % 2 else None), f"img{i}".encode(), "png")
    return b.finish(name="t", lineage=Lineage(command="test", config={"a": 1}))


def test_build_roundtrip_layout_and_rows(tmp_path):
    ds = _build(tmp_path / "d", 7, per_shard=3)
    assert ds.num_samples == 7
    assert completed_shards(ds.path) == ["000000.tar", "000001.tar", "000002.tar"]
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "dataset.json",
        "failures.parquet",
        "index.parquet",
        "shards",
        "stats.json",
    ]
    info = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert info["schema_version"] == 1 and info["num_samples"] == 7 and info["num_shards"] == 3
    assert info["lineage"] == {"command": "test", "config": {"a": 1}, "inputs": []}
    samples = list(ds.iter_samples())
    assert [s.key for s in samples] == [f"{i:09d}" for i in range(7)]
    assert [s.image for s in samples] == [f"img{i}".encode() for i in range(7)]
    assert samples[4].row["shard"] == "000001.tar" and samples[4].row["member"] == "000000004.png"
    assert samples[1].row["caption"] == "caption 1" and samples[2].row["caption"] is None


def test_shard_is_plain_webdataset_tar(tmp_path):
    ds = _build(tmp_path / "d", 2, per_shard=10)
    with tarfile.open(tmp_path / "d" / "shards" / "000000.tar") as tar:
        names = tar.getnames()
        doc = json.loads(tar.extractfile("000000001.json").read())
        assert tar.extractfile("000000001.txt").read() == b"caption 1"
    assert names == ["000000000.png", "000000000.json", "000000001.png", "000000001.txt", "000000001.json"]
    assert doc["key"] == "000000001" and doc["caption"] == "caption 1" and doc["width"] == 4
    assert ds.index().num_rows == 2


def test_tar_layout_matches_tarfile_s_own(tmp_path):
    # ShardWriter writes the ustar blocks itself: byte for byte what TarFile.addfile/close write
    ShardWriter(str(tmp_path / "d"), 0, index_schema()).commit()  # makes the directories
    with ShardWriter(str(tmp_path / "d"), 1, index_schema()) as w:
        w._mtime = 1_700_000_000
        w.write(_row(0, caption="c"), b"x" * 700, "png")
        w.write(_row(1), b"", "png")
    ours = (tmp_path / "d" / "shards" / "000001.tar").read_bytes()
    with tarfile.open(tmp_path / "ref.tar", "w", format=tarfile.USTAR_FORMAT) as ref:
        with tarfile.open(fileobj=io.BytesIO(ours)) as back:
            for info in back.getmembers():
                ref.addfile(info, back.extractfile(info))
    assert ours == (tmp_path / "ref.tar").read_bytes() and len(ours) % tarfile.RECORDSIZE == 0


def test_shard_writer_block_commits_or_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(str(tmp_path), 0, index_schema()) as w:
            w.write(_row(0), b"img", "png")
            raise RuntimeError("stopped")
    assert completed_shards(str(tmp_path)) == [] and not list((tmp_path / "shards").iterdir())


def test_failures_stats_and_empty_shard_removed(tmp_path):
    # per_shard=2 with every sample of the second shard failing would leave it empty
    b = DatasetBuilder(str(tmp_path / "d"), samples_per_shard=2)
    b.add(_row(0), b"a", "png")
    b.add(_row(1), b"b", "png")
    b.fail(row=2, source="/src/2.png", reason="too_small", detail="3x3")
    b.fail(row=3, source="/src/3.png", reason="decode_error")
    ds = b.finish(name="t", lineage=Lineage(command="test"))
    assert ds.shards() == ["000000.tar"]
    fails = ds.failures().to_pylist()
    assert [(f["row"], f["reason"]) for f in fails] == [(2, "too_small"), (3, "decode_error")]
    assert ds.stats()["failure_reasons"] == {"decode_error": 1, "too_small": 1}
    assert ds.info["num_failures"] == 2


def test_unknown_column_reason_and_key_rejected(tmp_path):
    w = ShardWriter(str(tmp_path), 0, index_schema())
    with pytest.raises(ValueError, match="not in the index schema"):
        w.write(_row(0, colour="red"), b"x", "png")
    with pytest.raises(ValueError, match="key"):
        w.write(_row(0, key="a.b"), b"x", "png")
    with pytest.raises(ValueError, match="FAILURE_REASONS"):
        w.fail(reason="made_up")
    with pytest.raises(ValueError, match="source_kind"):
        w.write(_row(1, source_kind="nope"), b"x", "png")
    w.abort()
    assert not list((tmp_path / "shards").iterdir())


def test_wrong_type_fails_on_commit(tmp_path):
    w = ShardWriter(str(tmp_path), 0, index_schema())
    w.write(_row(0, width="wide"), b"x", "png")
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        w.commit()


def test_extra_columns_typed_and_queryable(tmp_path):
    extra = (pa.field("colour", pa.string()),)
    b = DatasetBuilder(str(tmp_path / "d"), extra_fields=extra)
    b.add(_row(0, colour="red"), b"a", "png")
    b.add(_row(1, colour="blue"), b"b", "png")
    ds = b.finish(name="t", lineage=Lineage(command="test"))
    assert [f.name for f in ds.extra_fields] == ["colour"]
    t = query(ds, "SELECT key FROM samples WHERE colour = 'blue'")
    assert t.column("key").to_pylist() == ["000000001"]
    with pytest.raises(ValueError, match="shadows"):
        index_schema([pa.field("label", pa.string())])


def test_uncommitted_shard_is_invisible_and_cleaned(tmp_path):
    root = tmp_path / "d"
    prepare_output(str(root))
    done = ShardWriter(str(root), 0, index_schema())
    done.write(_row(0), b"a", "png")
    done.commit()
    half = ShardWriter(str(root), 1, index_schema())
    half.write(_row(1), b"b", "png")  # a killed process never reaches commit()
    assert completed_shards(str(root)) == ["000000.tar"]
    with pytest.raises(DatasetError, match="partly written"):
        Dataset.open(str(root))
    remove_partial(str(root))
    assert sorted(p.name for p in (root / "shards").iterdir()) == ["000000.tar"]
    ds = finalize(str(root), name="d", lineage=Lineage(command="test"), schema=index_schema())
    assert [s.key for s in ds.iter_samples()] == ["000000000"]


def test_prepare_output_refuses_existing(tmp_path):
    ds = _build(tmp_path / "d", 1)
    with pytest.raises(UsageError, match="already holds a finished dataset: choose another --out or pass --overwrite"):
        prepare_output(ds.path)
    with pytest.raises(UsageError, match="nothing to resume"):
        prepare_output(ds.path, resume=True)
    prepare_output(ds.path, overwrite=True)
    assert not (tmp_path / "d" / "dataset.json").exists()
    (tmp_path / "p" / ".work").mkdir(parents=True)
    with pytest.raises(UsageError, match="partly written dataset: pass --resume"):
        prepare_output(str(tmp_path / "p"))


def test_open_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a pixelforge dataset"):
        Dataset.open(str(tmp_path))
    ds = _build(tmp_path / "d", 1)
    meta = tmp_path / "d" / "dataset.json"
    info = json.loads(meta.read_text())
    meta.write_text(json.dumps(dict(info, schema_version=99)))
    with pytest.raises(DatasetError, match="schema version 99"):
        Dataset.open(ds.path)


def test_iter_samples_restricted_to_shards(tmp_path):
    ds = _build(tmp_path / "d", 7, per_shard=3)
    keys = [s.key for s in ds.iter_samples(shards=["000001.tar"])]
    assert keys == ["000000003", "000000004", "000000005"]


def test_lineage_records_input_dataset(tmp_path):
    parent = _build(tmp_path / "p", 2)
    b = DatasetBuilder(str(tmp_path / "c"))
    b.add(_row(0), b"a", "png")
    child = b.finish(name="c", lineage=Lineage(command="derive", inputs=[parent.path]))
    (entry,) = child.info["lineage"]["inputs"]
    assert entry["path"] == parent.path and entry["name"] == "t" and entry["num_samples"] == 2


def test_query_bad_sql_names_columns(tmp_path):
    ds = _build(tmp_path / "d", 2)
    with pytest.raises(UsageError, match="Table `samples` has columns: key, shard, member"):
        query(ds, "SELECT nope FROM samples")
    assert query(ds, "SELECT count(*) AS n FROM failures").column("n").to_pylist() == [0]


def test_memory_filesystem(tmp_path):
    ds = _build("memory://pf/d", 4, per_shard=2)
    assert [s.image for s in Dataset.open("memory://pf/d").iter_samples()] == [b"img0", b"img1", b"img2", b"img3"]
    assert query(ds, "SELECT count(*) AS n FROM samples").column("n").to_pylist() == [4]


def test_read_members_only_the_asked_keys(tmp_path):
    from pixelforge.store import fs as fsutil
    from pixelforge.store.shards import read_members

    b = DatasetBuilder(str(tmp_path / "d"))
    for i in range(4):
        b.add(_row(i, caption=f"c{i}"), bytes([i]) * 3, "png")
    ds = b.finish(name="t", lineage=Lineage(command="test"))
    path = fsutil.join(ds.root, "shards", "000000.tar")
    every = list(read_members(ds.fs, path))
    assert [k for k, _ in every] == ["000000000", "000000001", "000000002", "000000003"]
    assert sorted(every[0][1]) == ["json", "png", "txt"]
    some = list(read_members(ds.fs, path, keys={"000000001", "000000003"}))
    assert [(k, f["png"], f["txt"]) for k, f in some] == [
        ("000000001", b"\x01" * 3, b"c1"),
        ("000000003", b"\x03" * 3, b"c3"),
    ]
    assert some == [every[1], every[3]]
    assert list(read_members(ds.fs, path, keys=set())) == []
