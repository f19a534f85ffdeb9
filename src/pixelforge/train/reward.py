"""Rewards for `pixelforge train reward`: what a generated image earns for the prompt it was asked for.

Every reward is a log-strength s(x, prompt) (differentiable in x), so the methods treat them alike:
- ``classifier:RUN[:COLUMN]`` judges: s = sum over judges of log p_judge(the class the prompt states),
  the log-probability that every judge finds what the prompt asks for;
- ``ratings:PROJECT``: a Bradley-Terry model of people's judgements in a label project (`label serve
  --task rate|compare`), s = w . phi(x, prompt), where phi holds each feature judge's log p(stated class)
  (``--rating-features``): P(image i preferred to j) = sigmoid(s_i - s_j).

The class a prompt states: the prompts file's COLUMN (a CSV or JSON-lines file with a ``prompt``
column), else the one class name of the judge that the prompt contains as a word.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from pixelforge.errors import UsageError

REWARD_KINDS = ("classifier", "ratings")
PAIR_LIMIT = 20_000  # rating pairs fitted at most (drawn at random beyond it)


# -- judges ------------------------------------------------------------------------------------------


@dataclass
class Judge:
    """A trained classifier run and, per prompt, the class id the prompt states."""

    spec: str
    run: str
    column: str | None
    names: list[str]
    net: torch.nn.Module
    image_size: int
    expected: dict[str, int] = field(default_factory=dict)  # prompt -> class id

    def stated(self, row: dict[str, str], where: str) -> int:
        """The class id ``row`` (a prompts-file row, or a rated image's {"prompt": caption}) states."""
        prompt = row["prompt"]
        if self.column is not None:
            if self.column not in row:
                raise UsageError(f"{self.spec}: {where} has no column {self.column!r}")
            value = row[self.column]
            if value not in self.names:
                raise UsageError(
                    f"{self.spec}: {where} states {self.column} {value!r}, not a class of {self.run} "
                    f"({', '.join(self.names)})"
                )
            return self.names.index(value)
        found = [i for i, n in enumerate(self.names) if re.search(rf"\b{re.escape(n)}\b", prompt, re.IGNORECASE)]
        if len(found) != 1:
            what = "none" if not found else "several (" + ", ".join(self.names[i] for i in found) + ")"
            raise UsageError(
                f"{self.spec}: {where} {prompt!r} names {what} of the judge's classes; say which in a "
                f"prompts-file column and pass classifier:{self.run}:COLUMN"
            )
        return found[0]

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, classes) log-probabilities of images x (B, 3, S, S) in [-1, 1] (differentiable in x)."""
        x01 = (x.float() + 1) / 2
        if x01.shape[-1] != self.image_size:
            x01 = F.interpolate(x01, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return self.net(x01).float().log_softmax(1)

    def stated_log_prob(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        ids = torch.tensor([self.expected[p] for p in prompts], device=x.device)
        return self.log_probs(x).gather(1, ids[:, None])[:, 0]


def parse_judge(spec: str, device: torch.device) -> Judge:
    """``classifier:RUN[:COLUMN]`` -> a frozen judge on ``device``."""
    from pixelforge.train.rundir import load_run

    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] != "classifier" or not parts[1]:
        raise UsageError(f"{spec!r}: write classifier:RUN or classifier:RUN:COLUMN")
    run_path, column = parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)
    if not Path(run_path).is_dir():
        raise UsageError(f"{spec}: {run_path} is not a run directory (train one with `pixelforge train classifier`)")
    run = load_run(run_path, "best", device, family="classifier")
    net = run.model
    for p in net.parameters():
        p.requires_grad_(False)
    return Judge(spec, run_path, column, run.labels, net, int(run.config["model"]["image_size"]))


# -- rewards -----------------------------------------------------------------------------------------


def judge_features(judges: list[Judge], x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """(B, judges): each judge's log-probability of the class each image's prompt states."""
    return torch.stack([j.stated_log_prob(x, prompts) for j in judges], dim=1)


class Reward(abc.ABC):
    """s(x, prompts): (B,) log-strengths, differentiable in x. ``describe`` goes into the run's config.json."""

    judges: list[Judge]

    def bind(self, rows: list[dict[str, str]], where: str) -> None:
        """Find the class every judge expects for each prompt row (before any training)."""
        for judge in self.judges:
            for i, row in enumerate(rows):
                judge.expected[row["prompt"]] = judge.stated(row, f"{where} row {i + 1}")

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor: ...

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]: ...


