"""Training sections: loss and validation curves, learning rate, sample grids over time, config, result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelforge.report import figures
from pixelforge.report.blocks import Section, fmt
from pixelforge.train.rundir import RunDir

GRIDS = 6  # sample grids shown, evenly spaced over training (first and last included)
LOOP_COLUMNS = ("step", "epoch", "lr", "images_per_s", "seconds")
# options of the loop worth a line in the report (the whole config is in config.json)
TRAIN_KEYS = (
    "image_size",
    "batch_size",
    "optimizer",
    "lr",
    "lr_schedule",
    "warmup_steps",
    "epochs",
    "max_steps",
    "max_minutes",
    "ema_decay",
    "seed",
    "augment",
    "eval_every",
    "policy",
    "allow_opt_out",
)


@dataclass
class RunFacts:
    """What the report shows of a training run, read through its RunDir."""

    path: str
    name: str
    config: dict[str, Any]
    result: dict[str, Any] | None  # None until training stops
    metrics: tuple[list[str], list[dict[str, float]]] | None  # (columns, rows); None: no metrics.csv
    grids: list[tuple[int, Path]]  # (step, file) of the sample grids shown
    best: dict[str, Any] | None  # the checkpoint markers
    latest: dict[str, Any] | None
    kept: list[str] | None  # checkpoint folders on disk; None: no checkpoints folder

    @property
    def family(self) -> str:
        return self.config.get("family", "?")

    @property
    def train(self) -> dict[str, Any]:
        return self.config.get("train") or {}


def _series(rows: list[dict[str, float]], column: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[column]) for r in rows if column in r and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def evenly_spaced(grids: list[tuple[int, Path]], limit: int = GRIDS) -> list[tuple[int, Path]]:
    """Up to ``limit`` of the (step, path) sample grids, evenly spaced, the first and the last included."""
    if len(grids) <= limit:
        return grids
    picks = sorted({round(i * (len(grids) - 1) / (limit - 1)) for i in range(limit)})
    return [grids[i] for i in picks]


def read_run(path: str) -> RunFacts:
    """Everything the run section shows, read from the run directory at ``path``."""
    run = RunDir(path)
    return RunFacts(
        path=path,
        name=run.name,
        config=run.config,
        result=run.result(),
        metrics=run.metrics(),
        grids=evenly_spaced(run.sample_grids()),
        best=run.marker("best"),
        latest=run.marker("latest"),
        kept=run.kept() if run.checkpoints_dir.is_dir() else None,
    )


def run_section(path: str) -> Section:
    """A training run directory of any family."""
    return render_run(read_run(path))


def render_run(run: RunFacts) -> Section:
    """The section of a run: what ran, its result, curves, samples, final evaluation, checkpoints, config."""
    data, result = run.config.get("dataset") or {}, run.result
    sec = Section(
        "training",
        f"Training: {run.name} ({run.family})",
        run.path,
        summary=f"{run.family} on {data.get('name', '?')}"
        + (f": {result['steps']:,} steps, {result['stopped']}" if result else " (not finished)"),
    )
    _facts(sec, run)
    _curves(sec, run)
    _samples(sec, run)
    _final(sec, (result or {}).get("final") or {})
    _checkpoints_and_config(sec, run)
    return sec


def _facts(sec: Section, run: RunFacts) -> None:
    config, data, result = run.config, run.config.get("dataset") or {}, run.result
    sec.facts(
        [
            ("family", run.family),
            (
                "dataset",
                f"{data.get('path')} ({fmt(data.get('num_samples'))} samples: "
                f"{fmt(data.get('train'))} train, {fmt(data.get('val'))} val, "
                f"{fmt(data.get('test'))} test)",
            ),
            ("parameters", config.get("parameters")),
            ("device", config.get("device")),
            ("labels", fmt(config.get("labels")) if config.get("labels") else "—"),
            ("label column", config.get("label_column")),
            ("opted-out samples used", config.get("opt_out_samples_used")),
            ("pixelforge", config.get("pixelforge_version")),
        ],
        title="Run",
    )
    tuned = config.get("reward")
    if tuned:
        options, reward = tuned.get("options") or {}, tuned.get("reward") or {}
        told = (
            f"ratings of {reward.get('project')} (Bradley-Terry on {', '.join(reward.get('features') or [])}; "
            f"held-out pairs ordered right {fmt((reward.get('fit') or {}).get('heldout_accuracy'))})"
            if reward.get("kind") == "ratings"
            else "judges " + ", ".join(reward.get("judges") or [])
        )
        sec.facts(
            [
                ("base run", f"{tuned.get('base')} ({tuned.get('base_checkpoint')})"),
                ("reward", told),
                ("method", options.get("method")),
                ("anchor", options.get("anchor")),
                ("prompts", options.get("prompts")),
            ],
            title="Reward fine-tuning",
        )
    if result:
        sec.facts(
            [
                ("steps", result.get("steps")),
                ("epochs", result.get("epochs")),
                ("stopped", result.get("stopped") or "—"),
                ("last training loss", result.get("loss")),
                ("best monitored value", result.get("best")),
                ("last validation", result.get("val") or {}),
                ("images/s", result.get("images_per_s")),
                ("seconds", result.get("seconds")),
            ],
            title="Result",
        )
    else:
        sec.missing("Result: no result.json yet (the run is still training, or was stopped before it finished).")


def _curves(sec: Section, run: RunFacts) -> None:
    if run.metrics is None:
        sec.missing("Curves: no metrics.csv in the run.")
        return
    columns, rows = run.metrics
    train_rows = [r for r in rows if "lr" in r]
    val_rows = [r for r in rows if "lr" not in r]
    terms = [c for c in columns if c not in LOOP_COLUMNS and not c.startswith("val_")]
    losses = [c for c in terms if c == "loss" or c.endswith("_loss") or c in ("reconstruction", "kl")]
    others = [c for c in terms if c not in losses]
    val_cols = [c for c in columns if c.startswith("val_")]
    train = run.train
    sec.figures(
        [
            (
                figures.line_chart({c: _series(train_rows, c) for c in losses}, "Training loss"),
                f"mean over each --log-every window ({len(train_rows)} points)",
            ),
            (
                figures.line_chart({c: _series(val_rows, c) for c in val_cols}, "Validation"),
                f"at each evaluation ({len(val_rows)} points)",
            ),
            (
                figures.line_chart({c: _series(train_rows, c) for c in others}, "Other training terms"),
                ", ".join(others),
            ),
            (
                figures.line_chart({"lr": _series(train_rows, "lr")}, "Learning rate"),
                f"{train.get('lr_schedule', '')} schedule, {fmt(train.get('warmup_steps'))} warm-up steps",
            ),
            (
                figures.line_chart({"images/s": _series(train_rows, "images_per_s")}, "Throughput", ylabel="images/s"),
                "training images per second",
            ),
        ],
        title="Curves",
    )
    if not train_rows:
        sec.missing("Training curves: metrics.csv has no training rows yet (one is written every --log-every steps).")
    if not val_rows and run.family != "gan":
        sec.missing("Validation curve: no evaluation has run yet (every --eval-every steps).")


def _samples(sec: Section, run: RunFacts) -> None:
    if run.grids:
        sec.gallery(
            [
                {"uri": figures.image_file_uri(str(p)), "caption": f"step {step:,}", "sub": p.name}
                for step, p in run.grids
            ],
            title="Samples over training time",
            wide=True,
            note="The same noise and conditions at every evaluation, so the grids are comparable.",
        )
        conds = run.config.get("sample_conditions") or []
        if conds:
            sec.note("Grid conditions, in order: " + "; ".join(map(str, conds)))
    elif run.family == "classifier":
        sec.note("A classifier does not generate: no sample grids.")
    else:
        sec.missing("Samples over training time: no samples/step_*.png yet (written at each evaluation).")


def _final(sec: Section, final: dict[str, Any]) -> None:
    """The family's closing evaluation: per-class accuracy and a confusion matrix per split (classifiers)."""
    for split, rep in final.items():
        if not isinstance(rep, dict) or "confusion" not in rep:
            continue
        per = rep.get("per_class") or {}
        sec.table(
            ["class", "n", "accuracy"],
            [[k, v.get("n"), v.get("accuracy")] for k, v in per.items()],
            title=f"{split} split: accuracy {fmt(rep.get('accuracy'))} over {fmt(rep.get('n'))} images",
        )
        sec.figures(
            [
                (
                    figures.confusion_matrix(
                        rep["confusion"], rep.get("labels") or list(per), f"Confusion matrix ({split})"
                    ),
                    "rows: true class, columns: predicted",
                )
            ]
        )


def _checkpoints_and_config(sec: Section, run: RunFacts) -> None:
    best, latest, train = run.best, run.latest, run.train
    sec.facts(
        [
            ("best", f"{best['dir']} {fmt(best.get('val') or {})}" if best else "—"),
            ("latest", latest["dir"] if latest else "—"),
            ("kept", ", ".join(run.kept) if run.kept is not None else "—"),
        ],
        title="Checkpoints",
    )
    sec.table(
        ["option", "value"],
        [[k, fmt(train.get(k))] for k in TRAIN_KEYS if k in train]
        + [
            [f"{run.family}.{k}", fmt(v)]
            for k, v in (run.config.get("model") or {}).items()
            if not isinstance(v, (list, dict))
        ],
        title="Config (config.json)",
    )
