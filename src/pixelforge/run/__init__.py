"""Executors: run one per-shard function over many tasks, locally (process pool) or elsewhere."""

from pixelforge.run.local import EXECUTORS, run_tasks

__all__ = ["EXECUTORS", "run_tasks"]
