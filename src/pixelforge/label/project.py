"""A labelling project: the dataset(s) being labelled, the task, the classes, the queue and field validation."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pixelforge.errors import UsageError
from pixelforge.label.db import DB_NAME, AnnotationDB, check_key
from pixelforge.store import Dataset, split_member

TASKS = ("classify", "boxes", "caption", "review", "rate", "compare")
# fields each task may write; "status" (accepted | skipped) marks an item done; "tags" (free names, set
# on one sample or on a selection of the map) are kept whatever the status
TASK_FIELDS = {
    "classify": ("label", "status", "tags"),
    "boxes": ("boxes", "label", "status", "tags"),
    "caption": ("caption", "status", "tags"),
    "review": ("label", "boxes", "caption", "status", "tags"),
    "rate": ("realism", "faithfulness", "status", "tags"),
    "compare": ("compare", "status"),
}
MAX_BOXES = 500
MAX_CAPTION = 2000
MAX_TAGS = 50
TAG_RE = re.compile(r"^[\w .:-]{1,64}$")
CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
ROW_COLUMNS = ("key", "shard", "member", "caption", "label", "label_name", "boxes", "width", "height")
OPTIONAL_COLUMNS = ("suggested_label", "suggested_confidence", "label_issue", "label_quality")
MAP_COLUMNS = ("map_x", "map_y", "cluster")  # written by `pixelforge cluster`: the app's map


@dataclass
class ProjectConfig:
    """What `pixelforge label serve` serves."""

    data: str
    task: str = "classify"
    classes: tuple[str, ...] = ()
    compare_with: str | None = None  # DIR_B of --task compare
    db: str | None = None  # default: DATA/annotations.sqlite
    seed: int = 0  # left/right order of compare pairs

    def validate(self) -> None:
        if self.task not in TASKS:
            raise UsageError(f"--task {self.task!r}: choose one of {', '.join(TASKS)}")
        if (self.task == "compare") != (self.compare_with is not None):
            raise UsageError("--task compare needs two datasets (DIR_A DIR_B), and only compare takes a second one")
        bad = [c for c in self.classes if not c.strip() or len(c) > 100]
        if bad or len(set(self.classes)) != len(self.classes):
            raise UsageError(
                f"--classes {','.join(self.classes)!r}: give distinct, non-empty names (at most 100 characters each)"
            )


@dataclass
class Item:
    key: str
    rows: dict[str, dict[str, Any]]  # side ("a", and "b" for compare) -> index row
    priority: tuple = field(default_factory=tuple)


def _member_offsets(ds: Dataset) -> dict[str, tuple[str, int, int]]:
    """{image member name: (shard, data offset, size)}: images are served by seeking, not by unpacking."""
    out: dict[str, tuple[str, int, int]] = {}
    for shard in ds.shards():
        for member, (offset, size) in ds.member_offsets(shard).items():
            if not member.endswith((".json", ".txt")):
                out[member] = (shard, offset, size)
    return out


class Project:
    """Everything the server needs, loaded once: rows, image offsets, class list, queue order."""

    def __init__(self, config: ProjectConfig):
        config.validate()
        self.config = config
        self.task = config.task
        self.ds = Dataset.open(config.data)
        self.ds_b = Dataset.open(config.compare_with) if config.compare_with else None
        db_path = config.db or str(Path(self.ds.root) / DB_NAME)
        self.db = AnnotationDB(db_path)
        self.rows = self._rows(self.ds)
        self.id_names = self._id_names()
        self.classes = self._classes()
        self._offsets = {"a": _member_offsets(self.ds)}
        if self.ds_b is not None:
            self.rows_b = self._rows(self.ds_b)
            self._offsets["b"] = _member_offsets(self.ds_b)
            self.items = self._pairs()
        else:
            self.items = {k: Item(k, {"a": r}) for k, r in self.rows.items()}
        self.prioritise()
        self.db.set_setting("task", self.task)
        self.db.set_setting("classes", self.classes)
        self.db.set_setting("datasets", [self.ds.path] + ([self.ds_b.path] if self.ds_b else []))

    @staticmethod
    def _rows(ds: Dataset) -> dict[str, dict[str, Any]]:
        names = set(ds.schema.names)
        cols = list(ROW_COLUMNS) + [c for c in OPTIONAL_COLUMNS + MAP_COLUMNS if c in names]
        out = {}
        for i, row in enumerate(ds.iter_rows(columns=cols)):
            row["_order"] = i
            out[row["key"]] = row
        return out

    def _id_names(self) -> dict[int, str]:
        """The dataset's label id -> name."""
        by_id: dict[int, str] = {}
        for r in self.rows.values():
            if r["label"] is not None:
                by_id.setdefault(int(r["label"]), r["label_name"] or str(r["label"]))
        return dict(sorted(by_id.items()))

    def _classes(self) -> list[str]:
        """--classes, else the classes of an earlier session, else the dataset's label names in id order
        (then suggested labels)."""
        if self.config.classes:
            return list(self.config.classes)
        saved = self.db.get_setting("classes")
        if saved:
            return list(saved)
        extra = {r["suggested_label"] for r in self.rows.values() if r.get("suggested_label")}
        names = list(self.id_names.values())
        return names + sorted(extra - set(names))

    def _pairs(self) -> dict[str, Item]:
        """Compare items: samples of A and B with the same caption (prompt), paired in dataset order."""
        by_caption: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(self.rows_b.values(), key=lambda r: r["_order"]):
            if r["caption"] is not None:
                by_caption.setdefault(r["caption"], []).append(r)
        items: dict[str, Item] = {}
        for r in sorted(self.rows.values(), key=lambda r: r["_order"]):
            partners = by_caption.get(r["caption"] or "")
            if partners:
                b = partners.pop(0)
                pair = f"{r['key']}+{b['key']}"
                items[pair] = Item(pair, {"a": r, "b": b}, (0, r["_order"]))
        if not items:
            raise UsageError(
                f"--task compare: no caption (prompt) of {self.ds.path} appears in "
                f"{self.ds_b.path}; compare two generations of the same prompts"
            )
        return items

    def _priority(self, row: dict[str, Any]) -> tuple:
        """Queue order: low-confidence suggestions (< 0.5) first, then suspected label errors (worst first),
        then samples without a suggestion, then confident suggestions (least confident first)."""
        conf = row.get("suggested_confidence")
        if conf is not None and not math.isnan(conf) and conf < 0.5:
            return (0, conf, row["_order"])
        if row.get("label_issue"):
            q = row.get("label_quality")
            return (1, 0.0 if q is None else q, row["_order"])
        return (2, 0.0 if conf is None or math.isnan(conf) else conf, row["_order"])

    # -- requests ---------------------------------------------------------------------------------
    def prioritise(self) -> None:
        for item in self.items.values():
            if not item.priority:
                item.priority = self._priority(item.rows["a"])
        self.order = sorted(self.items, key=lambda k: self.items[k].priority)

    def item(self, key: str) -> Item:
        check_key(key)
        item = self.items.get(key)
        if item is None:
            raise KeyError(key)
        return item

    def swapped(self, key: str) -> bool:
        """Whether compare pair ``key`` shows B on the left: a seeded coin per pair, the same for everyone."""
        h = hashlib.blake2b(f"{self.config.seed}:{key}".encode(), digest_size=1).digest()[0]
        return bool(h & 1)

    def image(self, key: str, side: str = "a") -> tuple[bytes, str]:
        """The stored bytes of an item's image and their content type."""
        item = self.item(key)
        if side not in item.rows:
            raise KeyError(side)
        row = item.rows[side]
        shard, offset, size = self._offsets[side][row["member"]]
        ds = self.ds if side == "a" else self.ds_b
        data = ds.read_member(shard, offset, size)
        ext = split_member(row["member"])[1].lower()
        return data, CONTENT_TYPES.get(ext, "application/octet-stream")

    def public_item(self, key: str) -> dict[str, Any]:
        """What the page shows for ``key``: the sample's labels, the suggestion and the current edits."""
        item = self.item(key)
        current = self.db.current(key)
        if self.task == "compare":
            a = item.rows["a"]
            left, right = ("b", "a") if self.swapped(key) else ("a", "b")
            out = {
                "key": key,
                "prompt": a["caption"],
                "images": [f"/api/image/{key}?side={left}", f"/api/image/{key}?side={right}"],
            }
            if "compare" in current:  # shown as the annotator chose it: left/right, never A/B
                winner = current["compare"]["value"]
                current = dict(current)
                current["compare"] = dict(
                    current["compare"],
                    value={
                        "a": "left" if left == "a" else "right",
                        "b": "right" if left == "a" else "left",
                        "tie": "tie",
                    }[winner],
                )
            out["current"] = current
            return out
        row = item.rows["a"]
        boxes = [
            {"x0": b["x0"], "y0": b["y0"], "x1": b["x1"], "y1": b["y1"], "label": self._class_name(b["label"])}
            for b in (row["boxes"] or [])
        ]
        return {
            "key": key,
            "width": row["width"],
            "height": row["height"],
            "caption": row["caption"],
            "label": row["label_name"]
            if row["label_name"] is not None
            else (None if row["label"] is None else str(row["label"])),
            "boxes": boxes,
            "images": [f"/api/image/{key}"],
            "suggested_label": row.get("suggested_label"),
            "suggested_confidence": row.get("suggested_confidence"),
            "label_issue": row.get("label_issue"),
            "label_quality": row.get("label_quality"),
            "current": current,
        }

    def _class_name(self, label: int | None) -> str | None:
        if label is None:
            return None
        return self.id_names.get(int(label), str(label))

    def check_value(self, key: str, fieldname: str, value: Any) -> Any:
        """The value to store for an edit, or ValueError saying what is wrong with it."""
        if fieldname not in TASK_FIELDS[self.task]:
            raise ValueError(f"field {fieldname!r}: the {self.task} task edits {', '.join(TASK_FIELDS[self.task])}")
        item = self.item(key)
        if fieldname == "status":
            if value not in ("accepted", "skipped"):
                raise ValueError("status: accepted or skipped")
            return value
        if fieldname == "label":
            if value is not None and value not in self.known_names:
                raise ValueError(f"label {value!r}: not one of the project's classes")
            return value
        if fieldname == "caption":
            if not isinstance(value, str) or len(value) > MAX_CAPTION:
                raise ValueError(f"caption: a string of at most {MAX_CAPTION} characters")
            return value.strip()
        if fieldname == "tags":
            return check_tags(value)
        if fieldname in ("realism", "faithfulness"):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5:
                raise ValueError(f"{fieldname}: an integer score from 1 to 5")
            return value
        if fieldname == "compare":
            if value not in ("left", "right", "tie"):
                raise ValueError("compare: left, right or tie")
            if value == "tie":
                return "tie"
            left_is_a = not self.swapped(key)
            return "a" if (value == "left") == left_is_a else "b"
        # boxes
        row = item.rows["a"]
        if not isinstance(value, list) or len(value) > MAX_BOXES:
            raise ValueError(f"boxes: a list of at most {MAX_BOXES} boxes")
        out = []
        for b in value:
            if not isinstance(b, dict) or set(b) - {"x0", "y0", "x1", "y1", "label"}:
                raise ValueError("boxes: each box is {x0, y0, x1, y1, label}")
            try:
                x0, y0, x1, y1 = (float(b[k]) for k in ("x0", "y0", "x1", "y1"))
            except (KeyError, TypeError, ValueError):
                raise ValueError("boxes: x0, y0, x1, y1 must be numbers") from None
            if not (0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]):
                raise ValueError(
                    f"boxes: ({x0}, {y0}, {x1}, {y1}) is not inside the {row['width']}x{row['height']} "
                    "image with x0 < x1 and y0 < y1"
                )
            label = b.get("label")
            if label is not None and label not in self.known_names:
                raise ValueError(f"boxes: label {label!r} is not one of the project's classes")
            out.append({"x0": round(x0, 2), "y0": round(y0, 2), "x1": round(x1, 2), "y1": round(y1, 2), "label": label})
        return out

    @property
    def known_names(self) -> set[str]:
        """Names a label may take: the project's classes and the dataset's own label names."""
        return set(self.classes) | set(self.id_names.values())

    # -- the map and tags ---------------------------------------------------------------------------
    def map_points(self) -> dict[str, Any]:
        """The samples' 2-D map as columns (keys, x, y, cluster, caption, label) plus each cluster's name:
        what the app's scatter draws. UsageError when the dataset has no map."""
        if self.task == "compare" or not all(c in self.ds.schema.names for c in MAP_COLUMNS[:2]):
            raise UsageError(
                f"{self.ds.path} has no map: run `pixelforge embed` and `pixelforge cluster` on it and "
                "label the clustered dataset"
            )
        rows = [
            r
            for r in sorted(self.rows.values(), key=lambda r: r["_order"])
            if _finite(r.get("map_x")) and _finite(r.get("map_y"))
        ]
        try:
            names = {str(c["id"]): c.get("name", "") for c in self.ds.stats().get("clusters", [])}
        except (OSError, ValueError):
            names = {}
        return {
            "keys": [r["key"] for r in rows],
            "x": [round(float(r["map_x"]), 5) for r in rows],
            "y": [round(float(r["map_y"]), 5) for r in rows],
            "cluster": [r.get("cluster") for r in rows],
            "caption": [(r["caption"] or "")[:200] for r in rows],
            "label": [r["label_name"] if r["label_name"] is not None else r["label"] for r in rows],
            "names": names,
        }

    def tags(self) -> dict[str, list[str]]:
        """{key: current tags} of the project's tagged samples."""
        return {k: v for k, v in self.db.current_values("tags").items() if k in self.items and v}

    def tag(self, keys: list[str], tag: str, annotator: str, remove: bool = False) -> int:
        """Add ``tag`` to (or remove it from) every sample of ``keys`` in one transaction; returns how many
        samples changed."""
        if "tags" not in TASK_FIELDS[self.task]:
            raise ValueError(f"the {self.task} task has no tags")
        (tag,) = check_tags([tag])
        for key in keys:
            self.item(key)  # KeyError for a key not in the project

        def change(have: list[str] | None) -> list[str] | None:
            names = set(have or ())
            if (tag in names) != remove:  # already as asked: no edit
                return have
            return sorted(names - {tag}) if remove else sorted(names | {tag})

        return self.db.update_many(keys, "tags", change, annotator)

    def tagged(self, tag: str) -> list[str]:
        """The queue's keys carrying ``tag``, in queue order."""
        have = self.tags()
        return [k for k in self.order if tag in have.get(k, ())]

    def progress(self) -> dict[str, int]:
        done = sum(1 for k in self.db.done_keys() if k in self.items)
        return {"done": done, "total": len(self.items)}


def _finite(v: Any) -> bool:
    return v is not None and math.isfinite(v)


def check_tags(value: Any) -> list[str]:
    """A sample's tags as stored: distinct, sorted names of 1-64 letters, digits, spaces, '.', ':', '_', '-'."""
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise ValueError(f"tags: a list of at most {MAX_TAGS} names")
    out = set()
    for t in value:
        if not isinstance(t, str) or not TAG_RE.match(t.strip()):
            raise ValueError(f"tag {t!r}: 1-64 letters, digits, spaces, '.', ':', '_' or '-'")
        out.add(t.strip())
    return sorted(out)
