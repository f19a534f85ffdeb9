"""Per-group model quality: a classifier's accuracy per true label and per caption subgroup."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from pixelforge.errors import UsageError

FLAG = "--predictions"
COLUMNS = ("key", "predicted", "target")
LABEL_COLUMN_META = b"pixelforge.label_column"
FLAG_POINTS = 5  # a group is flagged when its accuracy is more than this many points under the overall


def check_predictions(path: str):
    """Open the predictions parquet and check its columns; returns (ParquetFile, label column or None)."""
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise UsageError(f"{FLAG} {path}: no such file; write one with `pixelforge predict RUN --data DIR --out FILE`")
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is not parquet
        raise UsageError(f"{FLAG} {path}: not a parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise UsageError(
            f"{FLAG} {path}: no column {', '.join(missing)}; it needs key, predicted and target "
            "(as `pixelforge predict` writes)"
        )
    label_column = (pf.schema_arrow.metadata or {}).get(LABEL_COLUMN_META)
    return pf, label_column.decode() if label_column else None


def _accuracy(count: int, correct: int, overall: tuple[int, int] | None, min_count: int = 1) -> dict[str, Any]:
    row: dict[str, Any] = {"count": count, "correct": correct, "accuracy": correct / count if count else None}
    if overall is not None and overall[0] and count:
        # more than FLAG_POINTS under:  correct/count < C/N - FLAG_POINTS/100, compared exactly
        gap = Fraction(overall[1], overall[0]) - Fraction(correct, count)
        row["points_under_overall"] = round(float(gap * 100), 4)
        row["flagged"] = count >= min_count and gap * 100 > FLAG_POINTS
    return row


def predictions_section(con, path: str, with_groups: bool, min_count: int = 1) -> dict[str, Any]:
    """Accuracy overall, per true label and per caption subgroup, with the groups under the overall flagged.

    Only predictions whose key is in the dataset and whose target is known count. A label or
    subgroup of at least ``min_count`` predictions is flagged when its accuracy is more than
    FLAG_POINTS percentage points under the overall accuracy. ``with_groups`` needs the caption
    tables of captions.captions_to_tables.
    """
    pf, label_column = check_predictions(path)
    con.register("audit_pred_src", pf.read(columns=list(COLUMNS)))
    total, distinct = con.execute("SELECT count(*), count(DISTINCT key) FROM audit_pred_src").fetchall()[0]
    if distinct != total:
        raise UsageError(
            f"{FLAG} {path}: {total - distinct} keys appear more than once; write one prediction per sample"
        )
    con.execute("""CREATE OR REPLACE TEMP TABLE audit_pred AS
        SELECT CAST(p.key AS VARCHAR) AS key, CAST(p.target AS VARCHAR) AS target,
               CAST(CAST(p.predicted AS VARCHAR) = CAST(p.target AS VARCHAR) AS INTEGER) AS correct
        FROM audit_pred_src p SEMI JOIN samples s ON CAST(p.key AS VARCHAR) = s.key""")
    matched, with_target, correct = con.execute(
        "SELECT count(*), count(target), coalesce(sum(correct), 0) FROM audit_pred"
    ).fetchall()[0]
    overall = (int(with_target), int(correct))
    per_label = []
    for label, n, c in con.execute(
        "SELECT target, count(*), sum(correct) FROM audit_pred WHERE target IS NOT NULL GROUP BY target ORDER BY target"
    ).fetchall():
        per_label.append({"label": label, **_accuracy(int(n), int(c), overall, min_count)})
    per_group = []
    if with_groups:
        for grp, sub, n, c in con.execute(
            "SELECT h.grp, h.sub, count(*), sum(p.correct) FROM audit_hits h JOIN audit_caps USING (id) "
            "JOIN audit_pred p USING (key) WHERE p.target IS NOT NULL GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            per_group.append({"group": grp, "subgroup": sub, **_accuracy(int(n), int(c), overall, min_count)})
    return {
        "file": path,
        "label_column": label_column,
        "predictions": int(total),
        "matched": int(matched),
        "unmatched": int(total - matched),
        "without_target": int(matched - with_target),
        "overall": _accuracy(*overall, None),
        "flag_points": FLAG_POINTS,
        "flag_min_count": min_count,
        "per_label": per_label,
        "per_group": per_group,
        "flagged": [f"label {r['label']}" for r in per_label if r.get("flagged")]
        + [f"{r['group']}/{r['subgroup']}" for r in per_group if r.get("flagged")],
    }
