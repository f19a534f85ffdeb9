"""Synthetic shapes: coloured shapes on flat backgrounds with exact captions, balanced and seeded."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from pixelforge.errors import UsageError
from pixelforge.sources.base import Record

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 80, 230),
    "yellow": (240, 210, 30),
    "purple": (150, 50, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
}
# Orange and cyan were left out: at 32 px they sit too close to red/yellow and blue.
SHAPE_COLOURS = ("red", "green", "blue", "yellow", "purple", "white")
BACKGROUNDS = ("black", "white", "gray", "blue")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "center")
CORNERS = POSITIONS[:4]

# Side of the shape's bounding box as a fraction of the image side (before the +-6 % jitter).
SIZE_FRACTION = {"small": 0.27, "large": 0.42}
SCALE_JITTER = 0.06
# Where a shape's area centroid sits, (x, y) as fractions of the side: corners are quadrant centres.
ANCHORS = {
    "top left": (0.25, 0.25),
    "top right": (0.75, 0.25),
    "bottom left": (0.25, 0.75),
    "bottom right": (0.75, 0.75),
    "center": (0.5, 0.5),
}
CENTER_JITTER = 0.04  # keeps a "center" shape's centroid well away from every quadrant centre
CORNER_JITTER = 0.06
MARGIN = 0.025  # gap between a corner shape and its quadrant's edges (0.8 px at 32): shapes never touch
# Minimum RGB distance between a shape and its background; drops only purple on gray (distance 108).
MIN_CONTRAST = 120.0
SUPERSAMPLE = 4


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    # A fat inner radius keeps the arms visible at 32 px; first point straight up.
    out = []
    for k in range(2 * points):
        r = 1.0 if k % 2 == 0 else inner
        a = -math.pi / 2 + k * math.pi / points
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


# Outlines in a unit box [-1, 1]^2 (y down) with the area centroid at the origin, so the drawn
# centroid lands on the anchor and position can be judged from pixels. None means a circle.
_ARM = 0.3
OUTLINES: dict[str, list[tuple[float, float]] | None] = {
    "circle": None,
    "square": [(-1, -1), (1, -1), (1, 1), (-1, 1)],
    "triangle": [(0, -1), (1, 0.5), (-1, 0.5)],  # base at y=0.5 puts the centroid at y=0
    "star": _star(),
    "diamond": [(0, -1), (1, 0), (0, 1), (-1, 0)],
    "cross": [
        (-_ARM, -1),
        (_ARM, -1),
        (_ARM, -_ARM),
        (1, -_ARM),
        (1, _ARM),
        (_ARM, _ARM),
        (_ARM, 1),
        (-_ARM, 1),
        (-_ARM, _ARM),
        (-1, _ARM),
        (-1, -_ARM),
        (-_ARM, -_ARM),
    ],
}


@dataclass(frozen=True)
class ShapeSpec:
    """One shape to draw: its words plus the jitter (fractions of the side) that varies its pixels."""

    shape: str
    colour: str
    size: str = "large"
    position: str = "center"
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("shape", self.shape, SHAPES),
            ("colour", self.colour, SHAPE_COLOURS),
            ("size", self.size, SIZES),
            ("position", self.position, POSITIONS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} {value!r}: choose one of {', '.join(allowed)}")

    def centre(self) -> tuple[float, float]:
        ax, ay = ANCHORS[self.position]
        return ax + self.dx, ay + self.dy

    def half(self) -> float:
        return SIZE_FRACTION[self.size] * self.scale / 2

    def box(self, side: int) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1) in pixels of an image ``side`` px wide."""
        outline = OUTLINES[self.shape] or [(-1, -1), (1, 1)]
        (cx, cy), h = self.centre(), self.half()
        xs = [cx + u * h for u, _ in outline]
        ys = [cy + v * h for _, v in outline]
        return min(xs) * side, min(ys) * side, max(xs) * side, max(ys) * side


def contrasts(colour: str, background: str) -> bool:
    """True when ``colour`` may be drawn on ``background``: never the same, never too close."""
    return colour != background and math.dist(COLOURS[colour], COLOURS[background]) >= MIN_CONTRAST


