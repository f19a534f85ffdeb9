"""`pixelforge generate`: sample a trained run into a dataset of marked images with their provenance."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pixelforge import media
from pixelforge.device import resolve_device
from pixelforge.errors import UsageError
from pixelforge.generate.mark import DEFAULT_MARKS, MARK_MIN_SIDE, TREERING, marked_png, parse_marks, payload_hex
from pixelforge.generate.treering import initial_noise
from pixelforge.models.diffusion import GUIDANCE, SAMPLERS
from pixelforge.models.sampling import to_uint8
from pixelforge.progress import track
from pixelforge.store import DatasetBuilder, Lineage, config_to_dict
from pixelforge.store.schema import encode_meta
from pixelforge.train.rundir import LoadedRun, load_run


@dataclass
class GenerateConfig:
    prompts: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    n: int = 1  # images per prompt / class (or in all, for an unconditional run)
    steps: int = 50
    sampler: str = "ddim"
    guidance: float = GUIDANCE
    seed: int = 0
    batch_size: int = 64
    checkpoint: str = "best"  # best | latest
    mark_size: int = MARK_MIN_SIDE
    mark: str = ",".join(DEFAULT_MARKS)  # watermark methods, comma-separated (pixelforge.generate.mark.MARKS), or none
    device: str = "auto"
    c2pa_cert: str | None = None  # PEM chain (signer first) and key: also embed a signed C2PA manifest
    c2pa_key: str | None = None


@dataclass
class GenerateResult:
    out: str
    images: int
    run_id: str
    seconds: float


def _conditions(run: LoadedRun, gc: GenerateConfig) -> list[tuple[Any, str | None, int | None, str | None]]:
    """One (condition, caption, label, label_name) per image to make."""
    cond = run.family.cfg.condition
    if cond == "text":
        if not gc.prompts or gc.classes:
            raise UsageError("this run is text-conditioned: pass --prompt TEXT (repeatable) or --prompts FILE")
        return [(p, p, None, None) for p in gc.prompts for _ in range(gc.n)]
    if cond == "class":
        names = run.labels
        if not gc.classes or gc.prompts:
            raise UsageError(f"this run is class-conditioned: pass --class NAME (one of {', '.join(names)})")
        out = []
        for name in gc.classes:
            if name not in names:
                raise UsageError(f"--class {name!r}: choose one of {', '.join(names)}")
            out += [(names.index(name), None, names.index(name), name)] * gc.n
        return out
    if gc.prompts or gc.classes:
        raise UsageError("this run is unconditional: drop --prompt/--class and pass --n")
    return [(None, None, None, None)] * gc.n


def family_name(run: LoadedRun) -> str:
    return str(run.config.get("family", ""))


def generate(run_path: str, out: str, gc: GenerateConfig, overwrite: bool = False) -> GenerateResult:
    """Generate images into a new dataset at ``out`` (plus plain PNGs in out/images/)."""
    if gc.sampler not in SAMPLERS:
        raise UsageError(f"--sampler {gc.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    for flag, v in (("--n", gc.n), ("--steps", gc.steps), ("--batch-size", gc.batch_size)):
        if v < 1:
            raise UsageError(f"{flag} {v}: must be at least 1")
    marks = parse_marks(gc.mark)
    device = resolve_device(gc.device)
    run = load_run(run_path, gc.checkpoint, device)
    if not run.family.generates:
        raise UsageError(
            f"{run_path} is a {run.config['family']} run: it does not generate images "
            "(use `pixelforge predict` for classifiers)"
        )
    todo = _conditions(run, gc)
    treering = TREERING in marks
    if treering and family_name(run) != "diffusion":
        raise UsageError(
            f"--mark {TREERING}: only diffusion runs start from noise; {run_path} is a {family_name(run)} run"
        )
    signer = None
    if gc.c2pa_cert or gc.c2pa_key:
        if not (gc.c2pa_cert and gc.c2pa_key):
            raise UsageError("C2PA signing needs both --c2pa-cert (PEM chain) and --c2pa-key (PEM private key)")
        from pixelforge.generate.c2pa_manifest import ManifestSigner

        signer = ManifestSigner(gc.c2pa_cert, gc.c2pa_key)
    builder = DatasetBuilder(out, overwrite=overwrite)
    images_dir = Path(out) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(gc.seed)
    start = time.monotonic()
    family = run.config.get("family", "")
    sampling = {"sampler": gc.sampler, "steps": gc.steps, "guidance": gc.guidance} if family == "diffusion" else {}
    with track("generate", total=len(todo)) as bar:
        for b0 in range(0, len(todo), gc.batch_size):
            chunk = todo[b0 : b0 + gc.batch_size]
            init = initial_noise(len(chunk), run.family.cfg.image_size, gen) if treering else None
            x = run.family.generate(run.modules, [c[0] for c in chunk], gen, init=init, **sampling)
            for j, arr in enumerate(to_uint8(x).numpy()):
                i = b0 + j
                _, caption, label, label_name = chunk[j]
                fields = {
                    "prompt": caption or label_name or "",
                    "seed": str(gc.seed),
                    "index": str(i),
                    **{k: str(v) for k, v in sampling.items()},
                    "model": family,
                }
                png = marked_png(Image.fromarray(arr), run.run_id, fields, gc.mark_size, marks)
                key = f"{i:09d}"
                if signer is not None:
                    watermark = {"methods": list(marks), "payload": payload_hex(run.run_id)} if marks else None
                    png = signer.sign_png(
                        png, f"{key}.png", family, run.run_id, caption or label_name, gc.seed, watermark
                    )
                (images_dir / f"{key}.png").write_bytes(png)
                marked = media.open_image(png)
                builder.add(
                    {
                        "key": key,
                        "source_kind": "generated",
                        "source": f"{run.path}#{run.checkpoint}",
                        "caption": caption,
                        "caption_source": "generated" if caption else None,
                        "label": label,
                        "label_name": label_name,
                        "boxes": [],
                        "license": "unknown",
                        "width": marked.width,
                        "height": marked.height,
                        "orig_width": int(arr.shape[1]),
                        "orig_height": int(arr.shape[0]),
                        "format": "png",
                        "sha256": hashlib.sha256(png).hexdigest(),
                        "phash": media.phash64(marked.convert("RGB")),
                        "meta": encode_meta(
                            {
                                "run": str(run.path),
                                "run_id": run.run_id,
                                "family": family,
                                **sampling,
                                "seed": gc.seed,
                                "index": i,
                                "c2pa": signer is not None,
                                "watermark": list(marks),
                                # a reward-tuned run: the run it was tuned from and toward what
                                **(
                                    {
                                        "tuned_from": run.config["reward"]["base"],
                                        "tuned_toward": run.config["reward"]["options"]["reward"],
                                    }
                                    if "reward" in run.config
                                    else {}
                                ),
                            }
                        ),
                    },
                    png,
                    "png",
                )
                bar.advance()
    seconds = time.monotonic() - start
    builder.finish(
        name=Path(out).name,
        lineage=Lineage(command="generate", config=config_to_dict(gc), inputs=[run.config["dataset"]["path"]]),
        stats={"seconds": round(seconds, 2), "run": str(run.path), "checkpoint": run.checkpoint},
    )
    return GenerateResult(out=out, images=len(todo), run_id=run.run_id, seconds=round(seconds, 2))
