"""Does reward fine-tuning buy more than the same CPU time of plain training? Shapes, judged attribute by attribute.

1. Data and the evaluating judges as benchmarks/text2img_shapes.py (shape and colour classifiers
   validated on real images; background, position and size from pixels).
2. The reward's judges are OTHER classifiers: trained on a judge set drawn with another seed and
   with another training seed. An image that fools the reward's judges without showing the shape
   is caught by the evaluating ones.
3. The base: `train diffusion --condition text` with the patched recipe of `pixelforge demo` for
   --base-minutes. From its best checkpoint, the same extra --minutes spent on
   (a) plain training: `train diffusion --init BASE` with the base's recipe;
   (b) reward fine-tuning: `train reward --base BASE --reward classifier:SHAPE-JUDGE
       --reward classifier:COLOUR-JUDGE:colour` over every caption of the shapes set (a CSV of prompt,
       shape, colour), the 5 withheld shape-colour combinations included: a judge needs no image of
       them, while plain training has none to learn from.
4. 8 images of each of 20 training prompts and of 20 prompts of the withheld combinations from each
   model (DPM-Solver++ 20 steps, guidance 2, seed 1):
   every attribute's accuracy and all five right (evaluating judges), the reward judges' mean
   probability of the stated shape and colour, FID against real images of those prompts on the
   evaluating shape judge's features, and diversity: the mean pairwise RMS pixel distance between
   the images of one prompt (0-255), averaged over the prompts.

With ``--caption-noise P`` the base and both arms learn from captions that, for a share P of the images,
name another colour than the one drawn (alt-text that misdescribes its image): plain training can only
learn what the captions say; the judges know the colours.

    .venv/bin/python benchmarks/reward_shapes.py [--base-minutes 5] [--minutes 3] [--caption-noise P] [--work DIR]
        [--reward-args "..." --reward-name NAME] [--plain-args "..." --plain-name NAME] [--skip-plain] [--skip-reward]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_pixelforge as pf  # noqa: E402
from text2img_shapes import (  # noqa: E402
    WITHHELD,
    all_right,
    generate_images,
    judge_generated,
    parse_caption,
    prompt_reference,
    shapes_data,
    train_judges,
    train_text_model,
)

# the patched recipe of `pixelforge demo` (src/pixelforge/demo.py)
BASE_RECIPE = ["--patch-size", "2", "--widths", "48,96,96", "--batch-size", "32", "--snr-gamma", "20"]


def noisy_captions(work: Path, share: float) -> str:
    """work/train-noise<share>: work/train with the colour word of ``share`` of the captions (seeded) replaced
    by another shape colour; the colour column keeps the truth."""
    from pixelforge.label.rewrite import rewrite
    from pixelforge.sources.shapes import SHAPE_COLOURS
    from pixelforge.store import Dataset, Lineage

    out = work / f"train-noise{share:g}"
    if (out / "dataset.json").exists():
        return str(out)
    rng = np.random.default_rng(0)

    def update(row: dict) -> dict:
        a = parse_caption(row["caption"])
        if rng.random() < share:
            other = [c for c in SHAPE_COLOURS if c != a["colour"]]
            wrong = other[int(rng.integers(len(other)))]
            row["caption"] = row["caption"].replace(f" {a['colour']} {a['shape']} ", f" {wrong} {a['shape']} ", 1)
        return row

    lineage = Lineage("benchmark caption noise", {"share": share, "seed": 0}, [str(work / "train")])
    rewrite(Dataset.open(str(work / "train")), str(out), update, [], lineage, overwrite=True)
    return str(out)


def diversity(gen: str) -> float:
    """Mean over prompts of the mean pairwise RMS distance (0-255 scale) between that prompt's images."""
    from pixelforge.store import Dataset

    by_prompt: dict[str, list[np.ndarray]] = {}
    for sample in Dataset.open(gen).iter_samples():
        by_prompt.setdefault(sample.row["caption"], []).append(np.asarray(sample.decode(), dtype=np.float32))
    spreads = []
    for images in by_prompt.values():
        a = np.stack(images).reshape(len(images), -1)
        d = [np.sqrt(((a[i] - a[j]) ** 2).mean()) for i in range(len(a)) for j in range(i + 1, len(a))]
        spreads.append(np.mean(d))
    return float(np.mean(spreads))


