"""Watermark bit accuracy per marking size after PNG, JPEG q90 and JPEG q75 re-encoding, and the
same payload embedded by invisible-watermark's own dwtDctSvd encoder on the same images.

Generated images are small (32 px for the shapes model); the DWT-DCT-SVD embedder needs room,
so pixelforge enlarges images before marking. Two sets of --n images: "smooth" (random colours,
bicubic-smoothed) and "flat" (a flat background, a third of them white, black or a saturated
colour, with one flat square: what the shapes model draws). For each set, embedder and marking
size this prints the share of the 32 tag bits read back (mean over images), how many images were
judged marked (tag bits >= 28 of 32), and the PSNR of the marked image against the enlarged
original; then the false-positive count on unmarked images. Both embedders are read by the same
decoder (the library's).

    .venv/bin/python benchmarks/watermark_robustness.py [--n 24] [--sizes 0,64,128,256,512]
"""

from __future__ import annotations

import argparse
import io
import time

import cv2
import numpy as np
from imwatermark.dwtDctSvd import EmbedDwtDctSvd
from PIL import Image

from pixelforge.generate.mark import embed_watermark, payload_bits, read_watermark, upscale_for_mark

ENCODINGS = (("PNG", None), ("JPEG q90", 90), ("JPEG q75", 75))
SATURATED = ((255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))


def smooth_image(seed: int) -> Image.Image:
    """A 32 px image with smooth structure."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((32, 32), Image.BICUBIC)


def flat_image(seed: int) -> Image.Image:
    """A 32 px flat background (every third one white, black or saturated) with one flat square."""
    rng = np.random.default_rng(seed)
    a = np.empty((32, 32, 3), dtype=np.uint8)
    a[:] = SATURATED[(seed // 3) % len(SATURATED)] if seed % 3 else rng.integers(0, 256, 3)
    y, x, side = rng.integers(2, 14), rng.integers(2, 14), rng.integers(6, 16)
    a[y : y + side, x : x + side] = rng.integers(0, 256, 3)
    return Image.fromarray(a)


def library_embed(img: Image.Image, run_id: str) -> Image.Image:
    """invisible-watermark's own encoder (EmbedDwtDctSvd.encode), same payload, step and block."""
    bgr = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2BGR)
    out = EmbedDwtDctSvd(watermarks=payload_bits(run_id), wmLen=48, scales=[0, 36, 0], block=4).encode(bgr)
    return Image.fromarray(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--sizes", default="0,64,128,256,512", help="marking sizes (0: the native 32 px)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    embedders = (("pixelforge", embed_watermark), ("invisible-watermark", library_embed))
    print(
        f"{'set':>6} | {'embedder':>19} | {'marked at':>9} | "
        + " | ".join(f"{name:>15}" for name, _ in ENCODINGS)
        + " | PSNR dB | ms/image"
    )
    for set_name, make in (("smooth", smooth_image), ("flat", flat_image)):
        for size in sizes:
            for emb_name, embed in embedders:
                bits = {q: 0 for _, q in ENCODINGS}
                found = {q: 0 for _, q in ENCODINGS}
                psnrs, seconds = [], 0.0
                for seed in range(args.n):
                    img = upscale_for_mark(make(seed), size)
                    t0 = time.perf_counter()
                    marked = embed(img, "bench-run")
                    seconds += time.perf_counter() - t0
                    psnrs.append(psnr(img, marked))
                    for _, quality in ENCODINGS:
                        buf = io.BytesIO()
                        marked.save(buf, "PNG") if quality is None else marked.save(buf, "JPEG", quality=quality)
                        reading = read_watermark(Image.open(io.BytesIO(buf.getvalue())))
                        bits[quality] += reading.tag_bits_matched
                        found[quality] += reading.found
                cells = [f"{bits[q] / (32 * args.n):.3f} ({found[q]:>2}/{args.n})" for _, q in ENCODINGS]
                print(
                    f"{set_name:>6} | {emb_name:>19} | {(str(size) + ' px') if size else '32 px':>9} | "
                    + " | ".join(f"{c:>15}" for c in cells)
                    + f" | {np.median(psnrs):7.1f} | {1000 * seconds / args.n:8.1f}"
                )
    false_pos = sum(read_watermark(upscale_for_mark(smooth_image(1000 + s), 256)).found for s in range(args.n))
    false_pos += sum(read_watermark(upscale_for_mark(flat_image(1000 + s), 256)).found for s in range(args.n))
    print(f"unmarked images judged marked: {false_pos}/{2 * args.n}")


if __name__ == "__main__":
    main()
