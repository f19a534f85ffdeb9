"""Time `pixelforge audit` on a 1,000,000-row index (the audit issue's bound: under 60 s on 2 cores).

Makes a synthetic index by code (no images: the audit reads index.parquet only): captions built from
gendered, aged and regional words with professions skewed by gender, 1,000 classes, 5,000 web domains
with a long tail, mixed licences, a few opt-outs, curate's quality columns, and a predictions file.
Then runs the CLI in its own process and prints the wall time and peak memory.

    .venv/bin/python benchmarks/audit_scale.py [--rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, run_measured  # noqa: E402

from pixelforge.curate.columns import CURATE_FIELDS  # noqa: E402
from pixelforge.store.dataset import DATASET_JSON, FAILURES, INDEX, STATS  # noqa: E402
from pixelforge.store.schema import FAILURE_SCHEMA, SCHEMA_VERSION, index_schema  # noqa: E402

PEOPLE = {"woman": 0, "man": 1, "girl": 0, "boy": 1, "old woman": 0, "old man": 1, "she": 0, "he": 1}
JOBS = {
    "nurse": 0.9,
    "doctor": 0.3,
    "engineer": 0.15,
    "teacher": 0.7,
    "chef": 0.4,
    "pilot": 0.1,
    "farmer": 0.35,
    "dancer": 0.8,
}  # probability the caption's person is female
PLACES = [
    "in kenya",
    "in japan",
    "in france",
    "in brazil",
    "in canada",
    "in the middle east",
    "in new zealand",
    "in a city",
    "at home",
    "on a beach",
    "in a forest",
    "at the office",
]
THINGS = [
    "with a dog",
    "with a laptop",
    "holding flowers",
    "near a car",
    "with a bicycle",
    "under the sky",
    "next to a window",
    "with a cup of coffee",
]
LICENSES = ["cc-by-4.0", "cc-by-sa-4.0", "cc0-1.0", "cc-by-nc-4.0", "unknown", "cc-by-2.0", "pdm-1.0", "mit"]
LICENSE_P = [0.3, 0.1, 0.15, 0.1, 0.2, 0.1, 0.03, 0.02]


def pick(rng: np.random.Generator, values: list[str], n: int, p=None) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p)], pa.string())


def make_index(root: Path, n: int, seed: int = 0) -> None:
    """Write an index-only dataset of ``n`` rows (dataset.json, index.parquet, failures.parquet)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    # captions: "<person> <job> <thing> <place>", the person's gender skewed by the job
    jobs = list(JOBS)
    job_i = rng.integers(0, len(jobs), n)
    female = rng.random(n) < np.asarray([JOBS[j] for j in jobs])[job_i]
    women, men = [p for p, g in PEOPLE.items() if g == 0], [p for p, g in PEOPLE.items() if g == 1]
    who_i = rng.integers(0, 4, n)
    person = np.where(female, np.asarray(women, dtype=object)[who_i], np.asarray(men, dtype=object)[who_i])
    person = np.where(rng.random(n) < 0.3, "a person", person)  # some captions name no gender
    caption = pc.binary_join_element_wise(
        pa.array(person, pa.string()),
        pa.array(np.asarray(jobs, dtype=object)[job_i], pa.string()),
        pick(rng, THINGS, n),
        pick(rng, PLACES, n),
        " ",
    )
    caption = pc.if_else(pa.array(rng.random(n) < 0.05), pa.scalar(None, pa.string()), caption)
    label = rng.zipf(1.3, n) % 1000
    domains = np.asarray([f"site{i}.example.org" for i in range(5000)], dtype=object)[rng.zipf(1.5, n) % 5000]
    keys = pa.array([f"{i:09d}" for i in range(n)], pa.string())
    source = pc.binary_join_element_wise("https://", pa.array(domains, pa.string()), "/img/", keys, ".jpg", "")
    width = rng.choice([256, 320, 512, 640, 1024], n).astype(np.int32)
    height = rng.choice([256, 240, 512, 480, 768], n).astype(np.int32)
    opt = pc.if_else(pa.array(rng.random(n) < 0.01), pa.scalar("robots.txt"), pa.scalar(None, pa.string()))
    columns = {
        "key": keys,
        "shard": pa.array(np.full(n, "000000.tar", dtype=object), pa.string()),
        "member": pc.binary_join_element_wise(keys, ".jpg", ""),
        "source_kind": pa.array(np.full(n, "url", dtype=object), pa.string()),
        "source": source,
        "caption": caption,
        "caption_source": pa.array(np.full(n, "alt", dtype=object), pa.string()),
        "label": pa.array(label.astype(np.int32)),
        "label_name": pc.binary_join_element_wise("class", pa.array(label.astype(str), pa.string()), ""),
        "license": pick(rng, LICENSES, n, LICENSE_P),
        "opt_out": opt,
        "attribution": pc.binary_join_element_wise("photographer ", pa.array((label % 97).astype(str)), ""),
        "width": pa.array(width),
        "height": pa.array(height),
        "orig_width": pa.array(width),
        "orig_height": pa.array(height),
        "format": pa.array(np.full(n, "jpeg", dtype=object), pa.string()),
        "q_min_side": pa.array(np.minimum(width, height)),
        "q_aspect": pa.array((np.maximum(width, height) / np.minimum(width, height)).astype(np.float32)),
        "q_blur": pa.array(rng.gamma(2.0, 200.0, n).astype(np.float32)),
        "q_brightness": pa.array(rng.beta(5, 5, n).astype(np.float32)),
        "q_contrast": pa.array(rng.uniform(0, 0.5, n).astype(np.float32)),
        "q_entropy": pa.array(rng.uniform(3, 8, n).astype(np.float32)),
        "q_grayscale": pa.array(rng.random(n) < 0.02),
        "q_jpeg_quality": pa.array(rng.integers(40, 100, n).astype(np.int32)),
        "q_watermark": pa.array(rng.beta(1, 8, n).astype(np.float32)),
    }
    schema = index_schema(CURATE_FIELDS)
    table = pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)
    pq.write_table(table, root / INDEX, row_group_size=128 * 1024)
    pq.write_table(FAILURE_SCHEMA.empty_table(), root / FAILURES)
    (root / STATS).write_text(json.dumps({"samples": n, "failures": 0}))
    (root / DATASET_JSON).write_text(
        json.dumps(
            {
                "name": f"synthetic-{n}",
                "schema_version": SCHEMA_VERSION,
                "num_samples": n,
                "num_failures": 0,
                "num_shards": 0,
                "extra_columns": [],
                "lineage": {"command": "benchmarks/audit_scale.py"},
            }
        )
    )
    # predictions of a classifier that is worse on captions with female words
    wrong = rng.random(n) < np.where(female, 0.3, 0.1)
    predicted = pc.if_else(pa.array(wrong), pa.scalar("class0"), columns["label_name"])
    preds = pa.table(
        {
            "key": keys,
            "predicted": predicted,
            "confidence": pa.array(rng.random(n).astype(np.float32)),
            "target": columns["label_name"],
        }
    ).replace_schema_metadata({"pixelforge.label_column": "label_name"})
    pq.write_table(preds, root.parent / "predictions.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", help="Write the index here and keep it (default: a temporary folder).")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="pf-bench-audit-"))
    ds = work / "index"
    try:
        if not ds.exists():
            t = time.perf_counter()
            make_index(ds, args.rows)
            print(
                f"made a {args.rows:,}-row index in {time.perf_counter() - t:.1f} s "
                f"({(ds / INDEX).stat().st_size / 2**20:.0f} MB of parquet)"
            )
        pf = str(ROOT / ".venv" / "bin" / "pixelforge")
        runs = (("audit", []), ("audit --predictions", ["--predictions", str(work / "predictions.parquet")]))
        for name, extra in runs:
            cmd = [pf, "audit", str(ds), "--out", str(work / "audit"), "--policy", "commercial", *extra]
            seconds, peak, code = run_measured(cmd)
            status = "ok" if code == 0 else f"FAILED (exit {code})"
            inner = json.loads((work / "audit" / "audit.json").read_text())["audit"]["seconds"] if code == 0 else 0
            print(
                f"{name:22s} {args.rows:,} rows  {seconds:6.1f} s wall ({inner:.1f} s auditing, the rest "
                f"is start-up)  peak RSS {peak / 2**20:5.0f} MB  target < 60 s  {status}"
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
