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
from pixelforge.curate.columns import COLOUR, COLOUR_TYPE, HUE_BINS, SCORE_FIELDS
from pixelforge.curate.quality import (
    colour_input, colour_signatures, dhash64, image_signals, jpeg_quality, letterbox, phash_input, phashes,
)
from pixelforge.errors import ItemError
from pixelforge.store import Dataset
from pixelforge.store import fs as fsutil
from pixelforge.store.shards import SHARDS_DIR, ShardWriter, read_members

# A stored image is trusted more than a download, but still bounded: a damaged shard must not
# make a worker allocate without limit.
LIMITS = media.MediaLimits(max_bytes=512 * 2**20, max_pixels=400_000_000)


DRAFT_SIDE = 256  # = quality.BLUR_SIDE, and above the detector's 128 px input
# Duplicates only: dhash is taken of a 9x8 copy and the colour signature of a 16x16 one, so a
# JPEG decoded at up to 1/8 scale (libjpeg's DCT scaling) is enough. On the benchmark corpus 32 px
# gave precision 1.000 / recall 0.841 against 1.000 / 0.838 at 64 px, for ~15% less CPU.
DUP_DRAFT_SIDE = 32
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


@dataclass
class ShardScores:
    """What scoring one shard gave: a score table (one row per readable sample) and its failures."""

    shard: str
    table: pa.Table  # key, phash (the input's, else computed), SCORE_FIELDS, colour signature
    failures: list[dict[str, Any]] = field(default_factory=list)  # key, source, reason, detail
    seconds: float = 0.0
    task: ScoreTask | None = None  # what was scored (the caller's cache key)


def score_shard(task: ScoreTask) -> ShardScores:
    """Decode each sample of ``task.shard`` (through media), compute q_*, hashes and colour, batch the CNN.

    phash comes from the input row when it has one; the missing ones are computed together
    (quality.phashes: one batched DCT).
    """
    start = time.monotonic()
    ds = Dataset.open(task.dataset)
    rows = ds.index(columns=["key", "member", "source", "phash"], filters=[("shard", "=", task.shard)]).to_pylist()
    rows = rows[task.start:task.stop]
    wanted = {r["key"]: r for r in rows}
    last = rows[-1]["key"] if rows else None
    out: dict[str, list] = {"key": [], "phash": [], **{f.name: [] for f in SCORE_FIELDS}, COLOUR: []}
    failures: list[dict[str, Any]] = []
    inputs: list[np.ndarray] = []
    to_hash: list[tuple[int, np.ndarray]] = []  # (row in out, phash_input) of rows without a phash
    dup_only = task.only == ONLY_DUPLICATES
    det = _detector(task.weights) if task.watermark and not dup_only else None
    seen: set[str] = set()
    for key, files in read_members(ds.fs, fsutil.join(ds.root, SHARDS_DIR, task.shard), keys=wanted):
        row = wanted.get(key)
        if row is None:
            continue
        seen.add(key)
        try:
            score_one = _hash_one if dup_only else _score_one
            scores, dh, colour, thumb, img = score_one(row, files.get(row["member"].partition(".")[2]), task.shard)
        except ItemError as exc:
            failures.append({"key": key, "source": row["source"], "reason": exc.reason, "detail": exc.detail})
        except Exception as exc:  # a decoder bug on one hostile file must not stop the stage
            failures.append({"key": key, "source": row["source"], "reason": "decode_error",
                             "detail": f"{type(exc).__name__}: {exc}"})
        else:
            if row["phash"] is None:
                to_hash.append((len(out["key"]), phash_input(img)))
            out["key"].append(key)
            out["phash"].append(row["phash"])
            for name, value in scores.items():
                out[name].append(value)
            out["dhash"].append(dh)
            out[COLOUR].append(colour)
            if det is not None:
                # the thumbnail fits in 128 px already: letterboxing it is a paste, not a resize
                inputs.append(letterbox(thumb if det.config.input_size == 128 else img, det.config.input_size))
        if key == last:
            break  # this task's share ends here: the rest of the tar belongs to other tasks
    for key in wanted.keys() - seen:
        failures.append({"key": key, "source": wanted[key]["source"], "reason": "missing_file",
                         "detail": f"sample {key} is in the index but not in shard {task.shard}"})
    if to_hash:
        for (i, _), ph in zip(to_hash, phashes(np.stack([g for _, g in to_hash])).tolist()):
            out["phash"][i] = ph
    if det is not None and inputs:
        out["q_watermark"] = det.score_arrays(np.stack(inputs)).tolist()
    else:
        out["q_watermark"] = [None] * len(out["key"])
    # signatures of the whole task at once: per-image NumPy calls would cost more than the maths
    sig = colour_signatures(np.stack(out[COLOUR])) if out[COLOUR] else np.zeros((0, HUE_BINS), np.float32)
    out[COLOUR] = pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.float32()), HUE_BINS)
    schema = pa.schema([pa.field("key", pa.string()), pa.field("phash", pa.uint64()), *SCORE_FIELDS,
                        pa.field(COLOUR, COLOUR_TYPE)])
    return ShardScores(task.shard, pa.Table.from_pydict(out, schema=schema), failures, time.monotonic() - start,
                       task)


def _score_one(row: dict[str, Any], data: bytes | None, shard: str):
    """(q_* scores, dhash, colour_input, thumbnail, decoded image) of one sample; raises ItemError."""
    if data is None:
        raise ItemError(f"member {row['member']} is not in shard {shard}", reason="missing_file")
    info = media.probe(data, LIMITS)
    # every score needs at most a 256 px copy: JPEGs decode at 1/2..1/8 scale (much faster)
    img = media.decode(data, LIMITS, draft_size=(DRAFT_SIDE, DRAFT_SIDE))
    scores, dh, thumb, colour = image_signals(img, data, (info.width, info.height))
    return scores, dh, colour, thumb, img


_NO_SCORES = {f.name: None for f in SCORE_FIELDS if f.name not in ("dhash", "q_watermark")}


def _hash_one(row: dict[str, Any], data: bytes | None, shard: str):
    """What duplicate grouping needs of one sample, as _score_one returns it (other q_* None)."""
    if data is None:
        raise ItemError(f"member {row['member']} is not in shard {shard}", reason="missing_file")
    img = media.decode(data, LIMITS, draft_size=(DUP_DRAFT_SIDE, DUP_DRAFT_SIDE))
    # q_jpeg_quality reads the header only, and picks a group's representative (lossless first)
    scores = dict(_NO_SCORES, q_jpeg_quality=jpeg_quality(data))
    return scores, dhash64(img), colour_input(img), None, img


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
    writer = ShardWriter(task.out, task.shard_id, task.schema)
    try:
        rows = {r["key"]: r for r in task.rows}
        if rows:
            for key, files in read_members(ds.fs, fsutil.join(ds.root, SHARDS_DIR, task.shard), keys=rows):
                row = rows.get(key)
                if row is None:
                    continue
                ext = row["member"].partition(".")[2]
                writer.write(row, files[ext], ext, files.get("mask.png") if row.get("mask") else None)
        for f in task.failures:
            writer.fail(**f)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return len(writer.rows)
