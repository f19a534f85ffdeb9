"""Per-image quality scores (size, blur, exposure, information, colour, JPEG quality), hashes and colour signature."""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image

from pixelforge import media
from pixelforge.curate.columns import HUE_BINS

BLUR_SIDE = 256  # q_blur is measured on a fixed-size grey copy, so it does not depend on resolution
GREY_CHROMA = 3.0  # mean |channel - grey| (0..255) under which an image counts as greyscale

# IJG (libjpeg) standard luminance quantisation table, natural (row-major) order: the base that
# cjpeg/Pillow scale by quality; an estimate inverts that scaling.
_STD_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.float64,
)
# zig-zag position k -> natural index: DQT segments store tables in zig-zag order
_ZIGZAG = np.array(
    [
        0,
        1,
        8,
        16,
        9,
        2,
        3,
        10,
        17,
        24,
        32,
        25,
        18,
        11,
        4,
        5,
        12,
        19,
        26,
        33,
        40,
        48,
        41,
        34,
        27,
        20,
        13,
        6,
        7,
        14,
        21,
        28,
        35,
        42,
        49,
        56,
        57,
        50,
        43,
        36,
        29,
        22,
        15,
        23,
        30,
        37,
        44,
        51,
        58,
        59,
        52,
        45,
        38,
        31,
        39,
        46,
        53,
        60,
        61,
        54,
        47,
        55,
        62,
        63,
    ]
)


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
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xDB:
            seg, i = data[pos + 4 : pos + 2 + length], 0
            while i < len(seg):
                precision, table_id = seg[i] >> 4, seg[i] & 0x0F
                size = 128 if precision else 64
                raw = seg[i + 1 : i + 1 + size]
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
    return int(dhashes(dhash_input(img)[None])[0])


DHASH_SIZE = 8  # imagehash.dhash: a 9x8 grey copy, each pixel compared with its left neighbour


def dhash_input(img: Image.Image) -> np.ndarray:
    """The 9x8 grey copy imagehash.dhash compares neighbouring pixels of, uint8 (8, 9)."""
    return np.asarray(img.convert("L").resize((DHASH_SIZE + 1, DHASH_SIZE), Image.Resampling.LANCZOS))


def dhashes(greys: np.ndarray) -> np.ndarray:
    """dhash64 of many images at once from their dhash_input copies (B, 8, 9); uint64 (B,).

    Bits are "brighter than the pixel to the left", row by row, first bit most significant:
    imagehash.dhash's, so the result equals ``int(str(imagehash.dhash(img)), 16)``.
    """
    bits = (greys[:, :, 1:] > greys[:, :, :-1]).reshape(len(greys), DHASH_SIZE * DHASH_SIZE)
    return np.packbits(bits, axis=1).view(">u8").reshape(-1).astype(np.uint64)


THUMB_SIDE = 128  # whole-image statistics, dhash and the detector input come from one thumbnail

COLOUR_SIDE = 16  # the signature is measured on a 16x16 copy: colour is a coarse property
_DARK = 32.0  # saturation is (max - min) / max(max, _DARK): JPEG noise in near-black pixels is not colour


