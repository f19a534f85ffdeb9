"""Training data: a dataset's images decoded once at training size, split-aware, served as batches."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixelforge import media
from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.store import Dataset


@dataclass
class ImageTable:
    """Images (N, 3, S, S) uint8 with their keys, labels and captions, in dataset order.

    Decoding every image once up front keeps the training loop free of image work (a 5,000-image
    32 px set is 15 MB); augmentation, when asked for, runs on the fly in DataLoader workers.
    """

    keys: list[str]
    images: torch.Tensor | None  # (N, 3, S, S) uint8; None for an index-only table (streamed training)
    labels: torch.Tensor  # (N,) int64, -1 where missing
    captions: list[str | None]
    label_names: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, idx: np.ndarray) -> ImageTable:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        images = None if self.images is None else self.images[idx_t]
        return ImageTable(
            [self.keys[i] for i in idx], images, self.labels[idx_t], [self.captions[i] for i in idx], self.label_names
        )


def index_table(ds: Dataset, label_column: str = "label") -> tuple[ImageTable, list[dict[str, Any]]]:
    """Keys, labels and captions of every sample (no images), and each row's split, shard and member.

    ``label_column`` "label" reads the integer label (named by label_name); any other index column
    (e.g. shapes' ``shape`` or ``colour``) becomes class ids in the sorted order of its distinct values.
    """
    columns = ds.schema.names
    if label_column not in columns:
        raise UsageError(f"--label {label_column}: {ds.path} has no such column; its columns are {', '.join(columns)}")
    wanted = ["key", "shard", "member", "split", "caption", "label", "label_name"]
    rows = list(ds.iter_rows(columns=wanted + ([label_column] if label_column not in wanted else [])))
    if label_column == "label":
        names: dict[int, str] = {}
        labels = [-1 if r["label"] is None else int(r["label"]) for r in rows]
        for r in rows:
            if r["label"] is not None and r["label_name"] is not None:
                names[int(r["label"])] = r["label_name"]
        label_names = [names.get(i, str(i)) for i in range(max(labels, default=-1) + 1)]
    else:
        label_names = sorted({str(r[label_column]) for r in rows if r[label_column] is not None})
        ids = {v: i for i, v in enumerate(label_names)}
        labels = [-1 if r[label_column] is None else ids[str(r[label_column])] for r in rows]
    for r, label in zip(rows, labels):
        r["label"] = label
    table = ImageTable(
        [r["key"] for r in rows],
        None,
        torch.tensor(labels, dtype=torch.long),
        [r["caption"] for r in rows],
        label_names,
    )
    return table, rows


def decode_rows(ds: Dataset, table: ImageTable, size: int, keep: np.ndarray | None = None) -> ImageTable:
    """``table`` (or its rows ``keep``) with images decoded to ``size`` x ``size`` (center crop) into memory."""
    keep = np.arange(len(table)) if keep is None else np.asarray(keep)
    sub = table.subset(keep) if len(keep) != len(table) else table
    wanted = set(sub.keys)
    images = torch.empty((len(sub), 3, size, size), dtype=torch.uint8)
    position = {k: i for i, k in enumerate(sub.keys)}
    with track("decode", total=len(sub)) as bar:
        for sample in ds.iter_samples():
            if sample.key not in wanted:
                continue
            img = media.resize(sample.decode(), size, "center_crop")
            images[position[sample.key]] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
            bar.advance()
    return ImageTable(sub.keys, images, sub.labels, sub.captions, sub.label_names)


def load_table(ds: Dataset, size: int, max_bytes: int = 8 << 30, label_column: str = "label") -> ImageTable:
    """Decode every sample of ``ds`` to ``size`` x ``size`` (center crop) into memory."""
    need = ds.num_samples * 3 * size * size
    if need > max_bytes:
        raise UsageError(
            f"{ds.path}: {ds.num_samples} images at {size} px need {need / 2**30:.1f} GB in memory; "
            "train with --stream, pass a smaller --image-size, or curate a subset"
        )
    return decode_rows(ds, index_table(ds, label_column)[0], size)


def split_indices(
    keys: list[str], splits: list[str | None], val_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of (train, val, test): the split column when it has val rows, else a stable hash holdout.

    The holdout is decided by a hash of each key, so it never changes between runs or resumes.
    Rows of the test split are never trained on nor used to pick checkpoints.
    """
    splits_arr = np.array([s or "" for s in splits])
    is_test = splits_arr == "test"
    if (splits_arr == "val").any():
        train_idx = np.flatnonzero((splits_arr == "train") | (splits_arr == ""))
        val_idx = np.flatnonzero(splits_arr == "val")
    else:
        h = np.array(
            [int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8).digest(), "big") for k in keys], dtype=np.uint64
        )
        is_val = ((h % np.uint64(10_000)) < np.uint64(round(val_fraction * 10_000))) & ~is_test
        train_idx, val_idx = np.flatnonzero(~is_val & ~is_test), np.flatnonzero(is_val)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UsageError(
            f"the dataset gives {len(train_idx)} training and {len(val_idx)} validation images; "
            "it needs both (add samples, or split it with pixelforge split)"
        )
    return train_idx, val_idx, np.flatnonzero(is_test)


