"""`pixelforge label apply`: a new dataset with the accepted annotations merged in and the full history kept."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelforge.errors import UsageError
from pixelforge.label.db import DB_NAME, AnnotationDB
from pixelforge.label.rewrite import rewrite
from pixelforge.store import Dataset, Lineage

HISTORY = "annotations.parquet"  # every edit, copied beside the new dataset
ADDED = (
    pa.field("annotated_by", pa.string()),  # annotators of the merged fields, comma-separated
    pa.field("annotated_at", pa.timestamp("ms", tz="UTC")),  # time of the latest merged edit
    pa.field("annotated_fields", pa.list_(pa.string())),
    pa.field("tags", pa.list_(pa.string())),  # tags set in the app (kept whatever the sample's status)
)
HISTORY_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("key", pa.string()),
        ("field", pa.string()),
        ("value", pa.string()),
        ("previous", pa.string()),
        ("previous_annotator", pa.string()),
        ("annotator", pa.string()),
        ("time", pa.string()),
        ("version", pa.int64()),
        ("base_version", pa.int64()),
        ("conflict", pa.bool_()),
        ("client_id", pa.string()),
    ]
)


@dataclass
class ApplyConfig:
    db: str | None = None  # default: DATA/annotations.sqlite
    overwrite: bool = False


@dataclass
class ApplyResult:
    out: str
    samples: int
    accepted: int  # samples whose latest status is accepted
    skipped: int
    labels_merged: int
    boxes_merged: int
    captions_merged: int
    tagged: int  # samples whose tags were set in the app
    edits: int  # history rows kept in OUT/annotations.parquet
    seconds: float


def label_ids(ds: Dataset, classes: list[str]) -> dict[str, int]:
    """Class name -> label id: the dataset's own ids where it has the name, new ids after its largest."""
    ids: dict[str, int] = {}
    for r in ds.iter_rows(columns=["label", "label_name"]):
        if r["label"] is not None:
            ids.setdefault(r["label_name"] if r["label_name"] is not None else str(r["label"]), int(r["label"]))
    nxt = max(ids.values(), default=-1) + 1
    for name in classes:
        if name not in ids:
            ids[name] = nxt
            nxt += 1
    return ids


def apply_annotations(data: str, out: str, config: ApplyConfig) -> ApplyResult:
    """Merge the label, boxes and caption of every accepted sample into a new dataset at ``out``."""
    start = time.monotonic()
    ds = Dataset.open(data)
    db_path = Path(config.db) if config.db else Path(ds.root) / DB_NAME
    if not db_path.exists():
        raise UsageError(f"{db_path} does not exist: label with `pixelforge label serve {data}` first, or pass --db")
    db = AnnotationDB(db_path)
    current = db.all_current()
    classes = db.get_setting("classes", []) or []
    ids = label_ids(ds, classes)
    counts = {"accepted": 0, "skipped": 0, "label": 0, "boxes": 0, "caption": 0, "tags": 0}

    def update(row: dict[str, Any]) -> dict[str, Any]:
        fields = current.get(row["key"]) or {}
        row.update(annotated_by=None, annotated_at=None, annotated_fields=None)
        row.setdefault("tags", None)  # an earlier apply's tags stay unless the app changed them
        if "tags" in fields:
            row["tags"] = fields["tags"]["value"] or None
            counts["tags"] += 1
        if "status" not in fields:
            return row
        status = fields["status"]["value"]
        if status != "accepted":
            counts["skipped"] += 1
            return row
        counts["accepted"] += 1
        merged = [f for f in ("label", "boxes", "caption") if f in fields]
        for f in merged:
            value = fields[f]["value"]
            if f == "label":
                row["label"], row["label_name"] = (None, None) if value is None else (ids[value], value)
            elif f == "boxes":
                row["boxes"] = [
                    {
                        "x0": b["x0"],
                        "y0": b["y0"],
                        "x1": b["x1"],
                        "y1": b["y1"],
                        "label": None if b.get("label") is None else ids[b["label"]],
                    }
                    for b in value
                ]
            else:
                if value != row["caption"]:
                    row["caption_source"] = None  # written by a person: none of the web/dataset sources
                row["caption"] = value or None
            counts[f] += 1
        used = [fields[f] for f in merged + ["status"]]
        row["annotated_by"] = ",".join(sorted({u["annotator"] for u in used}))
        row["annotated_at"] = max(datetime.fromisoformat(u["time"]) for u in used)
        row["annotated_fields"] = merged
        return row

    lineage = Lineage("label apply", {"db": str(db_path), "classes": classes}, [data])
    result = rewrite(ds, out, update, ADDED, lineage, overwrite=config.overwrite, label="apply")
    history = db.history()
    for h in history:
        h["value"] = None if h["value"] is None else json.dumps(h["value"])
        h["previous"] = None if h["previous"] is None else json.dumps(h["previous"])
    pq.write_table(pa.Table.from_pylist(history, schema=HISTORY_SCHEMA), Path(result.root) / HISTORY)
    return ApplyResult(
        out=out,
        samples=result.num_samples,
        accepted=counts["accepted"],
        skipped=counts["skipped"],
        labels_merged=counts["label"],
        boxes_merged=counts["boxes"],
        captions_merged=counts["caption"],
        tagged=counts["tags"],
        edits=len(history),
        seconds=round(time.monotonic() - start, 2),
    )