def render(specs: ShapeSpec | Sequence[ShapeSpec], background: str | tuple[int, int, int], size: int) -> np.ndarray:
    """Draw ``specs`` on a flat ``background`` (a colour name or an RGB triple): an HxWx3 uint8 array,
    the same for the same inputs.

    Drawn at 4x and box-filtered down, which gives anti-aliased edges without any randomness.
    """
    specs = [specs] if isinstance(specs, ShapeSpec) else list(specs)
    big = size * SUPERSAMPLE
    canvas = Image.new("RGB", (big, big), COLOURS[background] if isinstance(background, str) else background)
    draw = ImageDraw.Draw(canvas)
    for spec in specs:
        (cx, cy), h = spec.centre(), spec.half()
        fill = COLOURS[spec.colour]
        outline = OUTLINES[spec.shape]
        if outline is None:
            draw.ellipse([(cx - h) * big, (cy - h) * big, (cx + h) * big, (cy + h) * big], fill=fill)
        else:
            draw.polygon([((cx + u * h) * big, (cy + v * h) * big) for u, v in outline], fill=fill)
    return np.array(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def caption(specs: ShapeSpec | Sequence[ShapeSpec], background: str) -> str:
    """The exact description, e.g. 'a small red circle in the top left on a blue background'."""
    specs = [specs] if isinstance(specs, ShapeSpec) else list(specs)
    parts = [f"a {s.size} {s.colour} {s.shape} in the {s.position}" for s in specs]
    return f"{' and '.join(parts)} on a {background} background"


def _least_used(counts: dict[str, int], options: Sequence[str], rng: np.random.Generator) -> str:
    # Greedy balancing: the rarest option so far, ties broken by the seeded generator.
    low = min(counts[o] for o in options)
    ties = [o for o in options if counts[o] == low]
    return ties[int(rng.integers(len(ties)))]


def _jittered(shape: str, colour: str, size: str, position: str, rng: np.random.Generator) -> ShapeSpec:
    scale = round(float(rng.uniform(1 - SCALE_JITTER, 1 + SCALE_JITTER)), 3)
    half = SIZE_FRACTION[size] * scale / 2
    # A corner shape stays wholly inside its quadrant, so a second shape in another corner never overlaps.
    limit = CENTER_JITTER if position == "center" else max(0.0, min(CORNER_JITTER, 0.25 - half - MARGIN))
    dx, dy = (round(float(v), 3) for v in rng.uniform(-limit, limit, size=2))
    return ShapeSpec(shape, colour, size, position, dx, dy, scale)


def design(n: int, seed: int, max_shapes: int = 1) -> list[tuple[list[ShapeSpec], str]]:
    """The ``n`` images of a seed as (specs, background), first shapes exactly balanced.

    Shapes and colours form a Latin square: each block of 6 images has every shape once and every
    colour once, and 6 blocks cover all 36 (shape, colour) pairs, so any ``n`` gives counts that
    differ by at most 1. Sizes and shape counts are shuffled pairs; positions and backgrounds go
    to the least used so far. Two-shape images use two different corners so the shapes never overlap.
    """
    assert len(SHAPES) == len(SHAPE_COLOURS)  # the Latin square needs a square
    k = len(SHAPES)
    rng = np.random.default_rng(seed)
    colour_perm = rng.permutation(k)
    positions = dict.fromkeys(POSITIONS, 0)
    backgrounds = dict.fromkeys(BACKGROUNDS, 0)
    out: list[tuple[list[ShapeSpec], str]] = []
    for i in range(n):
        block, j = divmod(i, k)
        if j == 0:
            shape_order = rng.permutation(k)
            if block % k == 0:
                offsets = rng.permutation(k)
            offset = offsets[block % k]
        if i % 2 == 0:
            sizes = rng.permutation(SIZES)
            counts = rng.permutation([1, 2]) if max_shapes == 2 else [1, 1]
        s = int(shape_order[j])
        colour = SHAPE_COLOURS[int(colour_perm[(s + offset) % k])]
        n_shapes = int(counts[i % 2])
        position = _least_used(positions, POSITIONS if n_shapes == 1 else CORNERS, rng)
        positions[position] += 1
        specs = [_jittered(SHAPES[s], colour, str(sizes[i % 2]), position, rng)]
        if n_shapes == 2:
            others = [c for c in CORNERS if c != position]
            specs.append(
                _jittered(
                    SHAPES[int(rng.integers(k))],
                    SHAPE_COLOURS[int(rng.integers(k))],
                    SIZES[int(rng.integers(2))],
                    others[int(rng.integers(len(others)))],
                    rng,
                )
            )
        allowed = [b for b in BACKGROUNDS if all(contrasts(sp.colour, b) for sp in specs)]
        background = _least_used(backgrounds, allowed, rng)
        backgrounds[background] += 1
        out.append((specs, background))
    return out


def _check_int(flag: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)
    if not ok:
        allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        raise UsageError(f"{flag} {value!r}: must be {allowed}")


@dataclass
class ShapesSource:
    """`pixelforge import shapes`: ``n`` synthetic images of ``size`` px with exact captions.

    Example: ShapesSource(n=600, size=32, seed=0, max_shapes=2)
    """

    n: int = 1000
    size: int = 32
    seed: int = 0
    max_shapes: int = 1

    kind: ClassVar[str] = "shapes"
    extra_fields: ClassVar[tuple[pa.Field, ...]] = (
        pa.field("shape", pa.string()),
        pa.field("colour", pa.string()),
        pa.field("background", pa.string()),
        pa.field("size_name", pa.string()),
        pa.field("position", pa.string()),
        pa.field("n_shapes", pa.int32()),
    )

    def validate(self) -> None:
        """Raise UsageError naming the flag and its allowed values."""
        _check_int("--n", self.n, 1)
        _check_int("--size", self.size, 16, 1024)
        _check_int("--seed", self.seed, 0)
        if self.max_shapes not in (1, 2) or isinstance(self.max_shapes, bool):
            raise UsageError(f"--max-shapes {self.max_shapes!r}: choose one of 1, 2")

    def count(self) -> int:
        return self.n

    def records(self) -> Iterator[Record]:
        """One Record per designed image, in index order; labelled by the first shape."""
        for i, (specs, background) in enumerate(design(self.n, self.seed, self.max_shapes)):
            first = specs[0]
            yield Record(
                source=f"shapes://seed={self.seed}/{i}",
                image=render(specs, background, self.size),
                caption=caption(specs, background),
                caption_source="dataset",  # the caption is the ground truth the image was drawn from
                label=SHAPES.index(first.shape),
                label_name=first.shape,
                boxes=[
                    dict(zip(("x0", "y0", "x1", "y1"), sp.box(self.size)), label=SHAPES.index(sp.shape)) for sp in specs
                ],
                license="cc0-1.0",
                attribution="pixelforge synthetic shapes",
                # drawn shapes show no person, so no one's consent is missing (as XMP's MR-NAP says)
                consent="granted",
                consent_source="synthetic",
                meta={"shapes": [asdict(sp) for sp in specs], "background": background, "seed": self.seed, "index": i},
                extra={
                    "shape": first.shape,
                    "colour": first.colour,
                    "background": background,
                    "size_name": first.size,
                    "position": first.position,
                    "n_shapes": len(specs),
                },
            )
