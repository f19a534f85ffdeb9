"""End-to-end tests of `pixelforge split` and `curate --check-leakage` through the CLI."""

import json
from collections import Counter, defaultdict

import pytest

from pixelforge.cli import main
from pixelforge.curate.split import assign_splits
from pixelforge.store import Dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    # 16 px shapes: many images are near duplicates by phash (same shape and place), so groups matter
    out = tmp_path_factory.mktemp("split") / "shapes"
    assert (
        main(
            [
                "import",
                "shapes",
                "--n",
                "120",
                "--size",
                "16",
                "--seed",
                "1",
                "--samples-per-shard",
                "40",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return str(out)


def _splits(path):
    return {r["key"]: r["split"] for r in Dataset.open(path).iter_rows(columns=["key", "split"])}


def test_assign_splits_keeps_groups_whole_and_hits_fractions():
    groups = [i // 2 for i in range(100)]  # 50 pairs
    strata = [i % 4 // 2 for i in range(100)]  # pairs alternate between two strata
    split = assign_splits(__import__("numpy").array(groups), strata, {"train": 0.6, "val": 0.2, "test": 0.2}, 0)
    assert Counter(split.tolist()) == {"train": 60, "val": 20, "test": 20}
    for g in range(50):
        assert split[2 * g] == split[2 * g + 1]
    by = Counter((s, v) for s, v in zip(strata, split.tolist()))
    assert by[(0, "train")] == by[(1, "train")] == 30 and by[(0, "val")] == by[(1, "test")] == 10


def test_split_auto_groups_never_straddle_and_leakage_is_zero(shapes, tmp_path, capsys):
    out = tmp_path / "s"
    capsys.readouterr()
    assert (
        main(
            [
                "split",
                shapes,
                "--out",
                str(out),
                "--val",
                "0.2",
                "--test",
                "0.2",
                "--stratify",
                "label",
                "--seed",
                "3",
                "--processes",
                "1",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 120 and sum(result["counts"].values()) == 120
    assert result["straddling_groups"] == 0 and result["grouped_by"].startswith("phash within 8 bits")
    assert set(result["by_stratum"]) == {str(i) for i in range(6)}
    cur = tmp_path / "c"
    assert (
        main(
            [
                "curate",
                str(out),
                "--out",
                str(cur),
                "--check-leakage",
                "--no-watermark",
                "--processes",
                "1",
                "--combined",
                "128",
                "--dedup",
                "hash",  # the groups split computed: phash alone
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["leakage_pairs"] == 0
    # the same seed gives the same split
    again = tmp_path / "s2"
    assert (
        main(
            [
                "split",
                shapes,
                "--out",
                str(again),
                "--val",
                "0.2",
                "--test",
                "0.2",
                "--stratify",
                "label",
                "--seed",
                "3",
                "--processes",
                "1",
            ]
        )
        == 0
    )
    assert _splits(out) == _splits(again)


def test_ungrouped_split_leaks_and_curate_reports_it(shapes, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["split", shapes, "--out", str(out), "--group", "none", "--seed", "0", "--processes", "1"]) == 0
    cur = tmp_path / "c"
    capsys.readouterr()
    assert (
        main(
            [
                "curate",
                str(out),
                "--out",
                str(cur),
                "--check-leakage",
                "--no-watermark",
                "--processes",
                "1",
                "--combined",
                "128",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    report = json.loads((cur / "curation.json").read_text())["leakage"]
    rows = list(Dataset.open(cur).iter_rows(columns=["key", "split", "dup_group"]))
    per_group = defaultdict(Counter)
    for r in rows:
        per_group[r["dup_group"]][r["split"]] += 1
    expected = sum((sum(c.values()) ** 2 - sum(v * v for v in c.values())) // 2 for c in per_group.values())
    assert result["leakage_pairs"] == report["cross_split_pairs"] == expected > 0
    assert len(report["examples"]) == 8 and all(e["a_split"] != e["b_split"] for e in report["examples"])
    # grouping by the curated dup_group removes the leak
    fixed = tmp_path / "f"
    assert main(["split", str(cur), "--out", str(fixed), "--group", "dup_group", "--processes", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["straddling_groups"] == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--val", "0.6", "--test", "0.5"], "leaves no training data"),
        (["--stratify", "colour_name"], "--stratify 'colour_name' is not a column; columns: key"),
        (["--val", "-0.1"], "--val -0.1: choose a fraction in [0, 1)"),
    ],
)
def test_bad_split_flags(shapes, tmp_path, capsys, args, words):
    assert main(["split", shapes, "--out", str(tmp_path / "x"), *args]) == 2
    assert words in capsys.readouterr().err


def test_large_groups_missing_the_fractions_warn_and_are_recorded(shapes, tmp_path, capsys):
    out = tmp_path / "g"
    capsys.readouterr()
    # six labels = six groups of about 20 rows: val and test cannot be 10% each
    assert (
        main(
            [
                "split",
                shapes,
                "--out",
                str(out),
                "--group",
                "label",
                "--val",
                "0.1",
                "--test",
                "0.1",
                "--processes",
                "1",
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    counts = result["counts"]
    achieved = {s: round(counts[s] / 120, 4) for s in ("train", "val", "test")}
    assert result["fractions"] == achieved and counts["test"] == 0  # no group fits in 12 rows
    asked = "asked train 0.800, val 0.100, test 0.100"
    got = ", ".join(f"{s} {achieved[s]:.3f}" for s in ("train", "val", "test"))
    warnings = [line for line in captured.err.splitlines() if line.startswith("Warning: ")]
    assert warnings == [
        f"Warning: split fractions missed (val, test): {asked}, achieved {got}; groups are "
        "too large to cut finer (see --group, or --group none to split rows alone)"
    ]
    assert result["warnings"] == [warnings[0][len("Warning: ") :]]
    info = json.loads((out / "dataset.json").read_text())
    assert info["lineage"]["config"]["achieved_fractions"] == achieved
    stats = json.loads((out / "stats.json").read_text())
    assert stats["fractions"] == achieved and stats["warnings"] == result["warnings"]


def test_fractions_met_give_no_warning(shapes, tmp_path, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "split",
                shapes,
                "--out",
                str(tmp_path / "n"),
                "--group",
                "none",
                "--val",
                "0.1",
                "--test",
                "0.2",
                "--processes",
                "1",
                "--json",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out)["fractions"] == {"train": 0.7, "val": 0.1, "test": 0.2}
    assert "Warning" not in captured.err
