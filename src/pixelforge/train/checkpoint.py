"""One checkpoint directory as safetensors + JSON (never pickles): model, EMA, optimiser state, step, RNG.

Where checkpoints live in a run, and which is the best or the latest, is the run directory's
business (train/rundir.py); this module only writes and reads the files inside one of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

STATE = "state.json"
FAMILY_STATE = "family_state.safetensors"  # the model family's own training state, when it keeps one


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


def _save_module(module: torch.nn.Module, path: Path) -> None:
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(path))


def write_checkpoint(
    folder: Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    ema: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    extra: dict[str, Any],
    family_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write every file of a checkpoint into ``folder`` (which exists): weights, EMA, optimisers, RNG, the
    family's own state, state.json."""
    for name, module in modules.items():
        _save_module(module, folder / f"{name}.safetensors")
    for name, module in ema.items():
        _save_module(module, folder / f"{name}_ema.safetensors")
    opt_meta = {}
    for name, optimizer in optimizers.items():
        opt_tensors, opt_meta[name] = _flatten_optimizer(optimizer)
        save_file(opt_tensors, str(folder / f"optimizer_{name}.safetensors"))
    save_file({"cpu_rng": torch.get_rng_state()}, str(folder / "rng.safetensors"))
    if family_state:
        save_file({k: v.detach().cpu().contiguous() for k, v in family_state.items()}, str(folder / FAMILY_STATE))
    (folder / STATE).write_text(json.dumps({"step": step, "optimizers": opt_meta, **extra}, indent=2))


def load_weights(folder: Path, name: str, module: torch.nn.Module) -> None:
    module.load_state_dict(load_file(str(folder / f"{name}.safetensors")))


def load_model_weights(folder: Path, modules: dict[str, torch.nn.Module], ema: dict[str, torch.nn.Module]) -> None:
    for name, module in modules.items():
        load_weights(folder, name, module)
    for name, module in ema.items():
        load_weights(folder, f"{name}_ema", module)


def read_checkpoint(
    folder: Path,
    modules: dict[str, torch.nn.Module],
    ema: dict[str, torch.nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> dict[str, Any]:
    """Restore everything :func:`write_checkpoint` wrote; returns its state.json."""
    state = json.loads((folder / STATE).read_text())
    load_model_weights(folder, modules, ema)
    for name, optimizer in optimizers.items():
        tensors = load_file(str(folder / f"optimizer_{name}.safetensors"))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizers"][name]))
    torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["cpu_rng"])
    return state


def read_family_state(folder: Path) -> dict[str, torch.Tensor]:
    """The family's own state of a checkpoint ({} when it kept none)."""
    path = folder / FAMILY_STATE
    return load_file(str(path)) if path.exists() else {}
