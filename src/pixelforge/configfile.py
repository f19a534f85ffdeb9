"""The one TOML reader (--config files, policies, lexicons, synonyms) and the merge of a table into a config."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from pixelforge.errors import UsageError

_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


def read_toml(path: str, flag: str) -> tuple[dict[str, Any], str]:
    """Parse the TOML file ``path`` given to ``flag``; returns (document, text).

    A missing file or bad TOML is a UsageError naming the file, the line and column.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{flag} {path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    return parse_toml(text, flag, path), text


def parse_toml(text: str, flag: str, path: str) -> dict[str, Any]:
    """The TOML document ``text`` (read from ``path`` for ``flag``); bad TOML names the line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        if m := _AT.search(msg):
            where = f"line {m.group(1)}, column {m.group(2)}"
        else:  # the file ended inside a value (an unclosed [ or "): point at its last written line
            where = f"line {len(text.rstrip().splitlines()) or 1} (end of file)"
        reason = _AT_END.sub("", _AT.sub("", msg)).rstrip(".")
        raise UsageError(f"{flag} {path}: not valid TOML at {where}: {reason}; fix that line") from None


def line_of(text: str, key: str, table: str | None = None) -> int:
    """1-based line where ``key = ...`` (or the table header ``[key]``) is written, or 0 if not found.

    With ``table``, the search starts at that table's header, so the same key in two tables is
    told apart.
    """
    lines = text.splitlines()
    start = 0
    if table is not None:
        header = line_of(text, table) if key != table else 0
        start = max(header - 1, 0)
    name = re.escape(key)
    pattern = re.compile(rf"""^\s*(\[\s*)?(?:{name}|"{name}"|'{name}')\s*(\]|=)""")
    for i in range(start, len(lines)):
        if pattern.match(lines[i]):
            return i + 1
    return 0


def bad_value(flag: str, path: str, text: str, key: str, problem: str, table: str | None = None) -> UsageError:
    """A UsageError for a parsed but wrong value: names the file, the line of ``key`` and the problem."""
    line = line_of(text, key, table)
    where = f"line {line}" if line else f"key {key!r}"
    return UsageError(f"{flag} {path}: {where}: {problem} (format: docs/audit.md)")


def load_toml(path: str, flag: str = "--config") -> dict[str, Any]:
    """The tables of the TOML file ``path`` given to ``flag`` (errors name the file and the line)."""
    return read_toml(path, flag)[0]


def merge(cls: type, base: Any, overrides: dict[str, Any], where: str) -> Any:
    """``base`` with ``overrides`` applied; an unknown key is an error (a misspelt option must fail).

    A field holding a settings dataclass (a stage config's ``executor``) takes that dataclass's keys
    flat, as the flags do: ``processes = 4`` in a [curate] table sets ``executor.processes``.
    """
    overrides = dict(overrides)
    names = {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        nested = getattr(base, f.name)
        if not dataclasses.is_dataclass(nested):
            continue
        inner = {g.name for g in dataclasses.fields(nested)} - names
        flat = {k: overrides.pop(k) for k in inner if k in overrides}
        if flat:
            overrides[f.name] = dataclasses.replace(nested, **flat)
        names |= inner
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UsageError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    return dataclasses.replace(base, **overrides)
