"""Write a dataset out in layouts other tools read: ImageNet-style folders and COCO JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.store.dataset import Dataset

EXPORT_FORMATS = ("imagefolder", "coco")


@dataclass
class ExportResult:
    out: str
    format: str
    images: int
    skipped: int  # samples the format cannot hold (no label for imagefolder)


def _safe_dir_name(name: str) -> str:
    """A class name as a folder name: no path separators, no leading dots."""
    cleaned = re.sub(r"[\\/\x00]+", "_", name).strip().lstrip(".")
    return cleaned or "_"


def export(ds: Dataset, out: str, fmt: str, overwrite: bool = False) -> ExportResult:
    """Export ``ds`` to ``out`` as ``fmt`` (imagefolder or coco); image bytes are copied unchanged."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise UsageError(f"--out {out} is not empty: choose another --out or pass --overwrite")
    root.mkdir(parents=True, exist_ok=True)
    return _export_imagefolder(ds, root) if fmt == "imagefolder" else _export_coco(ds, root)


def _export_imagefolder(ds: Dataset, root: Path) -> ExportResult:
    written = skipped = 0
    with track("export imagefolder", total=ds.num_samples) as bar:
        for sample in ds.iter_samples():
            bar.advance()
            row = sample.row
            if row["label"] is None and row["label_name"] is None:
                skipped += 1
                continue
            cls = row["label_name"] if row["label_name"] is not None else str(row["label"])
            folder = root / _safe_dir_name(cls)
            folder.mkdir(exist_ok=True)
            (folder / row["member"]).write_bytes(sample.image)
            written += 1
    return ExportResult(str(root), "imagefolder", written, skipped)


def _export_coco(ds: Dataset, root: Path) -> ExportResult:
    images_dir = root / "images"
    images_dir.mkdir(exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    captions: list[dict[str, Any]] = []
    categories: dict[int, str] = {}
    with track("export coco", total=ds.num_samples) as bar:
        for image_id, sample in enumerate(ds.iter_samples(), start=1):
            bar.advance()
            row = sample.row
            (images_dir / row["member"]).write_bytes(sample.image)
            images.append({"id": image_id, "file_name": row["member"], "width": row["width"],
                           "height": row["height"], "pixelforge_key": row["key"], "license_id": row["license"],
                           "source": row["source"]})
            for box in row["boxes"] or []:
                w, h = box["x1"] - box["x0"], box["y1"] - box["y0"]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": box["label"], "bbox": [box["x0"], box["y0"], w, h],
                                    "area": w * h, "iscrowd": 0})
                categories.setdefault(box["label"], str(box["label"]))
            if row["label"] is not None:
                # a classification label becomes a whole-image box, so COCO readers still see it
                categories[row["label"]] = row["label_name"] or str(row["label"])
                if not row["boxes"]:
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                        "category_id": row["label"],
                                        "bbox": [0, 0, row["width"], row["height"]],
                                        "area": row["width"] * row["height"], "iscrowd": 0})
            if row["caption"] is not None:
                captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": row["caption"]})
    cats = [{"id": k, "name": v} for k, v in sorted(categories.items())]
    info = {"description": f"exported from pixelforge dataset {ds.name}"}
    (root / "instances.json").write_text(json.dumps(
        {"info": info, "images": images, "annotations": annotations, "categories": cats}))
    if captions:
        (root / "captions.json").write_text(json.dumps({"info": info, "images": images, "annotations": captions}))
    return ExportResult(str(root), "coco", len(images), 0)
