"""The Ray executor: the same per-shard functions as Ray tasks, on a local Ray or a cluster."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from pixelforge.errors import PixelforgeError, UsageError

T = TypeVar("T")
R = TypeVar("R")

RAY_MISSING = "--backend ray needs Ray: pip install 'pixelforge[ray]'"
TASKS_PER_CPU = 2  # tasks in flight per cluster CPU: one running, one queued, so no CPU waits on the driver

_started: dict[str, Any] = {}  # {"address": ...} of the Ray this process connected to


def import_ray() -> Any:
    """The ``ray`` module, or a UsageError naming the extra to install.

    Usage statistics are switched off before the first import: a data tool must not phone home.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def check_address(address: str | None) -> None:
    """Raise UsageError unless ``address`` is None, "auto" or ray://host:port."""
    if address is None or address == "auto":
        return
    if not address.startswith("ray://") or ":" not in address[len("ray://") :]:
        raise UsageError(
            f"--ray-address {address!r}: use auto (the cluster this node belongs to) or "
            "ray://HEAD_HOST:10001 (Ray Client)"
        )


def connect(address: str | None, processes: int) -> Any:
    """Start a local Ray (``address`` None, ``processes`` CPUs) or connect to a cluster; reuse a live one.

    A Ray this process already runs (started here or by the caller) is reused, so a stage that
    runs two passes pays Ray's start-up once; Ray shuts itself down when the process exits.
    """
    ray = import_ray()
    if ray.is_initialized():
        if address is None or "address" not in _started or _started["address"] == address:
            return ray  # any live Ray will do, or the caller's own, or the one asked for
        ray.shutdown()  # asked for another cluster than the one this process is connected to
    kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address is None:
        kwargs["num_cpus"] = processes
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise UsageError(
            f"--ray-address {address}: cannot connect ({exc}); start the cluster with "
            "`ray start --head` or check the address"
        ) from None
    _started["address"] = address
    return ray


def run_ray(
    fn: Callable[[T], R],
    tasks: Iterable[T],
    processes: int = 2,
    max_in_flight: int | None = None,
    address: str | None = None,
    task_cpus: float = 1.0,
    max_retries: int = 3,
) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, run as Ray tasks, in completion order.

    ``fn`` must be importable by the workers (a module-level function of an installed package):
    Ray ships it by reference. Tasks are drawn lazily from ``tasks`` with at most
    ``max_in_flight`` (default TASKS_PER_CPU per cluster CPU / ``task_cpus``) submitted at once,
    so a stream of millions of shards never sits in the object store.

    A task whose worker dies (killed, out of memory, node lost) is run again up to
    ``max_retries`` times: the shard writers write to a temporary name and rename when complete,
    so a retried shard is written exactly once. A Python exception raised by ``fn`` is a bug,
    not a lost worker: it is never retried and is raised here as the original exception.

    ``address``: None starts a local Ray with ``processes`` CPUs; "auto" joins the cluster this
    node belongs to; "ray://host:port" connects through Ray Client.
    """
    check_address(address)
    if task_cpus <= 0:
        raise UsageError(f"--ray-task-cpus {task_cpus}: must be more than 0")
    ray = connect(address, processes)
    remote = ray.remote(num_cpus=task_cpus, max_retries=max_retries, retry_exceptions=False)(fn)
    if max_in_flight is None:
        cpus = ray.cluster_resources().get("CPU", processes)
        max_in_flight = max(1, int(TASKS_PER_CPU * cpus / task_cpus))
    pending: list[Any] = []
    it = iter(tasks)
    exhausted = False
    try:
        while pending or not exhausted:
            while not exhausted and len(pending) < max_in_flight:
                try:
                    pending.append(remote.remote(next(it)))
                except StopIteration:
                    exhausted = True
            if not pending:
                break
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield _result(ray, ref, fn, max_retries)
    finally:
        for ref in pending:  # the caller stopped early or a task failed: do not leave work running
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - Ray already shut down (interpreter exit): nothing runs
                pass


def _result(ray: Any, ref: Any, fn: Callable[..., Any], max_retries: int) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if exc.cause is None:
            raise
        raise exc.cause from exc  # what fn raised, unwrapped: the CLI prints a PixelforgeError as one line
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError) as exc:
        raise PixelforgeError(
            f"a {fn.__name__} task failed {max_retries + 1} times because its Ray worker died "
            f"({type(exc).__name__}); raise --ray-task-cpus or the nodes' memory and run the "
            "command again (collect: with --resume)"
        ) from exc
