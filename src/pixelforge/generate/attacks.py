"""What the internet does to an image, as functions: re-encoding, resizing, cropping, rotating, colour
changes, blur, noise, a screenshot, and chains of them (`verify --attacks`, benchmarks/watermark_attacks.py).

Each attack takes and returns a PIL RGB image and is deterministic (noise has a fixed seed), so a
table of results can be reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from pixelforge import media

Attack = Callable[[Image.Image], Image.Image]


def jpeg(quality: int) -> Attack:
    return lambda img: media.decode(media.encode(img.convert("RGB"), "jpg", quality))


def png(img: Image.Image) -> Image.Image:
    return media.decode(media.encode(img, "png"))


def resize(factor: float) -> Attack:
    """Scale both sides by ``factor`` (Lanczos down, bicubic up: what image editors and browsers use)."""

    def attack(img: Image.Image) -> Image.Image:
        size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        return img.resize(size, Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)

    return attack


def center_crop(area: float) -> Attack:
    """Keep the centre ``area`` share of the image (both sides scaled by its square root)."""

    def attack(img: Image.Image) -> Image.Image:
        s = area**0.5
        w, h = round(img.width * s), round(img.height * s)
        x, y = (img.width - w) // 2, (img.height - h) // 2
        return img.crop((x, y, x + w, y + h))

    return attack


def rotate(degrees: float) -> Attack:
    """Turn by ``degrees`` about the centre, same canvas, black corners (as a tilted photo or scan)."""
    return lambda img: img.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))


def brightness(factor: float) -> Attack:
    return lambda img: ImageEnhance.Brightness(img).enhance(factor)


def contrast(factor: float) -> Attack:
    return lambda img: ImageEnhance.Contrast(img).enhance(factor)


def blur(sigma: float) -> Attack:
    return lambda img: img.filter(ImageFilter.GaussianBlur(sigma))


def noise(sigma: float, seed: int = 0) -> Attack:
    def attack(img: Image.Image) -> Image.Image:
        arr = np.asarray(img.convert("RGB"), np.float64)
        arr = arr + np.random.default_rng(seed).normal(0, sigma, arr.shape)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))

    return attack


def chain(*attacks: Attack) -> Attack:
    def attack(img: Image.Image) -> Image.Image:
        for a in attacks:
            img = a(img)
        return img

    return attack


# a screenshot: the image shown at 80% (a browser's fitted view), captured as PNG, shared as JPEG q80
SCREENSHOT = chain(resize(0.8), png, jpeg(80))

# name -> attack, in the order the tables print them
ATTACKS: dict[str, Attack] = {
    "none": lambda img: img,
    "jpeg90": jpeg(90),
    "jpeg75": jpeg(75),
    "jpeg50": jpeg(50),
    "resize0.5": resize(0.5),
    "resize2": resize(2.0),
    "crop75": center_crop(0.75),
    "crop50": center_crop(0.5),
    "rotate2": rotate(2),
    "rotate5": rotate(5),
    "brightness+20": brightness(1.2),
    "brightness-20": brightness(0.8),
    "contrast+20": contrast(1.2),
    "contrast-20": contrast(0.8),
    "blur1": blur(1.0),
    "noise5": noise(5.0),
    "screenshot": SCREENSHOT,
    "crop50+jpeg50": chain(center_crop(0.5), jpeg(50)),
    "rotate2+crop75+resize0.5": chain(rotate(2), center_crop(0.75), resize(0.5)),
    "screenshot+crop50": chain(center_crop(0.5), SCREENSHOT),
}
# the attacks the quality goal names (docs/generate.md): detection >= 0.95 at FPR <= 1e-4 after each
GOAL_ATTACKS = ("jpeg50", "resize0.5", "crop50", "rotate2", "screenshot")