def colour_input(img: Image.Image) -> np.ndarray:
    """The COLOUR_SIDE x COLOUR_SIDE RGB copy a colour signature is measured on, uint8 (S, S, 3).

    Squashing the aspect ratio keeps every colour's share of the area, which is all the
    signature looks at; a fixed shape lets many images be measured in one batch.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return np.asarray(rgb.resize((COLOUR_SIDE, COLOUR_SIDE), Image.Resampling.BOX), dtype=np.uint8)


def colour_signatures(rgb: np.ndarray) -> np.ndarray:
    """Hue histograms weighted by saturation of a batch of colour_input copies (B, S, S, 3); float32 (B, HUE_BINS).

    1. Per pixel (r, g, b) in 0..255: s = (max - min) / max(max, 32), HSV saturation damped in
       near-black pixels. Scaling all channels (a brightness change) leaves it unchanged.
    2. hue in [0, 6) sectors; the pixel adds s to the two nearest of 12 bins (linear weights), so
       a hue on a bin border does not jump.
    3. Divide by the number of pixels: the sum is the mean saturation (colourfulness) in [0, 1].
    Grey pixels add nothing, so a grey image's signature is all zeros.
    """
    b = len(rgb)
    px = np.asarray(rgb, dtype=np.float32).reshape(b, -1, 3)  # (B, P, 3)
    mx, mn = px.max(axis=2), px.min(axis=2)
    chroma = mx - mn
    sat = chroma / np.maximum(mx, _DARK)
    r, g, bl = px[..., 0], px[..., 1], px[..., 2]
    c = np.maximum(chroma, 1e-6)
    hue = np.where(mx == r, ((g - bl) / c) % 6, np.where(mx == g, (bl - r) / c + 2, (r - g) / c + 4))  # [0, 6)
    pos = hue * (HUE_BINS / 6.0)
    lo = np.floor(pos).astype(np.int64) % HUE_BINS
    frac = pos - np.floor(pos)
    row = np.arange(b)[:, None] * HUE_BINS  # one bincount for the whole batch: bin = image * 12 + sector
    hist = np.bincount((row + lo).ravel(), (sat * (1 - frac)).ravel(), b * HUE_BINS) + np.bincount(
        (row + (lo + 1) % HUE_BINS).ravel(), (sat * frac).ravel(), b * HUE_BINS
    )
    return (hist.reshape(b, HUE_BINS) / px.shape[1]).astype(np.float32)


def colour_signature(img: Image.Image) -> np.ndarray:
    """The colour signature of one image (colour_signatures of its colour_input); float32 (HUE_BINS,)."""
    return colour_signatures(colour_input(img)[None])[0]


PHASH_SIDE = 32  # imagehash.phash: a 32x32 grey copy, of whose DCT the top-left 8x8 is kept


def phash_input(img: Image.Image) -> np.ndarray:
    """The 32x32 grey copy imagehash.phash takes its DCT of, float64 (32, 32)."""
    return np.asarray(img.convert("L").resize((PHASH_SIDE, PHASH_SIDE), Image.Resampling.LANCZOS), dtype=np.float64)


def phashes(greys: np.ndarray) -> np.ndarray:
    """phash64 of many images at once from their phash_input copies (B, 32, 32); uint64 (B,).

    One batched 2-D DCT-II (scipy.fft, unnormalised as scipy.fftpack's, which imagehash uses)
    instead of two DCT calls per image; bits are the 8x8 low frequencies above their median,
    in imagehash's order, so the result equals media.phash64 of the same image.
    """
    from scipy.fft import dct

    if not len(greys):
        return np.zeros(0, np.uint64)
    coeffs = dct(dct(greys, axis=1), axis=2)[:, :8, :8].reshape(len(greys), 64)  # (B, 64)
    bits = coeffs > np.median(coeffs, axis=1, keepdims=True)
    packed = np.packbits(bits, axis=1)  # (B, 8) bytes, first bit most significant
    return packed.view(">u8").reshape(-1).astype(np.uint64)


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """``img`` fitted into size x size on black (media.resize "pad"), RGB uint8 (size, size, 3)."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(media.resize(img, size, "pad"), dtype=np.uint8)


def image_signals(
    img: Image.Image,
    data: bytes,
    size: tuple[int, int] | None = None,
) -> tuple[dict[str, float | int | bool | None], int, Image.Image, np.ndarray]:
    """The q_* scores, the dhash, a 128 px thumbnail (aspect kept) and the colour_input of one image.

    Whole-image statistics are measured on the thumbnail and blur on a 256 px grey crop, so the
    cost per image hardly depends on its resolution.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    thumb = media.resize(rgb, THUMB_SIDE, "keep_ratio")
    return quality_scores(rgb, data, size, thumb), dhash64(thumb), thumb, colour_input(thumb)


def quality_scores(
    img: Image.Image, data: bytes, size: tuple[int, int] | None = None, thumb: Image.Image | None = None
) -> dict[str, float | int | bool | None]:
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
    import cv2  # only here: a duplicates-only run never pays its import

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