def reward_judges_score(gen: str, judges: dict[str, str]) -> float:
    """Mean over images of p(stated shape) * p(stated colour) by the reward's own judges."""
    import torch

    from pixelforge.store import Dataset
    from pixelforge.train.rundir import load_run

    nets = {k: load_run(v) for k, v in judges.items()}
    out = []
    for sample in Dataset.open(gen).iter_samples():
        asked = parse_caption(sample.row["caption"])
        x = torch.from_numpy(np.asarray(sample.decode().resize((32, 32)))).permute(2, 0, 1)[None].float() / 255
        p = 1.0
        with torch.inference_mode():
            for k, run in nets.items():
                p *= float(run.model(x).softmax(1)[0, run.labels.index(asked[k])])
        out.append(p)
    return float(np.mean(out))


def fid(real: str, fake: str, judge: str) -> float:
    out = pf(
        "evaluate",
        "--real",
        real,
        "--fake",
        fake,
        "--metrics",
        "fid",
        "--features",
        f"classifier:{judge}",
        "--no-cache",
        "--json",
    )[0]
    return float(json.loads(out)["fid"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base-minutes", type=float, default=5.0)
    ap.add_argument("--minutes", type=float, default=3.0, help="the extra budget of each arm")
    ap.add_argument("--per-prompt", type=int, default=8)
    ap.add_argument("--judge-images", type=int, default=6000)
    ap.add_argument("--work", default=None)
    ap.add_argument("--caption-noise", type=float, default=0.0, help="share of training captions naming a wrong colour")
    ap.add_argument("--reward-args", default="", help="extra `pixelforge train reward` options")
    ap.add_argument("--reward-name", default="reward", help="run name of the reward arm (to compare settings)")
    ap.add_argument("--skip-plain", action="store_true", help="reuse the plain arm in --work and its scores")
    ap.add_argument("--plain-args", default="", help="extra `pixelforge train diffusion` options of the plain arm")
    ap.add_argument("--plain-name", default="plain", help="run name of the plain arm (to compare settings)")
    ap.add_argument("--skip-reward", action="store_true", help="reuse the reward arm in --work and its scores")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="pf-reward-"))
    work.mkdir(parents=True, exist_ok=True)
    w = lambda name: str(work / name)  # noqa: E731
    from pixelforge.store import Dataset

    # -- 1. data, judges ----------------------------------------------------------------------------
    shapes_data(work)
    judges = train_judges(work, args.judge_images)  # evaluate
    reward_judges = train_judges(work, args.judge_images, name="reward-judge", seed=1)  # the reward

    def distinct(dataset: str) -> list[str]:
        return sorted({r["caption"] for r in Dataset.open(w(dataset)).iter_rows(columns=["caption"])})

    every = {c: parse_caption(c) for c in distinct("shapes")}
    tuning = work / "tuning-prompts-all.csv"
    with tuning.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=["prompt", "shape", "colour"])
        out.writeheader()
        for c, a in every.items():
            out.writerow({"prompt": c, "shape": a["shape"], "colour": a["colour"]})
    rng = np.random.default_rng(0)
    held = [c for c, a in every.items() if (a["shape"], a["colour"]) in WITHHELD]
    # label: (prompts, prompts file, real reference's name)
    sets = {
        "training": (sorted(rng.choice(distinct("train"), 20, replace=False).tolist()), "training.txt", "real-prompts"),
        "withheld": (sorted(rng.choice(held, 20, replace=False).tolist()), "withheld-20.txt", "real-held"),
    }
    files, reals = {}, {}
    for label, (prompts, file, reference) in sets.items():
        files[label] = work / file
        files[label].write_text("\n".join(prompts) + "\n")
        reals[label] = prompt_reference(work, prompts, 7, name=reference)

    # -- 2. the base, then the two arms -----------------------------------------------------------------
    data = noisy_captions(work, args.caption_noise) if args.caption_noise else w("train")
    noise = f"-noise{args.caption_noise:g}" if args.caption_noise else ""
    tag = f"{args.base_minutes:g}+{args.minutes:g}min{noise}"
    base = w(f"base-{args.base_minutes:g}min{noise}")
    base_trained = not Path(base, "result.json").exists()
    if base_trained:
        shutil.rmtree(base, ignore_errors=True)
        train_text_model(data, base, ["--max-minutes", str(args.base_minutes), *BASE_RECIPE])
    steps_of = lambda run: json.loads(Path(run, "result.json").read_text())["steps"]  # noqa: E731
    runs = {"base": (base, steps_of(base), 0.0)}
    plain = w(f"{args.plain_name}-{tag}")
    if not (args.skip_plain and Path(plain, "result.json").exists()):
        shutil.rmtree(plain, ignore_errors=True)
        done, _, cpu = train_text_model(
            data,
            plain,
            ["--init", base, "--max-minutes", str(args.minutes), *BASE_RECIPE[4:], *args.plain_args.split()],
        )
        runs[args.plain_name] = (plain, done["steps"], cpu)
    else:
        runs[args.plain_name] = (plain, steps_of(plain), 0.0)
    tuned = w(f"{args.reward_name}-{tag}")
    if args.skip_reward and Path(tuned, "result.json").exists():
        runs[args.reward_name] = (tuned, steps_of(tuned), 0.0)
    else:
        runs[args.reward_name] = (tuned, *train_reward_arm(args, base, tuned, tuning, reward_judges))

    # -- 3. judge each -------------------------------------------------------------------------------
    rows: dict[str, dict[str, dict]] = {label: {} for label in sets}
    # arms not trained by this run: their scores from an earlier run of this benchmark
    kept = (("base", not base_trained), (args.plain_name, args.skip_plain), (args.reward_name, args.skip_reward))
    reused = {name for name, keep in kept if keep}
    for name, (run, steps, cpu) in runs.items():
        for label in sets:
            suffix = "" if label == "training" else f"-{label}"
            cached = work / f"scores-{Path(run).name}{suffix}.json"
            if name in reused and cached.exists():
                rows[label][name] = json.loads(cached.read_text())  # judged by an earlier run of this benchmark
                continue
            gen = w(f"gen-{Path(run).name}{suffix}")
            shutil.rmtree(gen, ignore_errors=True)
            generate_images(run, files[label], gen, args.per_prompt, 2.0, "dpm++", 20)
            acc = judge_generated(gen, judges)
            rows[label][name] = {
                **acc,
                "all five": all_right(gen, judges),
                "reward judges": reward_judges_score(gen, reward_judges),
                "FID": fid(reals[label], gen, judges["shape"]),
                "diversity": diversity(gen),
                "steps": steps,
                "CPU min": cpu / 60,
            }
            cached.write_text(json.dumps(rows[label][name]))
    report(args, work, rows)


