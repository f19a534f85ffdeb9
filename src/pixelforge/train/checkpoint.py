"""Checkpoints as safetensors + JSON (never pickles): model, EMA, optimiser state, step, RNG."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS = "checkpoints"


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of the optimiser state as a flat dict, everything else as JSON."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run: Path, step: int, modules: dict[str, torch.nn.Module], ema: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], extra: dict[str, Any]) -> Path:
    """Write checkpoints/step_NNNNNNN/ atomically (temp dir + rename) and point latest.json at it."""
    root = run / CHECKPOINTS
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                  str(tmp / f"{name}.safetensors"))
    for name, module in ema.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()},
                  str(tmp / f"{name}_ema.safetensors"))
    opt_meta = {}
    for name, optimizer in optimizers.items():
        opt_tensors, opt_meta[name] = _flatten_optimizer(optimizer)
        save_file(opt_tensors, str(tmp / f"optimizer_{name}.safetensors"))
    save_file({"cpu_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps({"step": step, "optimizers": opt_meta, **extra}, indent=2))
    if final.exists():
        import shutil

        shutil.rmtree(final)
    tmp.rename(final)
    latest = root / "latest.json"
    (root / "latest.json.tmp").write_text(json.dumps({"step": step, "dir": final.name}))
    (root / "latest.json.tmp").rename(latest)
    return final


def latest_checkpoint(run: Path) -> Path | None:
    latest = run / CHECKPOINTS / "latest.json"
    if not latest.exists():
        return None
    return run / CHECKPOINTS / json.loads(latest.read_text())["dir"]


def load_weights(path: Path, name: str, module: torch.nn.Module) -> None:
    module.load_state_dict(load_file(str(path / f"{name}.safetensors")))


def load_model_weights(path: Path, modules: dict[str, torch.nn.Module], ema: dict[str, torch.nn.Module]) -> None:
    for name, module in modules.items():
        load_weights(path, name, module)
    for name, module in ema.items():
        load_weights(path, f"{name}_ema", module)


def load_checkpoint(path: Path, modules: dict[str, torch.nn.Module], ema: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore everything :func:`save_checkpoint` wrote; returns its state.json."""
    state = json.loads((path / "state.json").read_text())
    load_model_weights(path, modules, ema)
    for name, optimizer in optimizers.items():
        tensors = load_file(str(path / f"optimizer_{name}.safetensors"))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizers"][name]))
    torch.set_rng_state(load_file(str(path / "rng.safetensors"))["cpu_rng"])
    return state


def prune(run: Path, keep: int = 3) -> None:
    """Keep the newest ``keep`` checkpoints (and the best one, named in latest.json's best)."""
    root = run / CHECKPOINTS
    best = (root / "best.json")
    keep_names = {json.loads(best.read_text())["dir"]} if best.exists() else set()
    dirs = sorted(p for p in root.glob("step_*") if p.is_dir())
    for p in dirs[:-keep]:
        if p.name not in keep_names:
            import shutil

            shutil.rmtree(p)


def best_checkpoint(run: Path) -> Path | None:
    best = run / CHECKPOINTS / "best.json"
    return run / CHECKPOINTS / json.loads(best.read_text())["dir"] if best.exists() else None


def mark_best(run: Path, path: Path, val: dict[str, float]) -> None:
    root = run / CHECKPOINTS
    (root / "best.json.tmp").write_text(json.dumps({"dir": path.name, "val": val}))
    (root / "best.json.tmp").rename(root / "best.json")
