"""Feature-extraction speed and FID values: `pixelforge evaluate` against pytorch-fid on the same images and weights.

Makes (once, cached in benchmarks/.cache/) 1,000 real and 1,000 fake 64x64 PNGs and a random FID
Inception weights file in the official format (the tests' recipe: pytorch-fid's network,
BatchNorm statistics calibrated on smooth images). Then, each tool in its own process, in one run:
- pytorch-fid 0.3.0: `get_activations` (batch 50, its default DataLoader of min(8, CPUs) workers),
  FID by its `calculate_frechet_distance` (scipy sqrtm);
- pixelforge: `extract` with the Inception in pytorch-fid mode (batch 50, 2 decoding workers),
  FID by our eigenvalue Fréchet distance;
and prints the images/s of each feature pass, the ratio, and both FID values. Last, it times the
Fréchet distance (statistics included) of two 10,000 x 2,048 feature sets.

    .venv/bin/python benchmarks/fid_vs_pytorch_fid.py [--n 1000] [--rounds 1]

pytorch-fid and torch-fidelity are pixelforge dependencies, so both run from our venv.

Measured here (2 cores shared with another job using about one core; two runs): pytorch-fid 2.97
and 2.88 images/s, pixelforge 6.22 and 5.67 images/s: 2.10x and 1.97x; FID 1833.438941 (pytorch-fid)
and 1833.483372 (pixelforge), 2.4e-5 apart. Fréchet distance of 10,000 x 2,048: 3.1-3.5 s with the
statistics of both sets, 1.2-1.4 s from statistics. Details in docs/evaluate.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, QUIET_ENV, ROOT  # noqa: E402

sys.path.insert(0, str(ROOT))
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"

PYTORCH_FID = """
import json, os, sys, time, numpy as np
from pathlib import Path
from pytorch_fid.fid_score import get_activations
from pytorch_fid.inception import InceptionV3
model = InceptionV3([3])                         # weights from $TORCH_HOME/hub/checkpoints
out = {}
for name in ("real", "fake"):
    files = sorted(Path(sys.argv[1], name).glob("*.png"))
    start = time.perf_counter()
    workers = min(8, len(os.sched_getaffinity(0)))  # pytorch-fid's own default
    act = get_activations(files, model, batch_size=50, dims=2048, device="cpu", num_workers=workers)
    out[name + "_seconds"] = time.perf_counter() - start
    np.save(Path(sys.argv[2]) / f"pytorch-fid-{name}.npy", act)
print(json.dumps(out))
"""

PIXELFORGE = """
import json, sys, time, numpy as np
from pathlib import Path
from pixelforge.evaluate.images import extract, open_images
from pixelforge.evaluate.inception import InceptionFeatures
model = InceptionFeatures(Path(sys.argv[3]), dims=2048, impl="pytorch-fid")
out = {}
for name in ("real", "fake"):
    images = open_images(str(Path(sys.argv[1], name)), "--" + name)
    start = time.perf_counter()
    x = extract(images, model, batch_size=50, workers=2, label=name)
    out[name + "_seconds"] = time.perf_counter() - start
    np.save(Path(sys.argv[2]) / f"pixelforge-{name}.npy", x.features)
print(json.dumps(out))
"""


def prepare(n: int) -> tuple[Path, Path]:
    """The image folders and the weights file, made once."""
    from tests.evaluate.fixtures import make_weights, smooth_images, write_folder

    root = CACHE / f"fid-{n}"
    weights = root / "hub" / "hub" / "checkpoints" / WEIGHTS_NAME
    if not (root / "done").exists():
        weights.parent.mkdir(parents=True, exist_ok=True)
        make_weights(weights)
        for i in range(0, n, 100):  # in blocks, so memory stays small
            write_folder(root / "real", smooth_images(min(100, n - i), 64, seed=10_000 + i, grid=6), start=i)
            write_folder(root / "fake", smooth_images(min(100, n - i), 64, seed=20_000 + i, grid=4), start=i)
        (root / "done").touch()
    return root, weights


def run(code: str, *args: str, torch_home: Path) -> dict:
    env = dict(os.environ, **QUIET_ENV, TORCH_HOME=str(torch_home))
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"benchmark step failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_frechet(n: int = 10_000, d: int = 2048) -> tuple[float, float]:
    """Seconds for statistics of two n x d sets plus their Fréchet distance, and for the distance alone."""
    from pixelforge.evaluate.metrics import features_to_statistics, frechet_distance

    rng = np.random.default_rng(0)
    mix = rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d)
    a = np.maximum(rng.standard_normal((n, d), dtype=np.float32) @ mix, 0)
    b = np.maximum(rng.standard_normal((n, d), dtype=np.float32) @ mix + 0.1, 0)
    start = time.perf_counter()
    s1, s2 = features_to_statistics(a), features_to_statistics(b)
    middle = time.perf_counter()
    frechet_distance(*s1, *s2)
    end = time.perf_counter()
    return end - start, end - middle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="real and fake images each")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; the best of each is kept")
    args = parser.parse_args()
    root, weights = prepare(args.n)
    torch_home = weights.parents[2]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for tool, code in (("pytorch-fid", PYTORCH_FID), ("pixelforge", PIXELFORGE)):
                out = run(code, str(root), tmp, str(weights), torch_home=torch_home)
                seconds = out["real_seconds"] + out["fake_seconds"]
                best[tool] = min(best.get(tool, float("inf")), seconds)
                print(
                    f"{tool}: {2 * args.n} images in {seconds:.1f} s = {2 * args.n / seconds:.2f} images/s", flush=True
                )
        from pytorch_fid.fid_score import calculate_frechet_distance

        from pixelforge.evaluate.metrics import features_to_statistics, frechet_distance

        def load(tool: str, name: str) -> np.ndarray:
            return np.load(Path(tmp) / f"{tool}-{name}.npy")

        # each tool's own statistics and distance: pytorch-fid's np.mean / np.cov and scipy sqrtm
        their_stats = [
            (a.mean(axis=0), np.cov(a, rowvar=False))
            for a in (load("pytorch-fid", "fake"), load("pytorch-fid", "real"))
        ]
        theirs = calculate_frechet_distance(*their_stats[0], *their_stats[1])
        ours = frechet_distance(
            *features_to_statistics(load("pixelforge", "fake")), *features_to_statistics(load("pixelforge", "real"))
        )
    rate = {tool: 2 * args.n / s for tool, s in best.items()}
    print(
        f"feature extraction: pixelforge {rate['pixelforge']:.2f} images/s, pytorch-fid {rate['pytorch-fid']:.2f} "
        f"images/s, ratio {rate['pixelforge'] / rate['pytorch-fid']:.2f}x"
    )
    print(
        f"FID: pixelforge {ours:.6f}, pytorch-fid {theirs:.6f}, relative difference "
        f"{abs(ours - theirs) / abs(theirs):.2e}"
    )
    total, distance = time_frechet()
    print(
        f"Fréchet distance of 10,000 x 2,048 features: {total:.2f} s with both sets' statistics, "
        f"{distance:.2f} s from statistics"
    )


if __name__ == "__main__":
    main()
