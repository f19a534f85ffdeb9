"""`pixelforge demo` end to end on a tiny budget: every stage runs once, a second run resumes, others are refused."""

from __future__ import annotations

import json
import re

import pytest

from pixelforge.cli import main

# tiny data and budgets (hidden options): the pipeline is the same, only smaller
TINY = [
    "--minutes",
    "0.05",
    "--shapes",
    "60",
    "--image-size",
    "16",
    "--max-pages",
    "10",
    "--classifier-epochs",
    "1",
    "--classifier-minutes",
    "0.2",
    "--prompts",
    "2",
    "--per-prompt",
    "2",
    "--sample-steps",
    "2",
    "--eval-every",
    "2",
    "--no-watermark-scores",
]
STAGES = [
    "crawl",
    "import digits",
    "import shapes",
    "curate",
    "audit",
    "split",
    "train diffusion",
    "train classifiers",
    "generate",
    "verify",
    "evaluate",
    "report",
]


def _stage_lines(out: str) -> list[tuple[str, bool]]:
    """(stage, ran now) for each `[ i/12] stage ...` line."""
    lines = re.findall(r"^\[\s*\d+/12\] (.{18}) (.*)$", out, flags=re.M)
    return [(name.strip(), not rest.startswith("done earlier")) for name, rest in lines]


@pytest.mark.slow
def test_demo_runs_every_stage_then_resumes_and_refuses_other_options(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert _stage_lines(printed) == [(s, True) for s in STAGES]
    assert printed.rstrip().splitlines()[-1] == f"report: {out / 'report.html'}"
    state = json.loads((out / "demo.json").read_text())
    assert list(state["stages"]) == STAGES and state["options"]["shapes"] == 60
    assert "served the bundled site at http://127.0.0.1:" in state["stages"]["crawl"]["summary"]
    assert "60 samples" in state["stages"]["import shapes"]["summary"]
    assert "watermark found in 4/4 images" in state["stages"]["verify"]["summary"]
    for name in ("fid", "conditional", "memorization"):
        assert json.loads((out / "eval" / f"{name}.json").read_text())["command"].startswith("evaluate")
    html = (out / "report.html").read_text(encoding="utf-8")
    titles = re.findall(r"<h2><span class=\"kind\">[a-z]+</span> (.*?)</h2>", html)
    assert titles[:4] == ["Dataset: site", "Dataset: site-clean", "Dataset: digits-clean", "Dataset: shapes-split"]
    assert "Provenance: generated" in titles and "Memorisation: memorization.json" in titles and len(titles) == 14
    assert "<strong>Opt-outs</strong>" in html and "refused by opt-outs" in state["stages"]["crawl"]["summary"]

    # the same options: nothing runs again
    before = (out / "report.html").stat().st_mtime_ns
    assert main(["demo", "--out", str(out), *TINY]) == 0
    assert _stage_lines(capsys.readouterr().out) == [(s, False) for s in STAGES]
    assert (out / "report.html").stat().st_mtime_ns == before

    # a run stopped during the last stage: only that stage runs again, its partial output replaced
    del state["stages"]["report"]
    (out / "demo.json").write_text(json.dumps(state))
    (out / "report.html").write_text("half written")
    assert main(["demo", "--out", str(out), *TINY]) == 0
    assert _stage_lines(capsys.readouterr().out) == [(s, s == "report") for s in STAGES]
    assert (out / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")

    # other options never mix into this demo
    assert main(["demo", "--out", str(out), *TINY[2:], "--minutes", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: --out {out} holds a demo made with other options (minutes 0.05 (now 0.1))")
    assert err.count("\n") == 1


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path), "--minutes", "1"]) == 2
    assert "is not empty and holds no demo (demo.json)" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert main(["demo", "--out", str(tmp_path / "d"), "--minutes", "0"]) == 2
    assert "--minutes 0.0: choose a positive number of minutes" in capsys.readouterr().err
