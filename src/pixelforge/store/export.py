"""Write a dataset out in layouts other tools read: ImageNet-style folders, COCO JSON, YOLO, Label Studio."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pixelforge import media
from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.store.dataset import Dataset

EXPORT_FORMATS = ("imagefolder", "coco", "yolo", "labelstudio")
EXPORT_RECORD = ".pixelforge-export.json"


@dataclass
class ExportResult:
    out: str
    format: str
    images: int
    skipped: int  # samples (imagefolder: no label) or boxes (yolo: no class) the format cannot hold


def _safe_dir_name(name: str) -> str:
    """A class name as a folder name: no path separators, no leading dots."""
    cleaned = re.sub(r"[\\/\x00]+", "_", name).strip().lstrip(".")
    return cleaned or "_"


def check_export(out: str, fmt: str, overwrite: bool = False) -> None:
    """Raise UsageError for an unknown format or an --out that holds files (unless ``overwrite``)."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    root = Path(out)
    if root.exists() and any(root.iterdir()) and not overwrite:
        raise UsageError(f"--out {out} is not empty: choose another --out or pass --overwrite")


def export(ds: Dataset, out: str, fmt: str, overwrite: bool = False, record: dict | None = None) -> ExportResult:
    """Export ``ds`` to ``out`` as ``fmt`` (see EXPORT_FORMATS); image bytes are copied unchanged.

    ``record`` (what the export was checked against, say) is written beside as EXPORT_RECORD, a hidden
    file the formats' readers skip (they list folders or named files), with the dataset it came from.
    """
    check_export(out, fmt, overwrite)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if record is not None:
        doc = {"dataset": {"path": ds.path, "name": ds.name, "created_at": ds.info.get("created_at")}, "format": fmt}
        (root / EXPORT_RECORD).write_text(json.dumps({**doc, **record}, indent=2))
    writers = {
        "imagefolder": _export_imagefolder,
        "coco": _export_coco,
        "yolo": _export_yolo,
        "labelstudio": _export_labelstudio,
    }
    return writers[fmt](ds, root)


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
            images.append(
                {
                    "id": image_id,
                    "file_name": row["member"],
                    "width": row["width"],
                    "height": row["height"],
                    "pixelforge_key": row["key"],
                    "license_id": row["license"],
                    "source": row["source"],
                }
            )
            mask = media.decode_mask(sample.mask).astype(np.int64) if sample.mask else None
            painted: set[int] = set()
            for box in row["boxes"] or []:
                w, h = box["x1"] - box["x0"], box["y1"] - box["y0"]
                ann = {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": box["label"],
                    "bbox": [box["x0"], box["y0"], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
                if mask is not None and box["label"] is not None:
                    # the instance's pixels: its category's mask pixels inside its box
                    region = np.zeros(mask.shape, bool)
                    x0, y0 = int(np.floor(box["x0"])), int(np.floor(box["y0"]))
                    x1, y1 = int(np.ceil(box["x1"])), int(np.ceil(box["y1"]))
                    region[y0:y1, x0:x1] = mask[y0:y1, x0:x1] == box["label"]
                    if region.any():
                        ann["segmentation"], ann["area"] = mask_to_segmentation(region), int(region.sum())
                        painted.add(box["label"])
                annotations.append(ann)
                categories.setdefault(box["label"], str(box["label"]))
            if mask is not None:
                for cat in sorted(set(np.unique(mask).tolist()) - {0} - painted):
                    # a painted category without a box (a semantic mask): one annotation for its region
                    region = mask == cat
                    ys, xs = np.nonzero(region)
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": int(cat),
                            "bbox": [
                                int(xs.min()),
                                int(ys.min()),
                                int(xs.max() - xs.min() + 1),
                                int(ys.max() - ys.min() + 1),
                            ],
                            "area": int(region.sum()),
                            "iscrowd": 0,
                            "segmentation": mask_to_segmentation(region),
                        }
                    )
                    categories.setdefault(int(cat), str(cat))
            if row["label"] is not None:
                # a classification label becomes a whole-image box, so COCO readers still see it
                categories[row["label"]] = row["label_name"] or str(row["label"])
                if not row["boxes"]:
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": row["label"],
                            "bbox": [0, 0, row["width"], row["height"]],
                            "area": row["width"] * row["height"],
                            "iscrowd": 0,
                        }
                    )
            if row["caption"] is not None:
                captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": row["caption"]})
    cats = [{"id": k, "name": v} for k, v in sorted(categories.items())]
    info = {"description": f"exported from pixelforge dataset {ds.name}"}
    (root / "instances.json").write_text(
        json.dumps({"info": info, "images": images, "annotations": annotations, "categories": cats})
    )
    if captions:
        (root / "captions.json").write_text(json.dumps({"info": info, "images": images, "annotations": captions}))
    return ExportResult(str(root), "coco", len(images), 0)


