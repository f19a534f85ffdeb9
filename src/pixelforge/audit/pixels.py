"""Brightness of datasets that curate has not scored: decode each shard's images in worker processes.

The value is curate's q_brightness (mean ITU-R 601 grey of a 128 px thumbnail, in [0, 1]), so an
audit before and after `pixelforge curate` reports the same distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pixelforge import media
from pixelforge.store import Dataset, split_member

THUMB_SIDE = 128  # = curate.quality.THUMB_SIDE: the thumbnail curate measures q_brightness on
DRAFT_SIDE = 256  # = curate.worker.DRAFT_SIDE: JPEGs decode at the same reduced scale as in curate
LIMITS = media.MediaLimits(max_bytes=512 * 2**20, max_pixels=400_000_000)
POOL_FROM = 1000  # fewer samples decode in this process: starting workers would cost more than it saves
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class BrightnessTask:
    dataset: str
    shard: str


@dataclass
class ShardBrightness:
    shard: str
    keys: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    unreadable: int = 0  # samples whose bytes are missing or do not decode
    image_warnings: dict[str, int] = field(default_factory=dict)  # Pillow's, counted by media


def image_to_brightness(img) -> float:
    """Mean grey in [0, 1] of a 128 px thumbnail of ``img`` (curate's q_brightness)."""
    thumb = media.resize(img if img.mode == "RGB" else img.convert("RGB"), THUMB_SIDE, "keep_ratio")
    return float((np.asarray(thumb, dtype=np.float32) @ LUMA).mean() / 255.0)


def shard_brightness(task: BrightnessTask) -> ShardBrightness:
    """Decode every sample of one shard (JPEGs at reduced scale) and measure its brightness."""
    ds = Dataset.open(task.dataset)
    rows = ds.index(columns=["key", "member"], filters=[("shard", "=", task.shard)]).to_pylist()
    wanted = {r["key"]: split_member(r["member"])[1] for r in rows}
    out = ShardBrightness(task.shard)
    for key, files in ds.read_shard(task.shard, keys=wanted):
        ext = wanted[key]
        if ext not in files:
            continue
        try:
            img = media.decode(files[ext], LIMITS, draft_size=(DRAFT_SIDE, DRAFT_SIDE))
        except Exception:  # a bad image is counted as unreadable, never a crash (curate reports why)
            continue
        out.keys.append(key)
        out.values.append(image_to_brightness(img))
    out.unreadable = len(rows) - len(out.keys)
    out.image_warnings = media.take_warnings()
    return out


def dataset_brightness(ds: Dataset, processes: int) -> tuple[list[str], list[float], int, dict[str, int]]:
    """(keys, brightness, unreadable count, Pillow warning counts) over every shard, on the local executor."""
    from pixelforge.progress import track
    from pixelforge.run import run_tasks

    keys: list[str] = []
    values: list[float] = []
    unreadable = 0
    image_warnings: dict[str, int] = {}
    tasks = [BrightnessTask(ds.path, shard) for shard in ds.shards()]
    with track("audit brightness", total=ds.num_samples) as bar:
        for res in run_tasks(shard_brightness, tasks, processes=processes if ds.num_samples >= POOL_FROM else 1):
            keys += res.keys
            values += res.values
            unreadable += res.unreadable
            media.add_warnings(image_warnings, res.image_warnings)
            bar.advance(len(res.keys) + res.unreadable)
    return keys, values, unreadable, image_warnings
