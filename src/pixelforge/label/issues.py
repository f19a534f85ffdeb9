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
    """The config.json of a classifier run, or a one-line error."""
    path = Path(run) / "config.json"
    if not path.is_file():
        raise UsageError(f"--model {run} is not a training run (no config.json): train one with "
                         "`pixelforge train classifier`, or leave --model out for a small CNN")
    doc = json.loads(path.read_text())
    if doc.get("family") != "classifier":
        raise UsageError(f"--model {run} is a {doc.get('family')} run, not a classifier run")
    return doc


def _configs(config: IssuesConfig, label_column: str):
    """(TrainConfig, ClassifierConfig) for the folds: the run's options where given, cheap defaults else."""
    from pixelforge.models.classifier import ClassifierConfig
    from pixelforge.train.config import TrainConfig
    from pixelforge.train.families.classifier import ClassifierFamily

    train = dataclasses.replace(TrainConfig(), **ClassifierFamily.train_defaults)
    model = ClassifierConfig(label=label_column, image_size=16, width=16)
    if config.model:
        doc = _run_config(config.model)
        m = doc["model"]
        model = ClassifierConfig(arch=m["arch"], label=m["label"], image_size=m["image_size"], width=m["width"],
                                 dropout=m["dropout"], label_smoothing=m["label_smoothing"])
        t = doc["train"]
        keep = ("batch_size", "optimizer", "lr", "weight_decay", "momentum", "lr_schedule", "warmup_steps",
                "grad_clip", "ema_decay", "augment")
        train = dataclasses.replace(train, **{k: t[k] for k in keep if k in t})
    if config.image_size is not None:
        model.image_size = config.image_size
    if config.width is not None:
        model.width = config.width
    train = dataclasses.replace(train, image_size=model.image_size, epochs=config.epochs, max_steps=None,
                                max_minutes=None, seed=config.seed, device=config.device, num_workers=0,
                                eval_every=10**9, log_every=10**9, patience=None,
                                warmup_steps=min(train.warmup_steps, 50))
    if config.batch_size is not None:
        train.batch_size = config.batch_size
    return train, model


def out_of_fold_probs(ds: Dataset, config: IssuesConfig, work: Path) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                                 list[str], list[float]]:
    """(keys, given labels (N,) with -1 for none, out-of-fold probabilities (N, K), class names, fold seconds)."""
    import torch
    from sklearn.model_selection import StratifiedKFold

    from pixelforge.label.rewrite import rewrite
    from pixelforge.models.registry import load_run
    from pixelforge.train.data import load_table
    from pixelforge.train.loop import train

    label_column = "label"
    if config.model:
        label_column = _run_config(config.model).get("label_column", "label")
    train_cfg, model_cfg = _configs(config, label_column)
    table = load_table(ds, model_cfg.image_size, label_column=label_column)
    y = table.labels.numpy()
    names = list(table.label_names)
    labelled = np.flatnonzero(y >= 0)
    counts = np.bincount(y[labelled], minlength=len(names))
    if len(labelled) < 2 * config.folds or (counts[counts > 0] < config.folds).any():
        small = [names[i] for i in np.flatnonzero((counts > 0) & (counts < config.folds))]
        raise UsageError(f"--folds {config.folds}: every class needs at least that many labelled samples "
                         f"(too few: {', '.join(small) or 'all'}); pass fewer --folds")
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
        rewrite(ds, str(fold_data), lambda r: dict(r, split=None) if r["key"] in train_keys else None, (),
                Lineage("label issues fold", {"fold": fold}, [ds.path]), overwrite=True, label=f"fold {fold}")
        run_dir = work / f"fold{fold}" / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        cfg = dataclasses.replace(train_cfg, data=str(fold_data), out=str(run_dir))
        train("classifier", cfg, dataclasses.replace(model_cfg))
        run = load_run(str(run_dir), "best", torch.device(config.device), family="classifier")
        held = np.flatnonzero(fold_of == fold)
        column_of = [names.index(n) for n in run.labels]  # a fold may lack the rarest classes
        with torch.inference_mode():
            for i in range(0, len(held), 512):
                idx = held[i:i + 512]
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
        row.update(label_issue=bool(issue[i]) if has else None,
                   label_quality=float(quality[i]) if has else None,
                   suggested_label=names[pred[i]] if pred[i] >= 0 else None,
                   suggested_confidence=float(probs[i, pred[i]]) if pred[i] >= 0 else None,
                   suggested_by="confident-learning" if pred[i] >= 0 else None)
        return row

    lineage = Lineage("label issues", dataclasses.asdict(config), [data])
    result = rewrite(ds, out, update, ADDED, lineage, overwrite=config.overwrite, label="issues")
    order = [i for i in np.argsort(np.nan_to_num(quality, nan=2.0), kind="stable") if issue[i]]
    worst = [{"key": keys[i], "label": names[y[i]], "suggested": names[pred[i]],
              "quality": round(float(quality[i]), 4)} for i in order[:config.top]]
    res = IssuesResult(out=out, samples=result.num_samples, labelled=int(labelled.sum()), issues=int(issue.sum()),
                       oof_accuracy=round(oof_accuracy, 4), fold_seconds=seconds, worst=worst,
                       seconds=round(time.monotonic() - start, 1))
    report = dataclasses.asdict(res)
    report["all_issues"] = [{"key": keys[i], "label": names[y[i]], "suggested": names[pred[i]],
                             "quality": round(float(quality[i]), 4)} for i in order]
    (Path(result.root) / REPORT).write_text(json.dumps(report, indent=2))
    return res
