"""The ``tile`` watermark: a keyed pattern repeated across the image, found again after crops, resizes,
small rotations, screenshots and JPEG.

Why not a library's mark: invisible-watermark's DWT-DCT-SVD (our ``dwtdctsvd``) reads its bits from a
fixed 8 px block grid, so any crop, resize or rotation moves the grid and loses every bit; its RivaGAN
(ONNX) lost the bits of flat images (the shapes model's) even unattacked, and resizes of every image
(benchmarks/watermark_attacks.py has both). This one is the periodic, self-synchronising kind of
spread-spectrum mark (Kutter's self-referencing watermark):

- **Embedding.** A tile of CELLS x CELLS cells, each +-1, is drawn at CELL_PX pixels per cell
  (PERIOD px), lightly smoothed, scaled to STRENGTH grey levels RMS and added to the three channels
  (luminance, which JPEG keeps best) of the whole image, repeated. A keyed random third of the cells
  is the synchronisation pattern; every other cell carries one of the 48 payload bits (its key sign
  times +-1), 14 cells per bit: a repetition code that the reader decodes softly (it sums the cells'
  correlations before deciding each bit).
- **Reading.** 1. The image's noise residual (grey minus its blur, clipped at 3 robust sigmas, each
  pixel weighed by the inverse of its neighbourhood's spread: texture hides the mark, flat areas do not).
  2. Its autocorrelation, on a whitened spectrum (the image's smooth spectrum divided out, the
  pattern's periodic peaks left), gives candidate lattice vectors: the repeat's period and angle
  after any resize or rotation. 3. For each candidate (and the unchanged lattice) the residual is
  warped back and folded modulo the period into one tile (the image's content averages out, the mark
  adds up); the synchronisation pattern's circular cross-correlation with it gives the tile's offset
  (a crop moves it) and a score. 4. The best candidate, refined by a small angle and scale search, is
  read: each bit is the sign of its cells' summed correlation.

What decides "marked" lives in mark.py: the 32 tag bits read must match in at least TAG_MIN_MATCH.
The synchronisation cells are disjoint from the payload cells, so on an unmarked image the bits read
at the chosen alignment are fair coins and the false-positive rate is the binomial tail, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CELLS = 32  # cells per tile side
CELL_PX = 2  # pixels per cell at the marking size (256 px: 4 x 4 tiles)
PERIOD = CELLS * CELL_PX
SYNC_CELLS = 352  # a third of the 1,024 cells; the other 672 carry the 48 bits, 14 each
PAYLOAD_BITS = 48
# Measured on 256 px flat and photographic images (benchmarks/watermark_attacks.py): RMS 3 grey levels
# keeps PSNR >= 38.6 dB and every flat image's bits through JPEG q50, resize 0.5x, crop 50% and rotation
SMOOTH = 0.8  # Gaussian sigma (px) on the drawn tile: less energy where JPEG quantises hardest
STRENGTH = 3.0  # RMS of the added pattern, in grey levels
RESIDUAL_SIGMA = 1.0  # the blur the residual subtracts (0.7-2 tried: 1 keeps resizes 0.5x and 2x alike)
LOCAL_SIGMA = 4.0  # px: the neighbourhood whose residual spread weighs each pixel
WHITEN = 4.0  # sigma (frequency bins) of the spectrum smoothing divided out before the autocorrelation
CANDIDATES = 8  # autocorrelation peaks tried as lattice vectors
KEY_SEED = 0x70786667  # the pattern's key ("pxfg"); a different key is a different mark


@dataclass(frozen=True)
class _Key:
    sign: np.ndarray  # (CELLS, CELLS) +-1
    bit_of: np.ndarray  # (CELLS, CELLS) payload bit index, -1 for synchronisation cells
    sync: np.ndarray  # (PERIOD, PERIOD) the synchronisation cells drawn, payload cells 0
    bits: np.ndarray  # (PAYLOAD_BITS, PERIOD, PERIOD) each bit's cells drawn (key signs), others 0


def _draw(cells: np.ndarray) -> np.ndarray:
    """CELLS x CELLS values as the PERIOD x PERIOD pixels of one tile (smoothed across tile borders)."""
    import cv2

    tile = np.kron(cells, np.ones((CELL_PX, CELL_PX)))
    wrapped = cv2.GaussianBlur(np.tile(tile, (3, 3)), (0, 0), SMOOTH)  # the tile's neighbours repeat it
    return wrapped[PERIOD : 2 * PERIOD, PERIOD : 2 * PERIOD]


@lru_cache(maxsize=1)
def _key() -> _Key:
    rng = np.random.default_rng(KEY_SEED)
    sign = rng.choice([-1.0, 1.0], size=(CELLS, CELLS))
    order = rng.permutation(CELLS * CELLS)
    bit_of = np.full(CELLS * CELLS, -1)
    bit_of[order[SYNC_CELLS:]] = np.arange(CELLS * CELLS - SYNC_CELLS) % PAYLOAD_BITS
    bit_of = bit_of.reshape(CELLS, CELLS)
    sync = _draw(np.where(bit_of < 0, sign, 0.0))
    bits = np.stack([_draw(np.where(bit_of == b, sign, 0.0)) for b in range(PAYLOAD_BITS)])
    # The reader keeps the alignment where the folded tile best matches `sync`, so on an unmarked image
    # the tile leans towards `sync` there; the smoothing makes each bit's pattern overlap it a little at
    # cell borders, which would tilt that bit one way on every unmarked image (and the tag's match count
    # above the fair 16 of 32). Each bit is read with its pattern made orthogonal to `sync`.
    bits -= np.tensordot(bits, sync, axes=([1, 2], [0, 1]))[:, None, None] * sync / np.sum(sync * sync)
    bits -= bits.mean(axis=(1, 2), keepdims=True)  # and blind to the folded tile's mean
    return _Key(sign, bit_of, sync, bits)


def tile_pattern(bits: list[int]) -> np.ndarray:
    """The PERIOD x PERIOD pattern carrying ``bits`` (PAYLOAD_BITS of them), RMS 1."""
    key = _key()
    if len(bits) != PAYLOAD_BITS:
        raise ValueError(f"the tile mark carries {PAYLOAD_BITS} bits, got {len(bits)}")
    value = 2.0 * np.asarray(bits, np.float64) - 1.0
    cells = key.sign * np.where(key.bit_of >= 0, value[np.maximum(key.bit_of, 0)], 1.0)
    tile = _draw(cells)
    return tile / np.sqrt(np.mean(tile**2))


def embed_tile(rgb: np.ndarray, bits: list[int]) -> np.ndarray:
    """``rgb`` (H x W x 3 uint8) with the tile pattern of ``bits`` added, repeated from the top-left."""
    h, w = rgb.shape[:2]
    pattern = np.tile(tile_pattern(bits), (h // PERIOD + 1, w // PERIOD + 1))[:h, :w]
    out = rgb.astype(np.float64) + STRENGTH * pattern[:, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class TileReading:
    bits: list[int]  # the PAYLOAD_BITS bits read at the best alignment
    sync_score: float  # the synchronisation peak in standard deviations of the correlation
    period: float  # the repeat found, in pixels (PERIOD when the image was not resized)
    angle: float  # its rotation in degrees


def _residual(grey: np.ndarray) -> np.ndarray:
    import cv2

    r = grey - cv2.GaussianBlur(grey, (0, 0), RESIDUAL_SIGMA)
    s = 1.4826 * float(np.median(np.abs(r))) + 1e-6  # robust sigma: edges do not dominate
    r = np.clip(r, -3 * s, 3 * s)
    # textured places hide the mark under the image's own detail: weigh each pixel by the inverse of its
    # neighbourhood's residual spread (the mark's own spread, STRENGTH, as the floor)
    local = np.sqrt(cv2.GaussianBlur(r * r, (0, 0), LOCAL_SIGMA))
    return r / (local + STRENGTH / 2)


def _lattice_candidates(r: np.ndarray) -> list[tuple[float, float]]:
    """The CANDIDATES strongest autocorrelation peaks of the residual that could be the repeat."""
    import cv2
    from scipy.ndimage import maximum_filter

    h, w = r.shape
    window = np.outer(np.hanning(h), np.hanning(w))  # the crop's edges do not leak over the spectrum
    power = np.abs(np.fft.fft2((r - r.mean()) * window, s=(2 * h, 2 * w))) ** 2  # padded: a linear ACF
    power /= cv2.GaussianBlur(power, (0, 0), WHITEN) + 1e-12
    acf = np.fft.fftshift(np.real(np.fft.ifft2(power)))
    cy, cx = h, w
    yy, xx = np.mgrid[0 : 2 * h, 0 : 2 * w]
    radius = np.hypot(yy - cy, xx - cx)
    # periods from a 0.4x resize to a 2.3x one, at most three quarters of the image (two repeats seen)
    ok = (radius >= PERIOD * 0.4) & (radius <= min(PERIOD * 2.3, 0.75 * min(h, w)))
    ok &= (yy > cy) | ((yy == cy) & (xx > cx))  # half the plane: v and -v are the same lattice
    masked = np.where(ok, acf, -np.inf)
    peaks = np.argwhere((masked == maximum_filter(masked, size=5)) & ok)
    peaks = peaks[np.argsort(-acf[peaks[:, 0], peaks[:, 1]])][:CANDIDATES]
    out = []
    for y, x in peaks:
        dx = dy = 0.0
        if 0 < y < 2 * h - 1 and 0 < x < 2 * w - 1:  # sub-pixel: the parabola through the peak's neighbours
            dx = _vertex(acf[y, x - 1], acf[y, x], acf[y, x + 1])
            dy = _vertex(acf[y - 1, x], acf[y, x], acf[y + 1, x])
        out.append((float(x + dx - cx), float(y + dy - cy)))
    return out


def _vertex(a: float, b: float, c: float) -> float:
    """The offset of the parabola's top through three samples about a local maximum (within half a sample)."""
    d = a - 2 * b + c
    if d == 0 or not np.isfinite(d):
        return 0.0
    return float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))


