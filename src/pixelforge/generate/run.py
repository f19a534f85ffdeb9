"""`pixelforge generate`: sample a trained run into a dataset of marked images with their provenance."""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from pixelforge import media
from pixelforge.errors import UsageError
from pixelforge.generate.mark import MARK_MIN_SIDE, marked_png
from pixelforge.generate.sample import sample_diffusion, to_uint8
from pixelforge.models.diffusion import SAMPLERS, DiffusionConfig, build_unet
from pixelforge.progress import track
from pixelforge.store import DatasetBuilder, Lineage, config_to_dict
from pixelforge.store.schema import encode_meta
from pixelforge.train import checkpoint as ckpt
from pixelforge.train.config import resolve_device


@dataclass
class GenerateConfig:
    prompts: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    n: int = 1  # images per prompt / class (or in all, for an unconditional run)
    steps: int = 50
    sampler: str = "ddim"
    guidance: float = 3.0
    seed: int = 0
    batch_size: int = 64
    checkpoint: str = "best"  # best | latest
    mark_size: int = MARK_MIN_SIDE
    device: str = "auto"


@dataclass
class GenerateResult:
    out: str
    images: int
    run_id: str
    seconds: float


@dataclass
class LoadedRun:
    path: Path
    config: dict[str, Any]
    model_cfg: DiffusionConfig
    unet: torch.nn.Module
    checkpoint: str

    @property
    def run_id(self) -> str:
        return f"{self.path.resolve().name}@{self.checkpoint}"


def load_run(run: str, which: str = "best", device: torch.device | None = None) -> LoadedRun:
    """The EMA weights of a run's best (lowest validation loss) or latest checkpoint."""
    path = Path(run)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise UsageError(f"{run} is not a training run (no config.json): train one with `pixelforge train`")
    config = json.loads(cfg_path.read_text())
    if config.get("family") != "diffusion":
        raise UsageError(f"{run} is a {config.get('family')} run; generate handles diffusion runs")
    root = path / ckpt.CHECKPOINTS
    marker = root / ("best.json" if which == "best" else "latest.json")
    if which not in ("best", "latest"):
        raise UsageError(f"--checkpoint {which!r}: choose best or latest")
    if not marker.exists():
        raise UsageError(f"{run} has no checkpoint yet: let training reach its first evaluation")
    ckpt_dir = root / json.loads(marker.read_text())["dir"]
    model_cfg = DiffusionConfig(**config["family_config"])
    unet = build_unet(model_cfg)
    averaged = torch.optim.swa_utils.AveragedModel(unet)
    ckpt.load_weights(ckpt_dir, "unet_ema", averaged)
    unet = averaged.module.to(device or torch.device("cpu")).eval()
    return LoadedRun(path, config, model_cfg, unet, ckpt_dir.name)


def _conditions(run: LoadedRun, gc: GenerateConfig) -> list[tuple[Any, str | None, int | None, str | None]]:
    """One (condition, caption, label, label_name) per image to make."""
    cond = run.model_cfg.condition
    if cond == "text":
        if not gc.prompts or gc.classes:
            raise UsageError("this run is text-conditioned: pass --prompt TEXT (repeatable) or --prompts FILE")
        return [(p, p, None, None) for p in gc.prompts for _ in range(gc.n)]
    if cond == "class":
        names = run.config["label_names"]
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


def generate(run_path: str, out: str, gc: GenerateConfig, overwrite: bool = False) -> GenerateResult:
    """Generate images into a new dataset at ``out`` (plus plain PNGs in out/images/)."""
    if gc.sampler not in SAMPLERS:
        raise UsageError(f"--sampler {gc.sampler!r}: choose one of {', '.join(SAMPLERS)}")
    for flag, v in (("--n", gc.n), ("--steps", gc.steps), ("--batch-size", gc.batch_size)):
        if v < 1:
            raise UsageError(f"{flag} {v}: must be at least 1")
    device = resolve_device(gc.device)
    run = load_run(run_path, gc.checkpoint, device)
    todo = _conditions(run, gc)
    encoder = None
    if run.model_cfg.condition == "text":
        from pixelforge.models.text import CaptionCache, text_encoder

        encoder = CaptionCache(text_encoder(run.model_cfg.text_encoder, run.model_cfg.text_tokens))
    builder = DatasetBuilder(out, overwrite=overwrite)
    images_dir = Path(out) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(gc.seed)
    start = time.monotonic()
    with track("generate", total=len(todo)) as bar:
        for b0 in range(0, len(todo), gc.batch_size):
            chunk = todo[b0:b0 + gc.batch_size]
            if run.model_cfg.condition == "text":
                cond, uncond = encoder([c[0] for c in chunk]), encoder([""] * len(chunk))
            elif run.model_cfg.condition == "class":
                cond = torch.tensor([c[0] for c in chunk])
                uncond = torch.full_like(cond, run.model_cfg.num_classes)
            else:
                cond = uncond = None
            x = sample_diffusion(run.unet, run.model_cfg, cond, uncond, steps=gc.steps, sampler_name=gc.sampler,
                                 guidance=gc.guidance, generator=gen, device=device, n=len(chunk))
            for j, arr in enumerate(to_uint8(x).numpy()):
                i = b0 + j
                _, caption, label, label_name = chunk[j]
                fields = {"prompt": caption or label_name or "", "seed": str(gc.seed), "index": str(i),
                          "sampler": gc.sampler, "steps": str(gc.steps), "guidance": str(gc.guidance),
                          "model": run.config.get("family", "")}
                png = marked_png(Image.fromarray(arr), run.run_id, fields, gc.mark_size)
                key = f"{i:09d}"
                (images_dir / f"{key}.png").write_bytes(png)
                marked = Image.open(io.BytesIO(png))
                builder.add({
                    "key": key, "source_kind": "generated", "source": f"{run.path}#{run.checkpoint}",
                    "caption": caption, "caption_source": "generated" if caption else None, "label": label,
                    "label_name": label_name, "boxes": [], "license": "unknown", "width": marked.width,
                    "height": marked.height, "orig_width": int(arr.shape[1]), "orig_height": int(arr.shape[0]),
                    "format": "png", "sha256": hashlib.sha256(png).hexdigest(),
                    "phash": media.phash64(marked.convert("RGB")),
                    "meta": encode_meta({"run": str(run.path), "run_id": run.run_id, "sampler": gc.sampler,
                                         "steps": gc.steps, "guidance": gc.guidance, "seed": gc.seed, "index": i}),
                }, png, "png")
                bar.advance()
    seconds = time.monotonic() - start
    builder.finish(name=Path(out).name, lineage=Lineage(command="generate", config=config_to_dict(gc),
                                                         inputs=[run.config["dataset"]["path"]]),
                   stats={"seconds": round(seconds, 2), "run": str(run.path), "checkpoint": run.checkpoint})
    return GenerateResult(out=out, images=len(todo), run_id=run.run_id, seconds=round(seconds, 2))
