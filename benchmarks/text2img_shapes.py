"""Does the text-conditioned diffusion model draw what the prompt says? Shape, colour, background, position, size.

1. Data: `pixelforge import shapes --n 5000 --size 32` (one shape per image), minus 5 withheld
   shape-colour combinations (kept out of training to check generalisation).
2. Judges, validated on real shapes images before they judge anything:
   - shape and colour: `pixelforge train classifier` runs on a judge set made here — the same shapes
     drawn on RANDOM background colours, with pixel noise and brightness/contrast/channel-gain jitter —
     so they judge the object, not the background (judges that only saw the four flat backgrounds call
     a correct star wrong when a generated background drifts);
   - background, position and size from pixels: the border's median colour (nearest of the four
     backgrounds), the centroid of the pixels that differ from it (quadrant, or center), and the side
     of their bounding box (small < 0.345 of the image side <= large).
3. `pixelforge train diffusion --condition text` for --minutes on both cores (and a 1-step model as
   the floor: judges guess right sometimes), 8 images per prompt for 20 training-distribution
   prompts and for the 5 withheld combinations, DDIM 50 steps.
4. Shape and colour accuracy through `pixelforge evaluate conditional`; the pixel judges in here;
   every attribute's accuracy and the share with all five right.

    .venv/bin/python benchmarks/text2img_shapes.py [--minutes 20] [--guidance 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_pixelforge  # noqa: E402

WITHHELD = [("circle", "red"), ("square", "green"), ("triangle", "blue"), ("star", "yellow"), ("diamond", "purple")]


pf = run_pixelforge


# -- judges from pixels -------------------------------------------------------------------------------

# bounding-box side (fraction of the image) between the small and the large version of each shape, measured on
# real images: pointed shapes (star, diamond, triangle) lose their thin tips to the mask threshold
SIZE_SPLIT = {"circle": 0.36, "cross": 0.36, "square": 0.375, "diamond": 0.31, "triangle": 0.31, "star": 0.28}


def judge_pixels(img: np.ndarray, shape: str = "circle") -> dict[str, str]:
    """Background, position and size of the one shape in an HxWx3 uint8 image (size judged for ``shape``)."""
    seen, _ = measure_pixels(img, shape)
    return seen


def measure_pixels(img: np.ndarray, shape: str = "circle") -> tuple[dict[str, str], tuple[float, float, float] | None]:
    """``judge_pixels`` and the shape's centroid x, y and bounding-box side (fractions of the image), or None."""
    from pixelforge.sources.shapes import BACKGROUNDS, COLOURS

    h, w, _ = img.shape
    a = img.astype(np.float32)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    bg = np.median(border, axis=0)
    background = min(BACKGROUNDS, key=lambda b: float(np.sum((np.array(COLOURS[b]) - bg) ** 2)))
    mask = np.sqrt(((a - bg) ** 2).sum(axis=2)) > 60
    if mask.sum() < 4:
        return {"background": background, "position": "none", "size": "none"}, None
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h
    if abs(cx - 0.5) < 0.125 and abs(cy - 0.5) < 0.125:
        position = "center"
    else:
        position = f"{'top' if cy < 0.5 else 'bottom'} {'left' if cx < 0.5 else 'right'}"
    # bounding box over rows/columns holding at least 2 shape pixels (ignores stray noise)
    rows, cols = np.flatnonzero(mask.sum(axis=1) >= 2), np.flatnonzero(mask.sum(axis=0) >= 2)
    side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / w if len(rows) and len(cols) else 0
    size = "small" if side < SIZE_SPLIT[shape] else "large"
    return {"background": background, "position": position, "size": size}, (float(cx), float(cy), float(side))


def spreads(path: str, captions: set[str] | None = None) -> dict[str, np.ndarray]:
    """Per caption: the standard deviation of the shape's centroid (mean of x and y) and of its side."""
    from pixelforge.store import Dataset

    found: dict[str, list[tuple[float, float, float]]] = {}
    for sample in Dataset.open(path).iter_samples():
        caption = sample.row["caption"]
        if captions is not None and caption not in captions:
            continue
        _, m = measure_pixels(
            np.asarray(sample.decode().convert("RGB").resize((32, 32))), parse_caption(caption)["shape"]
        )
        if m is not None:
            found.setdefault(caption, []).append(m)
    out = {}
    for caption, ms in found.items():
        a = np.array(ms)
        if len(a) >= 2:
            out[caption] = np.array([(a[:, 0].std() + a[:, 1].std()) / 2, a[:, 2].std()])
    return out


