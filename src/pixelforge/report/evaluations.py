"""Evaluation sections: the metrics table, per-class accuracy and confusion, memorised pairs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pixelforge.errors import DatasetError
from pixelforge.report import figures
from pixelforge.report.blocks import Section, fmt, pct

PAIRS = 12  # memorisation pairs shown
METRIC_NAMES = {
    "fid": "FID (lower is better)",
    "kid": "KID (lower is better)",
    "kid_std": "KID std",
    "is": "Inception Score (higher is better)",
    "is_std": "IS std",
    "precision": "precision",
    "recall": "recall",
}


def evaluation_section(path: str, doc: dict[str, Any]) -> Section:
    """One evaluation output ({command, config, result}) as a section."""
    command = doc["command"]
    if command == "evaluate conditional":
        return _conditional(path, doc)
    if command == "evaluate memorization":
        return _memorization(path, doc)
    return _metrics(path, doc)


def _metrics(path: str, doc: dict[str, Any]) -> Section:
    r, cfg = doc["result"], doc.get("config") or {}
    features = r.get("features", cfg.get("features"))
    sec = Section(
        "evaluation",
        f"Evaluation: {Path(path).name}",
        path,
        summary=", ".join(f"{k} {fmt(r[k])}" for k in ("fid", "kid", "is", "precision", "recall") if k in r),
    )
    rows = [[METRIC_NAMES.get(k, k), r[k]] for k in METRIC_NAMES if k in r]
    sec.table(
        ["metric", "value"],
        rows,
        title="Metrics",
        note=f"Features: {features}"
        + (f" ({r.get('dims')}-d)" if r.get("dims") else "")
        + (
            ". Classifier-feature FID is domain-specific: not comparable to Inception FID, nor between two "
            "classifier runs."
            if str(features).startswith("classifier")
            else f"; FID convention {r.get('fid_impl')}."
        ),
    )
    sec.facts(
        [
            ("real", r.get("real")),
            ("fake", r.get("fake")),
            ("real images", r.get("n_real")),
            ("fake images", r.get("n_fake")),
            ("features", features),
            ("dimensions", r.get("dims")),
            ("left out (undecodable)", len(r.get("failed") or [])),
        ],
        title="Inputs",
    )
    return sec


def _conditional(path: str, doc: dict[str, Any]) -> Section:
    r = doc["result"]
    attrs: dict[str, Any] = r.get("attributes") or {}
    sec = Section(
        "evaluation",
        f"Prompt accuracy: {Path(path).name}",
        path,
        summary=", ".join(f"{a} {fmt(v.get('accuracy'))}" for a, v in attrs.items()),
    )
    sec.facts(
        [
            ("generated set", r.get("fake")),
            ("images", r.get("n_fake")),
            ("judged by", r.get("classifiers") or {}),
            (
                "right on every attribute",
                f"{pct(r.get('all_correct'))} of {fmt(r.get('n_all'))} images"
                if r.get("all_correct") is not None
                else "—",
            ),
            ("rows not generated", r.get("not_generated")),
        ],
        title="Conditional accuracy",
    )
    sec.table(
        ["attribute", "accuracy", "correct", "judged", "without a target"],
        [[a, v.get("accuracy"), v.get("correct"), v.get("judged"), v.get("unjudged")] for a, v in attrs.items()],
        title="Per attribute",
        note="A row's target is its own column, else the first class its prompt names; "
        "rows without one are not counted as wrong.",
    )
    for a, v in attrs.items():
        per = v.get("per_class") or {}
        sec.table(
            ["asked", "n", "correct", "accuracy"],
            [[k, c.get("n"), c.get("correct"), c.get("accuracy")] for k, c in per.items()],
            title=f"{a}: accuracy per asked class",
        )
        sec.figures(
            [
                (
                    figures.bar_chart(
                        {k: c.get("accuracy") or 0.0 for k, c in per.items()},
                        f"{a}: accuracy per class",
                        xlabel="accuracy",
                    ),
                    "share of images showing what was asked",
                ),
                (
                    figures.confusion_matrix(
                        v.get("confusion") or [],
                        v.get("labels") or [],
                        f"{a}: confusion",
                        ylabel="asked",
                        xlabel="seen",
                    ),
                    "rows: asked, columns: what the classifier saw",
                ),
            ]
        )
    return sec


def _image_of(where: str | None, key: str) -> str | None:
    """A thumbnail of ``key`` in the dataset ``where``, or of the file ``key`` (plain folders)."""
    from pixelforge.report.dataset import sample_uri, samples_by_key
    from pixelforge.store import Dataset

    if where:
        try:
            ds = Dataset.open(where)
        except DatasetError:
            ds = None
        if ds is not None:
            found = samples_by_key(ds, [key])
            return sample_uri(found[key]) if key in found else None
    p = Path(key)
    if p.is_file():
        try:
            return figures.thumbnail(p)
        except OSError:
            return None
    return None


def _memorization(path: str, doc: dict[str, Any]) -> Section:
    r = doc["result"]
    flagged = r.get("flagged") or []
    sec = Section(
        "evaluation",
        f"Memorisation: {Path(path).name}",
        path,
        summary=f"{fmt(r.get('n_flagged'))} of {fmt(r.get('n_fake'))} generated images flagged as copies",
    )
    crit = r.get("criterion") or {}
    sec.facts(
        [
            ("generated set", r.get("fake")),
            ("training set", r.get("train")),
            ("generated images", r.get("n_fake")),
            ("training images", r.get("n_train")),
            ("flagged", f"{fmt(r.get('n_flagged'))} ({pct(r.get('share'))})"),
            ("by pixels", crit.get("pixels")),
            ("by features", crit.get("features") or "not used"),
            ("by alignment", crit.get("alignment") or "not used"),
        ],
        title="Memorisation (Carlini et al. 2023)",
    )
    shown = flagged[:PAIRS]
    title = f"Flagged pairs (the first {len(shown)} of {len(flagged)})"
    if not shown:
        shown = (r.get("top") or [])[:PAIRS]
        title = f"No generated image is flagged: the {len(shown)} closest pairs, for comparison"
    pairs = []
    cache: dict[tuple[str | None, str], str | None] = {}

    def image(where: str | None, key: str) -> str | None:
        if (where, key) not in cache:
            cache[(where, key)] = _image_of(where, key)
        return cache[(where, key)]

    for p in shown:
        pairs.append(
            {
                "left": {"uri": image(r.get("fake"), p["fake"]), "caption": f"generated {p['fake']}"},
                "right": {"uri": image(r.get("train"), p["train"]), "caption": f"training {p['train']}"},
                "text": f"score {fmt(p.get('score'))} by {p.get('by', 'pixels')}"
                + (f", cosine {fmt(p['cosine'])}" if p.get("cosine") is not None else "")
                + (f", aligned {fmt(p['aligned'])}" if p.get("aligned") is not None else ""),
            }
        )
    if pairs:
        sec.pairs(
            pairs,
            title=title,
            note="Score: distance to the nearest training image over the mean distance to "
            "its neighbours (0 = exact copy; flagged at or under the threshold).",
        )
    else:
        sec.missing("Pairs: the output lists no pairs (run `pixelforge evaluate memorization ... --top N --out FILE`).")
    return sec
