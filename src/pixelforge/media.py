"""Image decoding and encoding: byte and pixel limits, EXIF orientation, mode conversion, resize, masks, thumbnails.

The only module that calls Pillow's codecs. Pillow's per-image warnings (corrupt EXIF, malformed
MPO, palette transparency, invalid APNG, ...) are counted here, not printed: :func:`take_warnings`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from pixelforge.errors import ItemError, UsageError

# We check MediaLimits.max_pixels ourselves from the header, before any decode. PIL's own global
# bomb check would warn at 89 Mpx and refuse at 179 Mpx whatever the caller's limit says, and a
# warning is the wrong channel for a per-item failure. This module is the only image decoder in
# pixelforge, so turning the global check off here is what makes max_pixels the one limit.
Image.MAX_IMAGE_PIXELS = None

RESIZE_MODES = ("center_crop", "keep_ratio", "pad", "none")
ENCODINGS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}

# Only formats with a real magic number: magic-less ones (TGA, DIB, ...) would "recognise" random
# bytes, and EPS would hand web data to Ghostscript. Fewer candidates also make open() faster.
Image.init()
_OPEN_FORMATS = tuple(
    f for f in ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "PPM", "JPEG2000", "AVIF") if f in Image.OPEN
)
# Byte prefixes of formats we decode: if open() fails on these, the file is a broken image
# (decode_error), not something else (not_image).
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
KEEP_EXT = {"jpeg": "jpg", "png": "png", "webp": "webp"}  # source formats stored as they came
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_WHITE = (255, 255, 255)
# Antialiased BILINEAR (a triangle filter whose support widens with the downscale factor, as
# torchvision's antialiased bilinear) after an integer box reduce() to within 2x of the target
# (Pillow's thumbnail default). Measured per 256 px center crop: 400x300 0.70 ms, 800x600 2.2 ms,
# 1600x1200 3.6 ms, against 1.2 / 3.5 / 6.0 ms for BICUBIC and 1.6 / 4.8 / 7.2 ms for LANCZOS
# at the same gap; resizing is a quarter of a download's CPU time. It is still smoother than
# img2dataset's cv2 INTER_AREA box filter.
_RESAMPLE = Image.Resampling.BILINEAR
_REDUCING_GAP = 2.0
# zlib level 1: measured 5x faster than PNG's default 6 for ~15% larger files on a photo; per-image
# CPU time is the bottleneck of a download, not the store.
_PNG_COMPRESS_LEVEL = 1


# Folder listings (import, curate and evaluate of a plain folder) take files with these suffixes.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif"})
# zlib level of mask PNGs: masks are mostly flat regions, so level 3 is nearly as small as 6 and faster
_MASK_COMPRESS_LEVEL = 3

# -- Pillow's per-image warnings ----------------------------------------------------------------
# A folder of real files makes Pillow warn once per odd file; printed, they bury the progress bar.
# Each is counted under a short name instead, and stages put the counts in stats.json.
_WARNING_NAMES = (
    ("corrupt exif", "corrupt_exif"),
    ("malformed mpo", "malformed_mpo"),
    ("transparency expressed in bytes", "palette_transparency"),
    ("allocate palette entry for transparency", "palette_transparency"),
    ("invalid apng", "invalid_apng"),
    ("truncated", "truncated"),
    ("tag", "bad_tiff_tag"),
    ("xmp", "xmp_unreadable"),
)
_warning_counts: Counter[str] = Counter()


def _warning_name(w: warnings.WarningMessage) -> str:
    if issubclass(w.category, Image.DecompressionBombWarning):
        return "decompression_bomb"
    text = str(w.message).lower()
    return next((name for needle, name in _WARNING_NAMES if needle in text), "other")


def _from_pillow(w: warnings.WarningMessage) -> bool:
    return f"{os.sep}PIL{os.sep}" in (w.filename or "")


@contextlib.contextmanager
def counting_warnings() -> Iterator[None]:
    """Count Pillow's warnings raised in the block (see :func:`take_warnings`) instead of printing them.

    Warnings from other libraries pass through unchanged.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # "default" would record a warning once per code line
            yield
    finally:  # an image that then fails to decode still counts its warnings
        for w in caught:
            if _from_pillow(w):
                _warning_counts[_warning_name(w)] += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def take_warnings() -> dict[str, int]:
    """This process's Pillow warning counts since the last call (short reason -> count), then reset.

    A stage adds them up over its workers and writes them to stats.json as ``image_warnings``.
    """
    out = dict(sorted(_warning_counts.items()))
    _warning_counts.clear()
    return out


