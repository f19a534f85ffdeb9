"""Image sets to evaluate (a pixelforge dataset or a plain folder) and the parallel feature pass over them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pixelforge import media
from pixelforge.errors import DatasetError, ItemError, UsageError
from pixelforge.media import IMAGE_EXTENSIONS, images_under
from pixelforge.progress import track
from pixelforge.store import Dataset, is_partial

FOLDER_CHUNK = 64  # files per unit of work handed to a loader worker


@dataclass
class ImageSet:
    """The images of one input, in a fixed order: a dataset's index order or a folder's sorted paths.

    ``keys`` name the images in results (sample keys, or paths relative to the folder).
    """

    path: str
    kind: str  # "dataset" | "folder"
    keys: list[str]
    dataset: Dataset | None = None
    files: list[Path] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)  # per image, for datasets

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, columns: list[str]) -> list[dict[str, Any]]:
        """The index rows (only ``columns`` that exist) of the selected images, in order; {} for a folder."""
        if self.dataset is None:
            return [{} for _ in self.keys]
        have = [c for c in columns if c in self.dataset.schema.names]
        table = self.dataset.index(columns=["key"] + [c for c in have if c != "key"])
        by_key = {r["key"]: r for r in table.to_pylist()}
        return [by_key[k] for k in self.keys]


def open_images(path: str, flag: str, n: int | None = None) -> ImageSet:
    """Open ``path`` as a pixelforge dataset (it has dataset.json) or else a plain image folder.

    ``n`` keeps the first n images. Raises UsageError (naming ``flag``) for a missing or empty input.
    """
    if n is not None and n < 1:
        raise UsageError(f"--n {n}: choose a positive number of images")
    local = Path(path)
    if "://" not in path and not local.exists():
        raise UsageError(f"{flag} {path}: no such dataset or folder")
    try:
        ds = Dataset.open(path)
    except DatasetError as e:
        if "://" in path or not local.is_dir() or is_partial(path):
            raise UsageError(f"{flag} {path}: {e}") from None
        files = images_under(local)[:n]
        if not files:
            kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise UsageError(f"{flag} {path}: no images ({kinds}) in this folder") from None
        return ImageSet(path, "folder", [str(p.relative_to(local)) for p in files], files=files)
    table = ds.index(columns=["key", "shard"])
    if n is not None:
        table = table.slice(0, n)
    if table.num_rows == 0:
        raise UsageError(f"{flag} {path}: the dataset has no samples")
    return ImageSet(
        path, "dataset", table.column("key").to_pylist(), dataset=ds, shards=table.column("shard").to_pylist()
    )


def _as_is(batch):
    """The loader's collate function: batches are already built by the stream, keep them as numpy."""
    return batch


def _decode(data: bytes) -> np.ndarray:
    """Encoded bytes -> (H, W, 3) uint8 through media (EXIF, modes, alpha on white)."""
    return np.asarray(media.decode(data))


class _ImageStream(IterableDataset):
    """Yields batches ``(positions, images, failures)``; each loader worker takes every k-th unit of work.

    A unit is one shard of a dataset or FOLDER_CHUNK files of a folder, so a worker reads each
    shard tar once, front to back.
    """

    def __init__(self, images: ImageSet, batch_size: int):
        self.images, self.batch_size = images, batch_size
        if images.kind == "dataset":
            self.positions: dict[str, dict[str, int]] = {}  # shard -> {key: position in the set}
            for pos, (key, shard) in enumerate(zip(images.keys, images.shards)):
                self.positions.setdefault(shard, {})[key] = pos
            self.units = list(self.positions)
        else:
            self.units = [range(i, min(i + FOLDER_CHUNK, len(images))) for i in range(0, len(images), FOLDER_CHUNK)]

    def _items(self, unit) -> Iterator[tuple[int, bytes | None, str]]:
        if self.images.kind == "folder":
            for pos in unit:
                try:
                    yield pos, self.images.files[pos].read_bytes(), ""
                except OSError as e:
                    yield pos, None, f"missing_file: {e.strerror or e}"
            return
        wanted = self.positions[unit]
        for sample in self.images.dataset.iter_samples(shards=[unit]):
            pos = wanted.get(sample.key)
            if pos is not None:
                yield pos, sample.image, ""

    def __iter__(self):
        info = get_worker_info()
        units = self.units if info is None else self.units[info.id :: info.num_workers]
        batch: tuple[list[int], list[np.ndarray], list[tuple[int, str]]] = ([], [], [])
        for unit in units:
            for pos, data, why in self._items(unit):
                if data is None:
                    batch[2].append((pos, why))
                    continue
                try:
                    batch[1].append(_decode(data))
                    batch[0].append(pos)
                except ItemError as e:
                    batch[2].append((pos, f"{e.reason}: {e.detail}"))
                if len(batch[0]) >= self.batch_size:
                    yield batch
                    batch = ([], [], [])
        if batch[0] or batch[2]:
            yield batch


