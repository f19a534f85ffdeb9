"""Quality of the model families on small data: classifier accuracy, and what the generators make of it.

On `pixelforge import digits --size 16` (split 70/10/20, stratified) and shapes at 32 px:
1. a classifier per dataset (digits: the digit; shapes: the shape) -> test accuracy;
2. class-conditional GAN, VAE and diffusion models on the digits, each within a CPU budget;
3. for each generator, N images per digit, judged by the digits classifier (`evaluate conditional`)
   and compared with the real training images by domain FID on the classifier's penultimate features
   (`evaluate --features classifier:RUN`), beside the floor: real test images vs real training images.

Every step goes through the CLI, as a user would run it. CPU time is the user+system time of each
training process (torch uses every core, so wall time is lower).

    .venv/bin/python benchmarks/families_digits.py [--minutes 4.5] [--per-class 36] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_pixelforge  # noqa: E402

pf = run_pixelforge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=4.5, help="wall-clock budget of each generator's training")
    ap.add_argument("--per-class", type=int, default=36, help="generated images per digit")
    ap.add_argument("--work", default=None, help="keep the datasets and runs here")
    ap.add_argument("--only", default="classifier,gan,vae,diffusion", help="comma list of families to run")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="pf-families-"))
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    w = lambda name: str(work / name)  # noqa: E731

    # -- data ---------------------------------------------------------------------------------------
    if not (work / "digits").exists():
        pf("import", "digits", "--size", "16", "--out", w("digits"))
        pf(
            "split",
            w("digits"),
            "--out",
            w("digits-split"),
            "--val",
            "0.1",
            "--test",
            "0.2",
            "--stratify",
            "label",
            "--group",
            "none",
            "--seed",
            "0",
        )
        for split in ("train", "test"):
            pf(
                "curate",
                w("digits-split"),
                "--out",
                w(f"digits-{split}"),
                "--where",
                f"split = '{split}'",
                "--no-watermark",
            )
        pf("import", "shapes", "--n", "3000", "--size", "32", "--seed", "0", "--out", w("shapes"))
        pf(
            "split",
            w("shapes"),
            "--out",
            w("shapes-split"),
            "--val",
            "0.1",
            "--test",
            "0.2",
            "--stratify",
            "shape",
            "--group",
            "none",
            "--seed",
            "0",
        )
    rows = []

    # -- 1. classifiers -------------------------------------------------------------------------------
    clf = w("run-classifier-digits")
    if "classifier" in only or not Path(clf).exists():
        for data, run, label, epochs in (
            ("digits-split", "run-classifier-digits", "label", 30),
            ("shapes-split", "run-classifier-shapes", "shape", 15),
        ):
            shutil.rmtree(w(run), ignore_errors=True)
            out, wall, cpu = pf(
                "train",
                "classifier",
                "--data",
                w(data),
                "--out",
                w(run),
                "--label",
                label,
                "--image-size",
                "16" if data.startswith("digits") else "32",
                "--epochs",
                str(epochs),
                "--eval-every",
                "100",
                "--seed",
                "0",
                "--json",
            )
            r = json.loads(out)
            rows.append(
                (
                    f"classifier {data.split('-')[0]} ({label})",
                    f"test accuracy {r['final']['test']['accuracy']:.4f}",
                    f"val {r['final']['val']['accuracy']:.4f}",
                    f"{cpu / 60:.1f} CPU min, {wall:.0f} s wall",
                )
            )

    # -- 2. the floor: real test vs real train -------------------------------------------------------
    out, _, _ = pf(
        "evaluate",
        "--real",
        w("digits-train"),
        "--fake",
        w("digits-test"),
        "--features",
        f"classifier:{clf}",
        "--metrics",
        "fid,kid",
        "--json",
    )
    floor = json.loads(out)
    rows.append(
        (
            "floor: real test vs real train",
            f"domain FID {floor['fid']:.3f}",
            f"KID {floor['kid']:.4f}",
            f"n {floor['n_fake']}",
        )
    )

    # -- 3. generators -------------------------------------------------------------------------------
    common = [
        "--data",
        w("digits-split"),
        "--image-size",
        "16",
        "--condition",
        "class",
        "--max-minutes",
        str(args.minutes),
        "--seed",
        "0",
        "--json",
    ]
    specs = {
        "gan": ["--batch-size", "64", "--eval-every", "500"],
        "vae": ["--batch-size", "64", "--eval-every", "500"],
        "diffusion": ["--batch-size", "64", "--eval-every", "1000", "--sample-steps", "10"],
    }
    digits = [str(d) for d in range(10)]
    for family, extra in specs.items():
        if family not in only:
            continue
        run = w(f"run-{family}")
        shutil.rmtree(run, ignore_errors=True)
        out, wall, cpu = pf("train", family, "--out", run, *common, *extra)
        trained = json.loads(out)
        gen = w(f"gen-{family}")
        class_args = [a for d in digits for a in ("--class", d)]
        _, gen_wall, _ = pf(
            "generate",
            run,
            *class_args,
            "--n",
            str(args.per_class),
            "--out",
            gen,
            "--overwrite",
            "--steps",
            "50",
            "--guidance",
            "2.0",
            "--seed",
            "1",
        )
        out, _, _ = pf("evaluate", "conditional", "--fake", gen, "--classifier", clf, "--json")
        acc = json.loads(out)["attributes"]["label"]["accuracy"]
        out, _, _ = pf(
            "evaluate",
            "--real",
            w("digits-train"),
            "--fake",
            gen,
            "--features",
            f"classifier:{clf}",
            "--metrics",
            "fid,kid",
            "--json",
        )
        fid = json.loads(out)
        rows.append(
            (
                f"{family} (class-conditional)",
                f"classified as asked {acc:.3f}",
                f"domain FID {fid['fid']:.3f}  KID {fid['kid']:.4f}",
                f"{trained['steps']} steps, {cpu / 60:.1f} CPU min, {wall:.0f} s wall; generate {gen_wall:.0f} s",
            )
        )

    print(f"\nfamilies on digits 16 px / shapes 32 px (work dir {work})")
    for r in rows:
        print("  " + " | ".join(r))


if __name__ == "__main__":
    main()
