"""Which watermark survives what the internet does to an image: every method against every attack.

1. Images, 256 px: generated ones (`pixelforge train diffusion --condition text` on the shapes set for
   --train-minutes, then `pixelforge generate --mark none`: the default model's output, unmarked) and
   real ones (centre crops of scikit-image's photographs, resized).
2. Methods: pixelforge's `tile` (the default) and `dwtdctsvd` (the earlier default, invisible-watermark's
   format), `treering` on the generated set (sampled again from the same seeds with the key in the
   noise, read by inverting the run: its score is z, detected at z >= 4), and invisible-watermark's
   own RivaGAN (its ONNX models ship in the package; needs onnxruntime: measured when importable).
   The pixel marks embed the 48-bit payload (RivaGAN: the 32 tag bits).
3. Every attack of pixelforge.generate.attacks on every marked image: tag-bit accuracy and the share
   detected by the decision rule (>= min_match of 32 tag bits), whose false-positive rate is the
   binomial tail, printed exactly; PSNR of the marked images; marking and reading time per image.
4. The false-positive check: --unmarked images never marked (random crops, scales and re-encodings of
   the photographs, shapes renders, digits, and the generated images under every attack), read by
   the pixelforge methods: how many are judged marked, against what the stated rate predicts.

    .venv/bin/python benchmarks/watermark_attacks.py [--n 48] [--unmarked 10000] [--train-minutes 3]
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_pixelforge  # noqa: E402

from pixelforge.generate.attacks import ATTACKS, GOAL_ATTACKS  # noqa: E402
from pixelforge.generate.mark import MARKS, TAG_BITS, _judge, payload_bits, tail_probability  # noqa: E402
from pixelforge.generate.treering import Z_MIN, false_positive_rate, read_treering  # noqa: E402
from pixelforge.train.rundir import load_run  # noqa: E402

SIDE = 256
RUN_ID = "bench@step_0000001"
RIVAGAN_MIN_MATCH = 27  # the same binomial rule on its 32 bits


def generated_images(n: int, minutes: float, work: Path, run: str | None) -> tuple[str, list, list]:
    if run is None:
        run_pixelforge("import", "shapes", "--n", "3000", "--size", "32", "--out", str(work / "shapes"))
        run = str(work / "run")
        run_pixelforge(
            "train", "diffusion", "--data", str(work / "shapes"), "--out", run, "--condition", "text",
            "--image-size", "32", "--max-minutes", str(minutes),
        )  # fmt: skip
    prompts = work / "prompts.txt"
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    shapes = ["circle", "square", "triangle", "star", "diamond"]
    backgrounds = ["white", "black", "gray", "blue"]
    lines = [
        f"a large {colours[i % 6]} {shapes[i % 5]} in the center on a {backgrounds[i % 4]} background" for i in range(n)
    ]
    prompts.write_text("\n".join(lines))
    sets = []
    for mark in ("none", "treering"):  # the same prompts and seed; Tree-Ring is made while sampling
        out = work / f"generated-{mark}"
        run_pixelforge("generate", run, "--prompts", str(prompts), "--out", str(out), "--mark", mark, "--steps", "50")
        sets.append([Image.open(p).convert("RGB") for p in sorted((out / "images").glob("*.png"))])
    return run, sets[0], sets[1]


def photo_names() -> list[str]:
    from skimage import data

    names = ["astronaut", "camera", "cat", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry"]
    names += ["motorcycle_left", "retina", "rocket", "brick", "grass", "gravel", "page", "text", "moon", "coins"]
    return [n for n in names if hasattr(data, n)]


def real_images(n: int, seed: int = 0) -> list[Image.Image]:
    """Centre-ish crops of scikit-image's photographs, resized to SIDE."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(getattr(data, name)()).convert("RGB") for name in photo_names()]
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        side = int(min(p.size) * rng.uniform(0.6, 1.0))
        x, y = rng.integers(0, p.width - side + 1), rng.integers(0, p.height - side + 1)
        out.append(p.crop((x, y, x + side, y + side)).resize((SIDE, SIDE), Image.Resampling.LANCZOS))
    return out


class RivaGan:
    """invisible-watermark's RivaGAN, 32 bits, through onnxruntime (None when it is not installed)."""

    def __init__(self):
        from imwatermark.rivaGan import RivaWatermark

        RivaWatermark.loadModel()
        self.bits = payload_bits(RUN_ID)[:TAG_BITS]
        self.encoder = RivaWatermark(self.bits, 32)
        self.decoder = RivaWatermark([0] * 32, 32)

    def embed(self, img: Image.Image) -> Image.Image:
        bgr = np.ascontiguousarray(np.asarray(img)[:, :, ::-1])
        return Image.fromarray(np.ascontiguousarray(self.encoder.encode(bgr)[:, :, ::-1]))

    def matched(self, img: Image.Image) -> int:
        got = self.decoder.decode(np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1]))
        return int(sum(int(a) == b for a, b in zip(got, self.bits)))


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse else float("inf")


