"""Synthetic clean images and synthetic watermarks: the training and held-out data of the watermark detector."""

from __future__ import annotations

import functools
import glob
import string
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pixelforge import media
from pixelforge.sources.shapes import BACKGROUNDS, SHAPE_COLOURS, SHAPES, ShapeSpec, contrasts, render

# Texts a stock site, a photographer or a preview service stamps on images; plus random strings,
# so the detector learns "overlaid glyphs", not these words.
WATERMARK_TEXTS = (
    "© Getty Images",
    "shutterstock",
    "SAMPLE",
    "PREVIEW",
    "alamy",
    "iStock",
    "dreamstime",
    "PROOF",
    "© 2024 J. Smith",
    "www.example.com",
    "DO NOT COPY",
    "Adobe Stock",
    "123RF",
    "depositphotos",
    "@photographer",
    "CONFIDENTIAL",
    "watermark",
    "© studio",
    "pixabay",
    "COPYRIGHT",
)
FONT_GLOBS = ("/usr/share/fonts/**/*.ttf", "/usr/share/fonts/**/*.otf", "/usr/local/share/fonts/**/*.ttf")
PLACEMENTS = ("corner", "center", "tiled", "band")
KINDS = ("text", "logo")


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    """TrueType fonts on this machine (sorted, so a seed picks the same font on the same machine)."""
    found: set[str] = set()
    for pattern in FONT_GLOBS:
        found.update(glob.glob(pattern, recursive=True))
    return tuple(sorted(found))


@functools.lru_cache(maxsize=256)
def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    if path is None:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font
    return ImageFont.truetype(path, size)


def pick_font(rng: np.random.Generator, size: int) -> ImageFont.FreeTypeFont:
    """A random installed font at ``size`` px (Pillow's own font when none is installed)."""
    files = font_files()
    path = files[int(rng.integers(len(files)))] if files and rng.random() < 0.85 else None
    return _font(path, max(6, size))


# ---- clean images --------------------------------------------------------------------------------


def clean_shapes(rng: np.random.Generator) -> Image.Image:
    """One or two shapes from the shapes generator at a random side (32-256 px)."""
    side = int(rng.choice([32, 48, 64, 96, 128, 192, 256]))
    specs = []
    corners = list(rng.permutation(["top left", "top right", "bottom left", "bottom right"]))
    for k in range(int(rng.integers(1, 3))):
        specs.append(
            ShapeSpec(
                str(rng.choice(SHAPES)),
                str(rng.choice(SHAPE_COLOURS)),
                str(rng.choice(["small", "large"])),
                "center" if k == 0 and rng.random() < 0.4 else str(corners[k]),
            )
        )
    bgs = [b for b in BACKGROUNDS if all(contrasts(s.colour, b) for s in specs)] or ["black"]
    return Image.fromarray(render(specs, str(rng.choice(bgs)), side))


@functools.lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images  # (1797, 8, 8) in 0..16


def clean_digit(rng: np.random.Generator) -> Image.Image:
    """A scikit-learn handwritten digit upscaled (bicubic) to 32-160 px, sometimes inverted or tinted."""
    grey = np.clip(_digits()[int(rng.integers(1797))] * (255 / 16), 0, 255).astype(np.uint8)
    side = int(rng.integers(32, 161))
    img = Image.fromarray(grey).resize((side, side), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32)[..., None] / 255.0
    if rng.random() < 0.3:
        arr = 1.0 - arr
    ink, paper = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if rng.random() < 0.5:
        ink, paper = np.full(3, 255.0), np.zeros(3)
    return Image.fromarray(np.clip(paper + arr * (ink - paper), 0, 255).astype(np.uint8))


