"""Executors: run one per-shard function over many tasks, locally (process pool) or on Ray."""

from pixelforge.run.executors import EXECUTORS, check_backend, check_output_shared, run_tasks
from pixelforge.run.settings import EXECUTOR_KEYS, ExecutorSettings

__all__ = ["EXECUTORS", "EXECUTOR_KEYS", "ExecutorSettings", "check_backend", "check_output_shared", "run_tasks"]