def measure(images: list[Image.Image], riva: RivaGan | None, riva_n: int, treering=None) -> dict:
    payload = payload_bits(RUN_ID)
    methods = list(MARKS) + (["rivagan"] if riva else [])
    table: dict[str, dict[str, tuple[float, float]]] = {a: {} for a in ATTACKS}
    quality, speed = {}, {}
    for name in methods:
        start = time.perf_counter()
        if name == "rivagan":  # about 0.5 s per image each way: measured on the first riva_n images
            marked = [riva.embed(img) for img in images[:riva_n]]
        else:
            marked = [MARKS[name].embed(img, payload) for img in images]
        mark_ms = (time.perf_counter() - start) / len(marked) * 1000
        quality[name] = float(np.median([psnr(a, b) for a, b in zip(images, marked)]))
        read_s = 0.0
        for attack_name, attack in ATTACKS.items():
            accs, found = [], []
            for img in marked:
                attacked = attack(img)
                start = time.perf_counter()
                if name == "rivagan":
                    k = riva.matched(attacked)
                    hit = k >= RIVAGAN_MIN_MATCH
                else:
                    reading = _judge(MARKS[name].read(attacked), MARKS[name].min_match)
                    k, hit = reading.tag_bits_matched, reading.found
                read_s += time.perf_counter() - start
                accs.append(k / TAG_BITS)
                found.append(hit)
            table[attack_name][name] = (float(np.mean(accs)), float(np.mean(found)))
        speed[name] = (round(mark_ms, 1), round(read_s / (len(marked) * len(ATTACKS)) * 1000, 1))
    if treering is not None:  # images sampled with the key in their noise, read by inverting the run
        run, ringed = treering
        methods.append("treering")
        quality["treering"] = float(np.median([psnr(a, b) for a, b in zip(images, ringed)]))  # vs the same seed
        start = time.perf_counter()
        for attack_name, attack in ATTACKS.items():
            z = [r.z for r in read_treering([attack(img) for img in ringed], run)]
            table[attack_name]["treering"] = (float(np.mean(z)), float(np.mean([v >= Z_MIN for v in z])))
        speed["treering"] = (0.0, round((time.perf_counter() - start) / (len(ringed) * len(ATTACKS)) * 1000, 1))
    counts = {m: min(len(images), riva_n) if m == "rivagan" else len(images) for m in methods}
    return {"methods": methods, "table": table, "psnr": quality, "ms": speed, "n": counts}


def print_table(title: str, result: dict) -> None:
    methods = result["methods"]
    counts = ", ".join(f"{m} {k}" for m, k in result["n"].items())
    print(f"\n{title} (images: {counts}): tag-bit accuracy (share detected at the rule's FPR); * the goal's attacks")
    print(
        f"{'attack':28}"
        + "".join(f"{m:>20}" for m in methods)
        + ("   (treering: mean z)" if "treering" in methods else "")
    )
    for attack, row in result["table"].items():
        goal = " *" if attack in GOAL_ATTACKS else ""
        print(f"{attack + goal:28}" + "".join(f"{row[m][0]:>12.3f} ({row[m][1]:.2f})" for m in methods))
    print(f"{'PSNR dB (median)':28}" + "".join(f"{result['psnr'][m]:>20.1f}" for m in methods))
    speeds = [f"{result['ms'][m][0]} / {result['ms'][m][1]}" for m in methods]
    print(f"{'mark / read ms per image':28}" + "".join(f"{v:>20}" for v in speeds))


def _unmarked_one(task: tuple[int, int]) -> list[int]:
    """Tag bits each pixelforge method reads in unmarked image ``i`` (made in the worker: no pickled images)."""
    i, seed = task
    img = unmarked_image(i, seed)
    try:
        return [_judge(MARKS[m].read(img), MARKS[m].min_match).tag_bits_matched for m in MARKS]
    except MemoryError:  # under a memory limit (ulimit -v): counted apart, not a crash of the whole check
        return [-1] * len(MARKS)


_PHOTOS: list[Image.Image] = []


