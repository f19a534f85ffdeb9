"""The training loop's scalars: step terms averaged over each --log-every window, to metrics.csv and TensorBoard."""

from __future__ import annotations

import csv
import time
from typing import Any

import torch

from pixelforge.train import distributed
from pixelforge.train.distributed import Ranks
from pixelforge.train.rundir import RunDir


class TrainLogger:
    """Collects each step's terms on the device (no host sync per step) and writes one row per window.

    Every process collects and averages (the mean over the global batch needs them all); only rank 0
    writes metrics.csv and TensorBoard.
    """

    def __init__(self, run: RunDir, ranks: Ranks, fields: tuple[str, ...], per_epoch: int, start_step: int):
        self.ranks, self.per_epoch = ranks, per_epoch
        self.window: dict[str, list[torch.Tensor]] = {}
        self.window_start, self.window_images = time.monotonic(), 0
        self.last_loss: float | None = None
        self.rate = 0.0  # training images per second over the last window
        self.file = self.csv = self.tb = None
        if ranks.main:
            new = not run.metrics_path.exists()
            self.file = run.metrics_path.open("a", newline="")
            self.csv = csv.DictWriter(self.file, fieldnames=fields)
            if new:
                self.csv.writeheader()
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run.tensorboard_dir), purge_step=start_step or None)

    def add(self, terms: dict[str, torch.Tensor], images: int) -> None:
        """One step's detached scalars and the number of images it trained on (over every process)."""
        for k, v in terms.items():
            self.window.setdefault(k, []).append(v)
        self.window_images += images

    def paused(self, seconds: float) -> None:
        """Leave ``seconds`` (an evaluation) out of the window: images/s counts training only."""
        self.window_start += seconds

    def log_window(self, done: int, lr: float, start_time: float) -> None:
        """Average the window over the processes, write its row (rank 0) and start a new window.

        ``start_time``: the monotonic time training started (the row's seconds count from it).
        """
        # the mean over the global batch: each process averaged an equal share of it
        means = distributed.mean_over_ranks(
            self.ranks, {k: torch.stack(v).float().mean() for k, v in self.window.items()}
        )
        self.last_loss = means["loss"]
        now = time.monotonic()
        self.rate = self.window_images / max(now - self.window_start, 1e-9)
        self.window, self.window_start, self.window_images = {}, now, 0
        if not self.ranks.main:
            return
        self._row(
            {
                "step": done,
                "epoch": round(done / self.per_epoch, 3),
                "lr": f"{lr:.6g}",
                **{k: f"{v:.6f}" for k, v in means.items()},
                "images_per_s": f"{self.rate:.1f}",
                "seconds": f"{now - start_time:.1f}",
            }
        )
        for k, v in means.items():
            self.tb.add_scalar(f"train/{k}", v, done)
        self.tb.add_scalar("lr", lr, done)
        self.tb.add_scalar("images_per_s", self.rate, done)

    def log_validation(self, step: int, val: dict[str, float]) -> None:
        """An evaluation's scalars (rank 0 evaluates)."""
        for k, v in val.items():
            self.tb.add_scalar(f"val/{k}", v, step)
        self._row({"step": step, "epoch": round(step / self.per_epoch, 3), **{k: f"{v:.6f}" for k, v in val.items()}})

    def _row(self, row: dict[str, Any]) -> None:
        self.csv.writerow(row)
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.tb.close()