def add_warnings(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """``total`` with ``more``'s counts added (to sum workers' :func:`take_warnings`); ``total`` is updated."""
    for name, n in more.items():
        total[name] = total.get(name, 0) + n
    return total


class MediaError(ItemError):
    """An image that cannot become a sample (base class; reason decode_error)."""

    reason = "decode_error"


class DecodeError(MediaError):
    """An image format whose data is truncated or corrupt."""

    reason = "decode_error"


class NotImage(MediaError):
    """Bytes that are not an image in any supported format."""

    reason = "not_image"


class TooLarge(MediaError):
    """Bytes over MediaLimits.max_bytes."""

    reason = "too_large"


class TooManyPixels(MediaError):
    """A header declaring more than MediaLimits.max_pixels pixels."""

    reason = "too_many_pixels"


class TooSmall(MediaError):
    """An image whose shorter side is under MediaLimits.min_side."""

    reason = "too_small"


@dataclass(frozen=True)
class MediaLimits:
    """Limits checked from the header, before any pixel is decoded."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 100_000_000
    min_side: int = 0


@dataclass(frozen=True)
class ImageInfo:
    """What the header says; width and height are as displayed (after EXIF orientation)."""

    format: str
    width: int
    height: int
    orientation: int


@dataclass(frozen=True)
class Processed:
    """One image ready to store: its bytes and the index columns media is responsible for."""

    data: bytes
    ext: str
    width: int
    height: int
    orig_width: int
    orig_height: int
    format: str
    sha256: str
    phash: int


def check_resize_mode(mode: str) -> str:
    """Return ``mode`` if it is one of RESIZE_MODES, else raise UsageError naming the choices."""
    if mode not in RESIZE_MODES:
        raise UsageError(f"--resize-mode {mode!r}: choose one of {', '.join(RESIZE_MODES)}")
    return mode


def check_encoding(ext: str) -> str:
    """Return the canonical extension for ``ext`` (jpg, png, webp; 'jpeg' means jpg), else raise UsageError."""
    ext = "jpg" if ext == "jpeg" else ext
    if ext not in ENCODINGS:
        raise UsageError(f"--encoding {ext!r}: choose one of {', '.join(ENCODINGS)}")
    return ext


def _check_quality(quality: int) -> None:
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality {quality!r}: choose an integer from 1 to 100")


def _target_size(size: int | tuple[int, int]) -> tuple[int, int]:
    tw, th = (size, size) if isinstance(size, int) else size
    if tw < 1 or th < 1:
        raise UsageError(f"--size {size!r}: choose a positive number of pixels")
    return tw, th


def _orientation(im: Image.Image) -> int:
    # PngImageFile.getexif() decodes the whole image to look for an eXIf chunk after IDAT; we only
    # honour one before IDAT (already in info), so probe stays header-only.
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF in web images is common and must not cost us the image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _open(data: bytes, limits: MediaLimits) -> tuple[Image.Image, ImageInfo]:
    """Open ``data`` lazily and check every limit; return the unloaded image and its info.

    Callers count Pillow's warnings around it (MPO, APNG and EXIF warnings come from the header).
    """
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{len(data)} bytes is over the {limits.max_bytes}-byte limit")
    try:
        im = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as e:  # only if someone re-enabled PIL's global check
        raise TooManyPixels(str(e)) from e
    except Image.UnidentifiedImageError as e:
        if data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise DecodeError(f"corrupt image header (starts with {data[:12]!r})") from e
        raise NotImage(f"not an image in a supported format (starts with {data[:16]!r})") from e
    except Exception as e:
        raise DecodeError(f"corrupt image header: {type(e).__name__}: {e}") from e
    width, height = im.size
    if width * height > limits.max_pixels:
        raise TooManyPixels(f"{width}x{height} is over the {limits.max_pixels}-pixel limit")
    orientation = _orientation(im)
    if orientation >= 5:  # 5-8 rotate by 90 degrees: the displayed image is transposed
        width, height = height, width
    if min(width, height) < limits.min_side:
        raise TooSmall(f"{width}x{height} has a side under the {limits.min_side}-pixel minimum")
    fmt = "jpeg" if im.format == "MPO" else (im.format or "unknown").lower()
    return im, ImageInfo(format=fmt, width=width, height=height, orientation=orientation)


def probe(data: bytes, limits: MediaLimits = MediaLimits()) -> ImageInfo:
    """Read an image's format, displayed size and EXIF orientation from its header alone.

    Checks, in order: ``len(data) > max_bytes`` -> TooLarge; not a supported image -> NotImage
    (a recognised format with a broken header -> DecodeError); ``width * height > max_pixels`` ->
    TooManyPixels; shorter displayed side under ``min_side`` -> TooSmall. No pixels are decoded.
    """
    with counting_warnings():
        return _open(data, limits)[1]


def _wide_to_l(im: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit or float grey image to 8 bits over its full range, not clipped."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        # round(v / 257) maps 0..65535 onto 0..255 exactly (257 = 65535 / 255)
        return Image.fromarray(((a.astype(np.uint32) + 128) // 257).astype(np.uint8))
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if im.mode == "I" and lo >= 0 and hi <= 65535:
        a = a / 257.0  # 16-bit data (PGM, older 16-bit PNG/TIFF decode to "I")
    elif im.mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255.0  # float images in [0, 1]
    else:
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)  # unknown range: stretch
    return Image.fromarray(np.rint(a).astype(np.uint8))


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited on white."""
    if im.mode in _WIDE_MODES:
        return _wide_to_l(im).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")  # turns a palette or tRNS transparency into an alpha band
        out = Image.new("RGB", rgba.size, _WHITE)
        out.paste(rgba, mask=rgba)  # paste blends by the alpha band: alpha-composite on white
        return out
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def _decode_open(im: Image.Image, info: ImageInfo, draft_size: tuple[int, int] | None) -> Image.Image:
    if draft_size is not None and info.format == "jpeg":
        dw, dh = draft_size
        if info.orientation >= 5:  # draft works on the stored image, before rotation
            dw, dh = dh, dw
        # the decoder scales by 1/2, 1/4 or 1/8 while both sides stay >= (dw, dh)
        im.draft("RGB", (max(1, dw), max(1, dh)))
    try:
        im.load()  # animated images: this loads the first frame
        out = _to_rgb(im)
    except MediaError:
        raise
    except Exception as e:  # plugins raise OSError, ValueError, EOFError, zlib.error ... on bad data
        raise DecodeError(f"{info.format} data cannot be decoded: {type(e).__name__}: {e}") from e
    if info.orientation != 1:
        out = out.transpose(_TRANSPOSE[info.orientation])
    return out


def decode(data: bytes, limits: MediaLimits = MediaLimits(), draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode image bytes to an RGB image as displayed.

    Runs every ``probe`` check first (no pixel is decoded for a rejected image). Then: EXIF
    orientation applied; animated images give their first frame; CMYK, YCbCr, P, L, 1 become RGB;
    alpha (RGBA, LA, PA, palette or tRNS transparency) is composited on white; 16-bit grey is
    scaled to 8 bits (65535 -> 255), 32-bit "I" is read as 16-bit data, float "F" in [0, 1] is
    scaled by 255, and other ranges are stretched to 0..255.

    ``draft_size=(w, h)`` is the smallest displayed size the caller needs: JPEGs are then decoded
    at 1/2, 1/4 or 1/8 scale while both sides stay >= (w, h), much faster than a full decode.
    Truncated or corrupt data raises DecodeError.
    """
    with counting_warnings():  # one context for open and load: it costs ~3 us, a tiny PNG's decode ~30
        im, info = _open(data, limits)
        return _decode_open(im, info, draft_size)


def open_rgb(data: bytes, limits: MediaLimits = MediaLimits()) -> Image.Image:
    """Decode image bytes to RGB as displayed; the same as ``decode(data, limits)``."""
    return decode(data, limits)


def _scaled_size(w: int, h: int, tw: int, th: int, cover: bool) -> tuple[int, int]:
    """The (w, h) scaled to cover (center_crop) or fit inside (keep_ratio, pad) tw x th."""
    scale = max(tw / w, th / h) if cover else min(tw / w, th / h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize(img: Image.Image, size: int | tuple[int, int], mode: str) -> Image.Image:
    """Resize ``img`` to ``size`` (an int means size x size) by ``mode``.

    center_crop: scale so the image covers the target, then cut the centre (exactly the target).
    keep_ratio: scale to fit inside the target, aspect kept (a square target: longer side == size).
    pad: keep_ratio, then centre on a black canvas of exactly the target.
    none: ``img`` unchanged.
    Smaller images are scaled up, as img2dataset does. Returns ``img`` itself when nothing changes.
    """
    mode = check_resize_mode(mode)
    if mode == "none":
        return img
    w, h = img.size
    box, resized, canvas_size, offset = resize_geometry(w, h, size, mode)
    if mode == "center_crop":
        if (w, h) == resized:
            return img
        # crop box in source pixels, so only the kept part is resampled (no separate crop copy)
        return img.resize(resized, _RESAMPLE, box=box, reducing_gap=_REDUCING_GAP)
    fitted = img if resized == (w, h) else img.resize(resized, _RESAMPLE, reducing_gap=_REDUCING_GAP)
    if canvas_size == resized:  # keep_ratio, or pad with nothing to pad
        return fitted
    canvas = Image.new(fitted.mode, canvas_size)  # zeros: black (and transparent, for RGBA)
    canvas.paste(fitted, offset)
    return canvas


def resize_geometry(
    w: int, h: int, size: int | tuple[int, int], mode: str
) -> tuple[tuple[float, float, float, float], tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Where :func:`resize` puts a ``w`` x ``h`` source: (source crop box, resized size, canvas size, paste offset).

    The same arithmetic as ``resize``, so boxes moved with it land on the image's pixels.
    """
    mode = check_resize_mode(mode)
    if mode == "none":
        return (0.0, 0.0, float(w), float(h)), (w, h), (w, h), (0, 0)
    tw, th = _target_size(size)
    if mode == "center_crop":
        if w * th > h * tw:
            cw = h * tw / th
            box = ((w - cw) / 2, 0.0, (w + cw) / 2, float(h))
        else:
            ch = w * th / tw
            box = (0.0, (h - ch) / 2, float(w), (h + ch) / 2)
        return box, (tw, th), (tw, th), (0, 0)
    fw, fh = _scaled_size(w, h, tw, th, cover=False)
    if mode == "keep_ratio" or (fw, fh) == (tw, th):
        return (0.0, 0.0, float(w), float(h)), (fw, fh), (fw, fh), (0, 0)
    return (0.0, 0.0, float(w), float(h)), (fw, fh), (tw, th), ((tw - fw) // 2, (th - fh) // 2)


def boxes_after_resize(
    boxes: list[list[float]], w: int, h: int, size: int | tuple[int, int], mode: str
) -> list[list[float]]:
    """Boxes ``[x0, y0, x1, y1]`` as fractions of a ``w`` x ``h`` image, as fractions of ``resize``'s output.

    Clipped to the output; a box the crop cuts away entirely is dropped (it is not in the image).
    """
    (cx0, cy0, cx1, cy1), (rw, rh), (cw, ch), (ox, oy) = resize_geometry(w, h, size, mode)
    sx, sy = rw / (cx1 - cx0), rh / (cy1 - cy0)  # resized pixels per source pixel
    out = []
    for x0, y0, x1, y1 in boxes:
        nx0, nx1 = (min(max(((v * w - cx0) * sx + ox) / cw, 0.0), 1.0) for v in (x0, x1))
        ny0, ny1 = (min(max(((v * h - cy0) * sy + oy) / ch, 0.0), 1.0) for v in (y0, y1))
        if nx1 > nx0 and ny1 > ny0:
            out.append([nx0, ny0, nx1, ny1])
    return out


def encode(img: Image.Image, ext: str = "jpg", quality: int = 95) -> bytes:
    """Encode ``img`` as jpg, png or webp and return the bytes.

    jpg: ``quality``, Pillow's default chroma subsampling, optimize=False (Huffman optimisation is
    an extra pass over the data). png: lossless, zlib level 1 (speed over a ~15% smaller file).
    webp: lossy at ``quality``. Modes a format cannot hold are converted to RGB first
    (alpha composited on white for jpg).
    """
    ext = check_encoding(ext)
    _check_quality(quality)
    buf = io.BytesIO()
    if ext == "jpg":
        if img.mode not in ("RGB", "L", "CMYK"):
            img = _to_rgb(img)
        img.save(buf, "JPEG", quality=quality, optimize=False)
    elif ext == "png":
        if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
            img = _to_rgb(img)
        img.save(buf, "PNG", compress_level=_PNG_COMPRESS_LEVEL)
    else:
        if img.mode not in ("RGB", "RGBA"):
            img = _to_rgb(img)
        img.save(buf, "WEBP", quality=quality)
    return buf.getvalue()


# the smallest decode a kept JPEG's phash is taken from: twice the 32x32 copy phash resizes to
PHASH_DRAFT = (64, 64)


def phash64(img: Image.Image) -> int:
    """The 64-bit perceptual hash of ``img`` (imagehash.phash, hash_size 8) as an unsigned int.

    Bit order is imagehash's: the 8x8 bool array row-major, first element the most significant
    bit, so ``phash64(img) == int(str(imagehash.phash(img)), 16)``.
    """
    bits = imagehash.phash(img, hash_size=8).hash.reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def process(data: bytes, **options: Any) -> Processed:
    """:func:`process_decoded` (same keyword options) without the decoded image."""
    return process_decoded(data, **options)[0]


def process_decoded(
    data: bytes,
    *,
    size: int | tuple[int, int] | None = None,
    resize_mode: str = "none",
    encoding: str | None = None,
    quality: int = 95,
    limits: MediaLimits = MediaLimits(),
) -> tuple[Processed, Image.Image]:
    """Turn downloaded or imported bytes into what is stored: probe, decode, resize, encode.

    The original bytes are kept unchanged when no resize changes the size, no ``encoding`` is
    asked for, and the source is jpeg, png or webp with EXIF orientation 1. Otherwise the image
    is re-encoded as ``encoding``, or, when that is None, as its own format (jpeg -> jpg,
    png -> png, webp -> webp) and as lossless png for every other format.

    JPEGs are decoded at reduced scale (see ``decode``'s draft_size) when the resize target is
    at most half the source. ``sha256`` is of ``data``; ``phash`` is phash64 of the stored
    pixels (before lossy encoding, which rarely moves a bit); of a kept JPEG, of its copy decoded
    at 1/2-1/8 scale with both sides >= PHASH_DRAFT (several times faster than a full decode).
    Raises a MediaError for a bad image and UsageError for bad arguments (checked before any work).
    The image returned beside is the one phash was taken of: for a kept image, the decode of
    ``data`` (a JPEG's at PHASH_DRAFT, as ``decode(data, draft_size=PHASH_DRAFT)`` gives it).
    """
    check_resize_mode(resize_mode)
    ext = check_encoding(encoding) if encoding is not None else None
    _check_quality(quality)
    target = _target_size(size) if size is not None and resize_mode != "none" else None

    with counting_warnings():  # one context for open and load (see decode)
        im, info = _open(data, limits)
        w, h = info.width, info.height
        draft = None
        if target is not None:
            # the size the resize scales the whole image to, before any crop or pad
            draft = _scaled_size(w, h, *target, cover=resize_mode == "center_crop")
            noop = (w, h) == (target if resize_mode != "keep_ratio" else draft)
        else:
            noop = True
        keep = noop and ext is None and info.orientation == 1 and info.format in KEEP_EXT
        # a kept image is decoded only to check it and hash it: JPEGs at reduced scale (DCT scaling)
        img = _decode_open(im, info, PHASH_DRAFT if keep else None if noop else draft)
    if keep:
        return Processed(
            data=data,
            ext=KEEP_EXT[info.format],
            width=w,
            height=h,
            orig_width=w,
            orig_height=h,
            format=info.format,
            sha256=hashlib.sha256(data).hexdigest(),
            phash=phash64(img),
        ), img
    out = img if target is None else resize(img, target, resize_mode)
    ext = ext or KEEP_EXT.get(info.format, "png")
    return Processed(
        data=encode(out, ext, quality),
        ext=ext,
        width=out.width,
        height=out.height,
        orig_width=w,
        orig_height=h,
        format=ENCODINGS[ext].lower(),
        sha256=hashlib.sha256(data).hexdigest(),
        phash=phash64(out),
    ), out


# PLUS's model release status (the XMP property plus:ModelReleaseStatus, which IPTC's photo metadata
# standard adopts), read from the raw bytes: XMP is plain text in a JPEG's APP1 segment and a PNG's or
# WebP's XMP chunk, so a byte search finds it without decoding (Pillow's getxmp() would parse the whole
# packet with defusedxml, an extra dependency, for one value). Code -> consent state:
MODEL_RELEASE_CONSENT = {
    "UMR": "granted",  # unlimited model releases: everyone shown signed one
    "NAP": "granted",  # not applicable: no person is shown
    "LMR": "unknown",  # limited or incomplete releases: the terms decide, not a flag
    "NON": "denied",  # none: the people shown signed no release
}
_XMP_KEY = b"ModelReleaseStatus"
_XMP_CODE = re.compile(rb"MR-(UMR|NAP|LMR|NON)")


def model_release(data: bytes) -> str | None:
    """The image's PLUS model release code (UMR, NAP, LMR or NON) from its XMP, or None when it has none."""
    at = data.find(_XMP_KEY)
    while at >= 0:
        found = _XMP_CODE.search(data, at, at + 300)  # the value follows the property name closely
        if found:
            return found.group(1).decode()
        at = data.find(_XMP_KEY, at + len(_XMP_KEY))
    return None


def _from_array(arr: np.ndarray, what: str) -> Image.Image:
    """A uint8 array, HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA), as a PIL image of that mode."""
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} needs a uint8 array, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"{what} needs HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr))  # mode from shape: L, RGB, RGBA


def array_to_png(arr: np.ndarray) -> bytes:
    """Encode a uint8 array, HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA), as lossless PNG bytes."""
    return encode(_from_array(arr, "array_to_png"), "png")


def encode_png(
    image: Image.Image | np.ndarray, compress_level: int = _PNG_COMPRESS_LEVEL, pnginfo: Any = None
) -> bytes:
    """``image`` (a PIL image, or a uint8 array as :func:`array_to_png` takes) as PNG bytes.

    ``compress_level`` is zlib's 0-9 (default 1, see _PNG_COMPRESS_LEVEL); ``pnginfo`` a
    ``PIL.PngImagePlugin.PngInfo`` of text chunks to write. Modes PNG cannot hold become RGB.
    """
    img = _from_array(image, "encode_png") if isinstance(image, np.ndarray) else image
    if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
        img = _to_rgb(img)
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=compress_level, pnginfo=pnginfo)
    return buf.getvalue()


def open_image(source: bytes | str | Path) -> Image.Image:
    """Open image bytes or a file without converting it, to read what decode drops (PNG text chunks, format).

    Pixels load lazily; nothing is checked against MediaLimits, so use :func:`decode` for pixels of
    untrusted input. Raises OSError for a file that is not an image (PIL's UnidentifiedImageError).
    """
    with counting_warnings():
        im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        im.load()  # read the whole file now: text chunks after the pixels, and no file left open
    return im


# -- label masks: 2-D arrays of class ids stored as lossless PNG members ---------------------------
def encode_mask(mask: np.ndarray) -> bytes:
    """A label mask (HxW class ids) as a lossless PNG: 8-bit when every id is under 256, else 16-bit.

    Raises ItemError (reason bad_annotation) for an array that is not 2-D.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ItemError(f"mask must be 2-D, got shape {mask.shape}", reason="bad_annotation")
    if mask.max(initial=0) < 256:
        img = Image.fromarray(mask.astype(np.uint8), mode="L")
    else:
        img = Image.fromarray(mask.astype(np.uint16))
    return encode_png(img, compress_level=_MASK_COMPRESS_LEVEL)


def decode_mask(data: bytes) -> np.ndarray:
    """A mask PNG as an HxW array of class ids (uint8 or uint16, as stored)."""
    with counting_warnings(), Image.open(io.BytesIO(data), formats=("PNG",)) as im:
        return np.asarray(im)


def resize_mask(mask: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """The ``box`` (x0, y0, x1, y1 in source pixels) of ``mask`` scaled to ``size`` (w, h) by nearest
    neighbour, so class ids stay class ids; the same arithmetic as :func:`resize` uses for pixels."""
    img = Image.fromarray(np.ascontiguousarray(mask))
    return np.asarray(img.resize(size, Image.Resampling.NEAREST, box=box))


# -- pictures for people: sample grids and thumbnails ------------------------------------------------
def save_grid(grid: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Write a uint8 HxWx3 (or HxW) picture to ``path`` (format from its suffix, PNG for .png),
    enlarged ``scale`` times with nearest neighbour so small samples stay crisp."""
    img = _from_array(grid, "save_grid")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    img.save(path)


def thumbnail_png(image: Image.Image | bytes | str | Path, side: int, *, smooth: bool = True) -> bytes:
    """``image`` (a PIL image, image bytes or a file) as optimised RGB PNG bytes fitted inside ``side``.

    smooth: larger images shrink with LANCZOS, and images at most half of ``side`` are enlarged by a
    whole factor with nearest neighbour (8-32 px samples stay crisp). Not smooth: images larger than
    ``side`` shrink with nearest neighbour and smaller ones are kept (sample grids, whose pixels
    must stay sharp). Raises OSError for bytes or a file that is not an image.
    """
    img = image if isinstance(image, Image.Image) else open_image(image)
    with counting_warnings():
        img = img.convert("RGB")
    scale = side / max(img.width, img.height)
    if smooth and scale >= 2:
        k = int(scale)
        img = img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST)
    elif scale < 1:
        img.thumbnail((side, side), Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def images_under(root: Path) -> list[Path]:
    """Image files (IMAGE_EXTENSIONS) below ``root`` in a stable (sorted) order, hidden files and folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath) / name)
    return found