def train_reward_arm(args, base: str, tuned: str, tuning: Path, reward_judges: dict[str, str]) -> tuple[int, float]:
    """`pixelforge train reward` from ``base`` for --minutes: its steps and CPU seconds."""
    shutil.rmtree(tuned, ignore_errors=True)
    out, _, cpu = pf(
        "train",
        "reward",
        "--base",
        base,
        "--out",
        tuned,
        "--prompts",
        str(tuning),
        "--reward",
        f"classifier:{reward_judges['shape']}",
        "--reward",
        f"classifier:{reward_judges['colour']}:colour",
        "--max-minutes",
        str(args.minutes),
        "--seed",
        "0",
        *args.reward_args.split(),
        "--json",
    )
    return json.loads(out)["steps"], cpu


def report(args, work: Path, rows: dict[str, dict[str, dict]]) -> None:
    print(
        f"\nreward fine-tuning on shapes: base {args.base_minutes:g} min, then {args.minutes:g} min more per arm; "
        f"{args.per_prompt} images x 20 prompts, DPM-Solver++ 20, guidance 2 (work dir {work})"
    )
    print(f"  caption noise: {args.caption_noise:g}; reward options: {args.reward_args or '(defaults)'}")
    names = ["shape", "colour", "background", "position", "size", "all five", "reward judges", "FID", "diversity"]
    for label, table in rows.items():
        print(f"  {label} prompts")
        print("  " + "model".ljust(10) + "".join(n.rjust(14) for n in names) + "steps".rjust(8) + "CPU min".rjust(9))
        for name, r in table.items():
            print(
                "  "
                + name.ljust(10)
                + "".join(f"{r[n]:14.3f}" for n in names)
                + f"{r['steps']:8d}"
                + f"{r['CPU min']:9.1f}"
            )
        b = table["base"]
        for name, r in table.items():
            if name != "base":
                print(
                    f"  {name} vs base: all five {r['all five'] - b['all five']:+.3f}, "
                    f"FID x{r['FID'] / b['FID']:.2f}, diversity x{r['diversity'] / b['diversity']:.2f}"
                )


if __name__ == "__main__":
    main()
