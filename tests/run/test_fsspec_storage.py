"""URL lists and --out as fsspec URLs: memory:// (one process) and file:// (any executor, Ray included)."""

from __future__ import annotations

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelforge.collect.urls import CollectConfig, collect_urls
from pixelforge.errors import UsageError
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import Dataset
from tests.run.conftest import content


def _config(**executor) -> CollectConfig:
    return CollectConfig(
        image_size=32,
        samples_per_shard=5,
        allow_private_networks=True,
        timeout=5.0,
        retries=1,
        executor=ExecutorSettings(**executor),
    )


def _rows(path: str) -> list[dict]:
    ds = Dataset.open(path)
    return sorted(ds.index().drop_columns(["fetched_at"]).to_pylist(), key=lambda r: r["key"])


@pytest.fixture()
def memory_list(server, tmp_path):
    """A 12-row parquet URL list in memory:// (also written locally, for the reference run)."""
    table = pa.Table.from_pylist([{"url": server.url(f"/img/{i}.jpg"), "caption": f"c{i}"} for i in range(12)])
    mem = fsspec.filesystem("memory")
    name = f"/{tmp_path.name}"
    with mem.open(f"{name}/list.parquet", "wb") as f:
        pq.write_table(table, f)
    pq.write_table(table, tmp_path / "list.parquet")
    yield f"memory://{name}/list.parquet", str(tmp_path / "list.parquet"), name
    mem.rm(name, recursive=True)


def test_memory_list_and_memory_out_match_a_local_run(memory_list, tmp_path):
    mem_list, local_list, name = memory_list
    collect_urls(local_list, str(tmp_path / "local"), _config(processes=1))
    res = collect_urls(mem_list, f"memory://{name}/out", _config(processes=1))
    assert (res.samples, res.failures) == (12, 0)
    mem = fsspec.filesystem("memory")
    assert sorted(p.rsplit("/", 1)[-1] for p in mem.find(f"{name}/out")) == [
        "000000.tar",
        "000001.tar",
        "000002.tar",
        "dataset.json",
        "failures.parquet",
        "index.parquet",
        "stats.json",
    ]
    ds = Dataset.open(f"memory://{name}/out")
    assert ds.shards() == Dataset.open(str(tmp_path / "local")).shards()
    assert _rows(f"memory://{name}/out") == _rows(str(tmp_path / "local"))
    assert [s.key for s in ds.iter_samples()] == [f"{i:09d}" for i in range(12)]


@pytest.mark.parametrize("kw", [dict(processes=2), dict(processes=1, backend="ray")])
def test_memory_out_with_several_processes_is_refused_before_any_work(memory_list, kw):
    mem_list, _, name = memory_list
    with pytest.raises(UsageError) as err:
        collect_urls(mem_list, f"memory://{name}/out", _config(**kw))
    assert str(err.value) == (
        f"--out memory://{name}/out: an in-memory file system is private to one process; "
        "use --processes 1 with --backend local, or a shared store (a local path, file://, "
        "s3://, gs://)"
    )
    assert not fsspec.filesystem("memory").exists(f"{name}/out")


@pytest.mark.ray
def test_file_url_out_on_ray_matches_a_local_path_run(ray_cluster, memory_list, tmp_path):
    mem_list, local_list, _ = memory_list
    collect_urls(local_list, str(tmp_path / "local"), _config(processes=2))
    collect_urls(mem_list, f"file://{tmp_path}/ray", _config(processes=2, backend="ray"))
    assert content(str(tmp_path / "ray")) == content(str(tmp_path / "local"))


def test_curate_split_prepare_refuse_memory_out_with_several_processes(tmp_path):
    """Pool workers would write their shards into their own memory:// and the output would come out empty."""
    from pixelforge.cli import main

    data = str(tmp_path / "shapes")
    assert main(["import", "shapes", "--n", "8", "--size", "16", "--out", data]) == 0
    for stage in (_curate, _split, _prepare):
        with pytest.raises(UsageError, match="in-memory file system is private to one process"):
            stage(data, "memory://refused/out")
        assert not fsspec.filesystem("memory").exists("/refused/out")


def _curate(data, out):
    from pixelforge.curate.stage import CurateConfig, curate

    curate(data, out, CurateConfig(watermark=False, executor=ExecutorSettings(processes=2)))


def _split(data, out):
    from pixelforge.curate.split import SplitConfig, split_dataset

    split_dataset(data, out, SplitConfig(executor=ExecutorSettings(processes=2)))


def _prepare(data, out):
    from pixelforge.prepare.stage import PrepareConfig, prepare

    prepare(data, out, PrepareConfig(size=8, executor=ExecutorSettings(processes=2)))
