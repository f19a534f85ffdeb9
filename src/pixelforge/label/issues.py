"""`pixelforge label issues`: likely label errors by confident learning on out-of-fold probabilities.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021), through cleanlab's ``find_label_issues``:
1. k-fold: train the classifier (the shared loop, the run's architecture and options) on k-1 folds and
   predict the held-out fold, so every sample's probabilities p̂(y=j | x): (N, K) come from a model that
   never saw its (possibly wrong) label.
2. per-class thresholds t_j = mean self-confidence p̂(j | x) over samples labelled j.
3. the confident joint C[i][j] counts samples labelled i whose p̂(j | x) >= t_j (the largest such j),
   calibrated to the label counts; off-diagonal mass estimates how many i-labels are really j.
4. prune by noise rate: from each off-diagonal cell, flag that many samples labelled i with the
   largest margin p̂(j | x) - p̂(i | x).
``label_quality`` is the self-confidence p̂(given label | x): low means suspicious.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.store import Dataset, Lineage

ADDED = (
    pa.field("label_issue", pa.bool_()),
    pa.field("label_quality", pa.float32()),  # out-of-fold probability of the given label
    pa.field("suggested_label", pa.string()),  # the out-of-fold prediction
    pa.field("suggested_confidence", pa.float32()),
    pa.field("suggested_by", pa.string()),
)
REPORT = "label_issues.json"


@dataclass
class IssuesConfig:
    model: str | None = None  # a classifier run whose architecture and options the folds reuse
    folds: int = 5
    epochs: int = 8
    image_size: int | None = None  # default: the run's, else 16
    width: int | None = None  # default: the run's, else 16
    batch_size: int | None = None
    seed: int = 0
    top: int = 20  # worst samples listed in the result
    keep_runs: str | None = None  # keep the fold runs here (default: a temporary folder, removed)
    device: str = "cpu"
    threads: int = 1  # torch CPU threads while the folds train: small models run fastest on one
    overwrite: bool = False

    def validate(self) -> None:
        if self.threads < 1:
            raise UsageError(f"--threads {self.threads}: must be at least 1")
        if not 2 <= self.folds <= 20:
            raise UsageError(f"--folds {self.folds}: choose 2 to 20")
        if self.epochs < 1:
            raise UsageError(f"--epochs {self.epochs}: must be at least 1")
        if self.image_size is not None and self.image_size < 8:
            raise UsageError(f"--image-size {self.image_size}: classifiers need at least 8 px")


@dataclass
class IssuesResult:
    out: str
    samples: int
    labelled: int
    issues: int
    oof_accuracy: float  # out-of-fold accuracy against the given labels
    fold_seconds: list[float]
    worst: list[dict[str, Any]]
    seconds: float


def _run_config(run: str) -> dict[str, Any]:
    """The config of a classifier run, or a one-line error."""
    from pixelforge.train.rundir import RunDir

    run_dir = RunDir(run)
    if not run_dir.has_config():
        raise UsageError(
            f"--model {run} is not a training run (no config.json): train one with "
            "`pixelforge train classifier`, or leave --model out for a small CNN"
        )
    doc = run_dir.config
    if doc.get("family") != "classifier":
        raise UsageError(f"--model {run} is a {doc.get('family')} run, not a classifier run")
    return doc


def out_of_fold_probs(
    ds: Dataset, config: IssuesConfig, work: Path
) -> tuple[list[str], np.ndarray, np.ndarray, list[str], list[float]]:
    """(keys, given labels (N,) with -1 for none, out-of-fold probabilities (N, K), class names, fold seconds)."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    from pixelforge.label.rewrite import rewrite
    from pixelforge.train.cross_val import classifier_configs, fit_classifier, labelled_images

    run_config = _run_config(config.model) if config.model else None
    label_column = run_config.get("label_column", "label") if run_config else "label"
    train_cfg, model_cfg = classifier_configs(
        run_config,
        label_column=label_column,
        epochs=config.epochs,
        seed=config.seed,
        device=config.device,
        image_size=config.image_size,
        width=config.width,
        batch_size=config.batch_size,
    )
    table = labelled_images(ds, model_cfg.image_size, label_column)
    y = table.labels.numpy()
    names = list(table.label_names)
    labelled = np.flatnonzero(y >= 0)
    counts = np.bincount(y[labelled], minlength=len(names))
    if len(labelled) < 2 * config.folds or (counts[counts > 0] < config.folds).any():
        small = [names[i] for i in np.flatnonzero((counts > 0) & (counts < config.folds))]
        raise UsageError(
            f"--folds {config.folds}: every class needs at least that many labelled samples "
            f"(too few: {', '.join(small) or 'all'}); pass fewer --folds"
        )
    probs = np.full((len(y), len(names)), np.nan, dtype=np.float32)
    fold_of = np.full(len(y), -1)
    skf = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    for fold, (_, held) in enumerate(skf.split(labelled, y[labelled])):
        fold_of[labelled[held]] = fold
    seconds = []
    for fold in range(config.folds):
        t0 = time.monotonic()
        train_keys = {table.keys[i] for i in labelled if fold_of[i] != fold}
        fold_data = work / f"fold{fold}" / "data"
        # the fold's training samples as a dataset of their own (split cleared: the loop holds out its own val)
        rewrite(
            ds,
            str(fold_data),
            lambda r, keep=train_keys: dict(r, split=None) if r["key"] in keep else None,
            (),
            Lineage("label issues fold", {"fold": fold}, [ds.path]),
            overwrite=True,
            label=f"fold {fold}",
        )
        run_dir = work / f"fold{fold}" / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run = fit_classifier(str(fold_data), str(run_dir), train_cfg, model_cfg, config.device)
        held = np.flatnonzero(fold_of == fold)
        column_of = [names.index(n) for n in run.labels]  # a fold may lack the rarest classes
        with torch.inference_mode():
            for i in range(0, len(held), 512):
                idx = held[i : i + 512]
                x = table.images[torch.as_tensor(idx)].float().div_(255).to(config.device)
                p = run.model(x).float().softmax(1).cpu().numpy()
                out = np.zeros((len(idx), len(names)), dtype=np.float32)
                out[:, column_of] = p
                probs[idx] = out
        seconds.append(round(time.monotonic() - t0, 1))
    return table.keys, y, probs, names, seconds


