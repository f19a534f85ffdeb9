"""--backend ray: the same datasets as --backend local, retried shards written once, clear errors without Ray."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.run import run_tasks
from pixelforge.run.settings import ExecutorSettings
from tests.collect.imageserver import SmallServer
from tests.run.conftest import content
from tests.run.dying import DOOMED_SHARD, collect_shard_dying_once, fail_loudly, square

URLS = 36  # 4 shards of 10 rows (the last of 6) at --samples-per-shard 10


def url_list(tmp_path: Path, server) -> str:
    """36 rows: images, a 404, an invalid URL and a repeated URL, with captions and a kept column."""
    rows = []
    for i in range(URLS):
        url = server.url(f"/img/{i}.jpg")
        if i == 7:
            url = server.url("/status/404")
        elif i == 13:
            url = "not a url"
        elif i == 21:
            url = server.url("/img/3.jpg")  # duplicate of row 3
        rows.append({"url": url, "caption": f"picture {i}", "src": f"s{i}"})
    path = tmp_path / "list.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def collect_args(lst: str, out: Path, *extra: str) -> list[str]:
    return [
        "collect",
        "urls",
        lst,
        "--out",
        str(out),
        "--image-size",
        "32",
        "--samples-per-shard",
        "10",
        "--processes",
        "2",
        "--timeout",
        "5",
        "--retries",
        "1",
        "--allow-private-networks",
        "--keep-cols",
        "src",
        "--json",
        *extra,
    ]


@pytest.mark.ray
def test_collect_urls_gives_the_same_dataset_on_ray(ray_cluster, server, tmp_path):
    lst = url_list(tmp_path, server)
    assert main(collect_args(lst, tmp_path / "local", "--backend", "local")) == 0
    assert main(collect_args(lst, tmp_path / "ray", "--backend", "ray")) == 0
    local, ray = content(str(tmp_path / "local")), content(str(tmp_path / "ray"))
    assert local["shards"] == ["000000.tar", "000001.tar", "000002.tar", "000003.tar"]
    assert len(local["index"]) == URLS - 3
    assert [f["reason"] for f in local["failures"]] == ["http_4xx", "invalid_url", "duplicate_url"]
    assert ray == local


@pytest.mark.ray
def test_a_small_server_gives_the_same_dataset_locally_and_on_ray(ray_cluster, tmp_path):
    """300 URLs on one host with a listen backlog of 5, default options: every image, on both backends.

    Before the per-host window (#23) the local pool stored 184 of them and Ray 291.
    """
    with SmallServer() as small:
        lst = tmp_path / "urls.txt"
        lst.write_text("".join(small.url(f"/i/{i}.jpg") + "\n" for i in range(300)))
        for backend in ("local", "ray"):
            args = ["collect", "urls", str(lst), "--out", str(tmp_path / backend), "--backend", backend]
            assert main([*args, "--allow-private-networks"]) == 0
    local, ray = content(str(tmp_path / "local")), content(str(tmp_path / "ray"))
    assert len(local["index"]) == 300 and local["failures"] == []
    assert ray == local


@pytest.mark.ray
def test_curate_and_prepare_give_the_same_datasets_on_ray(ray_cluster, tmp_path):
    """split writes its shards with curate's write_shard, so curate covers it."""
    from tests.curate.conftest import build

    inp = build(tmp_path / "in")  # 12 samples in 3 shards: duplicates, an opt-out, two undecodable
    for backend in ("local", "ray"):  # local in this process (fastest here); Ray cuts tasks for 2 CPUs
        common = ["--backend", backend, "--processes", "1" if backend == "local" else "2", "--json"]
        assert (
            main(
                [
                    "curate",
                    inp,
                    "--out",
                    str(tmp_path / f"curated-{backend}"),
                    "--drop-duplicates",
                    "--no-watermark",
                    *common,
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "prepare",
                    str(tmp_path / f"curated-{backend}"),
                    "--out",
                    str(tmp_path / f"prep-{backend}"),
                    "--size",
                    "24",
                    "--augment",
                    "hflip,rotate=10",
                    "--copies",
                    "1",
                    *common,
                ]
            )
            == 0
        )
    for stage in ("curated", "prep"):
        local, ray = content(str(tmp_path / f"{stage}-local")), content(str(tmp_path / f"{stage}-ray"))
        assert ray == local, stage
    curated = content(str(tmp_path / "curated-local"))
    assert len(curated["index"]) == 7  # 12 - 2 undecodable - 1 opted out - 2 copies of k00
    assert curated["shards"] == ["000000.tar", "000001.tar", "000002.tar"]
    report = [json.loads((tmp_path / f"curated-{b}" / "curation.json").read_text()) for b in ("local", "ray")]
    assert report[0] == report[1]
    prepared = content(str(tmp_path / "prep-local"))
    assert sum(r["aug_of"] is not None for r in prepared["index"]) == 7  # one copy of each unsplit sample


@pytest.mark.ray
def test_curate_folder_gives_the_same_dataset_on_ray(ray_cluster, tmp_path):
    from tests.curate.conftest import photo

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        photo(i, 32).save(folder / f"{i}.png")
    photo(0, 32).save(folder / "copy.png")
    (folder / "bad.jpg").write_bytes(b"not an image")
    for backend in ("local", "ray"):
        assert (
            main(
                [
                    "curate",
                    str(folder),
                    "--out",
                    str(tmp_path / backend),
                    "--only",
                    "duplicates",
                    "--backend",
                    backend,
                    "--processes",
                    "1" if backend == "local" else "2",
                    "--json",
                ]
            )
            == 0
        )
    local, ray = content(str(tmp_path / "local")), content(str(tmp_path / "ray"))
    assert ray == local
    assert len(local["index"]) == 7 and [f["reason"] for f in local["failures"]] == ["not_image"]


@pytest.mark.ray
def test_a_killed_worker_is_retried_and_its_shard_written_once(ray_cluster, server, tmp_path, monkeypatch):
    from pixelforge.collect import urls
    from pixelforge.collect.urls import CollectConfig, collect_urls

    lst = url_list(tmp_path, server)
    cfg = dict(
        image_size=32, samples_per_shard=10, timeout=5.0, retries=1, allow_private_networks=True, keep_cols=("src",)
    )
    collect_urls(lst, str(tmp_path / "local"), CollectConfig(**cfg, executor=ExecutorSettings(processes=2)))
    work = tmp_path / "dying"
    work.mkdir()
    monkeypatch.setattr(urls, "collect_shard", collect_shard_dying_once)
    ray = ExecutorSettings(processes=2, backend="ray")
    result = collect_urls(lst, str(work / "ray"), CollectConfig(**cfg, executor=ray))

    attempts = sorted(p.name for p in (work / "attempts").iterdir())
    per_shard = {s: [a for a in attempts if a.startswith(f"{s}-")] for s in range(4)}
    assert {s: len(a) for s, a in per_shard.items()} == {0: 1, 1: 2, 2: 1, 3: 1}
    assert len(set(per_shard[DOOMED_SHARD])) == 2  # the retry ran in another process
    assert result.samples == URLS - 3 and result.failures == 3
    # the dead attempt's temporary tar is gone; every shard, row and failure is there exactly once
    assert content(str(work / "ray")) == content(str(tmp_path / "local"))


@pytest.mark.ray
def test_a_python_exception_in_a_task_is_raised_and_not_retried(ray_cluster, tmp_path):
    with pytest.raises(ValueError, match="a bug in the shard function"):
        list(run_tasks(fail_loudly, [str(tmp_path)], backend="ray"))
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.ray
def test_ray_draws_tasks_lazily_with_a_bounded_number_in_flight(ray_cluster):
    drawn, results = [], []

    def tasks():
        for i in range(12):
            drawn.append(i)
            yield i

    for r in run_tasks(square, tasks(), backend="ray", max_in_flight=3):
        assert len(drawn) <= len(results) + 3
        results.append(r)
    assert sorted(results) == [i * i for i in range(12)]


def test_missing_ray_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    lst = tmp_path / "list.txt"
    lst.write_text("http://127.0.0.1:9/a.jpg\n")
    code = main(collect_args(str(lst), tmp_path / "out", "--backend", "ray"))
    assert code == 2
    assert capsys.readouterr().err == "Error: --backend ray needs Ray: pip install 'pixelforge[ray]'\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ray-address", "auto"], "Error: --ray-address auto needs --backend ray\n"),
        (["--ray-task-cpus", "2"], "Error: --ray-task-cpus 2.0 needs --backend ray\n"),
        (["--backend", "dask"], "Error: --backend 'dask': choose one of local, ray\n"),
        (
            ["--backend", "ray", "--ray-address", "head:10001"],
            "Error: --ray-address 'head:10001': use auto (the cluster this node belongs to) or ray://HEAD_HOST:10001 "
            "(Ray Client)\n",
        ),
        (["--backend", "ray", "--ray-task-cpus", "0"], "Error: --ray-task-cpus 0.0: must be more than 0\n"),
    ],
)
def test_bad_executor_options_stop_before_any_work(tmp_path, capsys, args, message):
    lst = tmp_path / "list.txt"
    lst.write_text("http://127.0.0.1:9/a.jpg\n")
    assert main(collect_args(str(lst), tmp_path / "out", *args)) == 2
    assert capsys.readouterr().err == message
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_embed_gives_the_same_vectors_on_ray(ray_cluster, tmp_path):
    import numpy as np

    from pixelforge.store import Dataset

    shapes = str(tmp_path / "shapes")
    assert main(["import", "shapes", "--n", "30", "--size", "16", "--samples-per-shard", "10", "--out", shapes]) == 0
    for backend in ("local", "ray"):
        args = ["embed", shapes, "--out", str(tmp_path / backend), "--backend", backend, "--processes", "2"]
        assert main([*args, "--json"]) == 0
    local, ray = (Dataset.open(str(tmp_path / b)).embeddings() for b in ("local", "ray"))
    assert ray.keys == local.keys and len(local.keys) == 30
    assert np.array_equal(np.asarray(ray.vectors), np.asarray(local.vectors))
    assert content(str(tmp_path / "ray")) == content(str(tmp_path / "local"))
