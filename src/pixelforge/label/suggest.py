"""`pixelforge label suggest`: pre-labels from a classifier run, or from class names and synonyms in captions."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pixelforge.configfile import load_toml
from pixelforge.errors import UsageError
from pixelforge.store import Dataset, Lineage

ADDED = (
    pa.field("suggested_label", pa.string()),
    pa.field("suggested_confidence", pa.float32()),
    pa.field("suggested_by", pa.string()),  # model:RUN@CHECKPOINT or captions
    pa.field("suggest_error", pa.string()),  # why a sample got no suggestion (decode_error: ...), else null
)


@dataclass
class SuggestConfig:
    model: str | None = None  # a classifier run
    from_captions: bool = False
    classes: tuple[str, ...] = ()  # for --from-captions (default: the dataset's label names)
    synonyms: str | None = None  # TOML: class = ["synonym", ...]
    batch_size: int = 256
    device: str = "auto"
    overwrite: bool = False

    def validate(self) -> None:
        if (self.model is None) == (not self.from_captions):
            raise UsageError("give exactly one of --model RUN or --from-captions")
        if self.synonyms and not self.from_captions:
            raise UsageError("--synonyms goes with --from-captions")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size}: must be at least 1")


@dataclass
class SuggestResult:
    out: str
    samples: int
    suggested: int
    failed: int
    agree_with_label: float | None  # share of labelled samples whose suggestion equals the label
    by_label: dict[str, int]
    seconds: float


def load_synonyms(path: str | None, classes: list[str]) -> dict[str, list[str]]:
    """{class: [class name, synonyms...]}; a synonym file naming an unknown class is an error."""
    table: dict[str, list[str]] = {c: [c] for c in classes}
    if path is None:
        return table
    doc = load_toml(path, "--synonyms")
    for name, words in doc.items():
        if name not in table:
            raise UsageError(f"--synonyms {path}: class {name!r} is not one of {', '.join(classes)}")
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise UsageError(f"--synonyms {path}: {name} must be a list of words")
        table[name] += [w.strip() for w in words]
    return table


def caption_matcher(synonyms: dict[str, list[str]]):
    """A function caption -> (class, confidence) or None: whole-word, case-insensitive, plurals included.

    Each class scores the number of its names found in the caption; the best class wins with
    confidence = its share of all matches (two classes named once each: 0.5 each, the first named wins).
    """

    def forms(word: str) -> list[str]:
        w = word.lower()
        out = [re.escape(w) + r"(?:s|es)?"]
        if w.endswith("y"):
            out.append(re.escape(w[:-1]) + "ies")  # puppy -> puppies
        return out

    patterns = {
        c: re.compile(r"\b(?:" + "|".join(f for w in words for f in forms(w)) + r")\b") for c, words in synonyms.items()
    }

    def match(caption: str | None) -> tuple[str, float] | None:
        if not caption:
            return None
        text = caption.lower()
        hits = {}
        for c, pat in patterns.items():
            found = list(pat.finditer(text))
            if found:
                hits[c] = (len(found), -found[0].start())
        if not hits:
            return None
        best = max(hits, key=lambda c: hits[c])
        return best, hits[best][0] / sum(h[0] for h in hits.values())

    return match


def _dataset_classes(ds: Dataset) -> list[str]:
    by_id: dict[int, str] = {}
    for r in ds.iter_rows(columns=["label", "label_name"]):
        if r["label"] is not None:
            by_id.setdefault(int(r["label"]), r["label_name"] or str(r["label"]))
    return [by_id[i] for i in sorted(by_id)]


def suggest(data: str, out: str, config: SuggestConfig) -> SuggestResult:
    """Write ``out``: ``data`` with suggested_label, suggested_confidence, suggested_by and suggest_error."""
    from pixelforge.label.rewrite import check_out, rewrite

    config.validate()
    start = time.monotonic()
    ds = Dataset.open(data)
    check_out(ds, out)
    suggestions: dict[str, tuple[str | None, float | None, str | None]] = {}
    if config.from_captions:
        classes = list(config.classes) or _dataset_classes(ds)
        if not classes:
            raise UsageError(f"--from-captions: {data} has no label names; pass --classes a,b,c")
        match = caption_matcher(load_synonyms(config.synonyms, classes))
        by = "captions"
        for r in ds.iter_rows(columns=["key", "caption"]):
            m = match(r["caption"])
            suggestions[r["key"]] = (m[0], m[1], None) if m else (None, None, None)
    else:
        by, suggestions = _model_suggestions(ds, config)
    counts: dict[str, int] = {}
    agree = judged = failed = 0

    def update(row: dict[str, Any]) -> dict[str, Any]:
        nonlocal agree, judged, failed
        label, conf, error = suggestions.get(row["key"], (None, None, None))
        row.update(
            suggested_label=label, suggested_confidence=conf, suggested_by=by if label else None, suggest_error=error
        )
        failed += error is not None
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
            given = (
                row["label_name"]
                if row["label_name"] is not None
                else (None if row["label"] is None else str(row["label"]))
            )
            if given is not None:
                judged += 1
                agree += given == label
        return row

    lineage = Lineage(
        "label suggest",
        {
            "model": config.model,
            "from_captions": config.from_captions,
            "classes": list(config.classes),
            "synonyms": config.synonyms,
        },
        [data],
    )
    result = rewrite(ds, out, update, ADDED, lineage, overwrite=config.overwrite, label="suggest")
    return SuggestResult(
        out=out,
        samples=result.num_samples,
        suggested=sum(counts.values()),
        failed=failed,
        agree_with_label=round(agree / judged, 4) if judged else None,
        by_label=dict(sorted(counts.items())),
        seconds=round(time.monotonic() - start, 2),
    )


def _model_suggestions(ds: Dataset, config: SuggestConfig) -> tuple[str, dict[str, tuple]]:
    import torch

    from pixelforge.device import resolve_device
    from pixelforge.train.inference import image_batches
    from pixelforge.train.rundir import load_run

    dev = resolve_device(config.device)
    run = load_run(config.model, "best", dev, family="classifier")
    size = int(run.config["model"]["image_size"])
    names = run.labels
    out: dict[str, tuple] = {}
    for rows, x, failures in image_batches(ds, size, config.batch_size, columns=["key"]):
        if rows:
            with torch.inference_mode():
                probs = run.model(x.to(dev)).float().softmax(1).cpu()
            conf, ids = probs.max(1)
            for row, i, c in zip(rows, ids.tolist(), conf.tolist()):
                out[row["key"]] = (names[i], round(c, 6), None)
        for row, reason in failures:
            out[row["key"]] = (None, None, reason)
    return f"model:{run.run_id}", out
