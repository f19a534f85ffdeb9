"""Provenance on generated images: an invisible watermark (DWT-DCT-SVD) and PNG text metadata."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from pixelforge import __version__

# 48-bit payload: a fixed 32-bit pixelforge tag, then 16 bits of the run id's hash
TAG = 0x70786667  # "pxfg"
TAG_BITS, RUN_BITS = 32, 16
# A tag counts as found with at most 4 of its 32 bits wrong: an unmarked image matches that
# well by chance with probability sum_{k>=28} C(32, k) / 2^32 ~ 1e-5.
TAG_MIN_MATCH = 28
MARK_MIN_SIDE = 256  # the DWT-DCT-SVD embedder needs room: images are marked at least this large
_SCALES = [0, 36, 0]  # the library's default: the U channel only, quantisation step 36
_BLOCK = 4


def run_hash(run_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=2).digest(), "big")


def payload_bits(run_id: str) -> list[int]:
    value = (TAG << RUN_BITS) | run_hash(run_id)
    return [(value >> (TAG_BITS + RUN_BITS - 1 - i)) & 1 for i in range(TAG_BITS + RUN_BITS)]


def _embedder(bits: list[int]):
    # Called directly, not through WatermarkEncoder, whose size check refuses images under
    # 256x256: we decide the size ourselves (see mark_size) and measure what survives.
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    return EmbedDwtDctSvd(watermarks=bits, wmLen=TAG_BITS + RUN_BITS, scales=_SCALES, block=_BLOCK)


def upscale_for_mark(img: Image.Image, mark_size: int = MARK_MIN_SIDE) -> Image.Image:
    """``img`` enlarged (bicubic) so its shorter side is at least ``mark_size`` (0: unchanged)."""
    short = min(img.size)
    if not mark_size or short >= mark_size:
        return img
    scale = mark_size / short
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)


def embed_watermark(img: Image.Image, run_id: str) -> Image.Image:
    """The image with the 48-bit payload embedded in the U channel's DWT-DCT-SVD coefficients."""
    import cv2

    bgr = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
    out = _embedder(payload_bits(run_id)).encode(bgr)
    return Image.fromarray(cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB))


@dataclass
class WatermarkReading:
    tag_bits_matched: int  # of 32
    run_hash: int  # the 16 bits after the tag, as read
    found: bool


def read_watermark(img: Image.Image) -> WatermarkReading:
    """Decode the payload bits and compare the tag, tolerating a few flipped bits."""
    import cv2

    bgr = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
    if min(bgr.shape[:2]) < 2 * _BLOCK * 2:
        return WatermarkReading(0, 0, False)
    import warnings

    with warnings.catch_warnings():  # tiny images leave some bits without a block: numpy warns
        warnings.simplefilter("ignore", RuntimeWarning)
        bits = [int(b) for b in _embedder([0] * (TAG_BITS + RUN_BITS)).decode(bgr)]
    want = payload_bits("")[:TAG_BITS]
    matched = sum(int(a == b) for a, b in zip(bits[:TAG_BITS], want))
    rh = int("".join(map(str, bits[TAG_BITS:])), 2)
    return WatermarkReading(matched, rh, matched >= TAG_MIN_MATCH)


def png_metadata(fields: dict[str, str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("ai_generated", "true")
    info.add_text("generator", f"pixelforge {__version__}")
    for k, v in fields.items():
        info.add_itxt(k, str(v))
    return info


def marked_png(img: Image.Image, run_id: str, fields: dict[str, str], mark_size: int = MARK_MIN_SIDE) -> bytes:
    """PNG bytes of ``img``, enlarged to ``mark_size``, watermarked, with provenance text chunks."""
    marked = embed_watermark(upscale_for_mark(img, mark_size), run_id)
    buf = io.BytesIO()
    marked.save(buf, "PNG", pnginfo=png_metadata({"run_id": run_id, **fields}), compress_level=6)
    return buf.getvalue()


def read_metadata(img: Image.Image) -> dict[str, str]:
    """The PNG text chunks (empty for formats that carry none, such as a re-encoded JPEG)."""
    text = getattr(img, "text", None)
    return dict(text) if text else {}
