"""`pixelforge report`: every kind of PATH renders its section with the numbers its files hold."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from pixelforge.cli import main
from pixelforge.report.detect import detect
from pixelforge.store import Dataset, query
from tests.report.conftest import facts_of, rows_of, sections_of

ORDER = ["shapes", "curated", "audit", "clf", "diff", "gan", "vae", "gen", "fid", "cond", "mem"]


@pytest.fixture(scope="module")
def page(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "report.html"
    # given out of pipeline order on purpose: sections go in pipeline order, the given order within a kind
    paths = [tiny[k] for k in ("mem", "gen", "shapes", "audit", "clf", "fid", "curated", "diff", "gan", "cond", "vae")]
    assert main(["report", *paths, "--out", str(out), "--title", "tiny"]) == 0
    return out.read_text(encoding="utf-8")


def test_kinds_are_detected(tiny):
    kinds = {k: detect(tiny[k]).kind for k in ORDER}
    assert kinds == {
        "shapes": "dataset",
        "curated": "dataset",
        "audit": "audit",
        "clf": "run",
        "diff": "run",
        "gan": "run",
        "vae": "run",
        "gen": "generated",
        "fid": "evaluation",
        "cond": "evaluation",
        "mem": "evaluation",
    }


def test_sections_in_pipeline_order(page):
    assert list(sections_of(page)) == [
        "Dataset: shapes",
        "Dataset: curated",
        "Audit: curated",
        "Training: clf (classifier)",
        "Training: diff (diffusion)",
        "Training: gan (gan)",
        "Training: vae (vae)",
        "Provenance: gen",
        "Generated dataset: gen",
        "Memorisation: mem.json",
        "Evaluation: fid.json",
        "Prompt accuracy: cond.json",
    ]
    # self-contained: no external resource of any kind
    assert not [src for src in __import__("re").findall(r'src="([^"]+)"', page) if not src.startswith("data:image/")]
    assert "<link" not in page and "<script" not in page


def test_dataset_and_curation_numbers(tiny, page):
    red = query(Dataset.open(tiny["shapes"]), "SELECT count(*) AS n FROM samples WHERE colour = 'red'")
    red = red.column("n")[0].as_py()
    assert 0 < red < 48
    sec = sections_of(page)
    raw = facts_of(sec["Dataset: shapes"])
    assert raw["samples"] == "48" and raw["failures"] == "0" and raw["with caption"] == "48 (100.0%)"
    assert raw["labelled"] == "48 in 6 classes" and raw["image size"] == "16–16 × 16–16 px (median 16 × 16)"
    assert "Missing:</strong> Quality histograms" in sec["Dataset: shapes"]
    assert "no curation.json" in sec["Dataset: shapes"]
    assert sec["Dataset: shapes"].count('<img src="data:image/png;base64,') >= 24 + 4  # grid + charts
    cur = sec["Dataset: curated"]
    assert facts_of(cur)["samples"] == str(48 - red)
    rules = {r[0]: r for r in rows_of(cur, "Curation: 48 input samples")}
    assert rules["where"][1] == "colour <> 'red'" and rules["where"][3] == str(red)
    assert rules["opt_out"][3] == "0"
    assert f"where removed {red}" in cur  # example thumbnails of the removed rows, read from the input dataset
    assert "Quality (curate&#39;s scores)" in cur and "q_blur over" in cur


def test_audit_numbers(tiny, page):
    n = Dataset.open(tiny["curated"]).num_samples
    sec = sections_of(page)["Audit: curated"]
    f = facts_of(sec)
    assert f["samples"] == str(n) and f["policy"] == "no-cc0"
    assert f["violations"] == str(n) and f["by reason"] == f"license: {n}"  # the policy file denies cc0
    assert f["unknown licence"] == "0 (0.0%)" and f["policy denies"] == "cc0"
    assert len(rows_of(sec, "Licence-policy violations")) == min(n, 20)
    assert f["classes"] == "6" and "Missing:</strong> Caption groups" in sec


def test_training_sections_of_every_family(page):
    sec = sections_of(page)
    for name, family in (("clf", "classifier"), ("diff", "diffusion"), ("gan", "gan"), ("vae", "vae")):
        body = sec[f"Training: {name} ({family})"]
        f = facts_of(body)
        assert f["family"] == family and f["steps"] == "2" and f["stopped"] == "reached --max-steps"
        assert "Training loss" in body and "Learning rate" in body
        if family == "classifier":
            assert "A classifier does not generate" in body and "Confusion matrix" in body
            assert re.search(r"test split: accuracy [0-9.]+ over \d+ images", body)
        else:
            assert "step 1" in body and "step 2" in body  # the grid of each evaluation
        if family != "gan":
            assert "Validation" in body
    assert "d_loss" in sec["Training: gan (gan)"] or "Other training terms" in sec["Training: gan (gan)"]


def test_provenance_and_evaluations(tiny, page):
    sec = sections_of(page)
    prov = sec["Provenance: gen"]
    f = facts_of(prov)
    assert f["images"] == "6" and f["family"] == "diffusion" and f["sampler"] == "ddim" and f["steps"] == "2"
    assert f["seeds"] == "0" and f["watermark found"] == "6 (100.0%)" and f["metadata found"] == "6 (100.0%)"
    assert f["images checked"] == "6 of 6" and f["mean tag bits matched"] == "32.00 of 32"
    assert rows_of(prov, "Prompts (2)") == [["circle", "3"], ["star", "3"]]
    # each prompt is a row of its own images, titled with the prompt
    assert "Generated images by prompt (2 prompts, 6 images)" in prov
    rows = re.findall(r'<div class="group">\s*<div class="muted">([^<]*)</div>(.*?)</div>\s*</div>', prov, re.S)
    assert [(title, body.count("<figure>")) for title, body in rows] == [("circle", 3), ("star", 3)]
    fid = json.loads(open(tiny["fid"]).read())["result"]
    ev = sec["Evaluation: fid.json"]
    assert rows_of(ev, "Metrics")[0] == ["FID (lower is better)", f"{fid['fid']:.4g}"]
    assert facts_of(ev)["fake images"] == "6" and "Classifier-feature FID is domain-specific" in ev
    cond = json.loads(open(tiny["cond"]).read())["result"]["attributes"]["label"]
    c = sections_of(page)["Prompt accuracy: cond.json"]
    assert rows_of(c, "Per attribute") == [
        [
            "label",
            f"{cond['accuracy']:.4g}" if cond["accuracy"] not in (0, 1) else str(int(cond["accuracy"])),
            str(cond["correct"]),
            "6",
            "0",
        ]
    ]
    assert "label: confusion" in c
    mem = sections_of(page)["Memorisation: mem.json"]
    assert facts_of(mem)["flagged"] == "6 (100.0%)"
    assert mem.count('class="pair"') == 6 and "Flagged pairs (the first 6 of 6)" in mem


def test_missing_files_are_named(tiny, tmp_path, capsys):
    run = tmp_path / "stopped-run"
    run.mkdir()
    shutil.copy(f"{tiny['diff']}/config.json", run / "config.json")
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kinds"] == {"run": 1} and result["missing"] == 3
    body = sections_of(out.read_text())["Training: stopped-run (diffusion)"]
    assert "no result.json yet" in body and "no metrics.csv in the run" in body and "no samples/step_*.png" in body


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "nope", "no such file or folder"),
        (lambda p: (p / "folder").mkdir() or p / "folder", "this folder is none of the known kinds"),
        (lambda p: (p / "x.json").write_text('{"a": 1}') and p / "x.json", "this file is none of the known kinds"),
        (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "this file is none of the known kinds"),
    ],
)
def test_bad_paths_are_one_line_errors(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["report", str(path), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: report {path}: {message}") and err.count("\n") == 1
    assert not (tmp_path / "r.html").exists()


def test_out_must_be_a_file(tiny, tmp_path, capsys):
    assert main(["report", tiny["shapes"], "--out", str(tmp_path)]) == 2
    assert "is a folder: give a file name such as report.html" in capsys.readouterr().err


def test_plain_json_printouts_are_evaluations_too(tiny, tmp_path):
    """The `--json` printouts (no {command, config, result} wrapper) are recognised by their keys."""
    for name, command in (("fid", "evaluate"), ("cond", "evaluate conditional"), ("mem", "evaluate memorization")):
        result = json.loads(open(tiny[name]).read())["result"]
        path = tmp_path / f"{name}-printout.json"
        path.write_text(json.dumps(result))
        found = detect(str(path))
        assert (found.kind, found.doc["command"], found.doc["result"]) == ("evaluation", command, result)
