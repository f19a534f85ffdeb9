"""COCO importer: an images folder plus instances (and captions) JSON into samples with boxes, masks, licences."""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from pixelforge import media
from pixelforge.errors import ItemError, UsageError
from pixelforge.sources.base import Failure, Record

# Image fields stored as columns or used to find the file; every other image field goes to meta as it came.
_IMAGE_COLUMNS = ("id", "file_name", "height", "width")

# Creative Commons licence URLs and names -> SPDX-like ids. Only the six CC licence kinds and CC0
# are mapped; anything else stays unknown, because a guessed licence is worse than none.
_CC_URL = re.compile(
    r"creativecommons\.org/licenses/(by(?:-nc)?(?:-nd|-sa)?)/(\d\.\d)"
    r"(?:/([a-z]{2}))?(?=[/?#]|$)",
    re.I,
)
_CC0_URL = re.compile(r"creativecommons\.org/publicdomain/zero/(\d\.\d)(?=[/?#]|$)", re.I)
_CC_NAME = re.compile(r"^cc[\s_-]*(by(?:[\s_-]nc)?(?:[\s_-](?:nd|sa))?)[\s_-]*(\d\.\d)$", re.I)
_CC0_NAME = re.compile(r"^cc[\s_-]*0[\s_-]*(\d\.\d)$", re.I)


def license_to_spdx(url: Any, name: Any) -> str | None:
    """The SPDX-like id (``cc-by-2.0``, ``cc0-1.0`` ...) of a COCO ``licenses`` entry, or None if unknown.

    The URL decides when it is a Creative Commons one; a name such as ``CC BY-SA 4.0`` is the
    fallback. Names without a version (COCO's own "Attribution License") are not enough on their own.
    """
    if isinstance(url, str):
        if m := _CC_URL.search(url):
            kind, version, port = m.group(1).lower(), m.group(2), m.group(3)
            return f"cc-{kind}-{version}" + (f"-{port.lower()}" if port else "")
        if m := _CC0_URL.search(url):
            return f"cc0-{m.group(1)}"
    if isinstance(name, str):
        if m := _CC_NAME.match(name.strip()):
            kind = re.sub(r"[\s_]", "-", m.group(1).lower())
            return f"cc-{kind}-{m.group(2)}"
        if m := _CC0_NAME.match(name.strip()):
            return f"cc0-{m.group(1)}"
    return None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bad(detail: str) -> ItemError:
    return ItemError(detail, reason="bad_annotation")


def read_coco_json(path: str, flag: str) -> dict[str, Any]:
    """Load a COCO JSON file, raising UsageError (naming ``flag``, the path and the fix) when unusable."""
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UsageError(
            f"{flag} {path}: no such file; pass the COCO annotation JSON (such as annotations/instances_val2017.json)"
        ) from None
    except IsADirectoryError:
        raise UsageError(f"{flag} {path}: is a directory; pass the JSON file inside it") from None
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot be read ({exc.strerror}); check its permissions") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag} {path}: is not valid JSON ({exc}); pass a COCO annotation file") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise UsageError(
            f'{flag} {path}: has no "images" list, so it is not a COCO annotation file; '
            "pass instances_*.json (or captions_*.json for --captions)"
        )
    for key in ("annotations", "categories", "licenses"):
        if data.get(key) is not None and not isinstance(data[key], list):
            raise UsageError(f'{flag} {path}: "{key}" must be a list; pass an unmodified COCO annotation file')
    return data


def group_by_image(annotations: list[Any], image_ids: set[int]) -> tuple[dict[int, list[dict]], int]:
    """Annotations grouped by image id (file order kept), and how many name no image of ``image_ids``."""
    grouped: dict[int, list[dict]] = defaultdict(list)
    orphans = 0
    for ann in annotations:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if _is_int(image_id) and image_id in image_ids:
            grouped[image_id].append(ann)
        else:
            orphans += 1
    return grouped, orphans


@dataclass
class _Index:
    """Everything read from the JSON files once, up front (COCO tools hold the same in memory)."""

    images: list[Any]
    categories: dict[int, str]
    licenses: dict[Any, dict[str, Any]]
    annotations: dict[int, list[dict]]
    captions: dict[int, list[dict]]
    orphans: list[Failure] = field(default_factory=list)