@dataclass
class Extracted:
    """Features of the images that decoded, in input order, and the ones that did not."""

    keys: list[str]
    features: np.ndarray  # (N, D) float32
    logits: np.ndarray | None  # (N, K) float32
    failed: list[tuple[str, str]]  # (key, reason)


def to_batches(arrays: list[np.ndarray]) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Group (H, W, 3) uint8 images by size; yield (indices, (B, 3, H, W) float in [0, 1]) per size."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.shape[:2], []).append(i)
    for idx in groups.values():
        x = torch.from_numpy(np.stack([arrays[i] for i in idx])).permute(0, 3, 1, 2)
        yield idx, x.float().div(255)  # as torchvision's ToTensor: float32 / 255


def extract(
    images: ImageSet, model, *, batch_size: int = 50, workers: int = 2, logits: bool = False, label: str = "features"
) -> Extracted:
    """Run ``model`` (a FeatureModel) over every image of ``images``: one feature pass, decoding in parallel.

    ``workers`` loader processes decode while the main process runs the network (0: decode
    inline). Images that fail to decode are left out and listed in ``failed``. Results do not
    depend on ``batch_size`` or ``workers`` (beyond float32 rounding of the convolutions).
    """
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: choose a positive number")
    stream = _ImageStream(images, batch_size)
    workers = max(0, min(workers, len(stream.units)))
    loader = DataLoader(stream, batch_size=None, num_workers=workers, collate_fn=_as_is)
    n = len(images)
    feats: np.ndarray | None = None
    logit_arr: np.ndarray | None = None
    ok = np.zeros(n, dtype=bool)
    failed: dict[int, str] = {}
    with track(label, total=n) as progress:
        for positions, arrays, failures in loader:
            failed.update(failures)
            for idx, x in to_batches(arrays):
                f, lg = model.features_and_logits(x, logits=logits)
                if feats is None:
                    feats = np.zeros((n, f.shape[1]), np.float32)
                    logit_arr = np.zeros((n, lg.shape[1]), np.float32) if lg is not None else None
                rows = [positions[i] for i in idx]
                feats[rows] = f.numpy()
                if logit_arr is not None:
                    logit_arr[rows] = lg.numpy()
                ok[rows] = True
            progress.advance(len(positions) + len(failures))
    return collected(images, feats, logit_arr, ok, failed)


def collected(images, feats, logit_arr, ok, failed: dict[int, str]) -> Extracted:
    """The Extracted of a feature pass: rows of the images that decoded; an error when none did."""
    n = len(images.keys)
    if not ok.any():
        raise UsageError(
            f"{images.path}: none of its {n} images could be decoded "
            f"(first failure: {next(iter(failed.values()), 'unknown')})"
        )
    return Extracted(
        keys=[k for k, good in zip(images.keys, ok) if good],
        features=feats[ok],
        logits=logit_arr[ok] if logit_arr is not None else None,
        failed=[(images.keys[p], why) for p, why in sorted(failed.items())],
    )