def mask_to_segmentation(region: np.ndarray) -> list[list[float]] | dict[str, Any]:
    """COCO segmentation of a boolean (H, W) region: outer polygons when every part has one, else RLE.

    Polygons (OpenCV contours, pixel-centre coordinates) are what most COCO readers expect; a part too
    thin for a polygon (one pixel, a line) would be lost, so such regions are written as compressed RLE.
    """
    import cv2
    from pycocotools import mask as cocomask

    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [c.reshape(-1, 2).astype(float).ravel().tolist() for c in contours]
    if polygons and all(len(p) >= 6 for p in polygons):
        return polygons
    rle = cocomask.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"size": [int(x) for x in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _class_names(ds: Dataset) -> dict[int, str]:
    """Label id -> name (label_name where the dataset has one)."""
    names: dict[int, str] = {}
    for r in ds.iter_rows(columns=["label", "label_name", "boxes"]):
        if r["label"] is not None:
            names.setdefault(int(r["label"]), r["label_name"] or str(r["label"]))
        for b in r["boxes"] or []:
            if b["label"] is not None:
                names.setdefault(int(b["label"]), str(b["label"]))
    return dict(sorted(names.items()))


def _export_yolo(ds: Dataset, root: Path) -> ExportResult:
    """Ultralytics layout: images/, labels/KEY.txt ("class cx cy w h", normalised), data.yaml.

    An image without boxes gets an empty label file (a background image); a box without a class is skipped.
    """
    (root / "images").mkdir(exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    names = _class_names(ds)
    written = skipped = 0
    with track("export yolo", total=ds.num_samples) as bar:
        for sample in ds.iter_samples():
            bar.advance()
            row = sample.row
            (root / "images" / row["member"]).write_bytes(sample.image)
            w, h = row["width"], row["height"]
            lines = []
            for b in row["boxes"] or []:
                if b["label"] is None:
                    skipped += 1
                    continue
                cx, cy = (b["x0"] + b["x1"]) / 2 / w, (b["y0"] + b["y1"]) / 2 / h
                lines.append(
                    f"{b['label']} {cx:.6f} {cy:.6f} {(b['x1'] - b['x0']) / w:.6f} {(b['y1'] - b['y0']) / h:.6f}"
                )
            (root / "labels" / f"{row['key']}.txt").write_text("".join(line + "\n" for line in lines))
            written += 1
    count = max(names, default=-1) + 1
    yaml = [
        "# exported from pixelforge dataset " + ds.name,
        f"path: {root.resolve()}",
        "train: images",
        "val: images",
        f"nc: {count}",
        "names:",
    ]
    yaml += [f"  {i}: {json.dumps(names.get(i, str(i)))}" for i in range(count)]
    (root / "data.yaml").write_text("\n".join(yaml) + "\n")
    return ExportResult(str(root), "yolo", written, skipped)


def _export_labelstudio(ds: Dataset, root: Path) -> ExportResult:
    """Label Studio: images/, tasks.json (labels, boxes in percent, captions as annotations; suggestions as
    predictions) and label_config.xml. Image URLs are /data/local-files/?d=images/NAME: start Label Studio with
    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=OUT.
    """
    (root / "images").mkdir(exist_ok=True)
    names = _class_names(ds)
    tasks: list[dict[str, Any]] = []
    with track("export labelstudio", total=ds.num_samples) as bar:
        for task_id, sample in enumerate(ds.iter_samples(), start=1):
            bar.advance()
            row = sample.row
            (root / "images" / row["member"]).write_bytes(sample.image)
            w, h = row["width"], row["height"]
            result: list[dict[str, Any]] = []
            if row["label"] is not None:
                result.append(
                    {
                        "from_name": "label",
                        "to_name": "image",
                        "type": "choices",
                        "value": {"choices": [names[int(row["label"])]]},
                    }
                )
            for i, b in enumerate(row["boxes"] or []):
                value = {
                    "x": 100 * b["x0"] / w,
                    "y": 100 * b["y0"] / h,
                    "width": 100 * (b["x1"] - b["x0"]) / w,
                    "height": 100 * (b["y1"] - b["y0"]) / h,
                    "rotation": 0,
                }
                if b["label"] is not None:
                    value["rectanglelabels"] = [names[int(b["label"])]]
                result.append(
                    {
                        "id": f"{row['key']}_b{i}",
                        "from_name": "box",
                        "to_name": "image",
                        "type": "rectanglelabels",
                        "original_width": w,
                        "original_height": h,
                        "image_rotation": 0,
                        "value": value,
                    }
                )
            if row["caption"] is not None:
                result.append(
                    {
                        "from_name": "caption",
                        "to_name": "image",
                        "type": "textarea",
                        "value": {"text": [row["caption"]]},
                    }
                )
            task: dict[str, Any] = {
                "id": task_id,
                "data": {"image": f"/data/local-files/?d=images/{row['member']}", "pixelforge_key": row["key"]},
            }
            if result:
                task["annotations"] = [{"result": result, "was_cancelled": False}]
            if row.get("suggested_label"):
                task["predictions"] = [
                    {
                        "model_version": row.get("suggested_by") or "pixelforge",
                        "score": row.get("suggested_confidence"),
                        "result": [
                            {
                                "from_name": "label",
                                "to_name": "image",
                                "type": "choices",
                                "value": {"choices": [row["suggested_label"]]},
                            }
                        ],
                    }
                ]
            tasks.append(task)
    (root / "tasks.json").write_text(json.dumps(tasks))
    from xml.sax.saxutils import quoteattr

    choices = "".join(f"<Choice value={quoteattr(n)}/>" for n in names.values())
    labels = "".join(f"<Label value={quoteattr(n)}/>" for n in names.values())
    (root / "label_config.xml").write_text(
        '<View>\n  <Image name="image" value="$image"/>\n'
        f'  <Choices name="label" toName="image" choice="single">{choices}</Choices>\n'
        f'  <RectangleLabels name="box" toName="image">{labels}</RectangleLabels>\n'
        '  <TextArea name="caption" toName="image" maxSubmissions="1" editable="true"/>\n</View>\n'
    )
    return ExportResult(str(root), "labelstudio", len(tasks), 0)