def _load(source: CocoSource) -> _Index:
    inst = read_coco_json(source.annotations, "--annotations")
    caps = read_coco_json(source.captions, "--captions") if source.captions else None
    # bad category entries are skipped here and surface as bad_annotation on the images that use them
    categories = {
        c["id"]: str(c.get("name", c["id"]))
        for c in inst.get("categories") or []
        if isinstance(c, dict) and _is_int(c.get("id"))
    }
    if source.masks and any(not 0 < cid < 65536 for cid in categories):
        raise UsageError(
            f"--masks: {source.annotations} has category ids outside 1..65535, which cannot be "
            "mask values (0 is background); import without --masks"
        )
    licenses = {}
    for lic in inst.get("licenses") or []:
        if isinstance(lic, dict) and "id" in lic and isinstance(lic["id"], (int, str)):
            licenses[lic["id"]] = {
                "spdx": license_to_spdx(lic.get("url"), lic.get("name")),
                "url": lic.get("url"),
                "name": lic.get("name"),
            }
    image_ids = {im["id"] for im in inst["images"] if isinstance(im, dict) and _is_int(im.get("id"))}
    annotations, orphan_anns = group_by_image(inst.get("annotations") or [], image_ids)
    captions, orphan_caps = group_by_image(caps.get("annotations") or [], image_ids) if caps else ({}, 0)
    orphans = [
        Failure(
            source=path,
            reason="bad_annotation",
            detail=f"{n} annotations refer to image ids missing from {source.annotations}",
        )
        for path, n in ((source.annotations, orphan_anns), (source.captions, orphan_caps))
        if n
    ]
    return _Index(inst["images"], categories, licenses, annotations, captions, orphans)


def annotation_to_box(ann: dict[str, Any], categories: dict[int, str]) -> dict[str, Any]:
    """A COCO ``[x, y, w, h]`` bbox as an absolute ``{x0, y0, x1, y1, label}`` box; ItemError if malformed."""
    cat, bbox = ann.get("category_id"), ann.get("bbox")
    if not _is_int(cat) or cat not in categories:
        raise _bad(f"annotation {ann.get('id')}: category_id {cat!r} is not in the file's categories")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox)) and bbox[2] >= 0 and bbox[3] >= 0):
        raise _bad(f"annotation {ann.get('id')}: bbox {bbox!r} is not [x, y, w, h] with w, h >= 0")
    x, y, w, h = (float(v) for v in bbox)
    return {"x0": x, "y0": y, "x1": x + w, "y1": y + h, "label": cat}


def rle_string_to_counts(s: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths (pycocotools' rleFrString, in Python).

    We decode it ourselves only to validate it: pycocotools turns a malformed string into a mask
    of uninitialised memory instead of raising.
    """
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            if p >= len(s) or not 48 <= ord(s[p]) < 112:
                raise ValueError("truncated or invalid character")
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p, k = p + 1, k + 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)  # sign-extend: counts after the second are deltas
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def segmentation_to_bitmap(seg: Any, height: int, width: int) -> np.ndarray | None:
    """One instance's polygons or RLE (compressed or not) as an HxW uint8 bitmap; None for ``[]``."""
    from pycocotools import mask as cocomask

    if isinstance(seg, list):
        if not seg:
            return None  # an explicitly empty polygon list: an instance without a mask, not an error
        # pycocotools reads a 4-number "polygon" as a bbox, so insist on >= 3 points
        if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(map(_is_number, p)) for p in seg):
            raise ValueError("polygons must be lists of >= 3 finite x, y pairs")
        return cocomask.decode(cocomask.merge(cocomask.frPyObjects(seg, height, width)))
    if not isinstance(seg, dict):
        raise ValueError("is neither a polygon list nor an RLE object")
    if seg.get("size") != [height, width]:
        raise ValueError(f"RLE size {seg.get('size')!r} is not the image's [height, width] [{height}, {width}]")
    counts = seg.get("counts")
    if isinstance(counts, list):
        runs = counts
        if not all(_is_int(c) and c >= 0 for c in runs):
            raise ValueError("RLE counts must be non-negative integers")
        rle = cocomask.frPyObjects(seg, height, width)
    elif isinstance(counts, str):
        runs = rle_string_to_counts(counts)
        rle = {"size": [height, width], "counts": counts.encode("ascii")}
    else:
        raise ValueError("RLE counts must be a list or a string")
    if any(c < 0 for c in runs) or sum(runs) != height * width:
        raise ValueError(f"RLE counts cover {sum(runs)} pixels, not {height}x{width}")
    return cocomask.decode(rle)


def render_mask(anns: list[dict[str, Any]], height: Any, width: Any) -> np.ndarray:
    """All instances of one image painted in file order into an HxW uint16 mask of category ids."""
    if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
        raise _bad(f"image height/width {height!r}x{width!r} must be positive integers to draw a mask")
    mask = np.zeros((height, width), np.uint16)
    with warnings.catch_warnings():
        # pycocotools' decode trips numpy 2's copy=False deprecation; the bitmap it returns is fine
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        for ann in anns:
            try:
                bitmap = segmentation_to_bitmap(ann.get("segmentation"), height, width)
            except ValueError as exc:
                raise _bad(f"annotation {ann.get('id')}: segmentation {exc}") from None
            if bitmap is not None:
                mask[bitmap > 0] = ann["category_id"]  # later annotations paint over earlier ones
    return mask


# EXIF orientation -> where a point (x, y) of the stored pixels (raw size w x h) is displayed, and the
# same move for an HxW array; the tests check both against PIL's ImageOps.exif_transpose.
_EXIF_POINT = {
    2: lambda x, y, w, h: (w - x, y),
    3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y),
    5: lambda x, y, w, h: (y, x),
    6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x),
    8: lambda x, y, w, h: (y, w - x),
}
_EXIF_ARRAY = {
    2: lambda m: m[:, ::-1],
    3: lambda m: m[::-1, ::-1],
    4: lambda m: m[::-1],
    5: lambda m: m.T,
    6: lambda m: np.rot90(m, -1),
    7: lambda m: m.T[::-1, ::-1],
    8: lambda m: np.rot90(m, 1),
}


