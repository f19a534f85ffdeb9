"""The report's building blocks: a Section is a heading plus typed blocks the template knows how to draw."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# block types the template renders (templates/report.html.j2, macro `block`)
BLOCK_TYPES = ("facts", "figures", "table", "gallery", "pairs", "groups", "missing", "note", "code")


def fmt(value: Any, digits: int = 4) -> str:
    """A value as the report prints it: thousands separators, floats to ``digits`` significant figures."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.{digits}g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value) or "—"
    return str(value)


def pct(part: float | None, whole: float | None = None) -> str:
    """``part`` as a percentage (of ``whole`` when given), one decimal."""
    if part is None or (whole is not None and not whole):
        return "—"
    share = part / whole if whole is not None else part
    return f"{100 * share:.1f}%"


@dataclass
class Section:
    """One part of the report (a dataset, an audit, a run, an evaluation, a generated set's provenance)."""

    kind: str  # dataset | provenance | audit | training | evaluation
    title: str
    path: str
    id: str = ""
    summary: str = ""
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def facts(self, items: Iterable[tuple[str, Any]], title: str = "") -> None:
        self.blocks.append(
            {"type": "facts", "title": title, "items": [(k, v if isinstance(v, str) else fmt(v)) for k, v in items]}
        )

    def figures(self, items: Iterable[tuple[Any, str]], title: str = "") -> None:
        """Plots as (figures.Plot or None, caption); the Nones (nothing to plot) are left out."""
        shown = [{"uri": plot.uri, "title": plot.title, "caption": cap} for plot, cap in items if plot]
        if shown:
            self.blocks.append({"type": "figures", "title": title, "items": shown})

    def table(self, columns: list[str], rows: Iterable[Iterable[Any]], title: str = "", note: str = "") -> None:
        rows = [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
        self.blocks.append({"type": "table", "title": title, "columns": columns, "rows": rows, "note": note})

    def gallery(self, items: list[dict[str, Any]], title: str = "", note: str = "", wide: bool = False) -> None:
        """Images with captions: items {uri, caption, sub}."""
        self.blocks.append({"type": "gallery", "title": title, "items": items, "note": note, "wide": wide})

    def pairs(self, items: list[dict[str, Any]], title: str = "", note: str = "") -> None:
        """Two images side by side per item: {left: {uri, caption}, right: {uri, caption}, text}."""
        self.blocks.append({"type": "pairs", "title": title, "items": items, "note": note})

    def groups(self, items: list[dict[str, Any]], title: str = "", note: str = "") -> None:
        """Rows of images: {title, images: [{uri, caption}]}."""
        self.blocks.append({"type": "groups", "title": title, "items": items, "note": note})

    def missing(self, text: str) -> None:
        """What could not be shown and how to get it (a file that does not exist yet)."""
        self.blocks.append({"type": "missing", "text": text})

    def note(self, text: str) -> None:
        self.blocks.append({"type": "note", "text": text})

    def code(self, text: str, title: str = "") -> None:
        self.blocks.append({"type": "code", "title": title, "text": text})

    @property
    def missing_texts(self) -> list[str]:
        return [b["text"] for b in self.blocks if b["type"] == "missing"]
