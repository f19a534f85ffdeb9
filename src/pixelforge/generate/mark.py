"""Provenance on generated images: an invisible watermark (DWT-DCT-SVD) and PNG text metadata."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from pixelforge import __version__, media

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


def _decoder():
    # The library's decoder, called directly: WatermarkDecoder's size check refuses images under
    # 256x256, and we decide the size ourselves (see upscale_for_mark) and measure what survives.
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    n = TAG_BITS + RUN_BITS
    return EmbedDwtDctSvd(watermarks=[0] * n, wmLen=n, scales=_SCALES, block=_BLOCK)


def upscale_for_mark(img: Image.Image, mark_size: int = MARK_MIN_SIDE) -> Image.Image:
    """``img`` enlarged (bicubic) so its shorter side is at least ``mark_size`` (0: unchanged)."""
    short = min(img.size)
    if not mark_size or short >= mark_size:
        return img
    scale = mark_size / short
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)


# How a change of U moves B, G and R in OpenCV's YUV (BT.601) conversion, which the decoder uses.
_U_TO_BGR = np.array([2.032, -0.395, 0.0])
# Quantisation bins tried for each block, relative to the library's own (the one its largest
# singular value is in), nearest first: on a saturated block only one direction survives the clip.
_BIN_OFFSETS = (0, -1, 1, -2, 2)
# A block takes the first bin whose value read back lies within (1 - _NEAR) of a quarter step of
# the middle of its bit's half; if none does, the bin read back nearest the middle.
_NEAR = 0.6


def _u_tiles(bgr: np.ndarray) -> np.ndarray:
    """The U channel's Haar approximation cut into (n, block, block) tiles, as the decoder reads them."""
    import cv2
    import pywt

    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    ca1, _ = pywt.dwt2(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[:rows, :cols, 1], "haar")
    nr, nc = ca1.shape[0] // _BLOCK, ca1.shape[1] // _BLOCK
    tiles = ca1[: nr * _BLOCK, : nc * _BLOCK].reshape(nr, _BLOCK, nc, _BLOCK).swapaxes(1, 2)
    return tiles.reshape(nr * nc, _BLOCK, _BLOCK)


def _top_singular(bgr: np.ndarray) -> np.ndarray:
    from scipy.fft import dctn

    return np.linalg.svd(dctn(_u_tiles(bgr), axes=(1, 2), norm="ortho"), compute_uv=False)[:, 0]


def block_bits(bgr: np.ndarray) -> np.ndarray:
    """Each block's bit as the library's decoder reads it: its DCT's largest singular value mod the step."""
    return (_top_singular(bgr) % _SCALES[1] > _SCALES[1] * 0.5).astype(np.int64)


def embed_watermark(img: Image.Image, run_id: str) -> Image.Image:
    """The image with the 48-bit payload in the U channel's DWT-DCT-SVD coefficients.

    The format is invisible-watermark's dwtDctSvd (its decoder reads our marks); the embedding is
    ours. The library moves each block's largest singular value to the middle of its bit's half of
    the current quantisation bin; on white or black areas the pixel change that needs is clipped
    at 0 or 255 and the bit is lost. Here each block is tried in its own bin and the neighbouring
    ones, read back after rounding and clipping to 8-bit RGB as the decoder will see it, and takes
    the nearest bin that lands close to the middle of the bit's half (white areas go down, black
    ones up); the margin is what keeps a bit through JPEG. Blocks are 8x8 pixels and never
    overlap, so each block's choice is independent of the others.
    """
    import pywt
    from scipy.fft import dctn, idctn

    rgb = img.convert("RGB")
    bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    tiles = _u_tiles(bgr)
    if not len(tiles):
        return rgb
    rows, cols = bgr.shape[0] // 4 * 4, bgr.shape[1] // 4 * 4
    nr, nc = rows // 2 // _BLOCK, cols // 2 // _BLOCK
    step = _SCALES[1]
    u, s, vh = np.linalg.svd(dctn(tiles, axes=(1, 2), norm="ortho"))
    # how a tile changes per unit change of its largest singular value
    unit = idctn(u[:, :, 0, None] * vh[:, 0, None, :], axes=(1, 2), norm="ortho")
    bits = np.resize(np.asarray(payload_bits(run_id)), len(tiles))  # tile i carries bit i mod 48
    base = np.floor(s[:, 0] / step)
    middle = (0.25 + 0.5 * bits) * step

    def render(offset: np.ndarray) -> np.ndarray:
        target = np.maximum(base + offset, 0) * step + middle
        delta = (target - s[:, 0])[:, None, None] * unit
        dca = np.zeros((rows // 2, cols // 2))
        blocks = delta.reshape(nr, nc, _BLOCK, _BLOCK).swapaxes(1, 2)
        dca[: nr * _BLOCK, : nc * _BLOCK] = blocks.reshape(nr * _BLOCK, -1)
        out = bgr.astype(np.float64)
        out[:rows, :cols] += pywt.idwt2((dca, (None, None, None)), "haar")[:, :, None] * _U_TO_BGR
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    # how far each block's read-back value lies from the middle of its bit's half, per bin tried
    miss = np.stack(
        [
            np.abs((_top_singular(render(np.full(len(tiles), o))) - middle + step / 2) % step - step / 2)
            for o in _BIN_OFFSETS
        ]
    )
    near = miss <= (1 - _NEAR) * step / 4
    choice = np.where(near.any(axis=0), near.argmax(axis=0), miss.argmin(axis=0))
    marked = render(np.asarray(_BIN_OFFSETS)[choice])
    return Image.fromarray(np.ascontiguousarray(marked[:, :, ::-1]))


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
        bits = [int(b) for b in _decoder().decode(bgr)]
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
    return media.encode_png(marked, compress_level=6, pnginfo=png_metadata({"run_id": run_id, **fields}))


def read_metadata(img: Image.Image) -> dict[str, str]:
    """The PNG text chunks (empty for formats that carry none, such as a re-encoded JPEG)."""
    text = getattr(img, "text", None)
    return dict(text) if text else {}