def annotation_orientation(data: bytes, declared: tuple[Any, Any]) -> tuple[int, int, int]:
    """``(orientation, raw_width, raw_height)`` to move this image's annotations into the stored frame.

    media stores images as displayed (EXIF orientation applied), but a COCO file does not say which
    frame its coordinates use. We take the frame whose size the file declares, and the raw (stored
    pixels) frame when both have that size, as pycocotools, torchvision and COCO itself read images.
    A declared size matching neither frame means the annotations are not for this file: ItemError.
    """
    try:
        info = media.probe(data, media.MediaLimits(max_bytes=len(data), max_pixels=2**62))
    except media.MediaError:
        return 1, 0, 0  # run_import decodes the bytes again and reports the error with its reason
    raw = (info.height, info.width) if info.orientation >= 5 else (info.width, info.height)
    if not all(map(_is_int, declared)) or declared == raw:
        return info.orientation, *raw
    if declared == (info.width, info.height):
        return 1, *raw
    raise _bad(f"the image is {raw[0]}x{raw[1]} but the annotation file says {declared[0]}x{declared[1]}")


def orient_box(box: dict[str, Any], orientation: int, w: int, h: int) -> dict[str, Any]:
    """A raw-frame box moved to the displayed frame of an image with this EXIF orientation."""
    if orientation == 1:
        return box
    (xa, ya), (xb, yb) = (
        _EXIF_POINT[orientation](x, y, w, h) for x, y in ((box["x0"], box["y0"]), (box["x1"], box["y1"]))
    )
    return dict(box, x0=min(xa, xb), y0=min(ya, yb), x1=max(xa, xb), y1=max(ya, yb))


