"""Executors: run one per-shard function over many tasks, locally (process pool) or on Ray."""

from pixelforge.run.executors import EXECUTORS, check_backend, check_output_shared, run_tasks

__all__ = ["EXECUTORS", "check_backend", "check_output_shared", "run_tasks"]