def _affine(vx: float, vy: float, dangle: float = 0.0, dscale: float = 1.0) -> np.ndarray:
    """The 2x3 map from unmarked tile space to the image for lattice vector (vx, vy)."""
    angle = np.arctan2(vy, vx)
    angle = (angle + np.pi / 4) % (np.pi / 2) - np.pi / 4 + dangle  # square lattice: the turn within 45 degrees
    scale = np.hypot(vx, vy) / PERIOD * dscale
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return np.array([[c, -s, 0.0], [s, c, 0.0]])


def _fold(r: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The residual warped back to tile space by ``m`` and averaged modulo PERIOD: one PERIOD x PERIOD tile."""
    import cv2

    h, w = r.shape
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float) @ inv.T
    if not np.isfinite(corners).all():
        return np.zeros((PERIOD, PERIOD))
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    if (x1 - x0) * (y1 - y0) > 16 * h * w:  # a lattice this small is no candidate (scales are >= 0.4)
        return np.zeros((PERIOD, PERIOD))
    shifted = m.copy()
    shifted[:, 2] = m[:, 2] + m[:, :2] @ np.array([x0, y0], float)
    warped = cv2.warpAffine(
        r.astype(np.float32),
        shifted,
        (int(x1 - x0), int(y1 - y0)),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=float("nan"),
    )
    valid = ~np.isnan(warped)
    ys = (np.arange(warped.shape[0]) + y0) % PERIOD
    xs = (np.arange(warped.shape[1]) + x0) % PERIOD
    index = (ys[:, None] * PERIOD + xs[None, :])[valid]
    total = np.bincount(index, weights=warped[valid], minlength=PERIOD * PERIOD)
    count = np.bincount(index, minlength=PERIOD * PERIOD)
    return (total / np.maximum(count, 1)).reshape(PERIOD, PERIOD)


def _synchronise(r: np.ndarray, m: np.ndarray) -> tuple[float, np.ndarray]:
    """(score, the folded tile moved to the pattern's origin) for alignment ``m``."""
    tile = _fold(r, m)
    corr = np.real(np.fft.ifft2(np.fft.fft2(tile) * np.conj(np.fft.fft2(_key().sync))))
    oy, ox = np.unravel_index(int(corr.argmax()), corr.shape)
    score = (corr.max() - corr.mean()) / (corr.std() + 1e-12)
    return float(score), np.roll(tile, (-oy, -ox), axis=(0, 1))


def read_tile(rgb: np.ndarray) -> TileReading:
    """The payload bits of ``rgb`` (H x W x 3 uint8) at the alignment the synchronisation cells find best."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb[:, :, :3]), cv2.COLOR_RGB2GRAY).astype(np.float64)
    if min(grey.shape) < PERIOD // 2:
        return TileReading([0] * PAYLOAD_BITS, 0.0, 0.0, 0.0)
    r = _residual(grey)
    best = None
    for vx, vy in [(float(PERIOD), 0.0), *_lattice_candidates(r)]:
        score, tile = _synchronise(r, _affine(vx, vy))
        if best is None or score > best[0]:
            best = (score, tile, vx, vy, 0.0, 1.0)
    _, _, vx, vy, _, _ = best
    for dangle in np.radians([-0.4, -0.2, 0.2, 0.4]):  # the peak's angle and length are good to about a pixel
        for dscale in (0.99, 1.0, 1.01):
            score, tile = _synchronise(r, _affine(vx, vy, dangle, dscale))
            if score > best[0]:
                best = (score, tile, vx, vy, dangle, dscale)
    score, tile, vx, vy, dangle, dscale = best
    soft = np.tensordot(_key().bits, tile, axes=([1, 2], [0, 1]))  # each bit's cells' summed correlation
    m = _affine(vx, vy, dangle, dscale)
    return TileReading(
        bits=[int(v > 0) for v in soft],
        sync_score=round(score, 2),
        period=round(float(np.hypot(*m[:, 0])) * PERIOD, 2),
        angle=round(float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))), 2),
    )