@dataclass
class CocoSource:
    """A COCO set: ``images`` folder, ``annotations`` (instances JSON), optional ``captions`` JSON.

    One sample per entry of the file's "images" list, in file order, with boxes from the
    instances, licences from the file's "licenses", and with ``masks`` a category-id mask.
    """

    images: str
    annotations: str
    captions: str | None = None
    masks: bool = False
    kind: ClassVar[str] = "coco"
    # the COCO image id, so users can join back to the original annotation file
    extra_fields: ClassVar[tuple[pa.Field, ...]] = (pa.field("coco_id", pa.int64()),)

    def validate(self) -> None:
        """Raise UsageError for a missing images folder or an unusable annotations/captions file."""
        if not Path(self.images).is_dir():
            raise UsageError(
                f"--images {self.images}: not a directory; pass the folder that holds "
                "the COCO image files (such as val2017/)"
            )
        self._index()

    def count(self) -> int | None:
        """Images in the file, plus one row per file with annotations of unknown image ids."""
        index = self._index()
        return len(index.images) + len(index.orphans)

    def records(self) -> Iterator[Record | Failure]:
        """One Record or Failure per image entry, then the orphan-annotation failures; bytes read lazily."""
        index = self._index()
        root = Path(self.images).resolve()
        seen: set[int] = set()
        for image in index.images:
            source = self.annotations
            try:
                if not isinstance(image, dict):
                    raise _bad(f"images entry {image!r:.80} is not an object")
                file_name = image.get("file_name")
                if isinstance(file_name, str) and file_name:
                    source = os.path.join(self.images, file_name)
                yield self._record(image, index, root, seen, source)
            except ItemError as exc:
                yield Failure(source=source, reason=exc.reason, detail=exc.detail)
        yield from index.orphans

    def _index(self) -> _Index:
        # kept off the dataclass fields so lineage (dataclasses.asdict) never copies the parsed JSON
        if getattr(self, "_loaded", None) is None:
            self._loaded = _load(self)
        return self._loaded

    def _record(self, image: dict[str, Any], index: _Index, root: Path, seen: set[int], source: str) -> Record:
        image_id, file_name = image.get("id"), image.get("file_name")
        if not _is_int(image_id):
            raise _bad(f"image id {image_id!r} is not an integer")
        if image_id in seen:
            raise _bad(f"image id {image_id} appears more than once in {self.annotations}")
        seen.add(image_id)
        if not isinstance(file_name, str) or not file_name:
            raise _bad(f"image {image_id}: file_name {file_name!r} is not a non-empty string")
        try:
            data = _inside(root, file_name).read_bytes()  # read now, one image at a time
        except (FileNotFoundError, IsADirectoryError):
            raise ItemError(f"image {image_id}: {source} is not a file", reason="missing_file") from None
        except OSError as exc:
            raise ItemError(f"image {image_id}: cannot read {source} ({exc.strerror})", reason="missing_file") from None

        anns = index.annotations.get(image_id, [])
        boxes = [annotation_to_box(a, index.categories) for a in anns]
        orientation, raw_w, raw_h = annotation_orientation(data, (image.get("width"), image.get("height")))
        boxes = [orient_box(b, orientation, raw_w, raw_h) for b in boxes]
        mask = render_mask(anns, image.get("height"), image.get("width")) if self.masks else None
        if mask is not None and orientation != 1:
            mask = np.ascontiguousarray(_EXIF_ARRAY[orientation](mask))
        captions = [c.get("caption") for c in index.captions.get(image_id, [])]
        if not all(isinstance(c, str) for c in captions):
            raise _bad(f"image {image_id}: a caption in {self.captions} is not a string")

        meta = {k: v for k, v in image.items() if k not in _IMAGE_COLUMNS}
        meta.update(coco_id=image_id, categories=sorted({index.categories[b["label"]] for b in boxes}))
        if captions:
            meta["captions"] = captions
        if orientation != 1:
            meta["exif_orientation"] = orientation  # boxes and mask were moved with the pixels
        lic = index.licenses.get(image.get("license")) if isinstance(image.get("license"), (int, str)) else None
        if lic and not lic["spdx"]:
            # keep what the file says about a licence we cannot name, for the audit stage
            meta.update(license_name=lic["name"], license_url=lic["url"])
        spdx = lic["spdx"] if lic else None
        attribution = image.get("attribution")
        return Record(
            source=source,
            image=data,
            boxes=boxes,
            mask=mask,
            caption=captions[0] if captions else None,
            caption_source="dataset" if captions else None,
            license=spdx,
            license_url=lic["url"] if spdx else None,
            attribution=attribution if isinstance(attribution, str) and attribution else None,
            meta=meta,
            extra={"coco_id": image_id},
        )


def _inside(root: Path, file_name: str) -> Path:
    """``root / file_name`` resolved (symlinks followed); ItemError path_escape if it leaves ``root``."""
    if os.path.isabs(file_name) or file_name.startswith(("/", "\\")):
        raise ItemError(
            f"file_name {file_name!r} is an absolute path; COCO file names are relative to --images",
            reason="path_escape",
        )
    try:
        path = (root / file_name).resolve()
    except ValueError as exc:  # an embedded NUL byte
        raise _bad(f"file_name {file_name!r}: {exc}") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop: the file cannot be reached
        raise ItemError(f"file_name {file_name!r}: {exc}", reason="missing_file") from None
    if not path.is_relative_to(root):
        raise ItemError(
            f"file_name {file_name!r} resolves to {path}, outside the images folder {root}", reason="path_escape"
        )
    return path