def rank_issues(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is_issue (N,) bool, quality (N,) float) by confident learning; rows with label -1 are never issues."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issue = np.zeros(len(labels), dtype=bool)
    quality = np.full(len(labels), np.nan, dtype=np.float32)
    rows = np.flatnonzero(labels >= 0)
    if len(rows) == 0:
        return issue, quality
    p = probs[rows].astype(np.float64)
    p = np.clip(p, 1e-6, None)
    p /= p.sum(1, keepdims=True)
    issue[rows] = find_label_issues(labels[rows], p, filter_by="prune_by_noise_rate")
    quality[rows] = get_label_quality_scores(labels[rows], p, method="self_confidence")
    return issue, quality


def find_issues(data: str, out: str, config: IssuesConfig) -> IssuesResult:
    """Write ``out``: ``data`` with label_issue, label_quality and the out-of-fold suggestion; OUT/label_issues.json."""
    from pixelforge.label.rewrite import check_out, rewrite

    config.validate()
    if config.model:
        _run_config(config.model)
    start = time.monotonic()
    ds = Dataset.open(data)
    check_out(ds, out)
    import torch

    threads = torch.get_num_threads()
    # tiny CNNs on small images spend more time synchronising threads than computing: on 2 shared
    # cores one thread ran the digits folds 3.6x faster (25 vs 109 CPU-seconds) with the same result
    torch.set_num_threads(config.threads)
    try:
        if config.keep_runs:
            work = Path(config.keep_runs)
            work.mkdir(parents=True, exist_ok=True)
            keys, y, probs, names, seconds = out_of_fold_probs(ds, config, work)
        else:
            with tempfile.TemporaryDirectory(prefix="pixelforge-issues-") as tmp:
                keys, y, probs, names, seconds = out_of_fold_probs(ds, config, Path(tmp))
    finally:
        torch.set_num_threads(threads)
    issue, quality = rank_issues(y, probs)
    pred = np.where(np.isnan(probs).any(1), -1, np.nan_to_num(probs).argmax(1))
    by_key = {k: i for i, k in enumerate(keys)}
    labelled = y >= 0
    oof_accuracy = float((pred[labelled] == y[labelled]).mean())

    def update(row: dict[str, Any]) -> dict[str, Any]:
        i = by_key[row["key"]]
        has = y[i] >= 0
        row.update(
            label_issue=bool(issue[i]) if has else None,
            label_quality=float(quality[i]) if has else None,
            suggested_label=names[pred[i]] if pred[i] >= 0 else None,
            suggested_confidence=float(probs[i, pred[i]]) if pred[i] >= 0 else None,
            suggested_by="confident-learning" if pred[i] >= 0 else None,
        )
        return row

    lineage = Lineage("label issues", dataclasses.asdict(config), [data])
    result = rewrite(ds, out, update, ADDED, lineage, overwrite=config.overwrite, label="issues")
    order = [i for i in np.argsort(np.nan_to_num(quality, nan=2.0), kind="stable") if issue[i]]
    worst = [
        {"key": keys[i], "label": names[y[i]], "suggested": names[pred[i]], "quality": round(float(quality[i]), 4)}
        for i in order[: config.top]
    ]
    res = IssuesResult(
        out=out,
        samples=result.num_samples,
        labelled=int(labelled.sum()),
        issues=int(issue.sum()),
        oof_accuracy=round(oof_accuracy, 4),
        fold_seconds=seconds,
        worst=worst,
        seconds=round(time.monotonic() - start, 1),
    )
    report = dataclasses.asdict(res)
    report["all_issues"] = [
        {"key": keys[i], "label": names[y[i]], "suggested": names[pred[i]], "quality": round(float(quality[i]), 4)}
        for i in order
    ]
    (Path(result.root) / REPORT).write_text(json.dumps(report, indent=2))
    return res
