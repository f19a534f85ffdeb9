"""Progress for long work: a Rich bar on a terminal, periodic plain log lines otherwise (stderr)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

stderr = Console(stderr=True)


class _LogProgress:
    """Fallback for pipes and CI: one line every ``every`` seconds."""

    def __init__(self, label: str, total: int | None, every: float = 10.0):
        self.label, self.total, self.every = label, total, every
        self.done = 0
        self.start = self.last = time.monotonic()
        self.fields: dict[str, object] = {}

    def advance(self, n: int = 1, **fields: object) -> None:
        self.done += n
        self.fields.update(fields)
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        total = f"/{self.total}" if self.total else ""
        extra = "".join(f" {k}={v}" for k, v in self.fields.items())
        print(f"{self.label}: {self.done}{total} ({rate:.1f}/s){extra}", file=sys.stderr, flush=True)


class _RateColumn(ProgressColumn):
    """Items per second."""

    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "-/s", style="progress.data.speed")


class _RichProgress:
    def __init__(self, progress: Progress, task):
        self.progress, self.task = progress, task

    def advance(self, n: int = 1, **fields: object) -> None:
        self.progress.update(self.task, advance=n, **fields)


@contextmanager
def track(label: str, total: int | None = None) -> Iterator[_LogProgress | _RichProgress]:
    """Yield an object with ``advance(n=1)``; a Rich bar (items, rate, ETA) on a terminal."""
    if stderr.is_terminal:
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        with Progress(*columns, console=stderr, transient=False) as progress:
            yield _RichProgress(progress, progress.add_task(label, total=total))
    else:
        p = _LogProgress(label, total)
        yield p
        if p.done:
            p._line(time.monotonic())
