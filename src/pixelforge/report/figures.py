"""Plots (matplotlib, Agg) and image thumbnails as data: URIs, so the report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pixelforge import media

if TYPE_CHECKING:
    from PIL import Image

THUMB = 96  # thumbnails are shown at this side (CSS pixels); tiny images are enlarged without smoothing
PALETTE = ("#3566a8", "#d9822b", "#3c9a5f", "#b9403b", "#7a5ba6", "#8a6a4f", "#c45ba3", "#6f6f6f")


class Plot(NamedTuple):
    """A rendered chart: its PNG data: URI and its title (shown as the figure's caption and alt text)."""

    uri: str
    title: str


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def thumbnail(image: Image.Image | str | Path, side: int = THUMB * 2) -> str:
    """A PNG data: URI of ``image`` (or an image file) fitted inside ``side`` pixels (enlarged with nearest
    neighbour when small). Raises OSError for a file that is not an image."""
    return png_data_uri(media.thumbnail_png(image, side))


def image_file_uri(path: str, max_side: int = 1024) -> str:
    """A training sample grid (or any image file) as a data: URI, shrunk when larger than ``max_side``."""
    return png_data_uri(media.thumbnail_png(path, max_side, smooth=False))


# ---- matplotlib ---------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "figure.dpi": 100,
            "svg.fonttype": "none",
        }
    )
    return plt


def _finish(fig, title: str) -> Plot:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return Plot(png_data_uri(buf.getvalue()), title)


def bar_chart(counts: dict[str, float], title: str, xlabel: str = "samples", top: int = 20) -> Plot | None:
    """Horizontal bars, largest first (the first ``top``; the rest summed as 'other')."""
    if not counts:
        return None
    items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    if len(items) > top:
        items = items[: top - 1] + [(f"other ({len(items) - top + 1})", sum(v for _, v in items[top - 1 :]))]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, max(2.2, 0.9 + 0.28 * len(items))))
    labels = [str(k) if len(str(k)) <= 36 else str(k)[:35] + "…" for k, _ in items][::-1]
    values = [v for _, v in items][::-1]
    bars = ax.barh(labels, values, color=PALETTE[0])
    ax.bar_label(
        bars, labels=[f"{v:,.0f}" if float(v).is_integer() else f"{v:.3g}" for v in values], padding=3, fontsize=8
    )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.margins(x=0.15)
    return _finish(fig, title)


def histogram(edges: Sequence[float], counts: Sequence[int], title: str, xlabel: str) -> Plot | None:
    """A histogram from precomputed bin edges and counts (audit.json's distributions)."""
    if not counts or not sum(counts) or edges[0] == edges[-1]:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=PALETTE[0], edgecolor="white")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    return _finish(fig, title)


def scatter_map(xs: Sequence[float], ys: Sequence[float], groups: Sequence[int], title: str) -> Plot | None:
    """A 2-D map of samples, coloured by group (a cluster id; -1, noise, in grey), up to 10,000 points
    drawn as one PNG."""
    import numpy as np

    x, y, g = (np.asarray(v, dtype=np.float64) for v in (xs, ys, groups))
    keep = np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    colours = plt.get_cmap("tab20")
    for i, c in enumerate(sorted(set(g[keep].astype(int).tolist()))):
        m = keep & (g == c)
        colour = "#bbbbbb" if c == -1 else colours(i % 20)
        ax.scatter(x[m], y[m], s=4 if keep.sum() > 2000 else 10, color=colour, label=str(c), linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    if len(set(g[keep].tolist())) <= 20:
        ax.legend(
            title="cluster", fontsize=7, title_fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5)
        )
    return _finish(fig, title)


def histogram_of(values: Sequence[float], title: str, xlabel: str, bins: int = 20) -> Plot | None:
    """A histogram of raw ``values`` (None values left out)."""
    import numpy as np

    arr = np.array([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if not len(arr):
        return None
    if arr.max() == arr.min():  # one value: a histogram says nothing a sentence does not (see constant_value)
        return None
    counts, edges = np.histogram(arr, bins=bins)
    return histogram(edges.tolist(), counts.tolist(), title, xlabel)


def constant_value(values: Sequence[float]) -> float | None:
    """The value when every non-null value is the same, else None."""
    vals = {v for v in values if v is not None}
    return next(iter(vals)) if len(vals) == 1 else None


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "step",
    ylabel: str = "",
    log_y: bool = False,
) -> Plot | None:
    """One line per series name: {name: (x values, y values)}; empty series are left out."""
    series = {k: v for k, v in series.items() if len(v[0])}
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ax.plot(
            xs,
            ys,
            label=name,
            color=PALETTE[i % len(PALETTE)],
            marker="o" if len(xs) <= 12 else None,
            markersize=3,
            linewidth=1.4,
        )
    if log_y and all(y > 0 for _, ys in series.values() for y in ys):
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    return _finish(fig, title)


def confusion_matrix(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, ylabel: str = "true", xlabel: str = "predicted"
) -> Plot | None:
    """A heat map of counts with the numbers written in each cell; rows ``ylabel``, columns ``xlabel``."""
    import numpy as np

    m = np.asarray(matrix, dtype=np.int64)
    if m.size == 0:
        return None
    plt = _pyplot()
    k = len(labels)
    side = min(7.0, max(3.0, 0.45 * k + 1.6))
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(k), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(labels))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    peak = m.max() if m.max() > 0 else 1
    if k <= 20:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[i, j] > peak / 2 else "black",
                )
    ax.spines[:].set_visible(False)
    return _finish(fig, title)


__all__ = [
    "Plot",
    "bar_chart",
    "confusion_matrix",
    "constant_value",
    "histogram",
    "histogram_of",
    "image_file_uri",
    "line_chart",
    "png_data_uri",
    "thumbnail",
]