def unmarked_image(i: int, seed: int) -> Image.Image:
    """Image ``i`` of the false-positive set: a photograph crop, a shapes render or a digit, scaled and re-encoded."""
    from pixelforge.sources import shapes

    rng = np.random.default_rng(seed * 1_000_003 + i)
    kind = i % 3
    if kind == 0:
        if not _PHOTOS:
            from skimage import data

            _PHOTOS.extend(Image.fromarray(getattr(data, n)()).convert("RGB") for n in photo_names())
        p = _PHOTOS[rng.integers(len(_PHOTOS))]
        side = int(rng.integers(min(64, min(p.size)), min(p.size) + 1))
        x, y = rng.integers(0, p.width - side + 1), rng.integers(0, p.height - side + 1)
        img = p.crop((x, y, x + side, y + side))
    elif kind == 1:
        spec, background = shapes.design(1, int(rng.integers(1 << 30)))[0]
        img = Image.fromarray(shapes.render(spec, background, 64))
    else:
        from sklearn.datasets import load_digits

        digits = load_digits().images
        img = Image.fromarray((digits[rng.integers(len(digits))] * 16).clip(0, 255).astype(np.uint8)).convert("RGB")
    img = img.resize((int(rng.integers(128, 513)),) * 2, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(50, 96)))
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48, help="marked images per set (generated, real)")
    ap.add_argument("--unmarked", type=int, default=10_000, help="unmarked images for the false-positive check")
    ap.add_argument("--train-minutes", type=float, default=3.0, help="training of the generating model")
    ap.add_argument("--run", help="an existing text-to-image shapes run instead of training one")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--only-unmarked", action="store_true", help="run the false-positive check alone")
    ap.add_argument("--keep", help="a folder to keep the shapes set, the run and the generated images in")
    ap.add_argument(
        "--treering-unmarked", type=int, default=1000, help="unmarked non-generated images read by treering"
    )
    ap.add_argument(
        "--rivagan-n", type=int, default=16, help="images RivaGAN is measured on (0.5 s per image each way)"
    )
    args = ap.parse_args()
    if args.only_unmarked:
        unmarked_check(args)
        return
    try:
        riva = RivaGan()
    except ImportError:
        riva = None
        print("RivaGAN: skipped (pip install onnxruntime to measure it)")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_path, generated, ringed = generated_images(args.n, args.train_minutes, Path(args.keep or tmp), args.run)
        print(
            f"generated {len(generated)} images twice (--mark none, --mark treering) "
            f"in {time.perf_counter() - start:.0f} s"
        )
        run = load_run(run_path, "best", torch.device("cpu"))
        gen_result = measure(generated, riva, args.rivagan_n, (run, ringed))
        print_table("generated (text-to-image shapes model, 256 px)", gen_result)
        z = np.array(
            [r.z for a in ATTACKS.values() for r in read_treering([a(img) for img in generated], run)]
            + [r.z for r in read_treering([unmarked_image(i, 11) for i in range(args.treering_unmarked)], run)]
        )
        print(
            f"\ntreering on {len(z)} unmarked images (the unmarked generated ones under every attack, and "
            f"photo crops, shapes renders, digits): z mean {z.mean():.2f}, sd {z.std():.2f} "
            f"(standard normal: 0, 1), max {z.max():.2f}; judged marked {int((z >= Z_MIN).sum())} "
            f"(expected {false_positive_rate() * len(z):.2f})"
        )
    real = real_images(args.n)
    print_table("real (scikit-image photographs, 256 px)", measure(real, riva, args.rivagan_n))
    print(
        "\ndecision rules: "
        + ", ".join(f"{m} >= {MARKS[m].min_match}/32 tag bits, FPR {MARKS[m].false_positive_rate:.2e}" for m in MARKS)
    )
    print(f"rivagan >= {RIVAGAN_MIN_MATCH}/32, FPR {tail_probability(RIVAGAN_MIN_MATCH):.2e}")
    unmarked_check(args)


def unmarked_check(args) -> None:
    start = time.perf_counter()
    if args.processes == 1:
        matched = np.array([_unmarked_one((i, 7)) for i in range(args.unmarked)])
    else:  # spawned: forked workers of a process with OpenMP threads hang
        with get_context("spawn").Pool(args.processes) as pool:
            matched = np.array(pool.map(_unmarked_one, [(i, 7) for i in range(args.unmarked)], chunksize=50))
    errors = int((matched[:, 0] < 0).sum())
    matched = matched[matched[:, 0] >= 0]
    print(
        f"\nunmarked images: {len(matched)} read (photo crops, shapes renders, digits; 128-512 px; half JPEG "
        f"q50-95), {errors} over the memory limit, {time.perf_counter() - start:.0f} s"
    )
    for j, m in enumerate(MARKS):
        rule = MARKS[m]
        flagged = int((matched[:, j] >= rule.min_match).sum())
        hist = np.bincount(matched[:, j], minlength=TAG_BITS + 1)
        mean = matched[:, j].mean()
        print(f"  {m}: judged marked {flagged} (expected {rule.false_positive_rate * len(matched):.2f}); "
              f"tag bits matched: mean {mean:.2f} (fair coins: 16.00), max {matched[:, j].max()}, "
              f">= 24: {int(hist[24:].sum())}")  # fmt: skip


if __name__ == "__main__":
    main()
