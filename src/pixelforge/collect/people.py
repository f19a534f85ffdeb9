"""The people columns of one collected image: its consent, and its faces found, listed or blurred.

Consent, first that speaks (``consent_source`` says which):

1. the list's own column (``--consent-col COL``, `collect urls` only): ``list:COL``. A blank or
   missing cell says nothing and falls through; a value consent_value cannot read is ``unknown``
   with source ``list:COL (unreadable 'VALUE')`` (the row is still collected);
2. the downloaded file's XMP model release (PLUS ``plus:ModelReleaseStatus``, read from the original
   bytes): ``xmp:MR-CODE``, its state from media.MODEL_RELEASE_CONSENT;
3. the command's ``--consent``: ``option``; no flag: ``unknown`` with source null.

Faces (``--faces none|detect|blur``, and the list's boxes from ``--bbox-col``, img2dataset's
convention: ``[[x0, y0, x1, y1], ...]`` fractions of the original image) are looked for in the
STORED image, after the resize; the list's boxes follow the resize's crop or pad first. Both sets
go into ``face_bboxes`` (a detected box overlapping a listed one by IoU >= SAME_FACE_IOU is the
same face, kept once). They are blurred after the resize (cheaper, as img2dataset does) under
``--faces blur``, and also, the list's boxes, when ``--faces`` is not given: a bbox column means
"blur these". ``--faces detect`` blurs nothing.

``faces_blurred``: null when faces were not looked for (no --faces and no boxes in the row's
cell); true when the stored image went through the blur with every box of face_bboxes (also when
there were none to blur); false when faces were looked for and not blurred (--faces detect, also
with 0 faces found). So it is null exactly when n_faces is.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

from PIL import Image

from pixelforge import media
from pixelforge.faces import DETECT_SIDE, FaceDetector, FaceSettings, blur_faces
from pixelforge.store.schema import consent_value, people_defaults

if TYPE_CHECKING:  # both import this module
    from pixelforge.collect.config import CollectConfig
    from pixelforge.collect.lists import InputRow

FACE_MODES = ("none", "detect", "blur")
SAME_FACE_IOU = 0.5  # a detected box this much over a listed box is the same face (kept once, the list's)


def consent_from_cell(value: Any, col: str) -> tuple[str, str] | None:
    """The list's (consent, consent_source) from a ``--consent-col`` cell; None when the cell is blank."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    state = consent_value(value)
    if state is None:
        return "unknown", f"list:{col} (unreadable {str(value)[:60]!r})"
    return state, f"list:{col}"


def boxes_from_cell(value: Any) -> tuple[list[list[float]] | None, str | None]:
    """A ``--bbox-col`` cell as (boxes, None), or (None, why) when it is not a list of boxes.

    The cell is a JSON string (CSV, TSV) or a list (Parquet, JSONL) of ``[x0, y0, x1, y1]`` fractions
    with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1. A blank cell gives (None, None): no boxes listed.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            return None, f"not JSON ({exc.msg}): {value[:60]!r}"
    if not isinstance(value, list | tuple):
        return None, f"not a list of [x0, y0, x1, y1] boxes: {str(value)[:60]!r}"
    boxes = []
    for n, box in enumerate(value):
        ok = isinstance(box, list | tuple) and len(box) == 4
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box)
        if not ok or not (0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1):
            return None, f"box {n} {str(box)[:60]}: not [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1"
        boxes.append([float(v) for v in box])
    return boxes, None


def sample_consent(list_consent: tuple[str, str] | None, data: bytes, option: str | None) -> tuple[str, str | None]:
    """(consent, consent_source) of one download: the list's word, else the file's XMP, else ``--consent``."""
    if list_consent is not None:
        return list_consent
    code = media.model_release(data)
    if code is not None:
        return media.MODEL_RELEASE_CONSENT[code], f"xmp:MR-{code}"
    if option is not None:
        return option, "option"
    return "unknown", None


_DETECTORS: dict[str | None, FaceDetector] = {}


def face_detector(faces: str, weights: str | None) -> FaceDetector | None:
    """This process's detector for ``--faces`` (None under none): OpenCV loads the model once per process."""
    if faces == "none":
        return None
    if weights not in _DETECTORS:
        _DETECTORS[weights] = FaceDetector(FaceSettings(weights=weights))
    return _DETECTORS[weights]


def people_columns(
    row: InputRow,
    data: bytes,
    processed: media.Processed,
    img: Image.Image,
    config: CollectConfig,
    detector: FaceDetector | None,
) -> tuple[media.Processed, dict[str, Any]]:
    """The people columns of one download, and what to store (re-encoded when faces were blurred).

    ``data``: the downloaded bytes; ``processed``, ``img``: what media.process_decoded made of them.
    ``sha256`` stays that of ``data``; ``phash`` becomes that of the blurred pixels. Raises
    media.DecodeError (a failure row) when the face step fails on this image.
    """
    listed_consent = (row.consent, row.consent_source) if row.consent is not None else None
    cols = people_defaults(*sample_consent(listed_consent, data, config.consent))
    listed = None
    if row.face_boxes is not None:  # fractions of the original: they follow the crop or pad
        size = (processed.orig_width, processed.orig_height)
        listed = media.boxes_after_resize(row.face_boxes, *size, config.image_size, config.resize_mode)
    if detector is None and listed is None:
        return processed, cols
    blur = config.faces == "blur" or (config.faces == "none" and listed is not None)
    try:
        stored = _stored_image(processed, img, full=blur)
        found = detector.detect(stored) if detector is not None else []
        boxes = merge_boxes(listed or [], found)
        if blur and boxes:
            out = blur_faces(stored, boxes)
            processed = dataclasses.replace(
                processed, data=media.encode(out, processed.ext, config.quality), phash=media.phash64(out)
            )
    except media.MediaError:
        raise
    except Exception as exc:  # OpenCV's cv2.error and the like: this image fails, not the shard
        raise media.DecodeError(f"face step failed: {type(exc).__name__}: {exc}") from exc
    cols.update(face_bboxes=boxes, n_faces=len(boxes), faces_blurred=blur)
    return processed, cols


def merge_boxes(listed: list[list[float]], found: list[list[float]]) -> list[list[float]]:
    """The listed boxes, then each found box that is not one of them (IoU < SAME_FACE_IOU), rounded to 4 places."""
    out = list(listed)
    out += [f for f in found if all(_iou(f, b) < SAME_FACE_IOU for b in listed)]
    return [[round(v, 4) for v in b] for b in out]


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _stored_image(processed: media.Processed, img: Image.Image, full: bool) -> Image.Image:
    """The stored pixels: ``img`` when it is them; when media.process kept the original bytes, ``img`` is
    a small draft for the phash, so decode again (at DETECT_SIDE to look, in full to blur)."""
    if img.size == (processed.width, processed.height):
        return img
    return media.decode(processed.data, draft_size=None if full else (DETECT_SIDE, DETECT_SIDE))
