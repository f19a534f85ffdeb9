"""A collect task that dies (SIGKILL) the first time it runs shard 1, just before the shard's rename.

Imported by the Ray workers (by module name), so it lives in a module, not in the test.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from pixelforge.collect.worker import ShardStats, ShardTask, collect_shard
from pixelforge.store.shards import ShardWriter

DOOMED_SHARD = 1


def attempts_dir(task: ShardTask) -> Path:
    return Path(task.out).parent / "attempts"


def collect_shard_dying_once(task: ShardTask) -> ShardStats:
    """collect_shard, recording each attempt; shard 1's first attempt is killed with its tar written
    under the temporary name, its rows under .work/, and no final shard: the worst moment to die."""
    log = attempts_dir(task)
    log.mkdir(exist_ok=True)
    first = not any(log.glob(f"{task.shard_id}-*"))
    (log / f"{task.shard_id}-{os.getpid()}").touch()
    if task.shard_id == DOOMED_SHARD and first:
        commit = ShardWriter.commit

        def commit_then_die(self):
            mv = self.fs.mv

            def mv_or_die(src, dst, **kw):
                if src == self.tmp_path:  # the shard's own rename: die instead
                    os.kill(os.getpid(), signal.SIGKILL)
                return mv(src, dst, **kw)

            self.fs.mv = mv_or_die
            return commit(self)

        ShardWriter.commit = commit_then_die
    return collect_shard(task)


def fail_loudly(marker_dir: str) -> None:
    """A task with a bug: records its attempt, then raises (a Python exception must not be retried)."""
    Path(marker_dir, f"attempt-{os.getpid()}-{len(list(Path(marker_dir).iterdir()))}").touch()
    raise ValueError("a bug in the shard function")


def square(x: int) -> int:
    return x * x
