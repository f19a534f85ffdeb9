"""The run directory: the only code that knows a training run on disk, as store.Dataset knows a dataset.

    RUN/
      config.json         what was trained: pixelforge version, family, loop and model options, dataset, labels
      checkpoints/        step_NNNNNNN/ (see train/checkpoint.py), latest.json and best.json naming one of them
      metrics.csv         one row per --log-every window (training) and per evaluation (validation)
      tensorboard/        the same scalars for TensorBoard
      samples/            step_NNNNNNN.png: a grid sampled at each evaluation
      result.json         the TrainResult, once training has stopped

`pixelforge generate`, `predict`, `vae`, `label` and `evaluate --features classifier:RUN` all read runs
through :class:`RunDir` (:func:`load_run`), so a run is interpreted the same way everywhere. torch is
imported only to save or load weights: the report reads runs without it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pixelforge import media
from pixelforge.errors import UsageError

if TYPE_CHECKING:
    import torch

    from pixelforge.train.families import Family

CONFIG = "config.json"
RESULT = "result.json"
METRICS = "metrics.csv"
TENSORBOARD = "tensorboard"
SAMPLES = "samples"
CHECKPOINTS = "checkpoints"
MARKERS = {"best": "best.json", "latest": "latest.json"}
KEEP_CHECKPOINTS = 3  # the newest checkpoints kept (besides the best one)
# settings that may change on --resume (when and how often to stop/log); all others must match
RESUMABLE_CHANGES = {
    "epochs",
    "max_steps",
    "max_minutes",
    "patience",
    "eval_every",
    "log_every",
    "num_workers",
    "device",
    "sample_steps",
    "val_batches",
    "memory_gb",
    "nproc",
}


def is_run(path: str | Path) -> bool:
    """True when ``path`` is a training run's directory (a config.json naming a model family)."""
    try:
        doc = RunDir(path).config
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and "family" in doc


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


@dataclass
class Resumed:
    """Where a stopped run's latest checkpoint left training (all zero/None for a new run)."""

    checkpoint: Path | None = None  # the checkpoint restored
    step: int = 0
    best: float | None = None
    evals_without_gain: int = 0
    total_steps: int | None = None
    seconds: float = 0.0  # training time already spent (a time budget counts it)
    family_state: dict[str, Any] = dataclasses.field(default_factory=dict)  # the family's own (tensors)


