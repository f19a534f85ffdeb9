"""Per-image quality scores (size, blur, exposure, information, colour, JPEG quality) and the dhash."""

from __future__ import annotations

import struct

import cv2
import imagehash
import numpy as np
from PIL import Image

from pixelforge import media

BLUR_SIDE = 256  # q_blur is measured on a fixed-size grey copy, so it does not depend on resolution
GREY_CHROMA = 3.0  # mean |channel - grey| (0..255) under which an image counts as greyscale

# IJG (libjpeg) standard luminance quantisation table, natural (row-major) order: the base that
# cjpeg/Pillow scale by quality; an estimate inverts that scaling.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.float64)
# zig-zag position k -> natural index: DQT segments store tables in zig-zag order
_ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,
    7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
    39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
])


def _ijg_table(quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((_STD_LUMA * scale + 50) / 100), 1, 255)


_IJG_TABLES = np.stack([_ijg_table(q) for q in range(1, 101)])  # (100, 64)


def luma_quant_table(data: bytes) -> np.ndarray | None:
    """The luminance (id 0) quantisation table of a JPEG in natural order, read from its DQT header.

    Only the marker segments before the first scan are walked; no pixel is decoded. None when
    ``data`` is not a JPEG or has no table 0.
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: the header is over
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker == 0xDB:
            seg, i = data[pos + 4:pos + 2 + length], 0
            while i < len(seg):
                precision, table_id = seg[i] >> 4, seg[i] & 0x0F
                size = 128 if precision else 64
                raw = seg[i + 1:i + 1 + size]
                if len(raw) < size:
                    return None
                values = np.frombuffer(raw, dtype=">u2" if precision else np.uint8).astype(np.float64)
                if table_id == 0:
                    table = np.empty(64)
                    table[_ZIGZAG] = values
                    return table
                i += 1 + size
        pos += 2 + length
    return None


def jpeg_quality(data: bytes) -> int | None:
    """Estimated IJG quality (1-100) of JPEG ``data``: the quality whose standard table is nearest.

    Exact for files written by libjpeg-based encoders (Pillow, cjpeg, most cameras' "quality"
    scaling); an approximation for encoders with their own tables. None for non-JPEG data.
    """
    table = luma_quant_table(data)
    if table is None:
        return None
    err = np.abs(_IJG_TABLES - table).sum(axis=1)  # (100,)
    return int(np.argmin(err)) + 1


def dhash64(img: Image.Image) -> int:
    """64-bit difference hash (imagehash.dhash, hash_size 8) as an unsigned int, imagehash bit order."""
    bits = imagehash.dhash(img, hash_size=8).hash.reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


THUMB_SIDE = 128  # whole-image statistics, dhash and the detector input come from one thumbnail


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """``img`` fitted into size x size on black (media.resize "pad"), RGB uint8 (size, size, 3)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(media.resize(img, size, "pad"), dtype=np.uint8)


def image_signals(img: Image.Image, data: bytes, size: tuple[int, int] | None = None,
                  ) -> tuple[dict[str, float | int | bool | None], int, Image.Image]:
    """The q_* scores, the dhash and a 128 px thumbnail (aspect kept) of one decoded image.

    Whole-image statistics are measured on the thumbnail and blur on a 256 px grey crop, so the
    cost per image hardly depends on its resolution.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    thumb = media.resize(rgb, THUMB_SIDE, "keep_ratio")
    return quality_scores(rgb, data, size, thumb), dhash64(thumb), thumb


def quality_scores(img: Image.Image, data: bytes, size: tuple[int, int] | None = None,
                   thumb: Image.Image | None = None) -> dict[str, float | int | bool | None]:
    """The q_* columns of one decoded image (``data``: its stored bytes, for the JPEG tables).

    ``size`` is the image's true (width, height) when ``img`` was decoded at reduced scale
    (JPEG draft decoding): sizes come from it, pixel statistics from ``img``. ``thumb``, a
    smaller copy of the whole image, is used for the statistics when given (faster).

    q_min_side: shorter side (px). q_aspect: longer / shorter side (>= 1). q_blur: variance of
    the Laplacian of a 256x256 grey copy (lower is blurrier; flat images score ~0). q_brightness:
    mean grey in [0, 1]. q_contrast: RMS contrast (std of grey) in [0, 0.5]. q_entropy: Shannon
    entropy of the grey histogram in bits (0..8; low means little information). q_grayscale:
    the colour channels agree within GREY_CHROMA on average. q_jpeg_quality: see jpeg_quality.
    """
    w, h = size or img.size
    small = thumb if thumb is not None else img
    rgb = np.asarray(small if small.mode == "RGB" else small.convert("RGB"), dtype=np.float32)  # (h, w, 3)
    grey_small = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as PIL's "L"
    chroma = float(np.abs(rgb - grey_small[..., None]).mean())
    grey = np.asarray(media.resize(img.convert("L"), BLUR_SIDE, "center_crop"), dtype=np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
    hist = np.bincount(np.clip(grey_small + 0.5, 0, 255).astype(np.uint8).ravel(), minlength=256)
    p = hist[hist > 0] / hist.sum()
    return {
        "q_min_side": int(min(w, h)),
        "q_aspect": float(max(w, h) / max(1, min(w, h))),
        "q_blur": float(lap.var()),
        "q_brightness": float(grey_small.mean() / 255.0),
        "q_contrast": float(grey_small.std() / 255.0),
        "q_entropy": float(-(p * np.log2(p)).sum()),
        "q_grayscale": bool(chroma < GREY_CHROMA),
        "q_jpeg_quality": jpeg_quality(data),
    }
