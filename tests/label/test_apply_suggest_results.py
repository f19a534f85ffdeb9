"""label apply (merge with history), label suggest (captions and a classifier), label results (statistics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.label.db import AnnotationDB
from pixelforge.label.results import bradley_terry
from pixelforge.store import Dataset


def test_apply_merges_accepted_with_history(shapes, tmp_path, capsys):
    db = AnnotationDB(f"{shapes}/annotations.sqlite")
    db.set_setting("classes", ["circle", "square", "triangle", "star", "diamond", "cross", "hexagon"])
    db.save("000000000", "label", "circle", "ann", 0)
    db.save("000000000", "label", "hexagon", "bob", 0)  # a conflicting edit: last wins, both kept
    db.save("000000000", "caption", "a blue gem", "ann")
    db.save("000000000", "boxes", [{"x0": 1, "y0": 2, "x1": 3, "y1": 4, "label": "hexagon"}], "bob")
    db.save("000000000", "status", "accepted", "bob")
    db.save("000000001", "label", "star", "ann")
    db.save("000000001", "status", "skipped", "ann")  # skipped: not merged
    db.save("000000002", "label", "star", "ann")  # no status: not merged
    out = tmp_path / "applied"
    capsys.readouterr()
    assert main(["label", "apply", shapes, "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert {
        k: res[k]
        for k in ("samples", "accepted", "skipped", "labels_merged", "boxes_merged", "captions_merged", "edits")
    } == {
        "samples": 12,
        "accepted": 1,
        "skipped": 1,
        "labels_merged": 1,
        "boxes_merged": 1,
        "captions_merged": 1,
        "edits": 8,
    }
    before = {r["key"]: r for r in Dataset.open(shapes).iter_rows()}
    after = {r["key"]: r for r in Dataset.open(str(out)).iter_rows()}
    r0 = after["000000000"]
    assert (r0["label"], r0["label_name"]) == (6, "hexagon")  # a new class gets the next id after the dataset's
    assert r0["caption"] == "a blue gem" and r0["caption_source"] is None
    assert r0["boxes"] == [{"x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0, "label": 6}]
    assert r0["annotated_by"] == "ann,bob" and r0["annotated_fields"] == ["label", "boxes", "caption"]
    for key in ("000000001", "000000002", "000000003"):
        assert after[key]["label_name"] == before[key]["label_name"] and after[key]["annotated_by"] is None
    history = pq.read_table(out / "annotations.parquet").to_pylist()
    assert [(h["key"], h["field"], json.loads(h["value"]), h["annotator"], h["conflict"]) for h in history[:2]] == [
        ("000000000", "label", "circle", "ann", False),
        ("000000000", "label", "hexagon", "bob", True),
    ]
    assert json.loads(history[1]["previous"]) == "circle"
    assert Dataset.open(str(out)).info["lineage"]["command"] == "label apply"
    # inputs are never modified, and the output is not overwritten silently
    assert main(["label", "apply", shapes, "--out", shapes]) == 2
    assert "inputs are never modified" in capsys.readouterr().err
    assert main(["label", "apply", shapes, "--out", str(out)]) == 2
    assert "already holds a finished dataset" in capsys.readouterr().err


def test_apply_without_annotations_is_an_error(digits, tmp_path, capsys):
    assert main(["label", "apply", digits, "--db", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "does not exist" in err and err.count("\n") == 1


def test_suggest_from_captions(shapes, tmp_path, capsys):
    syn = tmp_path / "syn.toml"
    syn.write_text('circle = ["ring", "disc"]\n')
    out = tmp_path / "sugg"
    capsys.readouterr()
    assert (
        main(["label", "suggest", shapes, "--from-captions", "--synonyms", str(syn), "--out", str(out), "--json"]) == 0
    )
    res = json.loads(capsys.readouterr().out)
    # shapes captions name the drawn shape exactly: every suggestion agrees with the label
    assert res["suggested"] == 12 and res["agree_with_label"] == 1.0 and res["failed"] == 0
    rows = list(Dataset.open(str(out)).iter_rows())
    assert all(
        r["suggested_label"] == r["label_name"] and r["suggested_confidence"] == 1.0 and r["suggested_by"] == "captions"
        for r in rows
    )
    from pixelforge.label.suggest import caption_matcher

    match = caption_matcher({"cat": ["cat", "kitten"], "dog": ["dog", "puppy"]})
    assert match("Two kittens and a dog") == ("cat", 0.5)  # a tie: the first named wins, confidence 0.5
    assert match("puppies, dogs and one cat") == ("dog", 2 / 3)
    assert match("a concatenation") is None and match(None) is None
    assert main(["label", "suggest", shapes, "--out", str(tmp_path / "x")]) == 2
    assert "exactly one of --model RUN or --from-captions" in capsys.readouterr().err
    syn.write_text('unicorn = ["horse"]\n')
    assert (
        main(["label", "suggest", shapes, "--from-captions", "--synonyms", str(syn), "--out", str(tmp_path / "y")]) == 2
    )
    assert "class 'unicorn' is not one of" in capsys.readouterr().err


def test_bradley_terry_matches_closed_form():
    # two models: P(0 beats 1) = s0 / (s0 + s1) equals the smoothed win share
    s = bradley_terry(np.array([[0.0, 7.0], [3.0, 0.0]]), prior=0.0)
    assert s[0] / (s[0] + s[1]) == pytest.approx(0.7, abs=1e-9) and math.prod(s) == pytest.approx(1.0)
    # three models in a consistent order: strengths follow the wins
    s3 = bradley_terry(np.array([[0, 8, 9], [2, 0, 7], [1, 3, 0]], dtype=float))
    assert s3[0] > s3[1] > s3[2]


def test_results_scores_and_win_rates(tmp_path, capsys):
    a, b = tmp_path / "model_a", tmp_path / "model_b"
    for d in (a, b):
        assert main(["import", "shapes", "--n", "4", "--size", "16", "--seed", "2", "--out", str(d)]) == 0
    db = AnnotationDB(a / "annotations.sqlite")
    db.set_setting("datasets", [str(a), str(b)])
    for i, (r, f) in enumerate([(4, 5), (3, 4), (5, 5), (4, 3)]):
        db.save(f"00000000{i}", "realism", r, "ann")
        db.save(f"00000000{i}", "faithfulness", f, "ann")
    db.save("000000000", "realism", 1, "bob")
    db.save("000000000", "realism", 2, "bob")  # bob's final answer counts, once
    for key, who, v in [
        ("p1", "ann", "a"),
        ("p2", "ann", "a"),
        ("p3", "ann", "b"),
        ("p4", "ann", "tie"),
        ("p1", "bob", "a"),
    ]:
        db.save(key, "compare", v, who)
    capsys.readouterr()
    assert main(["label", "results", str(a), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    realism = res["ratings"]["realism"]
    assert realism["n"] == 5 and realism["mean"] == pytest.approx(3.6) and realism["annotators"] == 2
    # t(0.975, 4) = 2.776445; sd = 1.140175
    half = 2.776445 * 1.140175 / math.sqrt(5)
    assert realism["ci95"] == pytest.approx([3.6 - half, 3.6 + half], abs=1e-3)
    assert res["ratings"]["faithfulness"]["mean"] == pytest.approx(4.25)
    cmp = res["compare"]
    assert cmp["n"] == 5 and cmp["wins"] == {"model_a": 3, "model_b": 1} and cmp["ties"] == 1
    assert cmp["win_rate"] == {"model_a": 0.7, "model_b": 0.3}
    # one pseudo-tie (0.5 each way): P(a beats b) = 4 / 6
    assert cmp["p_first_beats_second"] == pytest.approx(4 / 6, abs=1e-4)
    saved = json.loads((a / "human_eval.json").read_text())
    assert saved["compare"]["win_rate"] == cmp["win_rate"]
    # the report of model A's images shows both models' share of the blind comparison
    out = tmp_path / "report.html"
    assert main(["report", str(a), "--out", str(out)]) == 0
    html = out.read_text()
    assert "Human comparison (blind, side by side)" in html and "Human ratings" in html
    assert "<td>model_a</td><td>3</td><td>0.7</td>" in html.replace("\n", "").replace(" ", "")
