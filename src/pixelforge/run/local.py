"""The local executor: a process pool with a bounded number of tasks in flight."""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


# Imported in the fork server beside the task's module. pyarrow imports pandas (when installed)
# the first time it converts Python values (pa.array, Table.from_pylist): 0.2 s in every worker.
PRELOAD = ("pandas",)

# command -> the modules its pool's workers import (the task's module first): the `pixelforge`
# executable (pixelforge.entry) starts the fork server with them before the CLI is imported, and
# the command starts it itself when called some other way.
EARLY_POOLS: dict[str, tuple[str, ...]] = {
    # curate.folder imports curate.worker; imagehash.phash imports scipy.fftpack on first use
    "curate": ("pixelforge.curate.folder", "scipy.fftpack"),
    # collect urls, retry and crawl: the download worker, and phash's scipy.fftpack (0.36 s per worker)
    "collect": ("pixelforge.collect.worker", "scipy.fftpack"),
}


def start_fork_server(*modules: str) -> None:
    """Start the fork server now, importing ``modules`` in it while this process does its own set-up.

    run_local starts it (if no one has) before its first task, and then waits for those imports
    (~0.3-0.5 s); a stage that knows early that it will use the pool calls this first, naming the
    task's module and any module its tasks import lazily (so no worker imports it again).
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload([*modules, *PRELOAD])
    multiprocessing.forkserver.ensure_running()


def run_local(
    fn: Callable[[T], R], tasks: Iterable[T], processes: int = 2, max_in_flight: int | None = None
) -> Iterator[R]:
    """Yield ``fn(task)`` for every task, in completion order.

    Tasks are drawn lazily from ``tasks`` and at most ``max_in_flight`` (default 2 per process)
    are submitted at once, so a stream of millions of tasks never sits in memory. With
    ``processes <= 1`` everything runs in this process (simplest to debug). Workers are forked
    from a fork server that has imported ``fn``'s module once (never from this process, whose
    threads — progress bars, Arrow pools — must not leak into children): each worker then
    starts without paying the imports again, which a short run notices.
    """
    if processes <= 1:
        for task in tasks:
            yield fn(task)
        return
    limit = max_in_flight or 2 * processes
    start_fork_server(fn.__module__)  # no-op when a stage started it already
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("forkserver")) as pool:
        pending: set[Future[R]] = set()
        it = iter(tasks)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < limit:
                try:
                    pending.add(pool.submit(fn, next(it)))
                except StopIteration:
                    exhausted = True
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
