"""Finding wrong labels: confident learning on out-of-fold probabilities of k-fold classifiers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pixelforge.cli import main
from pixelforge.label.issues import rank_issues
from pixelforge.label.rewrite import rewrite
from pixelforge.store import Dataset, Lineage


def test_rank_issues_on_known_probabilities():
    # 3 classes, 60 samples; the model is sure of the true class; samples 0-5 carry a wrong label
    rng = np.random.default_rng(0)
    true = np.repeat([0, 1, 2], 20)
    probs = np.full((60, 3), 0.05)
    probs[np.arange(60), true] = 0.9
    given = true.copy()
    given[:6] = (true[:6] + 1) % 3
    given = np.concatenate([given, [-1]])  # an unlabelled row is never an issue
    probs = np.vstack([probs, rng.dirichlet([1, 1, 1])])
    issue, quality = rank_issues(given, probs)
    assert issue.tolist() == [True] * 6 + [False] * 55
    assert quality[:6] == pytest.approx([0.05] * 6) and quality[6:60] == pytest.approx([0.9] * 54)
    assert np.isnan(quality[60])


@pytest.mark.slow
def test_flipped_digits_are_found(digits, tmp_path, capsys):
    """Flip 5% of the digits' labels; the issues found must be the flipped ones (recall and precision >= 0.8)."""
    ds = Dataset.open(digits)
    keys = ds.index(columns=["key"]).column("key").to_pylist()
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(keys, size=round(0.05 * len(keys)), replace=False).tolist())

    def flip(row):
        if row["key"] in flipped:
            new = (row["label"] + 1 + int(rng.integers(0, 9))) % 10  # any other digit
            row["label"], row["label_name"] = new, str(new)
        return row

    noisy = tmp_path / "noisy"
    rewrite(ds, str(noisy), flip, (), Lineage("test: flip 5% of labels"))
    out = tmp_path / "issues"
    capsys.readouterr()
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "label",
                "issues",
                str(noisy),
                "--folds",
                "5",
                "--epochs",
                "8",
                "--image-size",
                "16",
                "--width",
                "16",
                "--keep-runs",
                str(runs),
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    rows = list(Dataset.open(str(out)).iter_rows(columns=["key", "label_issue", "label_quality", "suggested_label"]))
    found = {r["key"] for r in rows if r["label_issue"]}
    tp = len(found & flipped)
    precision, recall = tp / len(found), tp / len(flipped)
    with capsys.disabled():  # the figure the README quotes
        print(
            f"\nlabel errors: {len(flipped)} flipped, {len(found)} flagged, {tp} right: precision {precision:.3f}, "
            f"recall {recall:.3f}, out-of-fold accuracy {res['oof_accuracy']}"
        )
    assert len(flipped) == 90 and res["issues"] == len(found) and res["labelled"] == 1797
    assert recall >= 0.8 and precision >= 0.8
    assert all(0.0 <= r["label_quality"] <= 1.0 for r in rows)
    report = json.loads((out / "label_issues.json").read_text())
    assert len(report["all_issues"]) == len(found) and report["worst"] == res["worst"]
    qualities = [w["quality"] for w in report["all_issues"]]
    assert qualities == sorted(qualities)  # worst first
    # a fold's classifier pre-labels the clean digits (suggest --model)
    capsys.readouterr()
    assert (
        main(
            ["label", "suggest", digits, "--model", str(runs / "fold0" / "run"), "--out", str(tmp_path / "s"), "--json"]
        )
        == 0
    )
    sugg = json.loads(capsys.readouterr().out)
    assert sugg["suggested"] == 1797 and sugg["failed"] == 0 and sugg["agree_with_label"] > 0.85
    first = next(Dataset.open(str(tmp_path / "s")).iter_rows())
    assert first["suggested_by"].startswith("model:run@") and 0 < first["suggested_confidence"] <= 1


def test_issues_bad_arguments(digits, tmp_path, capsys):
    assert main(["label", "issues", digits, "--folds", "1", "--out", str(tmp_path / "o")]) == 2
    assert "--folds 1: choose 2 to 20" in capsys.readouterr().err
    assert main(["label", "issues", digits, "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "is not a training run (no config.json)" in capsys.readouterr().err
