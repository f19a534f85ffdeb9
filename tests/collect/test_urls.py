"""Tests for `collect urls` against a local server: every failure reason, opt-outs, the invariant."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.collect import netguard
from pixelforge.collect.urls import CollectConfig, collect_urls
from pixelforge.errors import UsageError
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import Dataset


def _cfg(**kw):
    base = dict(
        executor=ExecutorSettings(processes=kw.pop("processes", 1)),
        allow_private_networks=True,
        timeout=3.0,
        retries=1,
        image_size=64,
        samples_per_shard=50,
    )
    base.update(kw)
    return CollectConfig(**base)


def _write_list(path, urls, captions=None):
    rows = [
        {"url": u, "caption": (captions or {}).get(i, f"caption {i}"), "license": "cc-by-4.0" if i == 0 else None}
        for i, u in enumerate(urls)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _reasons(ds):
    return {r["row"]: r["reason"] for r in ds.failures().to_pylist()}


def test_every_failure_reason(tmp_path, server):
    from tests.collect.imageserver import gzip_bomb, jpeg

    jpeg(3, 1600, 1200)  # made once before the run, so a busy machine cannot turn too_large into timeout
    gzip_bomb()
    routes = {
        "ok": "/img/1.jpg",
        "png": "/png/2.png",
        "http_4xx": "/status/404",
        "http_5xx": "/status/500",
        "timeout": "/hang/1",
        "slow_body": "/slow/1.jpg",
        "connection_error": "/reset/1",
        "too_large": "/big/3.jpg",
        "too_many_pixels": "/bomb/1.png",
        "too_small": "/tiny/1.jpg",
        "not_image": "/html/1.jpg",
        "decode_error": "/truncated/5.jpg",
        "opt_out_robots": "/private/1.jpg",
        "opt_out_robots_ours": "/robots-only/1.jpg",
        "opt_out_header": "/noai/1.jpg",
        "tdm": "/tdm/1.jpg",
        "ours_scoped": "/noimageai-ours/1.jpg",
        "other_scoped_ok": "/noindex-scoped-other/1.jpg",
        "redirect_ok": "/redirect/3/x.jpg",
        "redirect_limit": "/redirect/9/x.jpg",
        "loop": "/loop/1",
        "endless": "/endless/1",
        "gzip_bomb": "/gzip-bomb/1",
        "flaky_ok": "/flaky/4.jpg",
    }
    urls = [server.url(p) for p in routes.values()]
    urls += [server.url("/img/1.jpg"), "not a url", "ftp://example.org/x.jpg", ""]
    names = list(routes) + ["duplicate", "invalid", "invalid_scheme", "empty"]
    lst = _write_list(tmp_path / "list.parquet", urls)
    res = collect_urls(lst, str(tmp_path / "out"), _cfg(min_side=32, max_bytes=200_000, timeout=2.0))
    ds = Dataset.open(res.out)
    got = {names[row]: reason for row, reason in _reasons(ds).items()}
    assert got == {
        "http_4xx": "http_4xx",
        "http_5xx": "http_5xx",
        "timeout": "timeout",
        "slow_body": "timeout",
        "connection_error": "connection_error",
        "too_large": "too_large",
        "too_many_pixels": "too_many_pixels",
        "too_small": "too_small",
        "not_image": "not_image",
        "decode_error": "decode_error",
        "opt_out_robots": "opt_out_robots",
        "opt_out_robots_ours": "opt_out_robots",
        "opt_out_header": "opt_out_header",
        "tdm": "opt_out_header",
        "ours_scoped": "opt_out_header",
        "redirect_limit": "redirect_limit",
        "loop": "redirect_limit",
        "endless": "too_large",
        "gzip_bomb": "too_large",
        "duplicate": "duplicate_url",
        "invalid": "invalid_url",
        "invalid_scheme": "invalid_url",
        "empty": "invalid_url",
    }
    keys = {int(k) for k in ds.index(columns=["key"]).column("key").to_pylist()}
    assert {names[k] for k in keys} == {"ok", "png", "other_scoped_ok", "redirect_ok", "flaky_ok"}
    # the invariant: every input row exactly once
    assert sorted(keys | set(_reasons(ds))) == list(range(len(urls)))
    assert res.samples + res.failures == res.input_rows == len(urls)
    assert ds.stats()["failure_reasons"]["opt_out_robots"] == 2


def test_rows_carry_provenance(tmp_path, server):
    lst = _write_list(tmp_path / "l.parquet", [server.url("/img/3.jpg"), server.url("/redirect/2/x.jpg")])
    res = collect_urls(lst, str(tmp_path / "out"), _cfg(image_size=64, resize_mode="center_crop"))
    rows = Dataset.open(res.out).index().to_pylist()
    first, second = rows
    import hashlib

    from tests.collect.imageserver import jpeg

    assert first["source"] == server.url("/img/3.jpg") and first["source_kind"] == "url"
    assert first["sha256"] == hashlib.sha256(jpeg(3)).hexdigest()
    assert (first["orig_width"], first["orig_height"], first["width"], first["height"]) == (320, 240, 64, 64)
    assert first["http_status"] == 200 and first["fetched_at"] is not None
    assert first["caption"] == "caption 0" and first["caption_source"] == "dataset"
    assert first["license"] == "cc-by-4.0" and second["license"] == "unknown"
    assert json.loads(second["meta"])["final_url"] == server.url("/img/7.jpg")
    assert first["format"] == "jpeg" and first["phash"] is not None


def test_ignore_opt_outs_recorded(tmp_path, server):
    lst = _write_list(tmp_path / "l.parquet", [server.url("/noai/1.jpg"), server.url("/private/2.jpg")])
    res = collect_urls(lst, str(tmp_path / "out"), _cfg(ignore_opt_outs=True))
    ds = Dataset.open(res.out)
    assert ds.num_samples == 2
    assert ds.info["lineage"]["config"]["ignore_opt_outs"] is True
    assert ds.stats()["opt_outs_honoured"] is False
    assert "/robots.txt" not in server.hits


def test_robots_unavailable_means_disallowed(tmp_path, server):
    server.robots_status = 503
    lst = _write_list(tmp_path / "l.parquet", [server.url("/img/1.jpg")])
    ds = Dataset.open(collect_urls(lst, str(tmp_path / "out"), _cfg(retries=0)).out)
    (fail,) = ds.failures().to_pylist()
    assert fail["reason"] == "opt_out_robots" and "RFC 9309" in fail["detail"]
    server.robots_status = 404  # a missing robots.txt allows everything
    ds = Dataset.open(collect_urls(lst, str(tmp_path / "out2"), _cfg()).out)
    assert ds.num_samples == 1


def test_private_networks_blocked_by_default(tmp_path, server):
    lst = _write_list(tmp_path / "l.parquet", [server.url("/img/1.jpg"), f"http://localhost:{server.port}/img/2.jpg"])
    ds = Dataset.open(collect_urls(lst, str(tmp_path / "out"), _cfg(allow_private_networks=False)).out)
    assert [f["reason"] for f in ds.failures().to_pylist()] == ["private_network_blocked"] * 2
    assert server.hits == {}  # nothing reached the server, not even robots.txt


def test_redirect_to_private_address_blocked(tmp_path, server, monkeypatch):
    # pretend 127.0.0.1 is public so the first hop is allowed; the redirect goes to 127.0.0.2
    monkeypatch.setattr(netguard, "is_blocked_address", lambda a: a != "127.0.0.1")
    lst = _write_list(tmp_path / "l.parquet", [server.url("/to-other-host/1"), server.url("/img/1.jpg")])
    ds = Dataset.open(collect_urls(lst, str(tmp_path / "out"), _cfg(allow_private_networks=False)).out)
    (fail,) = ds.failures().to_pylist()
    assert fail["row"] == 0 and fail["reason"] == "private_network_blocked" and "127.0.0.2" in fail["detail"]
    assert ds.num_samples == 1


@pytest.mark.parametrize("per_host", [2, 0])
def test_per_host_cap(tmp_path, server, per_host):
    lst = _write_list(tmp_path / "l.parquet", [server.url(f"/concurrent/{i}.jpg") for i in range(12)])
    ds = Dataset.open(collect_urls(lst, str(tmp_path / "out"), _cfg(per_host=per_host, concurrency=16)).out)
    assert ds.num_samples == 12
    if per_host:
        assert server.max_active == 2  # the cap is reached and never passed
    else:
        assert server.max_active > 2  # without it, requests to the one host overlap freely


@pytest.mark.parametrize("fmt", ["txt", "csv", "tsv", "jsonl"])
def test_list_formats(tmp_path, server, fmt):
    urls = [server.url(f"/img/{i}.jpg") for i in range(3)]
    path = tmp_path / f"list.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(urls) + "\n")
    elif fmt == "jsonl":
        path.write_text(
            "\n".join(json.dumps({"url": u, "caption": f"c{i}", "extra": i}) for i, u in enumerate(urls))
            + "\n{broken\n"
        )
    else:
        sep = "," if fmt == "csv" else "\t"
        path.write_text(f"url{sep}caption{sep}extra\n" + "".join(f"{u}{sep}c{i}{sep}{i}\n" for i, u in enumerate(urls)))
    cfg = _cfg(keep_cols=() if fmt == "txt" else ("extra",))
    ds = Dataset.open(collect_urls(str(path), str(tmp_path / "out"), cfg).out)
    rows = ds.index().to_pylist()
    assert [r["source"] for r in rows] == urls
    if fmt != "txt":
        assert [r["caption"] for r in rows] == ["c0", "c1", "c2"]
        assert json.loads(rows[2]["meta"])["extra"] in (2, "2")
    if fmt == "jsonl":
        assert [(f["row"], f["reason"]) for f in ds.failures().to_pylist()] == [(3, "invalid_url")]


def test_bad_arguments_are_one_line_errors(tmp_path, server, capsys):
    lst = _write_list(tmp_path / "l.parquet", [server.url("/img/1.jpg")])
    assert main(["collect", "urls", lst, "--out", str(tmp_path / "o"), "--resize-mode", "fit"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "Error: --resize-mode 'fit': choose one of center_crop, keep_ratio, pad, none"
    assert main(["collect", "urls", lst, "--out", str(tmp_path / "o"), "--url-col", "URL"]) == 2
    assert "--url-col 'URL' is not a column" in capsys.readouterr().err
    assert main(["collect", "urls", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(UsageError, match="--processes 0: choose at least 1"):
        collect_urls(lst, str(tmp_path / "o"), _cfg(processes=0))


def test_two_processes_through_cli(tmp_path, server, capsys):
    urls = [server.url(f"/img/{i}.jpg") for i in range(40)] + [server.url("/status/404")]
    lst = _write_list(tmp_path / "l.parquet", urls)
    code = main(
        [
            "collect",
            "urls",
            lst,
            "--out",
            str(tmp_path / "out"),
            "--processes",
            "2",
            "--samples-per-shard",
            "10",
            "--image-size",
            "32",
            "--allow-private-networks",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 40 and result["failures"] == 1 and result["failure_reasons"] == {"http_4xx": 1}
    ds = Dataset.open(str(tmp_path / "out"))
    assert ds.shards() == ["000000.tar", "000001.tar", "000002.tar", "000003.tar", "000004.tar"][: len(ds.shards())]
    assert len(ds.shards()) == 4  # the fifth slice held only the failure, so it has no shard
    keys = ds.index(columns=["key"]).column("key").to_pylist()
    assert keys == [f"{i:09d}" for i in range(40)]


def test_kill_9_then_resume(tmp_path, server):
    # a slow route in every shard keeps the run busy long enough to kill it mid-way
    urls = []
    for shard in range(8):
        urls += [server.url(f"/img/{shard * 10 + i}.jpg") for i in range(9)] + [server.url(f"/slow/{shard}.jpg")]
    lst = _write_list(tmp_path / "l.parquet", urls)
    out = str(tmp_path / "out")
    args = [
        sys.executable,
        "-m",
        "pixelforge.cli",
        "collect",
        "urls",
        lst,
        "--out",
        out,
        "--processes",
        "2",
        "--samples-per-shard",
        "10",
        "--timeout",
        "2.5",
        "--retries",
        "0",
        "--image-size",
        "32",
        "--allow-private-networks",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    shards = tmp_path / "out" / "shards"
    while time.monotonic() < deadline:
        done = [p for p in shards.glob("*.tar")] if shards.exists() else []
        if len(done) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished_before = sorted(p.name for p in shards.glob("*.tar"))
    assert 2 <= len(finished_before) < 8, finished_before
    assert not (tmp_path / "out" / "dataset.json").exists()
    with pytest.raises(Exception, match="partly written"):
        Dataset.open(out)
    assert (
        main(
            [
                "collect",
                "urls",
                lst,
                "--out",
                out,
                "--samples-per-shard",
                "10",
                "--timeout",
                "2.5",
                "--retries",
                "0",
                "--image-size",
                "32",
                "--allow-private-networks",
                "--processes",
                "1",
            ]
        )
        == 2
    )
    code = main(
        [
            "collect",
            "urls",
            lst,
            "--out",
            out,
            "--samples-per-shard",
            "10",
            "--timeout",
            "2.5",
            "--retries",
            "0",
            "--image-size",
            "32",
            "--allow-private-networks",
            "--processes",
            "2",
            "--resume",
        ]
    )
    assert code == 0
    ds = Dataset.open(out)
    keys = [int(k) for k in ds.index(columns=["key"]).column("key").to_pylist()]
    fails = [f["row"] for f in ds.failures().to_pylist()]
    assert sorted(keys + fails) == list(range(80))  # no row missing, none twice
    assert len(keys) == 72 and {f["reason"] for f in ds.failures().to_pylist()} == {"timeout"}
    assert ds.stats()["shards_resumed"] == len(finished_before)
