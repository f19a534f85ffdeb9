"""Politeness to every host: the per-host window, adaptive backoff, retries after a cool-down, hosts taken as down."""

import asyncio
import json
import time

import pytest

from pixelforge.cli import main
from pixelforge.collect import throttle
from pixelforge.collect.throttle import DOWN_AFTER, FIRST_BACKOFF, HostLimits, HostThrottle
from pixelforge.collect.urls import collect_urls
from pixelforge.store import Dataset
from tests.collect.imageserver import SmallServer
from tests.collect.test_urls import _cfg, _write_list


def test_limits_are_shared_among_processes():
    assert HostLimits(8, 0.0, share=2).window() == 4
    assert HostLimits(8, 0.0, share=16).window() == 1  # never below one connection
    assert HostLimits(0, 0.0, share=2).window() == 0  # no cap
    assert HostLimits(8, 4.0, share=2).interval() == 0.5  # 4 requests/s over 2 processes: one per 0.5 s each
    assert HostLimits(8, 0.0).interval() == 0.0


def test_a_burst_slows_the_host_once_and_success_recovers_it():
    gate = HostThrottle(HostLimits(8, share=2), run_id="burst")
    st = gate.state("h")
    assert (st.window, st.delay) == (4, 0.0)
    sent = time.monotonic()
    for _ in range(4):  # four requests of one burst fail: the host is slowed down once
        gate.overloaded("h", sent)
    assert (st.window, st.delay, gate.backoffs) == (2, FIRST_BACKOFF, 1)
    gate.overloaded("h", time.monotonic())  # a request sent after the slow-down fails too: slowed again
    assert (st.window, st.delay, gate.backoffs) == (1, 2 * FIRST_BACKOFF, 2)
    gate.succeeded("h")  # a window's worth of successes (1) lets one more connection in
    assert st.window == 2 and st.delay == pytest.approx(0.9)
    gate.succeeded("h")
    gate.succeeded("h")
    assert st.window == 3 and st.delay == pytest.approx(0.9**3)
    for _ in range(100):
        gate.succeeded("h")
    assert (st.window, st.delay) == (4, 0.0)  # back to the cap, never past it


def test_retry_after_pauses_the_host_and_crawl_delay_is_shared():
    gate = HostThrottle(HostLimits(8, share=2), run_id="pause")
    before = time.monotonic()
    gate.overloaded("h", before, retry_after=5.0)
    assert gate.state("h").next_start >= before + 5.0
    gate.crawl_delay("h", 1.5)
    assert gate.state("h").floor == 3.0  # two processes each wait 3 s: one request per 1.5 s in all
    gate.crawl_delay("g", 3600)
    assert gate.state("g").floor == throttle.MAX_CRAWL_DELAY * 2


def test_the_numbers_of_a_host_are_kept_across_shards_of_one_run_only():
    HostThrottle(HostLimits(8), run_id="run-a").overloaded("h", time.monotonic())
    assert HostThrottle(HostLimits(8), run_id="run-a").state("h").window == 4  # the next shard of the run
    assert HostThrottle(HostLimits(8), run_id="run-b").state("h").window == 8  # a new run starts afresh


def test_a_host_is_down_after_rounds_without_an_answer_not_after_a_failed_burst():
    gate = HostThrottle(HostLimits(8), run_id="rounds")
    sent = time.monotonic()
    assert not any(gate.unanswered("h", "timeout", sent) for _ in range(3 * DOWN_AFTER))  # one burst: one round
    for _ in range(DOWN_AFTER - 2):
        assert not gate.unanswered("h", "timeout", time.monotonic())
    gate.answered("h")  # a 503 is an answer: the count starts again
    for _ in range(DOWN_AFTER - 1):
        assert not gate.unanswered("h", "connection_error", time.monotonic())
    assert gate.unanswered("h", "connection_error", time.monotonic())
    assert gate.state("h").down == "connection_error" and gate.hosts_down == {"h"}


def test_a_host_down_releases_its_waiting_requests():
    async def scenario():
        gate = HostThrottle(HostLimits(1), run_id="down")
        order = []

        async def request(i):
            async with gate.slot("h") as st:
                order.append((i, st.down))
                if st.down is None:
                    await asyncio.sleep(0.05)
                    for _ in range(DOWN_AFTER):
                        gate.unanswered("h", "timeout", time.monotonic())

        await asyncio.gather(*(request(i) for i in range(4)))
        return order, gate.hosts_down

    order, down = asyncio.run(scenario())
    assert order == [(0, None), (1, "timeout"), (2, "timeout"), (3, "timeout")]
    assert down == {"h"}


