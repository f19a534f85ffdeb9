"""The executor options every per-shard command takes (Typer types), with ExecutorSettings' defaults.

--processes, --backend, --ray-address and --ray-task-cpus are declared here once; a command writes
``processes: Processes = EXECUTOR.processes`` and maps them with ``executor_settings`` (or passes
them flat to configfile.merge, which routes them into the config's ``executor``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pixelforge.run.settings import ExecutorSettings

EXECUTOR = ExecutorSettings()  # the defaults of the flags below

Processes = Annotated[int, typer.Option(help="Worker processes for the per-shard work.")]
Backend = Annotated[
    str,
    typer.Option(
        help="Where the per-shard work runs: local (process pool) or ray (needs the ray extra; docs/scaling.md)."
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="With --backend ray: auto (this node's cluster) or ray://HEAD:10001; default starts a local Ray."
    ),
]
RayTaskCpus = Annotated[float, typer.Option(help="With --backend ray: CPUs each shard task reserves.")]


def executor_settings(
    processes: int = EXECUTOR.processes,
    backend: str = EXECUTOR.backend,
    ray_address: str | None = EXECUTOR.ray_address,
    ray_task_cpus: float = EXECUTOR.ray_task_cpus,
) -> ExecutorSettings:
    """The ExecutorSettings the four flags describe."""
    return ExecutorSettings(processes=processes, backend=backend, ray_address=ray_address, ray_task_cpus=ray_task_cpus)
