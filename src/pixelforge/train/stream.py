"""Training batches streamed from a dataset's shards, for datasets too large to decode into memory.

DataLoader workers decode whole groups of shards (read sequentially from the tars) and the main
process cuts the stream into batches. Every choice is a function of (seed, epoch), so the batches
are the same for any number of workers and a resumed run at step s draws what the uninterrupted
run would have drawn:
- epoch e visits the training shards in an order permuted by (seed, e), in groups of
  ``group_shards`` consecutive shards;
- within a group, the samples (in index order) are permuted by (seed, e, group): mixing across shards;
- batches are consecutive slices of that sequence; the epoch's remainder (< batch) is dropped.
Worker w decodes groups w, w + W, ...; the DataLoader hands the groups back in order.
Resuming at step s skips whole groups without decoding them and the head of the group it lands in.
Under DDP (``part`` = (rank, world)) the batch is the global one: a process decodes only the
samples that fall in its batch_size / world rows of each global batch, so the processes decode
disjoint parts of every group and together see exactly the batches one process would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixelforge import media
from pixelforge.errors import DatasetError
from pixelforge.store import Dataset, split_member


class StreamBatches:
    """Batches of the training rows ``rows`` (dicts with key, shard, member, label id, caption)."""

    def __init__(
        self,
        ds: Dataset,
        rows: list[dict[str, Any]],
        size: int,
        batch_size: int,
        seed: int,
        augment: Callable[[Image.Image], Image.Image] | None = None,
        num_workers: int = 2,
        group_shards: int = 4,
        part: tuple[int, int] = (0, 1),
    ):
        self.ds, self.size, self.seed, self.augment = ds, size, seed, augment
        self.rank, self.world = part
        self.batch_size = batch_size if batch_size <= len(rows) else len(rows) - len(rows) % self.world
        self.local = self.batch_size // self.world  # rows per process and step
        self.num_workers, self.group_shards = num_workers, group_shards
        self.by_shard: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            self.by_shard.setdefault(r["shard"], []).append(r)
        self.shards = list(self.by_shard)  # index order
        self.per_epoch = len(rows) // self.batch_size

    def groups(self, epoch: int) -> list[list[str]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = [self.shards[i] for i in torch.randperm(len(self.shards), generator=g).tolist()]
        return [order[i : i + self.group_shards] for i in range(0, len(order), self.group_shards)]

    def group_permutation(self, epoch: int, group: int, n: int) -> list[int]:
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 7919 + group)
        return torch.randperm(n, generator=g).tolist()

    def mine(self, first: int, n: int) -> np.ndarray:
        """Which of the epoch's sample positions first .. first + n - 1 this process takes (bool (n,))."""
        pos = np.arange(first, first + n)
        return ((pos % self.batch_size) // self.local == self.rank) & (pos < self.per_epoch * self.batch_size)

    def iterate(self, start_step: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, list[str | None]]]:
        """Yield (step, images float [-1, 1] (B, 3, S, S), labels, captions) from ``start_step`` on."""
        epoch, first = divmod(start_step, self.per_epoch)
        while True:
            yield from self._epoch(epoch, first)
            epoch, first = epoch + 1, 0

    def _epoch(self, epoch: int, first_batch: int):
        groups = self.groups(epoch)
        sizes = [sum(len(self.by_shard[s]) for s in g) for g in groups]
        starts = np.cumsum([0, *sizes[:-1]]).tolist()  # each group's first position in the epoch's sequence
        local_sizes = [int(self.mine(s, n).sum()) for s, n in zip(starts, sizes)]  # of them, this process's
        skip, g0 = first_batch * self.local, 0
        while g0 < len(groups) - 1 and skip >= local_sizes[g0]:
            skip -= local_sizes[g0]
            g0 += 1
        loader = torch.utils.data.DataLoader(
            _GroupDecoder(self, epoch, groups, starts, g0),
            batch_size=None,
            num_workers=self.num_workers,
            prefetch_factor=2 if self.num_workers else None,
            # its own generator: starting workers must not draw from the global
            # RNG, which the model's dropout uses and a checkpoint restores
            generator=torch.Generator().manual_seed(self.seed),
        )
        step, end = epoch * self.per_epoch + first_batch, (epoch + 1) * self.per_epoch
        images: list[torch.Tensor] = []
        labels: list[torch.Tensor] = []
        captions: list[str | None] = []
        have = 0
        for imgs, labs, caps in loader:
            if skip:
                imgs, labs, caps, skip = imgs[skip:], labs[skip:], caps[skip:], 0
            images.append(imgs)
            labels.append(labs)
            captions += caps
            have += len(imgs)
            while have >= self.local and step < end:
                x, y = torch.cat(images), torch.cat(labels)
                b = self.local
                yield step, x[:b].float().div_(127.5).sub_(1.0), y[:b], captions[:b]
                images, labels, captions, have = [x[b:]], [y[b:]], captions[b:], have - b
                step += 1
            if step >= end:
                break


class _GroupDecoder(torch.utils.data.IterableDataset):
    """Worker w decodes groups g0 + w, g0 + w + W, ...: (uint8 images, labels, captions) in group order,
    only the samples of this process (see :meth:`StreamBatches.mine`)."""

    def __init__(self, stream: StreamBatches, epoch: int, groups: list[list[str]], starts: list[int], g0: int):
        self.stream, self.epoch, self.groups, self.starts, self.g0 = stream, epoch, groups, starts, g0

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for g in range(self.g0 + wid, len(self.groups), nw):
            yield self._decode(g)

    def _decode(self, g: int):
        s = self.stream
        rows = [r for shard in self.groups[g] for r in s.by_shard[shard]]
        order = s.group_permutation(self.epoch, g, len(rows))
        keep = [(j, order[j]) for j in np.flatnonzero(s.mine(self.starts[g], len(rows))).tolist()]
        needed = {rows[i]["key"] for _, i in keep}
        arrays: dict[str, Image.Image] = {}
        for shard in self.groups[g]:
            members = {r["key"]: r["member"] for r in s.by_shard[shard]}
            for key, files in s.ds.read_shard(shard, keys=needed):
                if key in members:
                    arrays[key] = media.resize(
                        media.decode(files[split_member(members[key])[1]]), s.size, "center_crop"
                    )
        missing = needed - arrays.keys()
        if missing:
            row = next(r for _, i in keep if (r := rows[i])["key"] in missing)
            raise DatasetError(
                f"{s.ds.path}: sample {row['key']} of index.parquet is not in shard {row['shard']}; "
                "the dataset is damaged: make it again from its source"
            )
        out = []
        for j, i in keep:
            img = arrays[rows[i]["key"]]
            if s.augment is not None:
                # augmentation randomness per group and position: the same for any number of processes
                torch.manual_seed((((s.seed * 1_000_003 + self.epoch) * 7919 + g) * 1_000_003 + j) % 2**63)
                aug = s.augment(img)
                img = aug if aug.size == img.size else media.resize(aug.convert("RGB"), img.size, "center_crop")
            out.append(torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1))
        if not out:
            return (torch.empty((0, 3, s.size, s.size), dtype=torch.uint8), torch.empty(0, dtype=torch.long), [])
        return (
            torch.stack(out),
            torch.tensor([rows[i]["label"] for _, i in keep], dtype=torch.long),
            [rows[i]["caption"] for _, i in keep],
        )