def test_an_overloaded_host_loses_no_image(tmp_path, server, monkeypatch):
    """/busy/ answers 503 while more than 2 requests are in progress; the window of 8 backs off."""
    monkeypatch.setattr(throttle, "FIRST_BACKOFF", 0.1)  # the same steps, five times faster
    server.busy_limit = 2
    lst = _write_list(tmp_path / "l.parquet", [server.url(f"/busy/{i}.jpg") for i in range(24)])
    # retries 4: on a busy machine a request may still meet a full server twice while the window shrinks
    result = collect_urls(lst, str(tmp_path / "out"), _cfg(per_host=8, retries=4))
    assert (result.samples, result.failures) == (24, 0)
    assert server.refused > 0  # the server did refuse some...
    polite = json.loads((tmp_path / "out" / "stats.json").read_text())["politeness"]
    assert polite["retries"] == server.refused  # ...and each refusal was tried again
    assert polite["backoffs"] >= 1 and polite["hosts_down"] == []


@pytest.mark.parametrize(
    ("robots", "rps", "gap"), [(b"User-agent: *\nCrawl-delay: 0.3\n", 0.0, 0.3), (None, 4.0, 0.25)]
)
def test_crawl_delay_and_requests_per_second_space_requests(tmp_path, server, robots, rps, gap):
    server.busy_limit = 100
    if robots:
        server.robots = robots
    lst = _write_list(tmp_path / "l.parquet", [server.url(f"/busy/{i}.jpg") for i in range(5)])
    result = collect_urls(lst, str(tmp_path / "out"), _cfg(per_host_rps=rps))
    assert result.samples == 5
    starts = sorted(server.starts)
    assert min(b - a for a, b in zip(starts, starts[1:])) >= gap - 0.02  # timer granularity


def test_a_host_that_stops_answering_is_taken_as_down(tmp_path, server, monkeypatch):
    monkeypatch.setattr(throttle, "FIRST_BACKOFF", 0.05)
    lst = _write_list(tmp_path / "l.parquet", [server.url(f"/reset/{i}") for i in range(30)])
    ds = Dataset.open(collect_urls(lst, str(tmp_path / "out"), _cfg(per_host=2, retries=1)).out)
    failures = ds.failures().to_pylist()
    assert [f["reason"] for f in failures] == ["connection_error"] * 30
    untried = [f for f in failures if f["detail"].startswith("not tried: 127.0.0.1 was taken as down")]
    # tried: the DOWN_AFTER failures in a row, and what was in flight (a window of 2) when they were counted
    assert len(untried) >= 30 - DOWN_AFTER - 2
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["politeness"]["hosts_down"] == ["127.0.0.1"]


@pytest.mark.parametrize("ignore_opt_outs", [False, True])
def test_a_name_that_does_not_resolve_is_asked_once(tmp_path, ignore_opt_outs):
    lst = _write_list(tmp_path / "l.parquet", [f"http://no-such-host.invalid/{i}.jpg" for i in range(3)])
    cfg = _cfg(per_host=1, ignore_opt_outs=ignore_opt_outs)
    failures = Dataset.open(collect_urls(lst, str(tmp_path / "out"), cfg).out).failures().to_pylist()
    assert [f["reason"] for f in failures] == ["dns_error"] * 3
    if ignore_opt_outs:  # the first image request fails; the host is taken as down for the other two
        assert sum(f["detail"].startswith("not tried: no-such-host.invalid") for f in failures) == 2
    else:  # the one robots.txt request fails, and all three share its answer
        assert len({f["detail"] for f in failures}) == 1 and "no-such-host.invalid" in failures[0]["detail"]


def test_a_small_server_keeps_every_image_with_the_defaults(tmp_path, capsys):
    """300 URLs on one host with a listen backlog of 5: before the per-host window, 116 were lost."""
    with SmallServer() as small:
        lst = tmp_path / "urls.txt"
        lst.write_text("".join(small.url(f"/i/{i}.jpg") + "\n" for i in range(300)))
        args = ["collect", "urls", str(lst), "--out", str(tmp_path / "out"), "--allow-private-networks", "--json"]
        assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["samples"], result["failures"]) == (300, 0)
    lineage = json.loads((tmp_path / "out" / "dataset.json").read_text())["lineage"]["config"]
    assert (lineage["per_host"], lineage["per_host_rps"]) == (8, 0.0)


def test_bad_politeness_flags_are_one_line_errors(tmp_path, server, capsys):
    lst = _write_list(tmp_path / "l.parquet", [server.url("/img/1.jpg")])
    for flag, value, message in (
        ("--per-host-rps", "-1", "--per-host-rps -1.0: must be 0 (no cap) or more"),
        ("--per-host", "-2", "--per-host -2: must be 0 or more"),
    ):
        assert main(["collect", "urls", lst, "--out", str(tmp_path / "o"), flag, value]) == 2
        assert capsys.readouterr().err.strip() == f"Error: {message}"
