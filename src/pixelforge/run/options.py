"""The executor options every per-shard command takes: --backend, --ray-address, --ray-task-cpus (Typer types)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

Backend = Annotated[str, typer.Option(help="Where the per-shard work runs: local (process pool) or ray "
                                           "(needs the ray extra; docs/scaling.md).")]
RayAddress = Annotated[Optional[str], typer.Option(help="With --backend ray: auto (this node's cluster) or "
                                                        "ray://HEAD:10001; default starts a local Ray.")]
RayTaskCpus = Annotated[float, typer.Option(help="With --backend ray: CPUs each shard task reserves.")]
