"""Load any training run back: its config, its family and its evaluation weights (EMA where kept).

`pixelforge generate`, `predict`, `vae` and `evaluate --features classifier:RUN` all read runs
through :func:`load_run`, so a run is interpreted the same way everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pixelforge.errors import UsageError
from pixelforge.train import checkpoint as ckpt
from pixelforge.train.families import Family, config_from_saved, family_for


@dataclass
class LoadedRun:
    path: Path
    config: dict[str, Any]  # the run's config.json
    family: Family
    modules: dict[str, torch.nn.Module]  # eval mode, on the requested device
    checkpoint: str

    @property
    def run_id(self) -> str:
        return f"{self.path.resolve().name}@{self.checkpoint}"

    @property
    def model(self) -> torch.nn.Module:
        """The run's main network (a classifier's net, a VAE, a GAN's generator, a diffusion UNet)."""
        return next(iter(self.modules.values()))

    @property
    def labels(self) -> list[str]:
        return list(self.config.get("labels") or [])


def load_run(run: str, which: str = "best", device: torch.device | None = None,
             family: str | None = None) -> LoadedRun:
    """The weights of a run's best or latest checkpoint (EMA copies for families that keep them).

    ``family``: refuse a run of another family (a one-line error naming both).
    """
    path = Path(run)
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise UsageError(f"{run} is not a training run (no config.json): train one with `pixelforge train`")
    config = json.loads(cfg_path.read_text())
    if family is not None and config.get("family") != family:
        raise UsageError(f"{run} is a {config.get('family')} run, not a {family} run")
    if which not in ("best", "latest"):
        raise UsageError(f"--checkpoint {which!r}: choose best or latest")
    root = path / ckpt.CHECKPOINTS
    marker = root / ("best.json" if which == "best" else "latest.json")
    if not marker.exists():
        raise UsageError(f"{run} has no checkpoint yet: let training reach its first evaluation")
    ckpt_dir = root / json.loads(marker.read_text())["dir"]
    device = device or torch.device("cpu")
    cls = family_for(config["family"])
    fam = cls(config_from_saved(cls.config_cls, config["model"]), device)
    modules = fam.build()
    for name, module in modules.items():
        if name in fam.ema_names:
            averaged = torch.optim.swa_utils.AveragedModel(module, use_buffers=True)
            ckpt.load_weights(ckpt_dir, f"{name}_ema", averaged)
            module = averaged.module
        else:
            ckpt.load_weights(ckpt_dir, name, module)
        modules[name] = module.to(device).eval()
    return LoadedRun(path, config, fam, modules, ckpt_dir.name)
