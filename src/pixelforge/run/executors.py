"""The one registry of executors (local, ray) and run_tasks, which runs a per-shard function with one of them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from pixelforge.errors import UsageError
from pixelforge.run.local import run_local
from pixelforge.run.ray_backend import check_address, import_ray, run_ray

T = TypeVar("T")
R = TypeVar("R")

# ray_backend imports Ray only when a ray run starts, so this registry costs nothing without it.
EXECUTORS = {"local": run_local, "ray": run_ray}


def check_backend(backend: str, ray_address: str | None = None, ray_task_cpus: float = 1.0) -> None:
    """Raise UsageError for an unknown backend, Ray options without --backend ray, or Ray not installed.

    Called from the stages' ``validate()``, so a bad option stops the run before any work.
    """
    if backend not in EXECUTORS:
        raise UsageError(f"--backend {backend!r}: choose one of {', '.join(EXECUTORS)}")
    if backend != "ray":
        for flag, value, default in (("--ray-address", ray_address, None), ("--ray-task-cpus", ray_task_cpus, 1.0)):
            if value != default:
                raise UsageError(f"{flag} {value} needs --backend ray")
        return
    check_address(ray_address)
    if ray_task_cpus <= 0:
        raise UsageError(f"--ray-task-cpus {ray_task_cpus}: must be more than 0")
    import_ray()


def check_output_shared(out: str, backend: str, processes: int) -> None:
    """Raise UsageError when the workers could not write into ``out`` where this process reads it.

    memory:// lives inside one process: shards written there by pool workers or Ray tasks would
    vanish and the dataset would come out empty.
    """
    from pixelforge.store import fs as fsutil

    fs, _ = fsutil.resolve(out)
    if "memory" in fs.protocol and (backend != "local" or processes > 1):
        raise UsageError(
            f"--out {out}: an in-memory file system is private to one process; use --processes 1 "
            "with --backend local, or a shared store (a local path, file://, s3://, gs://)"
        )


def run_tasks(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    *,
    backend: str = "local",
    processes: int = 2,
    max_in_flight: int | None = None,
    ray_address: str | None = None,
    ray_task_cpus: float = 1.0,
) -> Iterator[R]:
    """Run ``fn`` over ``tasks`` with the executor named ``backend``; yield results in completion order.

    ``processes`` is the local pool's size (and the CPUs of a Ray started here); ``ray_address``
    and ``ray_task_cpus`` apply to ``backend="ray"`` only (see run_ray).
    """
    check_backend(backend, ray_address, ray_task_cpus)
    if backend == "ray":
        return run_ray(
            fn, tasks, processes=processes, max_in_flight=max_in_flight, address=ray_address, task_cpus=ray_task_cpus
        )
    return EXECUTORS[backend](fn, tasks, processes=processes, max_in_flight=max_in_flight)
