"""A local Ray cluster (2 CPUs) shared by the whole session, and a helper that reads a dataset's full content."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from pixelforge.store import Dataset


@pytest.fixture(scope="session")
def ray_cluster():
    """ray.init(num_cpus=2) once per session (Ray starts in ~10 s here); shut down at the end."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[dev,ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


VOLATILE = ("fetched_at",)  # differs between two downloads of the same list


def content(path: str) -> dict:
    """Everything a dataset holds that two equal runs must reproduce exactly.

    Shard file names, the index and failures sorted by key/row, and every shard's members
    (name and bytes; the sample JSON without its download time). Tar headers carry write times,
    so members are compared, not tar bytes.
    """
    ds = Dataset.open(path)
    index = sorted(
        ds.index().drop_columns([c for c in VOLATILE if c in ds.schema.names]).to_pylist(), key=lambda r: r["key"]
    )
    failures = sorted(ds.failures().to_pylist(), key=lambda r: (r["row"] is None, r["row"] or 0, str(r["source"])))
    members = {}
    for shard in ds.shards():
        with tarfile.open(ds.file(f"shards/{shard}")) as tar:
            for info in tar:
                data = tar.extractfile(info).read()
                if info.name.endswith(".json"):
                    doc = json.loads(data)
                    for c in VOLATILE:
                        doc.pop(c, None)
                    data = doc
                members[f"{shard}/{info.name}"] = data
    files = sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)
    return {"shards": ds.shards(), "index": index, "failures": failures, "members": members, "files": files}


@pytest.fixture()
def server():
    """The collect tests' image server on 127.0.0.1 (tests/collect/imageserver.py)."""
    from tests.collect.imageserver import ImageServer

    with ImageServer() as srv:
        yield srv
