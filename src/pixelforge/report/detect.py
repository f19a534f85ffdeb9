"""What a report PATH is: a dataset, a generated dataset, an audit dir, a training run or an evaluation output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelforge.errors import UsageError
from pixelforge.store import Dataset, is_dataset, is_partial
from pixelforge.train.rundir import is_run

KINDS = ("dataset", "generated", "audit", "run", "evaluation")
# evaluation outputs: `pixelforge evaluate ... --out FILE` writes {command, config, result};
# the plain `--json` printouts are recognised by their keys
EVALUATION_COMMANDS = ("evaluate", "evaluate conditional", "evaluate memorization")
WHAT = (
    "a dataset (dataset.json), an audit dir (audit.json), a training run (config.json) or an evaluation "
    "output (the JSON of `pixelforge evaluate ... --out FILE`)"
)


@dataclass
class Input:
    """One PATH of the report and what it holds."""

    kind: str
    path: str
    doc: dict[str, Any] | None = None  # the parsed JSON of an evaluation output (normalised)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"report {path}: cannot read it as JSON ({exc}); give {WHAT}") from None


def evaluation_doc(doc: Any, path: str) -> dict[str, Any] | None:
    """{command, config, result} for an evaluation output, or None when ``doc`` is not one."""
    if not isinstance(doc, dict):
        return None
    if doc.get("command") in EVALUATION_COMMANDS and isinstance(doc.get("result"), dict):
        return {"command": doc["command"], "config": doc.get("config") or {}, "result": doc["result"]}
    if "attributes" in doc and "all_correct" in doc:
        return {"command": "evaluate conditional", "config": {}, "result": doc}
    if "n_flagged" in doc and "criterion" in doc:
        return {"command": "evaluate memorization", "config": {}, "result": doc}
    if "n_fake" in doc and "features" in doc and any(m in doc for m in ("fid", "kid", "is", "precision", "recall")):
        return {"command": "evaluate", "config": {}, "result": doc}
    return None


def _is_generated(path: Path) -> bool:
    """A dataset `pixelforge generate` made (its lineage says so, or every sample is generated)."""
    try:
        ds = Dataset.open(path)  # a dataset of another schema version fails here, with its DatasetError
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"report {path / 'dataset.json'}: cannot read it as JSON ({exc}); give {WHAT}") from None
    if (ds.info.get("lineage") or {}).get("command") == "generate":
        return True
    try:
        kinds = set(ds.index(columns=["source_kind"]).column("source_kind").to_pylist())
    except (OSError, ValueError, KeyError):
        return False
    return kinds == {"generated"}


def detect(path: str) -> Input:
    """The kind of ``path``; a UsageError naming the kinds when it is none of them."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"report {path}: no such file or folder; give {WHAT}")
    if p.is_dir():
        if is_dataset(p):
            return Input("generated" if _is_generated(p) else "dataset", path)
        if (p / "audit.json").is_file():
            return Input("audit", path)
        if is_run(p):
            return Input("run", path)
        if is_partial(p):
            raise UsageError(f"report {path}: a partly written dataset (its run was stopped): finish it first")
        raise UsageError(f"report {path}: this folder is none of the known kinds; give {WHAT}")
    if p.suffix.lower() == ".json":
        doc = evaluation_doc(_read_json(p), path)
        if doc is not None:
            return Input("evaluation", path, doc)
    raise UsageError(f"report {path}: this file is none of the known kinds; give {WHAT}")
