"""The per-shard work of curate: score one input shard, and write one output shard of kept samples.

Runs in worker processes: it imports what the work needs (media, cv2; torch only when the
watermark CNN runs) and nothing of the CLI or DuckDB.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pixelforge import media
from pixelforge.alignment import thumbnail
from pixelforge.curate.columns import (
    COLOUR,
    COLOUR_TYPE,
    FACE_COLUMNS,
    HUE_BINS,
    NEAR_THUMB,
    NEAR_THUMB_TYPE,
    SCORE_FIELDS,
)
from pixelforge.curate.quality import (
    colour_input,
    colour_signatures,
    dhash_input,
    dhashes,
    image_signals,
    jpeg_quality,
    letterbox,
    phash_input,
    phashes,
)
from pixelforge.errors import ItemError
from pixelforge.faces import DETECT_SIDE, FaceSettings
from pixelforge.store import Dataset, ShardWriter, split_member

# A stored image is trusted more than a download, but still bounded: a damaged shard must not
# make a worker allocate without limit.
LIMITS = media.MediaLimits(max_bytes=512 * 2**20, max_pixels=400_000_000)


DRAFT_SIDE = 256  # = quality.BLUR_SIDE, and above the detector's 128 px input
# Duplicates only: dhash is taken of a 9x8 copy and the colour signature of a 16x16 one, so a
# JPEG decoded at up to 1/8 scale (libjpeg's DCT scaling) is enough. The decode the import takes
# a kept JPEG's phash of (media.PHASH_DRAFT) serves: curate on a folder (curate.folder) then
# decodes each image once, and gives the same dhash as import + curate. (On the benchmark corpus
# 32 px gave precision 1.000 / recall 0.841 against 1.000 / 0.838 at 64 px, for ~15% less CPU
# in this worker, which the one-pass folder route more than wins back.)
DUP_DRAFT = media.PHASH_DRAFT
ONLY_DUPLICATES = "duplicates"


@dataclass
class ScoreTask:
    """Score the samples of one input shard from row ``start`` to ``stop`` (its share of the work)."""

    dataset: str
    shard: str
    start: int = 0
    stop: int | None = None
    watermark: bool = True
    weights: str | None = None  # None: the shipped detector
    only: str | None = None  # "duplicates": hashes, colour and q_jpeg_quality only (other q_* null)
    faces: FaceSettings | None = None  # find faces (face_bboxes, n_faces) with these settings


@dataclass
class ShardScores:
    """What scoring one shard gave: a score table (one row per readable sample) and its failures."""

    shard: str
    table: pa.Table  # key, phash (the input's, else computed), SCORE_FIELDS, colour signature
    failures: list[dict[str, Any]] = field(default_factory=list)  # key, source, reason, detail
    seconds: float = 0.0
    task: ScoreTask | None = None  # what was scored (the caller's cache key)
    image_warnings: dict[str, int] = field(default_factory=dict)  # Pillow's while decoding (media.take_warnings)


def score_shard(task: ScoreTask) -> ShardScores:
    """Decode each sample of ``task.shard`` (through media), compute q_*, hashes and colour, batch the CNN.

    phash comes from the input row when it has one; the missing ones are computed together
    (quality.phashes: one batched DCT).
    """
    start = time.monotonic()
    media.take_warnings()  # counts left by earlier work in this process are not this task's
    ds = Dataset.open(task.dataset)
    rows = ds.index(columns=["key", "member", "source", "phash"], filters=[("shard", "=", task.shard)]).to_pylist()
    rows = rows[task.start : task.stop]
    wanted = {r["key"]: r for r in rows}
    last = rows[-1]["key"] if rows else None
    batch = ScoreBatch(task.only, task.watermark, task.weights, task.faces)
    seen: set[str] = set()
    for key, files in ds.read_shard(task.shard, keys=wanted):
        row = wanted.get(key)
        if row is None:
            continue
        seen.add(key)
        data = files.get(split_member(row["member"])[1])
        if data is None:
            batch.fail(key, row["source"], "missing_file", f"member {row['member']} is not in shard {task.shard}")
        else:
            batch.add(key, row["source"], data, row["phash"])
        if key == last:
            break  # this task's share ends here: the rest of the tar belongs to other tasks
    for key in wanted.keys() - seen:
        batch.fail(
            key, wanted[key]["source"], "missing_file", f"sample {key} is in the index but not in shard {task.shard}"
        )
    return ShardScores(task.shard, batch.table(), batch.failures, time.monotonic() - start, task, media.take_warnings())


class ScoreBatch:
    """The scores of a run of samples, gathered into one score table: key, phash, SCORE_FIELDS, colour.

    What score_shard and curate's one-pass folder import (curate.folder) share. The CNN, the
    missing phashes and the colour signatures are computed for the whole batch at once.
    """

    def __init__(self, only: str | None, watermark: bool, weights: str | None, faces: FaceSettings | None = None):
        self.dup_only = only == ONLY_DUPLICATES
        self.det = _detector(weights) if watermark and not self.dup_only else None
        self.faces = _face_detector(faces) if faces is not None else None
        self.out: dict[str, list] = {
            "key": [],
            "phash": [],
            **{f.name: [] for f in SCORE_FIELDS},
            COLOUR: [],
            NEAR_THUMB: [],
        }
        self.failures: list[dict[str, Any]] = []
        self._inputs: list[np.ndarray] = []
        self._to_hash: list[tuple[int, np.ndarray]] = []  # (row in out, phash_input) of rows without a phash
        self._dhash_inputs: list[np.ndarray] = []  # duplicates only: every row's dhash_input, hashed at once

    def fail(self, key: str, source: str | None, reason: str, detail: str) -> None:
        self.failures.append({"key": key, "source": source, "reason": reason, "detail": detail})

    def add(self, key: str, source: str | None, data: bytes, phash: int | None, decoded=None) -> bool:
        """Score one sample's image bytes; False (and a failure) when they do not decode.

        ``decoded``: the image as ``media.decode(data, draft_size=DUP_DRAFT)`` gives it, when the
        caller has it (used by the duplicates-only scores instead of decoding again).
        """
        try:
            scores, dh, colour, thumb, img = _hash_one(data, decoded) if self.dup_only else _score_one(data)
            found = self.faces.detect(_face_copy(data, img)) if self.faces is not None else None
        except ItemError as exc:
            self.fail(key, source, exc.reason, exc.detail)
            return False
        except Exception as exc:  # a decoder bug on one hostile file must not stop the stage
            self.fail(key, source, "decode_error", f"{type(exc).__name__}: {exc}")
            return False
        out = self.out
        if phash is None:
            self._to_hash.append((len(out["key"]), phash_input(img)))
        out["key"].append(key)
        out["phash"].append(phash)
        for name, value in scores.items():
            out[name].append(value)
        if self.dup_only:
            self._dhash_inputs.append(dh)
        out["dhash"].append(None if self.dup_only else dh)
        out[COLOUR].append(colour)
        out[NEAR_THUMB].append(thumbnail(img))
        out["face_bboxes"].append(found)
        out["n_faces"].append(None if found is None else len(found))
        if self.det is not None:
            # the thumbnail fits in 128 px already: letterboxing it is a paste, not a resize
            self._inputs.append(
                letterbox(thumb if self.det.config.input_size == 128 else img, self.det.config.input_size)
            )
        return True

    def table(self) -> pa.Table:
        out = dict(self.out)
        if self._to_hash:
            for (i, _), ph in zip(self._to_hash, phashes(np.stack([g for _, g in self._to_hash])).tolist()):
                out["phash"][i] = ph
        if self._dhash_inputs:
            out["dhash"] = dhashes(np.stack(self._dhash_inputs)).tolist()
        if self.det is not None and self._inputs:
            out["q_watermark"] = self.det.score_arrays(np.stack(self._inputs)).tolist()
        else:
            out["q_watermark"] = [None] * len(out["key"])
        # signatures of the whole batch at once: per-image NumPy calls would cost more than the maths
        sig = colour_signatures(np.stack(out[COLOUR])) if out[COLOUR] else np.zeros((0, HUE_BINS), np.float32)
        out[COLOUR] = pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.float32()), HUE_BINS)
        size = NEAR_THUMB_TYPE.list_size
        thumbs = np.stack(out[NEAR_THUMB]).reshape(-1) if out[NEAR_THUMB] else np.zeros(0, np.uint8)
        out[NEAR_THUMB] = pa.FixedSizeListArray.from_arrays(pa.array(thumbs, pa.uint8()), size)
        return pa.Table.from_pydict(out, schema=SCORE_SCHEMA)


SCORE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("phash", pa.uint64()),
        *SCORE_FIELDS,
        pa.field(COLOUR, COLOUR_TYPE),
        pa.field(NEAR_THUMB, NEAR_THUMB_TYPE),
    ]
)


def _score_one(data: bytes):
    """(q_* scores, dhash, colour_input, thumbnail, decoded image) of one sample; raises ItemError."""
    info = media.probe(data, LIMITS)
    # every score needs at most a 256 px copy: JPEGs decode at 1/2..1/8 scale (much faster)
    img = media.decode(data, LIMITS, draft_size=(DRAFT_SIDE, DRAFT_SIDE))
    scores, dh, thumb, colour = image_signals(img, data, (info.width, info.height))
    return scores, dh, colour, thumb, img


_NO_SCORES = {f.name: None for f in SCORE_FIELDS if f.name not in ("dhash", "q_watermark", *FACE_COLUMNS)}


def _hash_one(data: bytes, img=None):
    """What duplicate grouping needs of one sample, as _score_one returns it (other q_* None), but
    with the dhash's input copy (quality.dhash_input) in the dhash's place.

    ``img``: ``data`` already decoded at DUP_DRAFT (by media.process_decoded), not decoded again.
    """
    if img is None:
        img = media.decode(data, LIMITS, draft_size=DUP_DRAFT)
    # q_jpeg_quality reads the header only, and picks a group's representative (lossless first)
    scores = dict(_NO_SCORES, q_jpeg_quality=jpeg_quality(data))
    return scores, dhash_input(img), colour_input(img), None, img  # dhash: of the whole batch (ScoreBatch)


def _face_copy(data: bytes, img):
    """The copy faces are looked for in: the scoring decode when it is large enough, else a larger decode."""
    info = media.probe(data, LIMITS)
    if max(img.size) >= DETECT_SIDE // 2 or img.size == (info.width, info.height):
        return img
    return media.decode(data, LIMITS, draft_size=(DETECT_SIDE, DETECT_SIDE))


_FACE_DETECTORS: dict[FaceSettings, Any] = {}


def _face_detector(settings: FaceSettings):
    """One face detector per process and settings (OpenCV loads the cascade or network once)."""
    from pixelforge.faces import FaceDetector

    if settings not in _FACE_DETECTORS:
        _FACE_DETECTORS[settings] = FaceDetector(settings)
    return _FACE_DETECTORS[settings]


def _detector(weights: str | None):
    import torch

    from pixelforge.curate.watermark import WEIGHTS, detector

    torch.set_num_threads(1)  # one process per core already
    return detector(weights or WEIGHTS)


@dataclass
class WriteTask:
    """Copy the kept samples of one input shard, with their new rows, into one output shard."""

    dataset: str
    shard: str
    out: str
    shard_id: int
    rows: list[dict[str, Any]]  # output rows of kept samples, in input order
    failures: list[dict[str, Any]]
    schema: pa.Schema


def write_shard(task: WriteTask) -> int:
    """Write the output shard: kept samples' bytes unchanged (image, mask, caption) with new rows."""
    ds = Dataset.open(task.dataset)
    with ShardWriter(task.out, task.shard_id, task.schema) as writer:
        rows = {r["key"]: r for r in task.rows}
        if rows:
            for key, files in ds.read_shard(task.shard, keys=rows):
                row = rows.get(key)
                if row is None:
                    continue
                ext = split_member(row["member"])[1]
                writer.write(row, files[ext], ext, files.get("mask.png") if row.get("mask") else None)
        for f in task.failures:
            writer.fail(**f)
    return len(writer.rows)
