"""Denoisers for prepare, chosen by name from one registry: none, median (OpenCV), nlm (OpenCV)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from pixelforge.errors import UsageError


def _none(img: Image.Image) -> Image.Image:
    return img


def _median(img: Image.Image) -> Image.Image:
    """3x3 median filter: removes salt-and-pepper noise, keeps edges."""
    import cv2

    return Image.fromarray(cv2.medianBlur(np.asarray(img.convert("RGB")), 3))


def _nlm(img: Image.Image) -> Image.Image:
    """Non-local means (Buades et al. 2005) on colour images, OpenCV's fastNlMeansDenoisingColored.

    h = 5 (luminance) and 5 (colour) remove sensor-like noise of sigma ~5-10 without the
    painted look stronger settings give; 7x7 patches compared over a 21x21 window (OpenCV's
    recommended sizes).
    """
    import cv2

    arr = np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1])  # OpenCV works in BGR
    out = cv2.fastNlMeansDenoisingColored(arr, None, 5, 5, 7, 21)
    return Image.fromarray(np.ascontiguousarray(out[:, :, ::-1]))


DENOISERS: dict[str, Callable[[Image.Image], Image.Image]] = {"none": _none, "median": _median, "nlm": _nlm}


def get_denoiser(name: str) -> Callable[[Image.Image], Image.Image]:
    """The denoiser called ``name``, else UsageError naming the choices."""
    if name not in DENOISERS:
        raise UsageError(f"--denoise {name!r}: choose one of {', '.join(DENOISERS)}")
    return DENOISERS[name]