class ClassifierReward(Reward):
    """log P(every judge finds the stated class) = sum of the judges' log-probabilities."""

    def __init__(self, judges: list[Judge]):
        self.judges = judges

    def __call__(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return judge_features(self.judges, x, prompts).sum(1)

    def describe(self) -> dict[str, Any]:
        return {"kind": "classifier", "judges": [j.spec for j in self.judges]}


class RatingsReward(Reward):
    """Bradley-Terry on judge features: s = w . (phi - mean) / std, phi_j = log p_j(stated class)."""

    def __init__(self, project: str, judges: list[Judge], fit: dict[str, Any]):
        self.project, self.judges, self.fit = project, judges, fit
        self.w = torch.tensor(fit["weights"], dtype=torch.float32)
        self.mean = torch.tensor(fit["feature_mean"], dtype=torch.float32)
        self.std = torch.tensor(fit["feature_std"], dtype=torch.float32)

    def __call__(self, x: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        phi = (judge_features(self.judges, x, prompts) - self.mean.to(x.device)) / self.std.to(x.device)
        return phi @ self.w.to(x.device)

    def describe(self) -> dict[str, Any]:
        return {"kind": "ratings", "project": self.project, "features": [j.spec for j in self.judges], "fit": self.fit}


def parse_reward(specs: list[str], feature_specs: list[str], device: torch.device) -> Reward:
    """The reward of ``--reward SPEC...`` (with ``--rating-features`` for ratings), judges loaded."""
    if not specs:
        raise UsageError("--reward is required: classifier:RUN[:COLUMN] (repeatable) or ratings:PROJECT")
    kinds = {s.split(":", 1)[0] for s in specs}
    if not kinds <= set(REWARD_KINDS):
        bad = next(s for s in specs if s.split(":", 1)[0] not in REWARD_KINDS)
        raise UsageError(f"--reward {bad!r}: choose classifier:RUN[:COLUMN] or ratings:PROJECT")
    if kinds == {"classifier"}:
        if feature_specs:
            raise UsageError("--rating-features: only a ratings:PROJECT reward takes them")
        return ClassifierReward([parse_judge(s, device) for s in specs])
    if len(specs) != 1:
        raise UsageError("--reward ratings:PROJECT: give it alone (its judges go in --rating-features)")
    project = specs[0].split(":", 1)[1]
    if not feature_specs:
        raise UsageError(
            f"--reward {specs[0]}: pass --rating-features classifier:RUN[:COLUMN] (the judges whose verdicts "
            "the ratings are fitted on)"
        )
    judges = [parse_judge(s, device) for s in feature_specs]
    return RatingsReward(project, judges, fit_ratings(project, judges, device))


# -- the ratings model -------------------------------------------------------------------------------


def rating_pairs(project: str) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """The judged images of a label project and (winner, loser) pairs between them.

    Images: ``side:key`` -> {"dataset", "key", "prompt"}. Pairs: every compare judgement that is not a tie;
    and, from rate judgements (realism, faithfulness: the mean over fields and annotators per image),
    every two images of different mean score (the higher wins).
    """
    from pixelforge.label.db import DB_NAME, AnnotationDB
    from pixelforge.label.results import latest_judgements
    from pixelforge.store import Dataset

    db_path = Path(project) / DB_NAME
    if not db_path.is_file():
        raise UsageError(
            f"--reward ratings:{project}: no {DB_NAME} there; collect ratings with `pixelforge label serve "
            f"{project} --task rate` (or --task compare DIR_A DIR_B)"
        )
    db = AnnotationDB(db_path)
    datasets = db.get_setting("datasets", [project])
    judged = latest_judgements(db, ("realism", "faithfulness", "compare"))
    captions = {
        side: {r["key"]: r["caption"] for r in Dataset.open(path).iter_rows(columns=["key", "caption"])}
        for side, path in zip("ab", datasets)
    }
    images: dict[str, dict[str, Any]] = {}

    def image(side: str, key: str) -> str:
        name = f"{side}:{key}"
        if name not in images:
            images[name] = {"dataset": datasets["ab".index(side)], "key": key, "prompt": captions[side].get(key)}
        return name

    pairs: list[tuple[str, str]] = []
    for key, _, vote in judged["compare"]:
        a, b = key.split("+", 1)
        if vote == "a":
            pairs.append((image("a", a), image("b", b)))
        elif vote == "b":
            pairs.append((image("b", b), image("a", a)))
    scores: dict[str, list[float]] = {}
    for f in ("realism", "faithfulness"):
        for key, _, value in judged[f]:
            scores.setdefault(image("a", key), []).append(float(value))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    rated = sorted(mean)
    for i, p in enumerate(rated):
        for q in rated[i + 1 :]:
            if mean[p] != mean[q]:
                pairs.append((p, q) if mean[p] > mean[q] else (q, p))
    missing = [n for n in images if not images[n]["prompt"]]
    if missing:
        raise UsageError(f"--reward ratings:{project}: image {missing[0]} has no caption (the prompt it was made for)")
    return images, pairs


def fit_ratings(project: str, judges: list[Judge], device: torch.device, folds: int = 5) -> dict[str, Any]:
    """Fit w of P(i beats j) = sigmoid(w . (phi_i - phi_j)) by L2-regularised logistic regression
    (scikit-learn), and its quality: the share of held-out pairs ordered right, with images split
    into ``folds`` groups (a pair is held out when both its images are in the held-out group)."""
    from sklearn.linear_model import LogisticRegression

    from pixelforge.store import Dataset

    images, pairs = rating_pairs(project)
    if len(pairs) < 10:
        raise UsageError(
            f"--reward ratings:{project}: {len(pairs)} usable judgements (ties and equal ratings carry no "
            "preference); collect at least 10"
        )
    rng = np.random.default_rng(0)
    if len(pairs) > PAIR_LIMIT:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), PAIR_LIMIT, replace=False))]
    names = sorted(images)
    for judge in judges:
        for n in names:
            judge.expected[images[n]["prompt"]] = judge.stated(images[n], f"rated image {n}")
    # phi of every judged image: (N, judges)
    wanted: dict[str, set[str]] = {}
    for n in names:
        wanted.setdefault(images[n]["dataset"], set()).add(images[n]["key"])
    pixels: dict[str, torch.Tensor] = {}
    for path, keys in wanted.items():
        for sample in Dataset.open(path).iter_samples():
            if sample.key in keys:
                arr = np.asarray(sample.decode().convert("RGB"), dtype=np.float32)
                pixels[f"{path}\0{sample.key}"] = torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1
    with torch.no_grad():  # one image at a time: the rated images need not share a size
        phi = torch.cat(
            [
                judge_features(judges, pixels[f"{images[n]['dataset']}\0{images[n]['key']}"][None].to(device),
                               [images[n]["prompt"]])
                for n in names
            ]
        ).cpu().numpy()  # fmt: skip
    mean, std = phi.mean(0), phi.std(0) + 1e-6
    z = (phi - mean) / std
    index = {n: i for i, n in enumerate(names)}
    win = np.array([index[w] for w, _ in pairs])
    lose = np.array([index[v] for _, v in pairs])

    def fit(sel: np.ndarray) -> np.ndarray:
        d = z[win[sel]] - z[lose[sel]]
        x = np.concatenate([d, -d])
        y = np.concatenate([np.ones(len(d)), np.zeros(len(d))])
        return LogisticRegression(fit_intercept=False, C=1.0).fit(x, y).coef_[0]

    group = rng.permutation(len(names)) % folds
    right, held = 0, 0
    for k in range(folds):
        test = (group[win] == k) & (group[lose] == k)
        train = (group[win] != k) & (group[lose] != k)
        if not test.any() or not train.any():
            continue
        w = fit(train)
        right += int(((z[win[test]] - z[lose[test]]) @ w > 0).sum())
        held += int(test.sum())
    w = fit(np.ones(len(pairs), dtype=bool))
    return {
        "pairs": len(pairs),
        "images": len(names),
        "train_accuracy": round(float(((z[win] - z[lose]) @ w > 0).mean()), 4),
        "heldout_accuracy": round(right / held, 4) if held else None,
        "heldout_pairs": held,
        "weights": [round(float(v), 6) for v in w],
        "feature_mean": [float(v) for v in mean],
        "feature_std": [float(v) for v in std],
    }
