"""The only code that prints a command's result: a Rich table or a line on stdout, or JSON with --json.

Progress bars and log lines go to stderr (pixelforge.progress); warnings too (``print_warnings``),
so stdout holds nothing but the result and can be piped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table

out = Console()  # stdout; Rich looks sys.stdout up at each print, so captured output works too


def as_data(result: Any) -> Any:
    """``result`` as plain JSON-able data: a dataclass (or a list of them) as dicts."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if isinstance(result, list):
        return [as_data(item) for item in result]
    return result


def print_json(obj: Any) -> None:
    """``obj`` as indented JSON on stdout (values JSON lacks, such as dates, as their text)."""
    print(json.dumps(as_data(obj), indent=2, default=str))


def print_text(text: str) -> None:
    """A plain line (or lines) on stdout: no markup, no wrapping, so paths and URLs print whole."""
    print(text, flush=True)


def print_table(renderable: RenderableType) -> None:
    """A Rich table (or any Rich renderable) on stdout."""
    out.print(renderable)


def key_value_table(data: dict[str, Any]) -> Table:
    """One row per key: the default rendering of a result."""
    table = Table(show_header=False, box=None)
    for k, v in data.items():
        table.add_row(f"[bold]{k}[/bold]", json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    return table


def print_result(result: Any, as_json: bool, render: Callable[[Any], RenderableType | str] | None = None) -> None:
    """Print a command's result: JSON with ``--json``, else ``render(result)`` or a key/value table.

    ``result`` is a dataclass, a dict or a list of dataclasses; ``render`` returns a plain string
    (printed as is) or a Rich renderable (a table, or a Group of several).
    """
    if as_json:
        print_json(result)
        return
    shown = render(result) if render else key_value_table(as_data(result))
    if isinstance(shown, str):
        if shown:  # nothing to list (such as no image to verify): no empty line either
            print_text(shown)
    else:
        print_table(shown)


def print_warnings(lines: list[str]) -> None:
    """Each line as ``Warning: ...`` on stderr, where it does not mix into a piped result."""
    for line in lines:
        print(f"Warning: {line}", file=sys.stderr)
