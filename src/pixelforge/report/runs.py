"""Training sections: loss and validation curves, learning rate, sample grids over time, config, result."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from pixelforge.report import figures
from pixelforge.report.blocks import Section, fmt

GRIDS = 6  # sample grids shown, evenly spaced over training (first and last included)
LOOP_COLUMNS = ("step", "epoch", "lr", "images_per_s", "seconds")
# options of the loop worth a line in the report (the whole config is in config.json)
TRAIN_KEYS = ("image_size", "batch_size", "optimizer", "lr", "lr_schedule", "warmup_steps", "epochs", "max_steps",
              "max_minutes", "ema_decay", "seed", "augment", "eval_every", "policy", "allow_opt_out")


def read_metrics(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """metrics.csv as (columns, rows of floats); empty cells are left out of a row."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = []
        for r in reader:
            row = {}
            for k, v in r.items():
                if v not in (None, ""):
                    try:
                        row[k] = float(v)
                    except ValueError:
                        pass
            rows.append(row)
        return list(reader.fieldnames or []), rows


def _series(rows: list[dict[str, float]], column: str) -> tuple[list[float], list[float]]:
    pts = [(r["step"], r[column]) for r in rows if column in r and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def sample_grids(run: Path, limit: int = GRIDS) -> list[tuple[int, Path]]:
    """(step, path) of up to ``limit`` sample grids, evenly spaced, the first and the last included."""
    found = sorted((int(m.group(1)), p) for p in (run / "samples").glob("step_*.png")
                   if (m := re.fullmatch(r"step_(\d+)\.png", p.name)))
    if len(found) <= limit:
        return found
    picks = sorted({round(i * (len(found) - 1) / (limit - 1)) for i in range(limit)})
    return [found[i] for i in picks]


def run_section(path: str) -> Section:
    """A training run directory of any family."""
    run = Path(path)
    config: dict[str, Any] = json.loads((run / "config.json").read_text())
    family = config.get("family", "?")
    train = config.get("train") or {}
    data = config.get("dataset") or {}
    result = json.loads((run / "result.json").read_text()) if (run / "result.json").is_file() else None
    sec = Section("training", f"Training: {run.name} ({family})", path,
                  summary=f"{family} on {data.get('name', '?')}"
                          + (f": {result['steps']:,} steps, {result['stopped']}" if result else " (not finished)"))
    sec.facts([
        ("family", family), ("dataset", f"{data.get('path')} ({fmt(data.get('num_samples'))} samples: "
                                        f"{fmt(data.get('train'))} train, {fmt(data.get('val'))} val, "
                                        f"{fmt(data.get('test'))} test)"),
        ("parameters", config.get("parameters")), ("device", config.get("device")),
        ("labels", fmt(config.get("labels")) if config.get("labels") else "—"),
        ("label column", config.get("label_column")),
        ("opted-out samples used", config.get("opt_out_samples_used")),
        ("pixelforge", config.get("pixelforge_version")),
    ], title="Run")
    if result:
        sec.facts([("steps", result.get("steps")), ("epochs", result.get("epochs")), ("stopped", result.get("stopped")
                   or "—"), ("last training loss", result.get("loss")), ("best monitored value", result.get("best")),
                   ("last validation", result.get("val") or {}), ("images/s", result.get("images_per_s")),
                   ("seconds", result.get("seconds"))], title="Result")
    else:
        sec.missing("Result: no result.json yet (the run is still training, or was stopped before it finished).")

    metrics_path = run / "metrics.csv"
    if metrics_path.is_file():
        columns, rows = read_metrics(metrics_path)
        train_rows = [r for r in rows if "lr" in r]
        val_rows = [r for r in rows if "lr" not in r]
        terms = [c for c in columns if c not in LOOP_COLUMNS and not c.startswith("val_")]
        losses = [c for c in terms if c == "loss" or c.endswith("_loss") or c in ("reconstruction", "kl")]
        others = [c for c in terms if c not in losses]
        val_cols = [c for c in columns if c.startswith("val_")]
        sec.figures([
            (figures.line_chart({c: _series(train_rows, c) for c in losses}, "Training loss"),
             f"mean over each --log-every window ({len(train_rows)} points)"),
            (figures.line_chart({c: _series(val_rows, c) for c in val_cols}, "Validation"),
             f"at each evaluation ({len(val_rows)} points)"),
            (figures.line_chart({c: _series(train_rows, c) for c in others}, "Other training terms"),
             ", ".join(others)),
            (figures.line_chart({"lr": _series(train_rows, "lr")}, "Learning rate"), f"{train.get('lr_schedule', '')} "
             f"schedule, {fmt(train.get('warmup_steps'))} warm-up steps"),
            (figures.line_chart({"images/s": _series(train_rows, "images_per_s")}, "Throughput", ylabel="images/s"),
             "training images per second"),
        ], title="Curves")
        if not train_rows:
            sec.missing("Training curves: metrics.csv has no training rows yet (one is written every --log-every "
                        "steps).")
        if not val_rows and family != "gan":
            sec.missing("Validation curve: no evaluation has run yet (every --eval-every steps).")
    else:
        sec.missing("Curves: no metrics.csv in the run.")

    grids = sample_grids(run)
    if grids:
        sec.gallery([{"uri": figures.image_file_uri(str(p)), "caption": f"step {step:,}", "sub": p.name}
                     for step, p in grids], title="Samples over training time", wide=True,
                    note="The same noise and conditions at every evaluation, so the grids are comparable.")
        conds = config.get("sample_conditions") or []
        if conds:
            sec.note("Grid conditions, in order: " + "; ".join(map(str, conds)))
    elif family == "classifier":
        sec.note("A classifier does not generate: no sample grids.")
    else:
        sec.missing("Samples over training time: no samples/step_*.png yet (written at each evaluation).")

    final = (result or {}).get("final") or {}
    for split, rep in final.items():
        if not isinstance(rep, dict) or "confusion" not in rep:
            continue
        per = rep.get("per_class") or {}
        sec.table(["class", "n", "accuracy"], [[k, v.get("n"), v.get("accuracy")] for k, v in per.items()],
                  title=f"{split} split: accuracy {fmt(rep.get('accuracy'))} over {fmt(rep.get('n'))} images")
        sec.figures([(figures.confusion_matrix(rep["confusion"], rep.get("labels") or list(per),
                                               f"Confusion matrix ({split})"), "rows: true class, columns: predicted")])
    ckpts = run / "checkpoints"
    best = json.loads((ckpts / "best.json").read_text()) if (ckpts / "best.json").is_file() else None
    latest = json.loads((ckpts / "latest.json").read_text()) if (ckpts / "latest.json").is_file() else None
    sec.facts([("best", f"{best['dir']} {fmt(best.get('val') or {})}" if best else "—"),
               ("latest", latest["dir"] if latest else "—"),
               ("kept", ", ".join(sorted(p.name for p in ckpts.glob("step_*"))) if ckpts.is_dir() else "—")],
              title="Checkpoints")
    sec.table(["option", "value"], [[k, fmt(train.get(k))] for k in TRAIN_KEYS if k in train]
              + [[f"{family}.{k}", fmt(v)] for k, v in (config.get("model") or {}).items()
                 if not isinstance(v, (list, dict))], title="Config (config.json)")
    return sec
