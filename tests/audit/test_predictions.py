"""Per-group model quality from a predictions parquet (as `pixelforge predict` writes it), exactly."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pixelforge.audit.predictions import _accuracy
from pixelforge.audit.stage import AuditConfig, audit
from pixelforge.cli import main
from tests.audit.conftest import LABELS, write_predictions

WRONG = {"s000", "s001", "s002", "s010"}  # three female-nurse captions (cat) and the old man (dog)


def predictions_rows():
    rows = []
    for i, label in enumerate(LABELS):
        key = f"s{i:03d}"
        target = None if key == "s019" else label
        rows.append((key, "other" if key in WRONG else label, 0.9, target))
    rows.append(("x999", "cat", 0.5, "dog"))  # not in the dataset: ignored, counted as unmatched
    return rows


def test_accuracy_per_label_and_group(skewed, tmp_path):
    path = write_predictions(tmp_path / "p.parquet", predictions_rows())
    pred = audit(skewed, str(tmp_path / "a"), AuditConfig(predictions=path, min_count=2)).report["predictions"]
    assert (pred["file"], pred["label_column"]) == (path, "label_name")
    assert (pred["predictions"], pred["matched"], pred["unmatched"], pred["without_target"]) == (21, 20, 1, 1)
    assert pred["overall"] == {"count": 19, "correct": 15, "accuracy": 15 / 19}
    overall = 15 / 19

    def row(count, correct, flagged):
        return {
            "count": count,
            "correct": correct,
            "accuracy": correct / count,
            "points_under_overall": round((overall - correct / count) * 100, 4),
            "flagged": flagged,
        }

    assert pred["per_label"] == [
        {"label": "bird", **row(3, 3, False)},
        {"label": "cat", **row(10, 7, True)},  # 70.0% vs 78.9%: 8.9 points under
        {"label": "dog", **row(6, 5, False)},
    ]
    assert pred["per_group"] == [
        {"group": "age", "subgroup": "child", **row(1, 1, False)},
        {"group": "age", "subgroup": "elderly", **row(1, 0, False)},  # 79 points under, but 1 < --min-count 2
        {"group": "gender", "subgroup": "female", **row(6, 3, True)},  # 50%: the nurse captions the model gets wrong
        {"group": "gender", "subgroup": "male", **row(6, 5, False)},
        {"group": "region", "subgroup": "africa", **row(1, 1, False)},  # s019 has no target
        {"group": "region", "subgroup": "oceania", **row(1, 0, False)},
    ]
    assert pred["flagged"] == ["label cat", "gender/female"] and pred["flag_points"] == 5


def test_flag_is_strictly_more_than_five_points():
    assert _accuracy(10, 7, (20, 15))["flagged"] is False  # exactly 5 points under (0.75 - 0.70)
    assert _accuracy(100, 69, (20, 15))["flagged"] is True  # 6 points under
    assert _accuracy(100, 69, (20, 15), min_count=101)["flagged"] is False
    assert _accuracy(10, 7, (20, 15))["points_under_overall"] == 5.0


def test_summary_names_flagged_groups(skewed, tmp_path, capsys):
    path = write_predictions(tmp_path / "p.parquet", predictions_rows())
    capsys.readouterr()
    assert main(["audit", skewed, "--out", str(tmp_path / "a"), "--predictions", path, "--min-count", "2"]) == 0
    out = capsys.readouterr().out
    assert "accuracy 78.9% over 19 with a target" in out and "label cat, gender/female" in out


def test_bad_predictions_files(skewed, tmp_path, capsys):
    missing = tmp_path / "m.parquet"
    pq.write_table(pa.table({"key": ["s000"], "label": ["cat"]}), missing)
    assert main(["audit", skewed, "--out", str(tmp_path / "a"), "--predictions", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"Error: --predictions {missing}: no column predicted, target; it needs key, predicted and "
        "target (as `pixelforge predict` writes)\n"
    )
    text = tmp_path / "t.parquet"
    text.write_text("key,predicted\n")
    assert main(["audit", skewed, "--out", str(tmp_path / "a"), "--predictions", str(text)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: --predictions {text}: not a parquet file") and err.count("\n") == 1
    dup = write_predictions(tmp_path / "d.parquet", [("s000", "cat", 1.0, "cat"), ("s000", "dog", 1.0, "cat")])
    assert main(["audit", skewed, "--out", str(tmp_path / "a"), "--predictions", dup]) == 2
    assert "1 keys appear more than once" in capsys.readouterr().err


@pytest.mark.parametrize("rows", [[]])
def test_empty_predictions(skewed, tmp_path, rows):
    path = write_predictions(tmp_path / "p.parquet", rows)
    pred = audit(skewed, str(tmp_path / "a"), AuditConfig(predictions=path)).report["predictions"]
    assert pred["matched"] == 0 and pred["overall"] == {"count": 0, "correct": 0, "accuracy": None}
    assert pred["per_label"] == [] and pred["per_group"] == [] and pred["flagged"] == []
