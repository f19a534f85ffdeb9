"""`pixelforge evaluate conditional`: does each generated image show the class or prompt it was asked for?"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pixelforge.errors import UsageError
from pixelforge.evaluate.features import FeatureModel
from pixelforge.evaluate.images import extract, open_images

ROW_COLUMNS = ["key", "source_kind", "caption", "label", "label_name"]


@dataclass
class ConditionalConfig:
    """Options of `pixelforge evaluate conditional`."""

    n: int | None = None
    batch_size: int = 64
    workers: int = 2


@dataclass
class AttributeAccuracy:
    """How often one judge agreed with what was asked, overall, per asked class, and as a confusion matrix.

    ``confusion[i][j]`` counts images asked for ``labels[i]`` that the judge saw as ``labels[j]``.
    ``unjudged`` rows had no target the judge knows (no such column value, no label name in the prompt).
    """

    attribute: str
    labels: list[str]
    judged: int
    correct: int
    accuracy: float | None
    unjudged: int
    per_class: dict[str, dict[str, Any]]
    confusion: list[list[int]]


@dataclass
class ConditionalResult:
    """Per-attribute accuracy and the share of images right on every attribute at once."""

    n_fake: int
    attributes: dict[str, AttributeAccuracy]
    all_correct: float | None  # over images every judge could judge
    n_all: int
    not_generated: int  # rows whose source_kind is not 'generated' (judged all the same)
    failed: list[dict[str, str]] = field(default_factory=list)


def _mentions(caption: str, labels: list[str]) -> str | None:
    """The label named earliest in ``caption`` as whole words (longest name wins a tie), or None."""
    best: tuple[int, int, str] | None = None
    for name in labels:
        m = re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", caption, flags=re.IGNORECASE)
        if m and (best is None or (m.start(), -len(name)) < (best[0], best[1])):
            best = (m.start(), -len(name), name)
    return best[2] if best else None


def target_of(row: dict[str, Any], attribute: str, labels: list[str]) -> str | None:
    """What the row asked for, for ``attribute``, as one of ``labels`` (None when it cannot be told).

    1. the row's own column named ``attribute`` (shape, colour, ...); ``label`` means label_name;
    2. else the first of ``labels`` the prompt (caption) names as whole words.
    A target outside ``labels`` is None: the judge cannot rule on a class it does not know.
    """
    column = "label_name" if attribute == "label" else attribute
    value = row.get(column)
    if value is None and attribute == "label" and row.get("label") is not None and 0 <= row["label"] < len(labels):
        value = labels[row["label"]]
    if value is None and row.get("caption"):
        value = _mentions(row["caption"], labels)
    value = None if value is None else str(value)
    return value if value in labels else None


def accuracy_of(
    attribute: str, labels: list[str], targets: list[str | None], predicted: list[str]
) -> AttributeAccuracy:
    """Accuracy, per-class accuracy and confusion matrix of one judge's ``predicted`` against ``targets``."""
    index = {name: i for i, name in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(targets, predicted):
        if t is not None:
            confusion[index[t], index[p]] += 1
    judged, correct = int(confusion.sum()), int(np.trace(confusion))
    per_class = {}
    for name, i in index.items():
        n = int(confusion[i].sum())
        if n:
            per_class[name] = {"n": n, "correct": int(confusion[i, i]), "accuracy": float(confusion[i, i] / n)}
    return AttributeAccuracy(
        attribute=attribute,
        labels=labels,
        judged=judged,
        correct=correct,
        accuracy=correct / judged if judged else None,
        unjudged=len(targets) - judged,
        per_class=per_class,
        confusion=confusion.tolist(),
    )


def evaluate_conditional(
    fake: str, judges: dict[str, FeatureModel], config: ConditionalConfig | None = None
) -> ConditionalResult:
    """Judge every image of the dataset ``fake`` with one classifier per attribute.

    ``judges`` maps an attribute (an index column such as ``shape``, or ``label``) to a
    FeatureModel with ``label_names``; its arg-max class is compared with what the row asked for
    (see ``target_of``). Raises UsageError for a plain folder (no rows to read prompts from) or a
    judge without classes.
    """
    config = config or ConditionalConfig()
    if not judges:
        raise UsageError("--classifier is needed: the classifier run that judges each image")
    for attribute, model in judges.items():
        if not model.label_names:
            raise UsageError(f"the judge of {attribute!r} has no label names; its run's config.json must list 'labels'")
    images = open_images(fake, "--fake", config.n)
    if images.dataset is None:
        raise UsageError(
            f"--fake {fake} is a plain folder: conditional accuracy needs a pixelforge dataset whose "
            "rows hold the prompt (caption) or class; make one with `pixelforge generate`"
        )
    rows = images.rows(ROW_COLUMNS + [a for a in judges if a != "label"])
    row_of = dict(zip(images.keys, rows))
    results: dict[str, AttributeAccuracy] = {}
    right_by_key: dict[str, list[bool]] = {}
    failed: list[dict[str, str]] = []
    for attribute, model in judges.items():
        labels = list(model.label_names)
        x = extract(
            images,
            model,
            batch_size=config.batch_size,
            workers=config.workers,
            logits=True,
            label=f"judging {attribute}",
        )
        failed += [{"attribute": attribute, "key": k, "reason": r} for k, r in x.failed]
        predicted = [labels[i] for i in x.logits.argmax(axis=1)]
        targets = [target_of(row_of[k], attribute, labels) for k in x.keys]
        results[attribute] = accuracy_of(attribute, labels, targets, predicted)
        for k, t, p in zip(x.keys, targets, predicted):
            right_by_key.setdefault(k, []).append(None if t is None else t == p)
    complete = [v for v in right_by_key.values() if len(v) == len(judges) and None not in v]
    not_generated = sum(1 for r in rows if r.get("source_kind") != "generated")
    return ConditionalResult(
        n_fake=len(images),
        attributes=results,
        all_correct=sum(all(v) for v in complete) / len(complete) if complete else None,
        n_all=len(complete),
        not_generated=not_generated,
        failed=failed,
    )
