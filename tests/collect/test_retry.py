"""`collect retry`: the earlier samples carried over, the asked-for failures fetched again, lineage and resume."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.collect import retry as retry_module
from pixelforge.collect.retry import collect_retry
from pixelforge.collect.urls import collect_urls
from pixelforge.errors import UsageError
from pixelforge.store import Dataset
from tests.collect.test_urls import _cfg
from tests.run.conftest import content


def _collect(tmp_path, server):
    """Rows 0-5 images, 6-8 answer 500 until the server recovers, 9 a 404, 10 not a URL."""
    urls = [server.url(f"/img/{i}.jpg") for i in range(6)]
    urls += [server.url(f"/recover/{i}.jpg") for i in range(3)]
    urls += [server.url("/status/404"), "not a url"]
    lst = tmp_path / "list.parquet"
    rows = [{"url": u, "caption": f"caption {i}", "src": i} for i, u in enumerate(urls)]
    pq.write_table(pa.Table.from_pylist(rows), lst)
    first = str(tmp_path / "first")
    collect_urls(str(lst), first, _cfg(samples_per_shard=4, keep_cols=("src",)))
    return first, lst


def _reasons(ds):
    return sorted((f["row"], f["reason"]) for f in ds.failures().to_pylist())


def test_retry_fetches_the_transient_failures_again(tmp_path, server, capsys):
    first, _ = _collect(tmp_path, server)
    before = content(first)
    ds = Dataset.open(first)
    assert ds.num_samples == 6
    assert _reasons(ds) == [(6, "http_5xx"), (7, "http_5xx"), (8, "http_5xx"), (9, "http_4xx"), (10, "invalid_url")]
    server.recovered = True
    out = str(tmp_path / "second")
    assert main(["collect", "retry", first, "--out", out, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["retried"], result["recovered"], result["samples"], result["failures"]) == (3, 3, 9, 2)
    new = Dataset.open(out)
    assert _reasons(new) == [(9, "http_4xx"), (10, "invalid_url")]
    rows = {r["key"]: r for r in new.index().to_pylist()}
    assert sorted(rows) == [f"{i:09d}" for i in range(9)]
    assert rows["000000007"]["caption"] == "caption 7" and json.loads(rows["000000007"]["meta"]) == {"src": 7}
    assert new.image_bytes(rows["000000001"]) == ds.image_bytes(ds.index().to_pylist()[1])  # carried unchanged
    lineage = new.info["lineage"]
    assert lineage["command"] == "collect retry" and lineage["inputs"][0]["path"] == first
    assert lineage["config"]["retry_of"] == first and lineage["config"]["reasons"][0] == "timeout"
    assert json.loads((tmp_path / "second" / "stats.json").read_text())["retry"]["rows"] == 3
    assert content(first) == before  # the earlier dataset is not touched
    # a retry of the retry asks only for what is still failing, here the 404
    again = collect_retry(out, str(tmp_path / "third"), reasons=("http_4xx",))
    assert (again.retried, again.recovered, again.samples) == (1, 0, 9)
    assert _reasons(Dataset.open(again.out)) == [(9, "http_4xx"), (10, "invalid_url")]


def test_retry_keeps_failures_of_other_reasons(tmp_path, server):
    first, _ = _collect(tmp_path, server)
    result = collect_retry(first, str(tmp_path / "second"), reasons=("http_4xx",))
    assert (result.retried, result.recovered, result.samples) == (1, 0, 6)
    assert _reasons(Dataset.open(result.out)) == _reasons(Dataset.open(first))
    assert Dataset.open(result.out).shards() == Dataset.open(first).shards()  # no new shard for no new sample


def test_a_stopped_retry_resumes(tmp_path, server, monkeypatch):
    first, _ = _collect(tmp_path, server)
    server.recovered = True
    out = str(tmp_path / "second")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stopped after the earlier shards were carried over

    with monkeypatch.context() as m:
        m.setattr(retry_module, "download_rows", killed)
        with pytest.raises(KeyboardInterrupt):
            collect_retry(first, out)
    with pytest.raises(UsageError, match="pass --resume to continue it"):
        collect_retry(first, out)
    resumed = collect_retry(first, out, resume=True)
    clean = collect_retry(first, str(tmp_path / "clean"))
    assert (resumed.samples, resumed.recovered) == (clean.samples, clean.recovered) == (9, 3)
    assert content(out) == content(str(tmp_path / "clean"))


def test_retry_refuses_what_it_cannot_redo(tmp_path, server, capsys):
    first, lst = _collect(tmp_path, server)
    out = str(tmp_path / "o")
    assert main(["collect", "retry", first, "--out", out, "--reasons", "timeout,gone"]) == 2
    assert "--reasons timeout,gone: choose failure reasons such as" in capsys.readouterr().err
    assert main(["collect", "retry", first, "--out", first]) == 2
    assert "is the input dataset" in capsys.readouterr().err
    moved = tmp_path / "moved.parquet"
    lst.rename(moved)
    assert main(["collect", "retry", first, "--out", out]) == 2
    assert "no such file" in capsys.readouterr().err
    server.recovered = True
    assert collect_retry(first, out, list_path=str(moved)).recovered == 3
    changed = tmp_path / "changed.parquet"
    pq.write_table(pa.Table.from_pylist([{"url": "http://example.invalid/x.jpg"}] * 11), changed)
    with pytest.raises(UsageError, match="the list changed since the collection"):
        collect_retry(first, str(tmp_path / "o2"), list_path=str(changed))
