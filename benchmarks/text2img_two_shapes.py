"""Two objects in one prompt: does the text-to-image model put each asked shape, in its colour, in its corner?

1. Data: `pixelforge import shapes --n 5000 --size 32 --max-shapes 2` (half the images hold one shape,
   half two shapes in two different corners: "a small red circle in the top left and a large blue
   square in the bottom right on a gray background").
2. Judges: the shape and colour classifiers of benchmarks/text2img_shapes.py (trained here if --work
   lacks them), applied to each corner on its own: the quadrant is cut out and pasted in the middle of
   an image of the background colour, so a corner shape becomes a centred shape of its own size. A
   corner holds a shape when at least 6 of its pixels differ from the background (the border's median
   colour) by more than 60. The corner judge is validated on 600 real two-shape images first.
3. `pixelforge train diffusion --condition text` for --minutes, 8 images for each of 20 two-shape training
   prompts, DDIM 50 steps.
4. Per object: its corner holds a shape (position), the judges read the asked shape and colour there;
   the share of images with both objects wholly right; and how often the other two corners are empty.

    .venv/bin/python benchmarks/text2img_two_shapes.py [--minutes 20] [--work DIR] [--train-args "..."]
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
from common import run_pixelforge as pf  # noqa: E402
from text2img_shapes import generate_images, train_judges, train_text_model  # noqa: E402

QUADRANTS = {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0), "bottom right": (1, 1)}


def parse_objects(caption: str) -> tuple[list[dict[str, str]], str]:
    """'a small red circle in the top left and a large ... on a gray background' -> objects, background."""
    body, background = caption.rsplit(" on a ", 1)
    objects = []
    for part in body.split(" and "):
        words = part.split()
        objects.append({"size": words[1], "colour": words[2], "shape": words[3], "position": part.split(" in the ")[1]})
    return objects, background.removesuffix(" background")


def corners(img: np.ndarray) -> dict[str, tuple[np.ndarray, bool]]:
    """Each quadrant of an HxWx3 uint8 image pasted in the middle of a background-coloured image of the same
    size (the shape keeps its size, as the judges know it), and whether the quadrant holds a shape."""
    h, w, _ = img.shape
    a = img.astype(np.float32)
    bg = np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]), axis=0)
    differs = np.sqrt(((a - bg) ** 2).sum(axis=2)) > 60
    out = {}
    for name, (r, c) in QUADRANTS.items():
        rows, cols = slice(r * h // 2, (r + 1) * h // 2), slice(c * w // 2, (c + 1) * w // 2)
        canvas = np.empty_like(img)
        canvas[:] = np.rint(bg).astype(np.uint8)
        canvas[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = img[rows, cols]
        out[name] = (canvas, int(differs[rows, cols].sum()) >= 6)
    return out


def judge_two(path: str, judges: dict[str, str]) -> dict[str, float]:
    """Per-object accuracy of position, shape, colour (judged in its corner) over the two-shape images of ``path``."""
    import torch

    from pixelforge.store import Dataset
    from pixelforge.train.rundir import load_run

    nets = {k: load_run(v) for k, v in judges.items()}
    right: dict[str, list[bool]] = {"position": [], "shape": [], "colour": [], "object": []}
    both, empty_elsewhere = [], []
    for sample in Dataset.open(path).iter_samples():
        objects, _ = parse_objects(sample.row["caption"])
        if len(objects) != 2:
            continue
        seen = corners(np.asarray(sample.decode().convert("RGB").resize((32, 32))))
        image_ok = []
        for obj in objects:
            crop, present = seen[obj["position"]]
            x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 255
            with torch.inference_mode():
                read = {k: run.labels[int(run.model(x).argmax())] for k, run in nets.items()}
            ok = {"position": present, "shape": present and read["shape"] == obj["shape"]}
            ok["colour"] = present and read["colour"] == obj["colour"]
            ok["object"] = all(ok.values())
            for k, v in ok.items():
                right[k].append(v)
            image_ok.append(ok["object"])
        both.append(all(image_ok))
        asked = {o["position"] for o in objects}
        empty_elsewhere.append(not any(seen[q][1] for q in QUADRANTS if q not in asked))
    out = {k: float(np.mean(v)) for k, v in right.items()}
    out["both objects right"] = float(np.mean(both))
    out["other corners empty"] = float(np.mean(empty_elsewhere))
    out["images"] = len(both)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--per-prompt", type=int, default=8)
    ap.add_argument("--judge-images", type=int, default=6000)
    ap.add_argument("--work", default=None, help="work dir; judges already in it (text2img_shapes.py's) are reused")
    ap.add_argument("--skip-train", action="store_true", help="reuse the run in --work")
    ap.add_argument("--run-name", default="run2", help="run directory name in --work")
    ap.add_argument("--train-args", default="", help="extra `pixelforge train diffusion` options")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="pf-t2i2-"))
    work.mkdir(parents=True, exist_ok=True)
    w = lambda name: str(work / name)  # noqa: E731
    from pixelforge.store import Dataset

    if not (work / "shapes2").exists():
        pf("import", "shapes", "--n", "5000", "--size", "32", "--seed", "0", "--max-shapes", "2", "--out", w("shapes2"))
    if not (work / "real2").exists():  # real two-shape images of another seed: the corner judge's check
        pf("import", "shapes", "--n", "1200", "--size", "32", "--seed", "9", "--max-shapes", "2", "--out", w("real2"))
    judges = train_judges(work, args.judge_images)
    real = judge_two(w("real2"), judges)
    print("corner judge on real two-shape images:", json.dumps({k: round(v, 3) for k, v in real.items()}), flush=True)

    captions = [r["caption"] for r in Dataset.open(w("shapes2")).iter_rows(columns=["caption"])]
    two = sorted({c for c in captions if len(parse_objects(c)[0]) == 2})
    prompts = sorted(np.random.default_rng(0).choice(two, 20, replace=False).tolist())
    run = w(args.run_name)
    if not (args.skip_train and Path(run).exists()):
        shutil.rmtree(run, ignore_errors=True)
        trained, wall, cpu = train_text_model(
            w("shapes2"), run, ["--max-minutes", str(args.minutes), *args.train_args.split()]
        )
        print(f"trained {trained['steps']} steps in {wall / 60:.1f} min wall, {cpu / 60:.1f} CPU min")
    steps = json.loads((Path(run) / "result.json").read_text())["steps"]
    pfile = work / "two-prompts.txt"
    pfile.write_text("\n".join(prompts) + "\n")
    gen = w(f"gen-{args.run_name}")
    generate_images(run, pfile, gen, args.per_prompt, args.guidance)
    acc = judge_two(gen, judges)
    print(
        f"\ntwo objects: {len(captions)} training images ({len(two)} two-shape captions), {args.minutes:g} min, "
        f"{steps} steps, guidance {args.guidance:g}, {args.per_prompt} images x {len(prompts)} prompts"
    )
    print("  generated, per object:", "  ".join(f"{k} {v:.3f}" for k, v in acc.items() if k != "images"))
    print("  real images, per object:", "  ".join(f"{k} {v:.3f}" for k, v in real.items() if k != "images"))


if __name__ == "__main__":
    main()
