"""The per-shard work of prepare: decode, denoise, resize (boxes and masks follow), encode, augment."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from pixelforge import media
from pixelforge.errors import ItemError
from pixelforge.faces import DETECT_SIDE, blur_faces
from pixelforge.prepare.augment import parse_spec
from pixelforge.prepare.denoise import get_denoiser
from pixelforge.store import MASK_EXT, Dataset, ShardWriter, split_member

torch.set_num_threads(1)  # one process per core already


@dataclass
class PrepareTask:
    """Prepare every sample of one input shard into the output shard of the same number."""

    dataset: str
    shard: str
    out: str
    shard_id: int
    config: Any  # PrepareConfig
    schema: pa.Schema


def move_boxes(boxes: list[dict[str, Any]], geo) -> list[dict[str, Any]]:
    """Boxes in source pixels -> boxes in output pixels, clipped; boxes cropped away are dropped."""
    (x0, y0, x1, y1), (rw, rh), (cw, ch), (ox, oy) = geo
    sx, sy = rw / (x1 - x0), rh / (y1 - y0)
    out = []
    for b in boxes or []:
        nx0 = min(max((b["x0"] - x0) * sx + ox, 0.0), cw)
        nx1 = min(max((b["x1"] - x0) * sx + ox, 0.0), cw)
        ny0 = min(max((b["y0"] - y0) * sy + oy, 0.0), ch)
        ny1 = min(max((b["y1"] - y0) * sy + oy, 0.0), ch)
        if nx1 > nx0 and ny1 > ny0:
            out.append({"x0": nx0, "y0": ny0, "x1": nx1, "y1": ny1, "label": b["label"]})
    return out


def move_mask(mask: bytes, geo) -> bytes:
    """A label mask PNG cut and scaled like the image, nearest-neighbour so ids stay ids."""
    box, resized, canvas, offset = geo
    small = media.resize_mask(media.decode_mask(mask), resized, box)
    if canvas != resized:  # pad mode: background (id 0) around the pasted mask, as black around the image
        full = np.zeros((canvas[1], canvas[0]), small.dtype)
        full[offset[1] : offset[1] + small.shape[0], offset[0] : offset[0] + small.shape[1]] = small
        small = full
    return media.encode_mask(small)


def _seed(seed: int, key: str, copy: int) -> int:
    # crc32, not hash(): the same on every process and run, so copies are reproducible
    return zlib.crc32(f"{seed}/{key}/{copy}".encode())


def prepare_shard(task: PrepareTask) -> tuple[int, int, dict[str, int]]:
    """Write one output shard; returns (samples written, failures, Pillow warning counts)."""
    cfg = task.config
    ds = Dataset.open(task.dataset)
    rows = {r["key"]: r for r in ds.index(filters=[("shard", "=", task.shard)]).to_pylist()}
    denoise = get_denoiser(cfg.denoise)
    faces = _face_detector(cfg.face_weights) if cfg.blur_faces else None
    augment = parse_spec(cfg.augment) if cfg.augment and cfg.copies else None
    target = None if cfg.resize_mode == "none" else cfg.size
    fails = 0
    with ShardWriter(task.out, task.shard_id, task.schema) as writer:
        for key, files in ds.read_shard(task.shard, keys=rows):
            row = rows[key]
            try:
                data = files.get(split_member(row["member"])[1])
                if data is None:
                    raise ItemError(f"member {row['member']} is missing from shard {task.shard}", reason="missing_file")
                img = media.decode(data, draft_size=(target, target) if target else None)
                geo = media.resize_geometry(img.width, img.height, cfg.size, cfg.resize_mode)
                out = media.resize(denoise(img), cfg.size, cfg.resize_mode)
                mask = files.get(MASK_EXT) if row.get("mask") else None
                mask = move_mask(mask, geo) if mask is not None else None
                found = output_faces(row, data, img, cfg, faces)  # None: not known
                if faces is not None:  # blurred after resizing: cheaper, as img2dataset does
                    out = blur_faces(out, found)
            except ItemError as exc:
                writer.fail(reason=exc.reason, detail=f"sample {key}: {exc.detail}", source=row["source"])
                fails += 1
                continue
            base = dict(row, boxes=move_boxes(row.get("boxes"), geo), aug_of=None, aug_index=None)
            if found is not None and "face_bboxes" in task.schema.names:  # they follow the crop and scale
                base.update(face_bboxes=found, n_faces=len(found))
            if faces is not None:
                base["faces_blurred"] = True
            _write(writer, base, out, mask, cfg)
            if augment is not None and (row.get("split") in (None, "train")):
                for k in range(1, cfg.copies + 1):
                    torch.manual_seed(_seed(cfg.seed, key, k))
                    # geometric ops move content, so copies carry no boxes or masks (docs/curate.md)
                    copy = dict(base, key=f"{key}_aug{k}", boxes=[], aug_of=key, aug_index=k)
                    if "face_bboxes" in copy:  # moved by the augmentation: not known; their number and blur stay
                        copy["face_bboxes"] = None
                    _write(writer, copy, augment(out), None, cfg)
    return len(writer.rows), fails, media.take_warnings()


def output_faces(row: dict[str, Any], data: bytes, img: Image.Image, cfg, detector) -> list[list[float]] | None:
    """The sample's faces as fractions of the output image: its face_bboxes (from `curate --faces`) when
    it has them, else (with a ``detector``) found on a copy decoded large enough to find them, else None
    (not known); moved as its boxes are."""
    boxes = row.get("face_bboxes")
    if boxes is None:
        if detector is None:
            return None
        boxes = detector.detect(media.decode(data, draft_size=(DETECT_SIDE, DETECT_SIDE)))
    # in the frame of img, which the image is resized from (fractions do not depend on the decode's scale)
    return media.boxes_after_resize(boxes, img.width, img.height, cfg.size, cfg.resize_mode)


_FACE_DETECTORS: dict[str | None, Any] = {}


def _face_detector(weights: str | None):
    """One face detector per process (OpenCV loads the cascade or network once)."""
    from pixelforge.faces import FaceDetector, FaceSettings

    if weights not in _FACE_DETECTORS:
        _FACE_DETECTORS[weights] = FaceDetector(FaceSettings(weights=weights))
    return _FACE_DETECTORS[weights]


def _write(writer: ShardWriter, row: dict[str, Any], img: Image.Image, mask: bytes | None, cfg: Any) -> None:
    data = media.encode(img, cfg.encoding, cfg.quality)
    row = dict(
        row, width=img.width, height=img.height, format=media.ENCODINGS[cfg.encoding].lower(), phash=media.phash64(img)
    )
    writer.write(row, data, cfg.encoding, mask)