def diversity(gen: str, train: str) -> dict[str, float]:
    """Generated over training spread per prompt (position, size): the median ratio and the share in 0.5-2x."""
    fake = spreads(gen)
    real = spreads(train, set(fake))
    ratios = np.array([fake[c] / np.maximum(real[c], 1e-6) for c in fake if c in real])
    if not len(ratios):
        return {}
    inside = (ratios >= 0.5) & (ratios <= 2.0)
    return {
        "position spread": float(np.median(ratios[:, 0])),
        "size spread": float(np.median(ratios[:, 1])),
        "prompts in 0.5-2x": float(inside.all(axis=1).mean()),
    }


def parse_caption(caption: str) -> dict[str, str]:
    """'a small red circle in the top left on a blue background' -> its five attributes."""
    words = caption.split()
    size, colour, shape = words[1], words[2], words[3]
    position = caption.split(" in the ")[1].split(" on a ")[0]
    background = caption.split(" on a ")[1].split(" background")[0]
    return {"shape": shape, "colour": colour, "size": size, "position": position, "background": background}


# -- the judge training set -------------------------------------------------------------------------


def make_judge_set(out: str, n: int, seed: int) -> None:
    """Shapes on random background colours with noise and colour jitter, labelled shape and colour."""
    import pyarrow as pa
    from PIL import Image

    from pixelforge.media import encode
    from pixelforge.sources.shapes import COLOURS, POSITIONS, SHAPE_COLOURS, SHAPES, SIZES, _jittered, render
    from pixelforge.store import DatasetBuilder, Lineage

    rng = np.random.default_rng(seed)
    b = DatasetBuilder(
        out, extra_fields=[pa.field("shape", pa.string()), pa.field("colour", pa.string())], overwrite=True
    )
    for i in range(n):
        shape, colour = SHAPES[i % len(SHAPES)], SHAPE_COLOURS[(i // len(SHAPES)) % len(SHAPE_COLOURS)]
        spec = _jittered(shape, colour, SIZES[int(rng.integers(2))], POSITIONS[int(rng.integers(5))], rng)
        while True:  # a background colour the shape stands out from
            bg = tuple(int(v) for v in rng.integers(0, 256, 3))
            if np.linalg.norm(np.array(COLOURS[colour]) - np.array(bg)) >= 120:
                break
        img = render(spec, bg, 32).astype(np.float32)
        img = img * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)  # brightness
        img = (img - img.mean()) * rng.uniform(0.8, 1.2) + img.mean()  # contrast
        img = img * rng.uniform(0.9, 1.1, size=3)  # per-channel gain: a slight tint, not a new colour
        img = img + rng.normal(0, rng.uniform(0, 12), size=img.shape)  # pixel noise
        arr = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        png = encode(Image.fromarray(arr), "png")
        b.add(
            {
                "key": f"{i:09d}",
                "source_kind": "shapes",
                "width": 32,
                "height": 32,
                "license": "cc0-1.0",
                "shape": shape,
                "colour": colour,
                "split": "val" if i % 10 == 0 else "train",
            },
            png,
            "png",
        )
    b.finish(name="shape-judges", lineage=Lineage(command="benchmarks/text2img_shapes.py"))


def shapes_data(work: Path) -> None:
    """work/shapes (5,000 shapes at 32 px) and work/train (the same minus the WITHHELD combinations), if missing."""
    if not (work / "train").exists():
        pf("import", "shapes", "--n", "5000", "--size", "32", "--seed", "0", "--out", str(work / "shapes"))
        held = " OR ".join(f"(shape = '{s}' AND colour = '{c}')" for s, c in WITHHELD)
        pf("curate", str(work / "shapes"), "--out", str(work / "train"), "--where", f"NOT ({held})", "--no-watermark")


def train_text_model(data: str, run: str, extra: list[str]) -> tuple[dict, float, float]:
    """`pixelforge train diffusion --condition text` at 32 px, seed 0, with ``extra`` options (the budget and
    levers): its result.json, wall and CPU seconds."""
    out, wall, cpu = pf(
        "train",
        "diffusion",
        "--data",
        data,
        "--out",
        run,
        "--condition",
        "text",
        "--image-size",
        "32",
        "--eval-every",
        "1000",
        "--seed",
        "0",
        *extra,
        "--json",
    )
    return json.loads(out), wall, cpu


def generate_images(
    run: str, prompts: Path, out: str, per_prompt: int, guidance: float, sampler: str = "ddim", steps: int = 50
) -> None:
    """``per_prompt`` unwatermarked images of every prompt in the file ``prompts``, sampling seed 1."""
    pf(
        "generate",
        run,
        "--prompts",
        str(prompts),
        "--n",
        str(per_prompt),
        "--out",
        out,
        "--overwrite",
        "--steps",
        str(steps),
        "--sampler",
        sampler,
        "--guidance",
        str(guidance),
        "--seed",
        "1",
        "--mark-size",
        "0",
    )


def train_judges(work: Path, n_images: int, name: str = "judge", seed: int = 0) -> dict[str, str]:
    """The shape and colour classifier runs ``name``-shape and ``name``-colour in ``work`` (trained on a judge
    set of ``n_images`` if missing; the set is drawn with seed + 1, the classifiers trained with ``seed``)."""
    judges = {"shape": str(work / f"{name}-shape"), "colour": str(work / f"{name}-colour")}
    if Path(judges["colour"]).exists():
        return judges
    make_judge_set(str(work / f"{name}-set"), n_images, seed=seed + 1)
    for attr, run in judges.items():
        pf(
            "train",
            "classifier",
            "--data",
            str(work / f"{name}-set"),
            "--out",
            run,
            "--label",
            attr,
            "--image-size",
            "32",
            "--epochs",
            "8",
            "--eval-every",
            "200",
            "--seed",
            str(seed),
            "--augment",
            "hflip",
        )
    return judges


def judge_generated(gen: str, judges: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per attribute: accuracy over the generated images (shape and colour via evaluate conditional)."""
    from pixelforge.store import Dataset

    args = ["evaluate", "conditional", "--fake", gen, "--json", "--attribute", "shape,colour"]
    for run in (judges["shape"], judges["colour"]):
        args += ["--classifier", run]
    out = json.loads(pf(*args)[0])
    right: dict[str, list[bool]] = {"shape": [], "colour": [], "background": [], "position": [], "size": []}
    ds = Dataset.open(gen)
    for sample in ds.iter_samples():
        asked = parse_caption(sample.row["caption"])
        seen = judge_pixels(np.asarray(sample.decode().resize((32, 32))), asked["shape"])
        for k in ("background", "position", "size"):
            right[k].append(seen[k] == asked[k])
    acc = {k: out["attributes"][k]["accuracy"] for k in ("shape", "colour")}
    acc.update({k: float(np.mean(v)) for k, v in right.items() if v})
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--per-prompt", type=int, default=8)
    ap.add_argument("--sampler", default="ddim", help="generate's --sampler")
    ap.add_argument("--steps", type=int, default=50, help="generate's sampling steps")
    ap.add_argument("--judge-images", type=int, default=6000)
    ap.add_argument("--work", default=None)
    ap.add_argument("--skip-train", action="store_true", help="reuse the run in --work")
    ap.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="train for this many steps instead of --minutes (a fixed amount of work on a busy machine)",
    )
    ap.add_argument("--no-floor", action="store_true", help="skip the 1-step floor model")
    ap.add_argument("--run-name", default="run", help="run directory name in --work (to compare settings)")
    ap.add_argument("--train-args", default="", help="extra `pixelforge train diffusion` options, e.g. '--lr 1e-3'")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="pf-t2i-"))
    work.mkdir(parents=True, exist_ok=True)
    w = lambda name: str(work / name)  # noqa: E731
    from pixelforge.store import Dataset

    # -- 1. data ------------------------------------------------------------------------------------
    shapes_data(work)
    n_train = Dataset.open(w("train")).num_samples

    # -- 2. judges, validated on real images ---------------------------------------------------------------
    judges = train_judges(work, args.judge_images)
    # the judges on the real training images (their captions state every attribute)
    real = judge_generated_like(w("shapes"), judges, limit=600, work=work)
    print("judges on 600 real shapes images:", json.dumps({k: round(v, 3) for k, v in real.items()}), flush=True)

    # -- 3. the model and the floor ---------------------------------------------------------------------
    captions = [r["caption"] for r in Dataset.open(w("train")).iter_rows(columns=["caption"])]
    rng = np.random.default_rng(0)
    prompts = sorted(rng.choice(sorted(set(captions)), 20, replace=False).tolist())
    sizes, positions, backgrounds = (
        ["large", "small"],
        ["center", "top left", "bottom right", "top right", "bottom left"],
        ["black", "white", "gray", "black", "white"],
    )
    withheld = [
        f"a {sizes[i % 2]} {c} {s} in the {positions[i]} on a {backgrounds[i]} background"
        for i, (s, c) in enumerate(WITHHELD)
    ]
    # real images of the 20 training prompts, twice (two seeds): KID's reference and the real-vs-real figure
    refs = [prompt_reference(work, prompts, seed) for seed in (7, 8)]
    real_vs_real = kid(refs[0], refs[1], judges["shape"])
    rows = []
    budget = (
        (f"trained {args.max_steps} steps", ["--max-steps", str(args.max_steps)])
        if args.max_steps
        else (f"trained {args.minutes:g} min", ["--max-minutes", str(args.minutes)])
    )
    models = [budget] if args.no_floor else [("floor (1 training step)", ["--max-steps", "1"]), budget]
    for name, steps in models:
        run = w("run-floor" if "floor" in name else args.run_name)
        if "floor" not in name:
            steps = steps + args.train_args.split()
        if not (args.skip_train and Path(run).exists()):
            shutil.rmtree(run, ignore_errors=True)
            trained, wall, cpu = train_text_model(w("train"), run, steps)
            spent = f"{cpu / 60:.1f} CPU min, {wall / 60:.1f} min wall"
        else:  # trained by an earlier run of this benchmark: its own training time, not this run's
            trained = json.loads((Path(run) / "result.json").read_text())
            spent = f"reused: trained {trained['seconds'] / 60:.1f} min"
        for label, plist in (("training prompts", prompts), ("withheld combinations", withheld)):
            gen = w(f"gen-{Path(run).name}-{label.split()[0]}")
            pfile = work / f"{label.split()[0]}.txt"
            pfile.write_text("\n".join(plist) + "\n")
            generate_images(run, pfile, gen, args.per_prompt, args.guidance, args.sampler, args.steps)
            acc = judge_generated(gen, judges)
            everything = all_right(gen, judges)
            spread = diversity(gen, w("train")) if label == "training prompts" else {}
            if label == "training prompts":
                spread["KID"] = kid(refs[0], gen, judges["shape"])
            rows.append((name, label, acc, everything, spread, trained["steps"], spent))

    print(
        f"\ntext-to-image on shapes: {n_train} training images at 32 px, guidance {args.guidance:g}, "
        f"{args.per_prompt} images per prompt (work dir {work})"
    )
    print(
        f"  KID (shape-judge features, x1000) of real against real images of the training prompts: {real_vs_real:.2f}"
    )
    for name, label, acc, everything, spread, steps, spent in rows:
        parts = "  ".join(f"{k} {v:.3f}" for k, v in {**acc, **spread}.items())
        print(f"  {name:24s} {label:22s} {parts}  all {everything:.3f}  ({steps} steps, {spent})")


def prompt_reference(work: Path, prompts: list[str], seed: int, name: str = "real-prompts") -> str:
    """Real images of ``prompts`` only: 20,000 shapes of another seed, curated to those captions (~14 each),
    in work/NAME-SEED."""
    out = work / f"{name}-{seed}"
    if not out.exists():
        pf("import", "shapes", "--n", "20000", "--size", "32", "--seed", str(seed), "--out", str(work / f"big-{seed}"))
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in prompts)
        pf(
            "curate",
            str(work / f"big-{seed}"),
            "--out",
            str(out),
            "--where",
            f"caption IN ({listed})",
            "--no-watermark",
        )
        shutil.rmtree(work / f"big-{seed}")
    return str(out)


def kid(real: str, fake: str, judge: str) -> float:
    """KID x 1000 of ``fake`` against ``real`` on the shape judge's features (subsets of the smaller set's size)."""
    out = pf(
        "evaluate",
        "--real",
        real,
        "--fake",
        fake,
        "--metrics",
        "kid",
        "--features",
        f"classifier:{judge}",
        "--kid-subset-size",
        "100",
        "--no-cache",
        "--json",
    )[0]
    return 1000 * float(json.loads(out)["kid"])


def judge_generated_like(path: str, judges: dict[str, str], limit: int, work: Path) -> dict[str, float]:
    """The judges' accuracy on the first ``limit`` real images (a subset dataset, judged like generated ones)."""
    sub = str(work / "real-subset")
    if not Path(sub).exists():
        pf("curate", path, "--out", sub, "--where", f"key < '{limit:09d}'", "--no-watermark")
    return judge_generated(sub, judges)


def all_right(gen: str, judges: dict[str, str]) -> float:
    """Share of images with all five attributes right (classifier judges run here on each image)."""
    import torch

    from pixelforge.store import Dataset
    from pixelforge.train.rundir import load_run

    nets = {k: load_run(v) for k, v in judges.items()}
    ok = []
    for sample in Dataset.open(gen).iter_samples():
        asked = parse_caption(sample.row["caption"])
        img = np.array(sample.decode().resize((32, 32)))
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        seen = judge_pixels(img, asked["shape"])
        with torch.inference_mode():
            for k, run in nets.items():
                seen[k] = run.labels[int(run.model(x).argmax())]
        ok.append(all(seen[k] == asked[k] for k in asked))
    return float(np.mean(ok))


if __name__ == "__main__":
    main()