class RunDir:
    """One training run's directory (it may not exist yet: training creates it)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # -- config ----------------------------------------------------------------------------------
    def has_config(self) -> bool:
        return (self.path / CONFIG).is_file()

    @property
    def config(self) -> dict[str, Any]:
        """The run's config.json (read at each access: training rewrites it)."""
        return json.loads((self.path / CONFIG).read_text())

    def write_config(self, doc: dict[str, Any]) -> None:
        (self.path / CONFIG).write_text(json.dumps(doc, indent=2, default=str))

    def check_start(self, family: str, resume: bool) -> None:
        """Refuse to write over another run, or to resume what is not a run of ``family``."""
        if self.has_config() and not resume:
            raise UsageError(
                f"--out {self.path} already holds a run: pass --resume to continue it or choose another --out"
            )
        if resume and not self.has_config():
            raise UsageError(f"--resume {self.path}: no run there to resume (no config.json)")
        if resume and (old := self.config.get("trained_as", self.config.get("family"))) != family:
            raise UsageError(f"--resume {self.path}: it holds a {old} run, not a {family} run; choose another --out")

    def create(self) -> None:
        """The run folder and its samples folder (rank 0, before anything is written)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.samples_dir.mkdir(exist_ok=True)

    def digest(self) -> str:
        """Short hash of the config and the checkpoints' names/sizes/times: a cache key of the run's outputs."""
        h = hashlib.sha256((self.path / CONFIG).read_bytes())
        root = self.path / CHECKPOINTS
        if root.is_dir():
            for p in sorted(root.iterdir()):
                st = p.stat()
                h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:12]

    # -- checkpoints -----------------------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    def marker(self, which: str) -> dict[str, Any] | None:
        """best.json ({dir, val}) or latest.json ({step, dir}), None before the first checkpoint."""
        path = self.checkpoints_dir / MARKERS[which]
        return json.loads(path.read_text()) if path.is_file() else None

    def checkpoint(self, which: str) -> Path | None:
        """The folder of the ``best`` or ``latest`` checkpoint, None before the first one."""
        marker = self.marker(which)
        return self.checkpoints_dir / marker["dir"] if marker else None

    def best(self) -> Path | None:
        return self.checkpoint("best")

    def latest(self) -> Path | None:
        return self.checkpoint("latest")

    def kept(self) -> list[str]:
        """The names of the checkpoint folders on disk, in step order."""
        root = self.checkpoints_dir
        return sorted(p.name for p in root.glob("step_*")) if root.is_dir() else []

    def _write_marker(self, which: str, doc: dict[str, Any]) -> None:
        tmp = self.checkpoints_dir / f"{MARKERS[which]}.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.rename(self.checkpoints_dir / MARKERS[which])

    def save_checkpoint(
        self,
        step: int,
        modules: dict[str, torch.nn.Module],
        ema: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        extra: dict[str, Any],
        family_state: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write checkpoints/step_NNNNNNN/ atomically (temp dir + rename) and point latest.json at it."""
        from pixelforge.train import checkpoint as ckpt

        final = self.checkpoints_dir / f"step_{step:07d}"
        tmp = self.checkpoints_dir / f".tmp_step_{step:07d}_{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        ckpt.write_checkpoint(tmp, step, modules, ema, optimizers, extra, family_state)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        self._write_marker("latest", {"step": step, "dir": final.name})
        return final

    def mark_best(self, path: Path, val: dict[str, float]) -> None:
        self._write_marker("best", {"dir": path.name, "val": val})

    def prune(self, keep: int = KEEP_CHECKPOINTS) -> None:
        """Keep the newest ``keep`` checkpoints (and the best one)."""
        best = self.marker("best")
        keep_names = {best["dir"]} if best else set()
        dirs = sorted(p for p in self.checkpoints_dir.glob("step_*") if p.is_dir())
        for p in dirs[:-keep]:
            if p.name not in keep_names:
                shutil.rmtree(p)

    def check_resume(self, cfg: Any, family_cfg: Any) -> None:
        """Refuse to resume with options that change what is trained (when and how often to stop may change)."""
        from pixelforge.train.families import config_from_saved

        saved = self.config
        old = saved["train"]
        new = dataclasses.asdict(cfg)
        changed = sorted(k for k in new if k not in RESUMABLE_CHANGES and k != "family" and old.get(k) != new[k])
        options = {**saved["model"], **saved.get("reward", {}).get("options", {})}  # a reward run's own options
        if config_from_saved(type(family_cfg), options) != family_cfg and not changed:
            changed = ["the model options"]
        if changed:
            raise UsageError(
                f"--resume {self.path}: {', '.join(changed)} differ from the stopped run; "
                "resume with the same options or start a new --out"
            )

    def resume(
        self,
        modules: dict[str, torch.nn.Module],
        ema: dict[str, torch.nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> Resumed:
        """Restore the latest checkpoint into the modules, EMA copies, optimisers and RNG; where it left off."""
        from pixelforge.train import checkpoint as ckpt

        last = self.latest()
        if last is None:
            return Resumed()
        state = ckpt.read_checkpoint(last, modules, ema, optimizers)
        return Resumed(
            checkpoint=last,
            step=state["step"],
            best=state.get("best"),
            evals_without_gain=state.get("evals_without_gain", 0),
            total_steps=state.get("total_steps"),
            seconds=state.get("train_seconds", 0.0),
            family_state=ckpt.read_family_state(last),
        )

    def load(self, which: str = "best", device: torch.device | None = None, family: str | None = None) -> LoadedRun:
        """The weights of the best or latest checkpoint (EMA copies for families that keep them), in eval mode.

        ``family``: refuse a run of another family (a one-line error naming both).
        """
        import torch

        from pixelforge.train import checkpoint as ckpt
        from pixelforge.train.families import config_from_saved, family_for

        run = str(self.path)
        if not self.has_config():
            raise UsageError(f"{run} is not a training run (no config.json): train one with `pixelforge train`")
        config = self.config
        if family is not None and config.get("family") != family:
            raise UsageError(f"{run} is a {config.get('family')} run, not a {family} run")
        if which not in MARKERS:
            raise UsageError(f"--checkpoint {which!r}: choose best or latest")
        folder = self.checkpoint(which)
        if folder is None:
            raise UsageError(f"{run} has no checkpoint yet: let training reach its first evaluation")
        device = device or torch.device("cpu")
        cls = family_for(config["family"])
        fam = cls(config_from_saved(cls.config_cls, config["model"]), device)
        modules = fam.build()
        for name, module in modules.items():
            if name in fam.ema_names:
                averaged = torch.optim.swa_utils.AveragedModel(module, use_buffers=True)
                ckpt.load_weights(folder, f"{name}_ema", averaged)
                module = averaged.module
            else:
                ckpt.load_weights(folder, name, module)
            modules[name] = module.to(device).eval()
        return LoadedRun(self.path, config, fam, modules, folder.name)

    def check_init(self, family: str) -> dict[str, Any]:
        """``--init``: this run's config.json, refused unless it is a ``family`` run."""
        if not self.has_config():
            raise UsageError(f"--init {self.path}: not a training run (no config.json)")
        config = self.config
        if (old := config.get("family")) != family:
            raise UsageError(f"--init {self.path}: a {old} run; start a {family} run from a {family} run")
        return config

    def load_into(self, family: str, modules: dict[str, torch.nn.Module], ema: dict[str, torch.nn.Module]) -> None:
        """``--init``: this run's best weights into a new ``family`` run's modules (its EMA weights where it
        keeps them, which are what it generates with) and their EMA copies."""
        from pixelforge.train import checkpoint as ckpt

        self.check_init(family)
        folder = self.checkpoint("best")
        if folder is None:
            raise UsageError(f"--init {self.path}: it has no checkpoint yet")
        try:
            for name, module in modules.items():
                if name in ema:
                    ckpt.load_weights(folder, f"{name}_ema", ema[name])
                    module.load_state_dict(ema[name].module.state_dict())
                else:
                    ckpt.load_weights(folder, name, module)
        except (RuntimeError, FileNotFoundError) as exc:
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            first = next((ln for ln in lines if "mismatch" in ln or "key" in ln), lines[0] if lines else "")[:200]
            raise UsageError(
                f"--init {self.path}: its network does not fit this run's model options ({first}); "
                "leave the model options out to take the run's own"
            ) from None

    # -- metrics, samples, result ----------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / TENSORBOARD

    def metrics(self) -> tuple[list[str], list[dict[str, float]]] | None:
        """metrics.csv as (columns, rows of floats), empty cells left out of a row; None when there is none."""
        if not self.metrics_path.is_file():
            return None
        with self.metrics_path.open(newline="") as f:
            reader = csv.DictReader(f)
            rows = []
            for r in reader:
                row = {}
                for k, v in r.items():
                    if v not in (None, ""):
                        try:
                            row[k] = float(v)
                        except ValueError:
                            pass
                rows.append(row)
            return list(reader.fieldnames or []), rows

    def truncate_metrics(self, step: int, fields: tuple[str, ...]) -> None:
        """Drop metric rows written after the checkpoint we resume from (they will be written again)."""
        path = self.metrics_path
        if not path.exists():
            return
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)

    @property
    def samples_dir(self) -> Path:
        return self.path / SAMPLES

    def save_samples(self, step: int, images: np.ndarray, cols: int = 8) -> Path:
        """Write uint8 images (N, H, W, 3) as one grid, samples/step_NNNNNNN.png, ``cols`` images a row."""
        n, h, w, _ = images.shape
        rows = math.ceil(n / cols)
        grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
        for i in range(n):
            grid[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = images[i]
        path = self.samples_dir / f"step_{step:07d}.png"
        media.save_grid(grid, path, scale=max(1, 128 // h))  # small images are hard to see: enlarged
        return path

    def sample_grids(self) -> list[tuple[int, Path]]:
        """(step, path) of every sample grid, in step order."""
        return sorted(
            (int(m.group(1)), p)
            for p in self.samples_dir.glob("step_*.png")
            if (m := re.fullmatch(r"step_(\d+)\.png", p.name))
        )

    def result(self) -> dict[str, Any] | None:
        """result.json, None while the run has not finished."""
        path = self.path / RESULT
        return json.loads(path.read_text()) if path.is_file() else None

    def write_result(self, doc: dict[str, Any]) -> None:
        (self.path / RESULT).write_text(json.dumps(doc, indent=2))


def load_run(run: str, which: str = "best", device: torch.device | None = None, family: str | None = None) -> LoadedRun:
    """The weights of a run's best or latest checkpoint (see :meth:`RunDir.load`)."""
    return RunDir(run).load(which, device, family)
