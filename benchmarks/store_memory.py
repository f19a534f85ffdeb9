"""Peak memory of importing and iterating a 60,000-image dataset (the foundation's bound: under 1 GB).

Imports the synthetic shapes set (60,000 PNGs at 28 px, MNIST-sized) through the CLI, then reads
every sample back (row + image bytes + decode) and runs `pixelforge info`, each in its own process,
and prints the peak RSS of each with the time taken.

    .venv/bin/python benchmarks/store_memory.py [--n 60000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, run_measured  # noqa: E402

ITERATE = """
import sys
from pixelforge.store import Dataset
n = 0
for s in Dataset.open(sys.argv[1]).iter_samples():
    s.decode()
    n += 1
assert n == int(sys.argv[2]), n
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    args = ap.parse_args()
    pf = str(ROOT / ".venv" / "bin" / "pixelforge")
    py = str(ROOT / ".venv" / "bin" / "python")
    work = Path(tempfile.mkdtemp(prefix="pf-bench-store-"))
    out = str(work / "shapes")
    steps = [
        ("import shapes", [pf, "import", "shapes", "--n", str(args.n), "--size", "28", "--out", out]),
        ("iterate + decode", [py, "-c", ITERATE, out, str(args.n)]),
        ("info", [pf, "info", out]),
        ("export imagefolder", [pf, "export", out, "--format", "imagefolder", "--out", str(work / "exp")]),
    ]
    for name, cmd in steps:
        seconds, peak, code = run_measured(cmd)
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(
            f"{name:20s} {args.n} images  {seconds:6.1f} s  {args.n / seconds:7.0f} images/s  "
            f"peak RSS {peak / 2**20:5.0f} MB  {status}"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
