"""Download speed and memory: `pixelforge collect urls` against img2dataset on the same URL list.

Generates (once, cached in benchmarks/.cache/) a corpus of natural-looking JPEGs from 320x240 to
1600x1200 plus some PNGs, serves it from 127.0.0.1 (nginx if installed, else a threaded Python
server), and runs both tools with the same settings — 256 px center crop, jpg quality 95,
2 processes, 64 downloads in flight per process, WebDataset output — alternating, in one run.
Prints images/s and peak RSS (whole process tree) of each and the ratios.

    .venv/bin/python benchmarks/collect_vs_img2dataset.py [--n 3000] [--rounds 3] [--no-sweep]

img2dataset runs from its own venv (.venv-bench, created on first use) because its pins clash
with ours; its telemetry and update checks are switched off (NO_ALBUMENTATIONS_UPDATE, WANDB_MODE).

Then img2dataset alone at other settings (BEST_SWEEP: more or fewer threads, 4 processes, its
default 10,000 samples per shard), for its best figure on this corpus. pixelforge runs with its
polite defaults: 8 connections in flight to the one host over the run (4 per process).

Measured 2026-12-07 (2 cores, nginx, 3,000 images / 727 MB, best of 3 alternating rounds):
img2dataset 1.47.0 119.5 images/s, peak RSS 2,838 MB; pixelforge 277.3 images/s, peak RSS 523 MB:
2.32x the speed at 0.18x the memory. img2dataset's other settings were all slower (68.6-100.8
images/s), so its best on this corpus is the equal setting. The per-host window costs nothing
measurable here (--per-host 0: 224.5 and 212.9 images/s; default 236.7 and 194.5 in one earlier
run; run-to-run spread ~10%). Preloading the download worker and scipy's DCT in the fork server
(run/local.py EARLY_POOLS) took an earlier run's 223.3 images/s (2.12x) to this one's.

Where pixelforge's time goes (cProfile, one process, 750 images): JPEG/PNG decoding 33% (JPEGs at
reduced scale through Image.draft), resizing 17% (of which phash's own resize to 32 px a sixth),
perceptual hash 13%, imports at worker start 10% (scipy's DCT for imagehash, pandas for pyarrow),
JPEG encoding 4%, aiohttp 4%, tar + parquet writing 6%. simplejpeg (libjpeg-turbo with DCT-domain
scaling, min_width/min_height) decodes this corpus's JPEGs at 2.49 ms/image against Pillow's draft
mode at 2.64 ms (6%, and its encoder is slower: 0.40 against 0.33 ms): not worth a second codec path.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, ROOT, StaticServer, reference_python, run_measured  # noqa: E402

from pixelforge.collect.urls import shard_size_for  # noqa: E402

IMG2DATASET = "img2dataset==1.47.0"
# img2dataset's other settings tried for its best figure: (processes, threads, samples per shard)
BEST_SWEEP = [(2, 16, 10_000), (2, 32, 10_000), (2, 128, 10_000), (4, 16, 10_000), (4, 32, 375)]
SIZES = [(320, 240), (480, 360), (640, 480), (800, 600), (1024, 768), (1280, 960), (1600, 1200)]


def make_image(i: int) -> tuple[str, bytes]:
    """A photo-like image: smooth colour field, a few shapes, sensor-like noise; every 12th a PNG."""
    rng = np.random.default_rng(i)
    w, h = SIZES[rng.integers(len(SIZES))]
    if rng.random() < 0.5:
        w, h = h, w
    field = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(rng.integers(2, 7)):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(w // 10, w // 2), y0 + rng.integers(h // 10, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    arr = np.asarray(field, dtype=np.int16) + rng.normal(0, 6, (h, w, 1)).astype(np.int16)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    if i % 12 == 11:
        img.save(buf, "PNG", compress_level=6)
        return f"{i:05d}.png", buf.getvalue()
    img.save(buf, "JPEG", quality=int(rng.integers(75, 96)))
    return f"{i:05d}.jpg", buf.getvalue()


def corpus(n: int) -> Path:
    folder = CACHE / f"corpus-{n}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with Pool(2) as pool:
        for name, data in pool.imap_unordered(make_image, range(n), chunksize=16):
            (folder / name).write_bytes(data)
    (folder / "done").write_text(str(n))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip img2dataset's other settings")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()

    ref_py = reference_python(IMG2DATASET)
    folder = corpus(args.n)
    names = sorted(p.name for p in folder.iterdir() if p.suffix in (".jpg", ".png"))
    mb = sum((folder / n).stat().st_size for n in names) / 2**20
    work = Path(tempfile.mkdtemp(prefix="pf-bench-collect-"))
    # both tools get the same shard layout: pixelforge cuts a short list into 4 shards per process
    # so no process idles at the end; img2dataset is given the same shard size, not its 10,000
    shard_size = shard_size_for(len(names), 1000, args.processes)
    results: dict[str, list[tuple[float, int, int]]] = {"img2dataset": [], "pixelforge": []}
    with StaticServer(folder) as server:
        lst = work / "urls.txt"
        lst.write_text("".join(server.url(n) + "\n" for n in names))
        print(
            f"corpus: {len(names)} images, {mb:.0f} MB, served by {server.kind} on 127.0.0.1:{server.port}; "
            f"{shard_size} samples per shard for both"
        )
        for r in range(args.rounds):
            for tool in ("img2dataset", "pixelforge") if r % 2 == 0 else ("pixelforge", "img2dataset"):
                out = work / f"{tool}-{r}"
                if tool == "img2dataset":
                    cmd = img2dataset_cmd(ref_py, lst, out, args.processes, args.concurrency, shard_size)
                else:
                    cmd = pixelforge_cmd(lst, out, args.processes, args.concurrency)
                results[tool].append(measure(tool, f"round {r} {tool:12s}", cmd, out))
        # img2dataset at its best on this corpus: other processes, threads and its own shard size
        sweep = []
        for processes, threads, shards in BEST_SWEEP if args.sweep else ():
            out = work / f"img2dataset-{processes}-{threads}-{shards}"
            cmd = img2dataset_cmd(ref_py, lst, out, processes, threads, shards)
            label = (
                f"img2dataset --processes_count {processes} --thread_count {threads} --number_sample_per_shard {shards}"
            )
            sweep.append((label, measure("img2dataset", label, cmd, out)))
    best = {t: max(ok / s for s, _, ok in rs) for t, rs in results.items()}
    peak = {t: max(p for _, p, _ in rs) for t, rs in results.items()}
    print(f"\nimg2dataset {best['img2dataset']:.1f} images/s, peak {peak['img2dataset'] / 2**20:.0f} MB")
    print(f"pixelforge  {best['pixelforge']:.1f} images/s, peak {peak['pixelforge'] / 2**20:.0f} MB")
    print(
        f"speed ratio pixelforge / img2dataset = {best['pixelforge'] / best['img2dataset']:.2f}x at equal settings; "
        f"memory ratio = {peak['pixelforge'] / peak['img2dataset']:.2f}x"
    )
    if sweep:
        label, top = max([*sweep, ("equal settings", max(results["img2dataset"], key=rate))], key=lambda x: rate(x[1]))
        print(f"img2dataset at its best: {rate(top):.1f} images/s ({label})")
        print(f"pixelforge / img2dataset at its best = {best['pixelforge'] / rate(top):.2f}x")
    shutil.rmtree(work, ignore_errors=True)


def rate(run: tuple[float, int, int]) -> float:
    seconds, _, ok = run
    return ok / seconds


def measure(tool: str, label: str, cmd: list[str], out: Path) -> tuple[float, int, int]:
    """Run ``cmd`` measured; print and return (seconds, peak RSS, images stored); remove its output."""
    seconds, peak, code = run_measured(cmd)
    ok = count_ok(tool, out)
    print(
        f"{label} {ok} images in {seconds:6.1f} s = {ok / seconds:6.1f} images/s, "
        f"peak RSS {peak / 2**20:6.0f} MB{'  (exit ' + str(code) + ')' if code else ''}",
        flush=True,
    )
    shutil.rmtree(out, ignore_errors=True)
    return seconds, peak, ok


def img2dataset_cmd(ref_py: str, lst: Path, out: Path, processes: int, threads: int, shard_size: int) -> list[str]:
    return [
        str(Path(ref_py).parent / "img2dataset"),
        "--url_list",
        str(lst),
        "--input_format",
        "txt",
        "--output_folder",
        str(out),
        "--output_format",
        "webdataset",
        "--image_size",
        "256",
        "--resize_mode",
        "center_crop",
        "--encode_format",
        "jpg",
        "--encode_quality",
        "95",
        "--processes_count",
        str(processes),
        "--thread_count",
        str(threads),
        "--number_sample_per_shard",
        str(shard_size),
        "--enable_wandb",
        "False",
        "--timeout",
        "10",
        "--retries",
        "0",
    ]


def pixelforge_cmd(lst: Path, out: Path, processes: int, concurrency: int) -> list[str]:
    """pixelforge with its defaults otherwise: polite (8 connections to the one host over the run)."""
    return [
        str(ROOT / ".venv" / "bin" / "pixelforge"),
        "collect",
        "urls",
        str(lst),
        "--out",
        str(out),
        "--image-size",
        "256",
        "--resize-mode",
        "center_crop",
        "--encode",
        "jpg",
        "--quality",
        "95",
        "--processes",
        str(processes),
        "--concurrency",
        str(concurrency),
        "--samples-per-shard",
        "1000",
        "--allow-private-networks",
        "--retries",
        "0",
    ]


def count_ok(tool: str, out: Path) -> int:
    if tool == "pixelforge":
        meta = out / "dataset.json"
        return json.loads(meta.read_text())["num_samples"] if meta.exists() else 0
    return sum(json.loads(p.read_text()).get("successes", 0) for p in out.glob("*_stats.json"))


if __name__ == "__main__":
    main()
