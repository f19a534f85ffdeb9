"""Prompts files, as `generate --prompts`, `train reward --prompts` and `label serve --prompts` read them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pixelforge.errors import UsageError


def read_prompts(path: str) -> list[dict[str, str]]:
    """Rows of a prompts file: {"prompt": text, ...}. A .csv or .jsonl file has a ``prompt`` column and may
    carry more (the classes a prompt states); any other file holds one prompt per line."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--prompts {path}: no such file")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".csv":
        rows = [dict(r) for r in csv.DictReader(text.splitlines())]
    elif p.suffix.lower() in (".jsonl", ".ndjson"):
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise UsageError(f"--prompts {path}: not JSON lines ({exc})") from None
    else:
        rows = [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    if not rows:
        raise UsageError(f"--prompts {path}: no prompts in it")
    if any(not isinstance(r, dict) or not str(r.get("prompt") or "").strip() for r in rows):
        raise UsageError(f"--prompts {path}: every row needs a non-empty 'prompt' column")
    return [{k: str(v) for k, v in r.items() if v is not None} for r in rows]


def read_prompt_texts(path: str) -> list[str]:
    """The prompts of a prompts file, in file order."""
    return [row["prompt"] for row in read_prompts(path)]
