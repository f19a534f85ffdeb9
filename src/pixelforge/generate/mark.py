"""Provenance on generated images: invisible watermarks (``tile``, the default, and DWT-DCT-SVD in
invisible-watermark's format) and PNG text metadata."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, PngImagePlugin

from pixelforge import __version__, media
from pixelforge.errors import UsageError

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
    """The image with ``run_id``'s 48-bit payload in the U channel's DWT-DCT-SVD coefficients (embed_dwt)."""
    return embed_dwt(img, payload_bits(run_id))


def embed_dwt(img: Image.Image, payload: list[int]) -> Image.Image:
    """The image with the 48 bits ``payload`` in the U channel's DWT-DCT-SVD coefficients.

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
    bits = np.resize(np.asarray(payload), len(tiles))  # tile i carries bit i mod 48
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
    """Decode the DWT-DCT-SVD payload bits and compare the tag, tolerating a few flipped bits."""
    return _judge(read_dwt(img), TAG_MIN_MATCH)


def read_dwt(img: Image.Image) -> list[int]:
    """The 48 bits invisible-watermark's DWT-DCT-SVD decoder reads (zeros for an image too small to hold them)."""
    import cv2

    bgr = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
    if min(bgr.shape[:2]) < 2 * _BLOCK * 2:
        return [0] * (TAG_BITS + RUN_BITS)
    import warnings

    with warnings.catch_warnings():  # tiny images leave some bits without a block: numpy warns
        warnings.simplefilter("ignore", RuntimeWarning)
        return [int(b) for b in _decoder().decode(bgr)]


def _judge(bits: list[int], min_match: int) -> WatermarkReading:
    want = payload_bits("")[:TAG_BITS]
    matched = sum(int(a == b) for a, b in zip(bits[:TAG_BITS], want))
    rh = int("".join(map(str, bits[TAG_BITS:])), 2)
    return WatermarkReading(matched, rh, matched >= min_match)


def tail_probability(min_match: int, n: int = TAG_BITS) -> float:
    """P(at least ``min_match`` of ``n`` fair coin flips match): the false-positive rate of a mark whose
    tag bits an unmarked image gives as fair coins (binomial tail, exact)."""
    return sum(math.comb(n, k) for k in range(min_match, n + 1)) / 2**n


@dataclass(frozen=True)
class MarkMethod:
    """One watermark: how it embeds the 48 payload bits, how it reads them, and its decision rule."""

    name: str
    min_match: int  # tag bits (of TAG_BITS) that must match for "marked"
    embed: Callable[[Image.Image, list[int]], Image.Image]
    read: Callable[[Image.Image], list[int]]
    about: str

    @property
    def false_positive_rate(self) -> float:
        return tail_probability(self.min_match)


def _embed_tile(img: Image.Image, payload: list[int]) -> Image.Image:
    from pixelforge.generate.tilemark import embed_tile

    return Image.fromarray(embed_tile(np.asarray(img.convert("RGB")), payload))


def _read_tile(img: Image.Image) -> list[int]:
    from pixelforge.generate.tilemark import read_tile

    return read_tile(np.asarray(img.convert("RGB"))).bits


# In embedding order when stacked: the tile first, the DWT-DCT-SVD last (its embedder checks each bit
# as the decoder will read it, so nothing may be added after it).
MARKS: dict[str, MarkMethod] = {
    # chosen as the default by benchmarks/watermark_attacks.py: it alone survives crops, resizes,
    # rotations and screenshots. 28 of 32 tag bits (9.6e-6 for fair-coin bits): an unmarked structured
    # image reads some bits with P(1) as far as 0.4-0.6, where 27 would allow up to ~3e-4
    "tile": MarkMethod("tile", 28, _embed_tile, _read_tile, "repeated keyed pattern, self-synchronising"),
    # the earlier default, still read by verify: survives re-encoding only (28 of 32: 9.6e-6)
    "dwtdctsvd": MarkMethod("dwtdctsvd", TAG_MIN_MATCH, embed_dwt, read_dwt, "invisible-watermark's DWT-DCT-SVD"),
}
DEFAULT_MARKS = ("tile",)
NO_MARK = "none"
# marks made while sampling, not added to the pixels: the diffusion runs' Tree-Ring (generate.treering),
# read back with the run itself (verify --run)
TREERING = "treering"
SAMPLING_MARKS = (TREERING,)


def parse_marks(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``--mark`` (comma-separated method names, or none) as the methods in embedding order."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if names == [NO_MARK]:
        return ()
    known = (*SAMPLING_MARKS, *MARKS)
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise UsageError(
            f"--mark {','.join(names) or repr(spec)}: choose one or more of {', '.join(known)} "
            f"(comma-separated), or {NO_MARK}"
        )
    return tuple(m for m in known if m in names)


def mark_image(img: Image.Image, run_id: str, marks: tuple[str, ...] = DEFAULT_MARKS) -> Image.Image:
    """``img`` with ``run_id``'s payload embedded by each of ``marks`` (in MARKS' order)."""
    payload = payload_bits(run_id)
    for name in MARKS:  # the sampling marks are in the pixels already
        if name in marks:
            img = MARKS[name].embed(img, payload)
    return img


@dataclass
class MarkReading:
    method: str
    found: bool
    tag_bits_matched: int | None  # of TAG_BITS (None: a mark without a payload, such as treering)
    run_hash: int | None  # the 16 bits after the tag, when found
    false_positive_rate: float  # of the method's decision rule, on unmarked images
    score: float | None = None  # treering: the key's correlation in standard deviations


def read_marks(img: Image.Image, methods: tuple[str, ...] | None = None) -> list[MarkReading]:
    """What each watermark method (all of them by default) reads in ``img``."""
    out = []
    for name in methods or tuple(MARKS):
        method = MARKS[name]
        reading = _judge(method.read(img), method.min_match)
        out.append(
            MarkReading(
                name,
                reading.found,
                reading.tag_bits_matched,
                reading.run_hash if reading.found else None,
                method.false_positive_rate,
            )
        )
    return out


def payload_hex(run_id: str) -> str:
    """The 48-bit payload of ``run_id`` as 12 hex digits (tag, then run hash), as C2PA and metadata record it."""
    return f"{(TAG << RUN_BITS) | run_hash(run_id):012x}"


def png_metadata(fields: dict[str, str]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("ai_generated", "true")
    info.add_text("generator", f"pixelforge {__version__}")
    for k, v in fields.items():
        info.add_itxt(k, str(v))
    return info


def marked_png(
    img: Image.Image,
    run_id: str,
    fields: dict[str, str],
    mark_size: int = MARK_MIN_SIDE,
    marks: tuple[str, ...] = DEFAULT_MARKS,
) -> bytes:
    """PNG bytes of ``img``, enlarged to ``mark_size``, watermarked by ``marks``, with provenance text chunks
    (which name the watermarks and their payload)."""
    marked = mark_image(upscale_for_mark(img, mark_size), run_id, marks)
    wm = {"watermark": ",".join(marks) or NO_MARK, "watermark_payload": payload_hex(run_id)} if marks else {}
    return media.encode_png(marked, compress_level=6, pnginfo=png_metadata({"run_id": run_id, **wm, **fields}))


def read_metadata(img: Image.Image) -> dict[str, str]:
    """The PNG text chunks (empty for formats that carry none, such as a re-encoded JPEG)."""
    text = getattr(img, "text", None)
    return dict(text) if text else {}