def split_table(
    table: ImageTable, splits: list[str | None], val_fraction: float
) -> tuple[ImageTable, ImageTable, ImageTable]:
    """(train, val, test) tables of an in-memory ``table`` (see :func:`split_indices`)."""
    return tuple(table.subset(idx) for idx in split_indices(table.keys, splits, val_fraction))


class Batches:
    """Deterministic, resumable batches: epoch e is a permutation seeded by (seed, e).

    Batch b of epoch e is the same whatever happened before, so a resumed run at step s draws
    exactly the batches the uninterrupted run would have drawn. With ``augment`` the images
    are augmented per sample in DataLoader workers (seeded per step and row), off the training thread.
    ``batch_size`` is the global batch; ``part`` (rank, world) serves one DDP process its
    batch_size / world rows of each global batch, so the processes together see what one would.
    """

    def __init__(
        self,
        table: ImageTable,
        batch_size: int,
        seed: int,
        augment: Callable[[Image.Image], Image.Image] | None = None,
        num_workers: int = 0,
        part: tuple[int, int] = (0, 1),
    ):
        self.rank, self.world = part
        if len(table) < batch_size:
            batch_size = len(table) - len(table) % self.world  # keep it divisible by the processes
        self.table, self.batch_size, self.seed = table, batch_size, seed
        self.local = batch_size // self.world  # rows per process and step
        self.augment = augment
        self.per_epoch = len(table) // batch_size
        self.num_workers = num_workers if augment is not None else 0

    def indices(self, step: int) -> torch.Tensor:
        """This process's rows of the global batch of ``step`` (all of them for one process)."""
        epoch, b = divmod(step, self.per_epoch)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.table), generator=g)
        start = b * self.batch_size + self.rank * self.local
        return perm[start : start + self.local]

    def iterate(self, start_step: int):
        """Yield (step, images float [-1, 1] (B, 3, S, S), labels, captions) from ``start_step`` on."""
        if self.augment is None:
            step = start_step
            while True:
                yield (step, *self._batch(step, self.indices(step)))
                step += 1
        loader = torch.utils.data.DataLoader(
            _AugmentedSteps(self, start_step),
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=4 if self.num_workers > 0 else None,
            generator=torch.Generator().manual_seed(self.seed),
        )  # leaves the global RNG (dropout's) alone
        yield from loader

    def _batch(self, step: int, idx: torch.Tensor, images: torch.Tensor | None = None):
        imgs = self.table.images[idx] if images is None else images
        x = imgs.float().div_(127.5).sub_(1.0)
        return x, self.table.labels[idx], [self.table.captions[i] for i in idx.tolist()]


class _AugmentedSteps(torch.utils.data.IterableDataset):
    """Steps start, start+1, ... with augmented images; worker w makes the steps with step % W == w."""

    def __init__(self, batches: Batches, start: int):
        self.batches, self.start = batches, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        step = self.start + wid
        while True:
            idx = self.batches.indices(step)
            out = []
            for row, i in enumerate(idx.tolist(), start=self.batches.rank * self.batches.local):
                # augmentation randomness per step and row of the global batch: the same for any number of processes
                torch.manual_seed(((self.batches.seed * 7919 + step) * 1_000_003 + row) % 2**63)
                img = Image.fromarray(self.batches.table.images[i].permute(1, 2, 0).numpy())
                aug = self.batches.augment(img)
                if aug.size != img.size:  # a SPEC that crops or pads: back to the training size
                    aug = media.resize(aug.convert("RGB"), img.size, "center_crop")
                out.append(torch.from_numpy(np.asarray(aug, dtype=np.uint8).copy()).permute(2, 0, 1))
            yield (step, *self.batches._batch(step, idx, torch.stack(out)))
            step += nw
