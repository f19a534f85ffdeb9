"""`pixelforge label results`: mean human scores with 95% intervals, win rates and Bradley-Terry strengths.

Every annotator's latest judgement of an item counts once (an annotator who changes their mind
is counted with their final answer). Ties count half a win to each side.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixelforge.errors import UsageError
from pixelforge.label.db import DB_NAME, AnnotationDB
from pixelforge.store import Dataset

RESULTS = "human_eval.json"  # beside the dataset, where the report reads it


@dataclass
class ResultsResult:
    out: str
    ratings: dict[str, dict[str, Any]]  # field -> {n, mean, ci95: [lo, hi], items, annotators}
    compare: dict[str, Any] | None  # {n, wins, ties, win_rate, bradley_terry}


def latest_judgements(db: AnnotationDB, fields: tuple[str, ...]) -> dict[str, list[tuple[str, str, Any]]]:
    """{field: [(key, annotator, value)]}: each annotator's last value per item."""
    last: dict[tuple[str, str, str], Any] = {}
    for edit in db.history():  # in id order: later edits replace earlier ones
        if edit["field"] in fields:
            last[(edit["field"], edit["key"], edit["annotator"])] = edit["value"]
    out: dict[str, list[tuple[str, str, Any]]] = {f: [] for f in fields}
    for (f, key, who), value in last.items():
        out[f].append((key, who, value))
    return out


def mean_ci(values: list[float]) -> dict[str, Any]:
    """Mean with a 95% Student-t interval (n - 1 degrees of freedom); one value has no interval."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean())
    if n < 2:
        return {"n": n, "mean": round(mean, 4), "ci95": None}
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return {"n": n, "mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)]}


def bradley_terry(wins: np.ndarray, iterations: int = 1000, prior: float = 0.5) -> np.ndarray:
    """Strengths s (geometric mean 1) maximising prod (s_i / (s_i + s_j))^w_ij (Hunter 2004's MM updates).

    ``wins[i, j]``: times i beat j (ties already split). ``prior`` pseudo-wins each way between every
    pair keep an undefeated model finite.
    """
    k = len(wins)
    w = wins + prior * (1 - np.eye(k))
    n = w + w.T
    s = np.ones(k)
    for _ in range(iterations):
        # s_i <- W_i / sum_j n_ij / (s_i + s_j)
        denom = (n / (s[:, None] + s[None, :])).sum(1)
        new = w.sum(1) / denom
        new /= np.exp(np.log(new).mean())
        if np.abs(new - s).max() < 1e-10:
            s = new
            break
        s = new
    return s


def results(data: str, db: str | None = None, out: str | None = None) -> ResultsResult:
    """Summarise the rate and compare judgements of a project; write them to ``out`` (DATA/human_eval.json)."""
    ds = Dataset.open(data)
    db_path = Path(db) if db else Path(ds.root) / DB_NAME
    if not db_path.exists():
        raise UsageError(
            f"{db_path} does not exist: collect judgements with `pixelforge label serve --task rate` "
            "or `--task compare` first, or pass --db"
        )
    adb = AnnotationDB(db_path)
    judged = latest_judgements(adb, ("realism", "faithfulness", "compare"))
    ratings = {}
    for f in ("realism", "faithfulness"):
        rows = judged[f]
        if rows:
            ratings[f] = {
                **mean_ci([v for _, _, v in rows]),
                "items": len({k for k, _, _ in rows}),
                "annotators": len({a for _, a, _ in rows}),
            }
    compare = None
    if judged["compare"]:
        datasets = adb.get_setting("datasets", ["A", "B"])
        names = [Path(p).name for p in datasets[:2]]
        if len(set(names)) < 2:
            names = ["A", "B"]
        votes = [v for _, _, v in judged["compare"]]
        a, b, t = votes.count("a"), votes.count("b"), votes.count("tie")
        n = len(votes)
        wins = np.array([[0.0, a + t / 2], [b + t / 2, 0.0]])
        s = bradley_terry(wins)
        compare = {
            "n": n,
            "models": names,
            "wins": {names[0]: a, names[1]: b},
            "ties": t,
            "win_rate": {names[0]: round((a + t / 2) / n, 4), names[1]: round((b + t / 2) / n, 4)},
            "bradley_terry": {names[0]: round(float(s[0]), 4), names[1]: round(float(s[1]), 4)},
            "p_first_beats_second": round(float(s[0] / (s[0] + s[1])), 4),
            "items": len({k for k, _, _ in judged["compare"]}),
            "annotators": len({w for _, w, _ in judged["compare"]}),
        }
    if not ratings and compare is None:
        raise UsageError(
            f"{db_path} holds no rate or compare judgements: run `pixelforge label serve --task rate` "
            "or `--task compare` first"
        )
    target = Path(out) if out else Path(ds.root) / RESULTS
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {"dataset": ds.name, "db": str(db_path), "ratings": ratings, "compare": compare}
    target.write_text(json.dumps(doc, indent=2))
    return ResultsResult(out=str(target), ratings=ratings, compare=compare)
