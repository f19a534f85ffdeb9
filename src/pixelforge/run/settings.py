"""ExecutorSettings: the one object every stage takes for where its per-shard work runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pixelforge.errors import UsageError
from pixelforge.run.executors import check_backend, check_output_shared, run_tasks

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExecutorSettings:
    """Where a stage's per-shard work runs: a local process pool or a Ray cluster.

    The flags ``--processes``, ``--backend``, ``--ray-address`` and ``--ray-task-cpus`` (and the
    same keys in a ``--config`` file's table) fill it; stage configs hold it as ``executor``.
    """

    processes: int = 2  # local pool size (and the CPUs of a Ray started here)
    backend: str = "local"  # local | ray
    ray_address: str | None = None  # --backend ray: None (start a local Ray), auto or ray://host:port
    ray_task_cpus: float = 1.0  # --backend ray: CPUs each shard task reserves

    def validate(self) -> None:
        """Raise UsageError naming the bad flag, before any work."""
        if self.processes < 1:
            raise UsageError(f"--processes {self.processes}: choose at least 1")
        check_backend(self.backend, self.ray_address, self.ray_task_cpus)

    def check_output(self, out: str) -> None:
        """Refuse an output the workers could not write where this process reads it (memory://)."""
        check_output_shared(out, self.backend, self.processes)

    def run(
        self,
        fn: Callable[[T], R],
        tasks: Iterable[T],
        *,
        processes: int | None = None,
        max_in_flight: int | None = None,
    ) -> Iterator[R]:
        """``fn`` over ``tasks`` on this executor, in completion order (``processes``: another pool size)."""
        return run_tasks(
            fn,
            tasks,
            backend=self.backend,
            processes=self.processes if processes is None else processes,
            max_in_flight=max_in_flight,
            ray_address=self.ray_address,
            ray_task_cpus=self.ray_task_cpus,
        )


EXECUTOR_KEYS = tuple(f.name for f in dataclasses.fields(ExecutorSettings))
