"""The training loop shared by every model family: one function to read top to bottom."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pixelforge import __version__
from pixelforge.audit.policy import check_training_allowed
from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.store import Dataset
from pixelforge.train import checkpoint as ckpt
from pixelforge.train.config import TrainConfig, resolve_device
from pixelforge.train.data import Batches, load_table, split_table
from pixelforge.train.families import family_for, save_caption_cache

METRICS_FIELDS = ("step", "epoch", "lr", "loss", "val_loss", "images_per_s", "seconds")
# settings that may change on --resume (when and how often to stop/log); all others must match
RESUMABLE_CHANGES = {"epochs", "max_steps", "max_minutes", "patience", "eval_every", "log_every", "num_workers",
                     "device", "sample_steps", "val_batches"}


@dataclass
class TrainResult:
    run: str
    steps: int
    epochs: float
    stopped: str  # why training stopped
    loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    images_per_s: float
    seconds: float


def make_optimizer(name: str, params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_at(step: int, cfg: TrainConfig, total: int | None) -> float:
    """Linear warm-up, then constant or cosine decay to 0 at ``total`` steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant" or not total:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7 + salt) % (2**63))


def _save_grid(images: torch.Tensor, path: Path, cols: int = 8) -> None:
    from pixelforge.generate.sample import to_uint8

    arr = to_uint8(images).numpy()
    n, h, w, _ = arr.shape
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i in range(n):
        grid[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = arr[i]
    scale = max(1, 128 // h)  # small images are hard to see: enlarge without smoothing
    Image.fromarray(grid).resize((cols * w * scale, rows * h * scale), Image.NEAREST).save(path)


def _check_resume(run: Path, saved: dict[str, Any], cfg: TrainConfig, family_cfg: Any) -> None:
    old = saved["train"]
    new = dataclasses.asdict(cfg)
    changed = sorted(k for k in new if k not in RESUMABLE_CHANGES and k != "family" and old.get(k) != new[k])
    if saved["family_config"] != dataclasses.asdict(family_cfg) and not changed:
        changed = ["the model options"]
    if changed:
        raise UsageError(f"--resume {run}: {', '.join(changed)} differ from the stopped run; "
                         "resume with the same options or start a new --out")


@torch.no_grad()
def _val_loss(family, modules, val_batches: Batches, seed: int, max_batches: int = 8) -> float:
    """Deterministic validation loss: the same images, noise and timesteps at every evaluation."""
    total, n = 0.0, 0
    for b in range(min(max_batches, val_batches.per_epoch)):
        x, labels, captions = val_batches._batch(b, val_batches.indices(b))
        loss = family.loss(modules, x, labels, captions, _step_generator(seed, b, salt=99), train=False)
        total += float(loss) * len(x)
        n += len(x)
    return total / max(n, 1)


def train(family_name: str, cfg: TrainConfig, family_cfg: Any, resume: bool = False) -> TrainResult:
    """Train a ``family_name`` model on ``cfg.data`` into the run directory ``cfg.out``."""
    # -- 0. check everything before any work --------------------------------------------------------
    cfg.validate()
    family_cfg.validate()
    device = resolve_device(cfg.device)
    run = Path(cfg.out)
    saved_path = run / "config.json"
    if saved_path.exists() and not resume:
        raise UsageError(f"--out {run} already holds a run: pass --resume to continue it or choose another --out")
    if resume and not saved_path.exists():
        raise UsageError(f"--resume {run}: no run there to resume (no config.json)")
    ds = Dataset.open(cfg.data)
    policy = check_training_allowed(ds, cfg.allow_opt_out)
    torch.manual_seed(cfg.seed)

    # -- 1. data: decode once, split, batches ------------------------------------------------------
    table = load_table(ds, cfg.image_size)
    splits = [r["split"] for r in ds.iter_rows(columns=["split"])]
    train_t, val_t = split_table(table, splits, cfg.val_fraction)
    augment = None
    if cfg.augment:
        from pixelforge.prepare.augment import parse_spec

        augment = parse_spec(cfg.augment)
    batches = Batches(train_t, cfg.batch_size, cfg.seed, augment, cfg.num_workers)
    val_batches = Batches(val_t, min(cfg.batch_size, len(val_t)), cfg.seed + 1)

    # -- 2. model, EMA, optimiser -----------------------------------------------------------------
    family = family_for(family_name)(family_cfg, device)
    family.prepare(train_t, val_t)
    modules = family.build()
    ema = {name: torch.optim.swa_utils.AveragedModel(
        m, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay)) for name, m in modules.items()}
    params = [p for m in modules.values() for p in m.parameters()]
    optimizer = make_optimizer(cfg.optimizer, params, cfg)
    n_params = sum(p.numel() for p in params)

    # -- 3. run directory: config, or the state of the stopped run --------------------------------
    run.mkdir(parents=True, exist_ok=True)
    (run / "samples").mkdir(exist_ok=True)
    start_step, best_val, evals_without_gain, total_steps = 0, None, 0, None
    if resume:
        saved = json.loads(saved_path.read_text())
        _check_resume(run, saved, cfg, family_cfg)
        last = ckpt.latest_checkpoint(run)
        if last is not None:
            state = ckpt.load_checkpoint(last, modules, ema, optimizer)
            start_step, best_val = state["step"], state.get("best_val_loss")
            evals_without_gain, total_steps = state.get("evals_without_gain", 0), state.get("total_steps")
            _truncate_metrics(run / "metrics.csv", start_step)
    config_doc = {
        "pixelforge_version": __version__, "family": family_name, "train": dataclasses.asdict(cfg),
        "family_config": dataclasses.asdict(family_cfg), "dataset": {"path": cfg.data, "name": ds.name,
        "num_samples": ds.num_samples, "train": len(train_t), "val": len(val_t)},
        "label_names": table.label_names, "parameters": n_params, "device": str(device),
        "opt_out_samples_used": policy.opted_out if policy.allowed_by_override else 0, **family.meta(),
    }
    saved_path.write_text(json.dumps(config_doc, indent=2, default=str))
    save_caption_cache(run, family)
    if cfg.epochs is not None:
        total_steps = cfg.epochs * batches.per_epoch if cfg.max_steps is None else min(
            cfg.max_steps, cfg.epochs * batches.per_epoch)
    elif cfg.max_steps is not None:
        total_steps = cfg.max_steps
    metrics_new = not (run / "metrics.csv").exists()
    metrics_file = (run / "metrics.csv").open("a", newline="")
    metrics = csv.DictWriter(metrics_file, fieldnames=METRICS_FIELDS)
    if metrics_new:
        metrics.writeheader()
    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(run / "tensorboard"), purge_step=start_step or None)

    # -- 4. the loop ------------------------------------------------------------------------------
    use_amp = device.type == "cuda" and cfg.mixed_precision
    start_time = time.monotonic()
    budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    window_losses: list[torch.Tensor] = []
    window_start, window_images = time.monotonic(), 0
    step, stopped, last_loss, val_loss = start_step, "", None, None
    rate = 0.0
    horizon = total_steps if total_steps is not None else _horizon(run, None)

    def evaluate_and_save(step: int) -> None:
        nonlocal best_val, evals_without_gain, val_loss
        for m in ema.values():
            m.eval()
        ema_modules = {k: v.module for k, v in ema.items()}
        val_loss = _val_loss(family, ema_modules, val_batches, cfg.seed, cfg.val_batches)
        imgs, _ = family.samples(ema_modules, _step_generator(cfg.seed, 0, salt=7), steps=cfg.sample_steps)
        _save_grid(imgs, run / "samples" / f"step_{step:07d}.png")
        improved = best_val is None or val_loss < best_val
        if improved:
            best_val, evals_without_gain = val_loss, 0
        else:
            evals_without_gain += 1
        path = ckpt.save_checkpoint(run, step, modules, {k: v for k, v in ema.items()}, optimizer, {
            "best_val_loss": best_val, "evals_without_gain": evals_without_gain, "total_steps": total_steps,
            "val_loss": val_loss})
        if improved:
            ckpt.mark_best(run, path, val_loss)
        ckpt.prune(run)
        tb.add_scalar("loss/val", val_loss, step)
        metrics.writerow({"step": step, "epoch": round(step / batches.per_epoch, 3), "lr": "", "loss": "",
                          "val_loss": f"{val_loss:.6f}", "images_per_s": "", "seconds": ""})
        metrics_file.flush()

    try:
        with track(f"train {family_name}", total=total_steps) as bar:
            bar.advance(start_step)
            for step, x, labels, captions in batches.iterate(start_step):
                # stopping rules, checked before the step so `step` counts completed steps
                if total_steps is not None and step >= total_steps:
                    stopped = "reached --max-steps" if cfg.max_steps == total_steps else "reached --epochs"
                    break
                if budget is not None and time.monotonic() - start_time >= budget:
                    stopped = f"reached --max-minutes {cfg.max_minutes:g}"
                    break
                if horizon is None and budget is not None and step == start_step + 20:
                    # a cosine schedule needs a horizon: estimate the steps the time budget allows
                    per_step = (time.monotonic() - start_time) / 20
                    horizon = _horizon(run, step + int((budget - (time.monotonic() - start_time)) / per_step))
                lr = lr_at(step, cfg, horizon)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                for m in modules.values():
                    m.train()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss = family.loss(modules, x, labels, captions, _step_generator(cfg.seed, step))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                for name, m in modules.items():
                    ema[name].update_parameters(m)
                window_losses.append(loss.detach())  # no host sync per step
                window_images += x.shape[0]
                done = step + 1
                bar.advance()
                if done % cfg.log_every == 0:
                    last_loss = float(torch.stack(window_losses).mean())
                    now = time.monotonic()
                    rate = window_images / max(now - window_start, 1e-9)
                    metrics.writerow({"step": done, "epoch": round(done / batches.per_epoch, 3), "lr": f"{lr:.6g}",
                                      "loss": f"{last_loss:.6f}", "val_loss": "", "images_per_s": f"{rate:.1f}",
                                      "seconds": f"{now - start_time:.1f}"})
                    metrics_file.flush()
                    tb.add_scalar("loss/train", last_loss, done)
                    tb.add_scalar("lr", lr, done)
                    tb.add_scalar("images_per_s", rate, done)
                    window_losses, window_start, window_images = [], now, 0
                if done % cfg.eval_every == 0:
                    evaluate_and_save(done)
                    if cfg.patience is not None and evals_without_gain >= cfg.patience:
                        step = done
                        stopped = (f"early stopping: validation loss did not improve for {cfg.patience} "
                                   f"evaluations (best {best_val:.5f})")
                        break
                step = done
    except KeyboardInterrupt:
        stopped = "interrupted"
    last = ckpt.latest_checkpoint(run)
    if last is None or last.name != f"step_{step:07d}":
        evaluate_and_save(step)
    seconds = time.monotonic() - start_time
    metrics_file.close()
    tb.close()
    result = TrainResult(run=str(run), steps=step, epochs=round(step / batches.per_epoch, 3), stopped=stopped,
                         loss=last_loss, val_loss=val_loss, best_val_loss=best_val, images_per_s=round(rate, 1),
                         seconds=round(seconds, 1))
    (run / "result.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return result


def _horizon(run: Path, estimate: int | None) -> int | None:
    """The time-budget run's cosine horizon, fixed once and kept in the run so --resume reuses it."""
    path = run / "horizon.json"
    if path.exists():
        return json.loads(path.read_text())["total_steps"]
    if estimate is None:
        return None
    path.write_text(json.dumps({"total_steps": estimate}))
    return estimate


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=METRICS_FIELDS)
        w.writeheader()
        w.writerows(rows)