def clean_photo(rng: np.random.Generator) -> Image.Image:
    """A natural-looking image: smooth colour field, soft shapes, gradients or waves, sensor noise."""
    w, h = (int(v) for v in rng.choice([96, 128, 160, 224, 256, 320, 384, 512], size=2))
    kind = rng.integers(3)
    if kind == 0:  # smooth random colour field with shapes (scenes)
        base = rng.integers(0, 255, (int(rng.integers(2, 8)), int(rng.integers(2, 8)), 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(0, 7))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
            fill = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        if rng.random() < 0.5:
            img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 3))))
        arr = np.asarray(img, dtype=np.float32)
    elif kind == 1:  # interfering waves (textures, fabric, water)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        freq = rng.uniform(0.005, 0.08, size=(3, 2))
        arr = np.stack([128 + 90 * np.sin(x * freq[c, 0] + y * freq[c, 1] + rng.uniform(0, 6)) for c in range(3)], -1)
    else:  # sky-like vertical gradient with a horizon and blobs (landscapes)
        top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        arr = np.broadcast_to(top + t * (bottom - top), (h, w, 3)).copy()
        horizon = int(rng.integers(h // 3, h))
        arr[horizon:] = rng.uniform(0, 255, 3) * 0.7
        blobs = rng.normal(0, 1, (h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
        arr += (
            25
            * np.asarray(
                Image.fromarray(((blobs + 3) * 40).clip(0, 255).astype(np.uint8)).resize(
                    (w, h), Image.Resampling.BICUBIC
                ),
                dtype=np.float32,
            )
            / 255
        )
    arr = arr + rng.normal(0, rng.uniform(0, 10), arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


CLEAN_MAKERS: tuple[Callable[[np.random.Generator], Image.Image], ...] = (clean_shapes, clean_digit, clean_photo)
CLEAN_WEIGHTS = (0.25, 0.2, 0.55)


def clean_image(rng: np.random.Generator) -> Image.Image:
    """One clean image from the shapes, digits or natural-looking generators."""
    return CLEAN_MAKERS[int(rng.choice(len(CLEAN_MAKERS), p=CLEAN_WEIGHTS))](rng)


# ---- watermarks ----------------------------------------------------------------------------------


def _random_text(rng: np.random.Generator) -> str:
    if rng.random() < 0.7:
        return str(rng.choice(WATERMARK_TEXTS))
    alphabet = string.ascii_letters + string.digits + "©@ ."
    return "".join(rng.choice(list(alphabet), size=int(rng.integers(4, 14)))).strip() or "©"


def _ink(rng: np.random.Generator, opacity: float) -> tuple[int, int, int, int]:
    r = rng.random()
    rgb = (255, 255, 255) if r < 0.5 else (0, 0, 0) if r < 0.75 else tuple(int(c) for c in rng.integers(0, 256, 3))
    return (*rgb, int(round(255 * opacity)))


def _stamp_text(rng: np.random.Generator, text: str, size: int, opacity: float, angle: float) -> Image.Image:
    """The text as a transparent RGBA tile, optionally outlined (as stock sites do), rotated."""
    font = pick_font(rng, size)
    x0, y0, x1, y1 = font.getbbox(text)
    pad = max(2, size // 4)
    tile = Image.new("RGBA", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    fill = _ink(rng, opacity)
    stroke = int(rng.integers(1, 3)) if rng.random() < 0.3 else 0
    outline = (255 - fill[0], 255 - fill[1], 255 - fill[2], fill[3])
    draw.text((pad - x0, pad - y0), text, font=font, fill=fill, stroke_width=stroke, stroke_fill=outline)
    return tile.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC) if angle else tile


def _stamp_logo(rng: np.random.Generator, size: int, opacity: float) -> Image.Image:
    """A simple logo: a ring, disc, rounded box or triangle, often with initials, as an RGBA tile."""
    tile = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(tile)
    fill = _ink(rng, opacity)
    width = max(1, size // 12)
    kind = int(rng.integers(4))
    box = (width, width, size - width - 1, size - width - 1)
    if kind == 0:
        draw.ellipse(box, outline=fill, width=width)
    elif kind == 1:
        draw.ellipse(box, fill=fill[:3] + (fill[3] // 2,))
    elif kind == 2:
        draw.rounded_rectangle(box, radius=size // 5, outline=fill, width=width)
    else:
        corners = [(size / 2, width), (size - width, size - width), (width, size - width)]
        draw.polygon(corners, outline=fill, width=width)
    if rng.random() < 0.75:
        letters = "".join(rng.choice(list(string.ascii_uppercase), size=int(rng.integers(1, 4))))
        font = pick_font(rng, max(6, size // (len(letters) + 1)))
        draw.text((size / 2, size / 2), letters, font=font, fill=fill, anchor="mm")
    return tile


def add_watermark(
    img: Image.Image, rng: np.random.Generator, kind: str | None = None, placement: str | None = None
) -> tuple[Image.Image, dict]:
    """Composite a random semi-transparent watermark onto ``img``; return the image and what was drawn.

    kind: text or logo; placement: corner (one of five anchor spots), center (large, often
    rotated), tiled (a rotated grid over the whole image) or band (a translucent strip with
    text). Sizes are fractions of the shorter side so a watermark looks the same at any resolution.
    """
    kind = kind or str(rng.choice(KINDS, p=(0.7, 0.3)))
    placement = placement or str(rng.choice(PLACEMENTS, p=(0.4, 0.25, 0.25, 0.1)))
    base = img.convert("RGBA")
    w, h = base.size
    short = min(w, h)
    opacity = float(rng.uniform(0.3, 0.85))
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    text = _random_text(rng)
    if placement == "band":
        band_h = max(6, int(short * rng.uniform(0.12, 0.25)))
        y = int(rng.integers(0, h - band_h + 1))
        ImageDraw.Draw(layer).rectangle((0, y, w, y + band_h), fill=_ink(rng, opacity * 0.5))
        stamp = _stamp_text(rng, text, int(band_h * 0.6), min(1.0, opacity + 0.2), 0)
        layer.alpha_composite(stamp, (max(0, (w - stamp.width) // 2), max(0, y + (band_h - stamp.height) // 2)))
    elif placement == "tiled":
        angle = float(rng.choice([0.0, rng.uniform(-45, 45)]))
        size = max(6, int(short * rng.uniform(0.06, 0.14)))
        stamp = (
            _stamp_text(rng, text, size, opacity * 0.8, angle)
            if kind == "text"
            else _stamp_logo(rng, size * 2, opacity * 0.8)
        )
        step_x = stamp.width + int(short * rng.uniform(0.05, 0.3))
        step_y = stamp.height + int(short * rng.uniform(0.05, 0.3))
        off = int(rng.integers(0, step_x))
        for row, yy in enumerate(range(-int(rng.integers(0, step_y)), h, step_y)):
            for xx in range(-off - (row % 2) * step_x // 2, w, step_x):
                _paste(layer, stamp, xx, yy)
    else:
        frac = rng.uniform(0.18, 0.45) if placement == "center" else rng.uniform(0.06, 0.14)
        size = max(6, int(short * frac))
        angle = float(rng.uniform(-40, 40)) if placement == "center" and rng.random() < 0.5 else 0.0
        if kind == "text":
            stamp = _stamp_text(rng, text, size if placement != "center" else max(6, size // 2), opacity, angle)
        else:
            stamp = _stamp_logo(rng, size * (2 if placement != "center" else 1), opacity)
        if stamp.width > w or stamp.height > h:  # long text on a narrow image: shrink to fit
            scale = min(w / stamp.width, h / stamp.height) * 0.95
            stamp = stamp.resize(
                (max(1, int(stamp.width * scale)), max(1, int(stamp.height * scale))), Image.Resampling.LANCZOS
            )
        margin = int(short * rng.uniform(0.01, 0.05))
        xs = {"l": margin, "c": (w - stamp.width) // 2, "r": w - stamp.width - margin}
        ys = {"t": margin, "c": (h - stamp.height) // 2, "b": h - stamp.height - margin}
        spot = "cc" if placement == "center" else str(rng.choice(["lt", "rt", "lb", "rb", "cb"]))
        _paste(layer, stamp, xs[spot[0]], ys[spot[1]])
    out = Image.alpha_composite(base, layer).convert("RGB")
    return out, {"kind": kind, "placement": placement, "opacity": round(opacity, 3), "text": text}


def _paste(layer: Image.Image, stamp: Image.Image, x: int, y: int) -> None:
    """alpha_composite that tolerates a stamp partly outside the layer (tiled rows overhang)."""
    left, top = max(0, -x), max(0, -y)
    right, bottom = min(stamp.width, layer.width - x), min(stamp.height, layer.height - y)
    if right > left and bottom > top:
        layer.alpha_composite(stamp.crop((left, top, right, bottom)), (x + left, y + top))


def jpeg_roundtrip(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Re-encode as JPEG at quality 40-95: both classes get compression artefacts alike."""
    return media.decode(media.encode(img, "jpg", quality=int(rng.integers(40, 96))))


def example_pair(seed: int) -> tuple[Image.Image, Image.Image, dict]:
    """One clean image and the same image watermarked, both JPEG'd half the time (seeded)."""
    rng = np.random.default_rng(seed)
    clean = clean_image(rng)
    marked, what = add_watermark(clean, rng)
    if rng.random() < 0.5:
        clean, marked = jpeg_roundtrip(clean, rng), jpeg_roundtrip(marked, rng)
    return clean, marked, what
