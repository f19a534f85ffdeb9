"""End-to-end tests of `pixelforge curate` through the CLI on the fixture dataset (conftest.py)."""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pixelforge.cli import main
from pixelforge.curate.columns import COLUMNS
from pixelforge.store import Dataset


def _digest(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(path).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def curated(fixture_ds, tmp_path_factory, capsys_module=None):
    before = _digest(fixture_ds)
    out = tmp_path_factory.mktemp("cur") / "out"
    code = main(
        [
            "curate",
            fixture_ds,
            "--out",
            str(out),
            "--min-side",
            "32",
            "--max-blur",
            "1",
            "--drop-duplicates",
            "--drop-bad-captions",
            "--processes",
            "1",
            "--json",
        ]
    )
    assert code == 0
    assert _digest(fixture_ds) == before  # the input is never modified
    return out


def test_rules_remove_exactly_what_they_should(curated):
    report = json.loads((curated / "curation.json").read_text())
    assert report["input_samples"] == 12 and report["scored"] == 10 and report["output_samples"] == 4
    assert report["failures"] == {"not_image": 1, "decode_error": 1}
    rules = {r["rule"]: (r["removed"], r["examples"]) for r in report["rules"]}
    assert rules == {
        "opt_out": (1, ["k04"]),
        "min_side": (1, ["k05"]),
        "max_blur": (1, ["k06"]),
        "bad_captions": (1, ["k03"]),
        "duplicates": (2, ["k01", "k02"]),
    }
    assert report["duplicates"]["exact_pairs"] == 1 and report["duplicates"]["groups"] == 1
    assert report["duplicates"]["rows_in_groups"] == 3
    assert report["caption_flags"]["filename_like"] == 1 and report["caption_flags"]["too_short"] == 1


def test_output_rows_keep_input_columns_and_gain_curate_columns(curated):
    ds = Dataset.open(curated)
    assert ds.num_samples == 4 and [s.key for s in ds.iter_samples()] == ["k00", "k07", "k10", "k11"]
    names = ds.schema.names
    assert "note" in names and all(c in names for c in COLUMNS)
    rows = {r["key"]: r for r in ds.iter_rows()}
    assert rows["k07"]["note"] == "photo D with a tiled watermark"
    assert rows["k00"]["dup_group"] == "k00" and rows["k00"]["dup_count"] == 3 and rows["k00"]["dup_keep"]
    assert all(0.0 <= r["q_watermark"] <= 1.0 for r in rows.values())
    assert all(r["q_min_side"] == 96 and r["q_aspect"] == 1.0 and r["q_jpeg_quality"] is None for r in rows.values())
    # the sample's JSON in the shard carries the new columns too
    sample = next(ds.iter_samples())
    assert sample.image[:4] == b"\x89PNG"


def test_failures_and_lineage(curated):
    fails = pq.read_table(curated / "failures.parquet").to_pylist()
    assert sorted((f["reason"], f["source"]) for f in fails) == [("decode_error", "/src/9"), ("not_image", "/src/8")]
    assert all(f["detail"].startswith("sample k0") for f in fails)
    info = json.loads((curated / "dataset.json").read_text())
    lineage = info["lineage"]
    assert lineage["command"] == "curate" and lineage["config"]["min_side"] == 32
    assert lineage["config"]["drop_duplicates"] is True and lineage["inputs"][0]["name"] == "fixture"


def test_where_keeps_matching_rows_in_parallel(fixture_ds, tmp_path, capsys):
    out = tmp_path / "w"
    code = main(
        [
            "curate",
            fixture_ds,
            "--out",
            str(out),
            "--no-drop-opt-out",
            "--no-watermark",
            "--where",
            "label = 0 AND q_min_side >= 32",
            "--processes",
            "2",
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    # label 0: k00 k02 k04 k06 k10 (k08 failed); k02 is 67 px, so all pass q_min_side
    assert result["samples"] == 5 and result["removed"] == {"where": 5}
    rows = list(Dataset.open(out).iter_rows(columns=["key", "q_watermark", "opt_out"]))
    assert [r["key"] for r in rows] == ["k00", "k02", "k04", "k06", "k10"]
    assert all(r["q_watermark"] is None for r in rows) and rows[2]["opt_out"] == "robots.txt"


@pytest.mark.parametrize(
    "where, words",
    [
        ("nope > 1", "is not a valid DuckDB boolean expression"),
        ("q_blur", "gives FLOAT, not a boolean"),
    ],
)
def test_bad_where_is_one_line_naming_columns(fixture_ds, tmp_path, capsys, where, words):
    assert main(["curate", fixture_ds, "--out", str(tmp_path / "x"), "--where", where]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: --where") and words in err and err.count("\n") == 1
    assert "columns: key, shard" in err and "q_watermark" in err and "dup_keep" in err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--max-watermark", "2"], "--max-watermark 2.0: choose a probability from 0 to 1"),
        (["--hamming", "20"], "--hamming 20: choose 0..16 bits"),
        (["--min-side", "0"], "--min-side 0: choose a positive number"),
    ],
)
def test_bad_flags_stop_before_work(fixture_ds, tmp_path, capsys, args, words):
    assert main(["curate", fixture_ds, "--out", str(tmp_path / "x"), *args]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_out_must_not_be_the_input(fixture_ds, capsys):
    assert main(["curate", fixture_ds, "--out", fixture_ds, "--overwrite"]) == 2
    assert "is the input dataset" in capsys.readouterr().err


def test_score_parts_cover_a_shard_exactly_once(fixture_ds):
    from pixelforge.curate.worker import ScoreTask, score_shard

    whole = score_shard(ScoreTask(fixture_ds, "000001.tar", watermark=False))
    parts = [score_shard(ScoreTask(fixture_ds, "000001.tar", a, b, watermark=False)) for a, b in ((0, 2), (2, 5))]
    # shard 1 holds k05..k09; k08 is not an image and k09 is truncated: failures, in the part that has them
    assert whole.table.column("key").to_pylist() == ["k05", "k06", "k07"]
    assert [p.table.column("key").to_pylist() for p in parts] == [["k05", "k06"], ["k07"]]
    assert [f["key"] for f in parts[1].failures] == ["k08", "k09"] and not parts[0].failures
