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
from pixelforge.store import Dataset
from pixelforge.train import checkpoint as ckpt
from pixelforge.train import distributed
from pixelforge.train.config import TrainConfig
from pixelforge.train.data import Batches, decode_rows, index_table, split_indices
from pixelforge.train.families import Family, config_from_saved, family_for

MIN_IMPROVEMENT = 1e-4  # the relative gain of the monitored score that counts as "improved"

MONITOR_NAMES = {"val_loss": "validation loss", "val_accuracy": "validation accuracy"}
# settings that may change on --resume (when and how often to stop/log); all others must match
RESUMABLE_CHANGES = {"epochs", "max_steps", "max_minutes", "patience", "eval_every", "log_every", "num_workers",
                     "device", "sample_steps", "val_batches", "memory_gb", "nproc"}


@dataclass
class TrainResult:
    run: str
    steps: int
    epochs: float
    stopped: str  # why training stopped
    loss: float | None
    val: dict[str, float]  # the last evaluation's validation scalars
    best: float | None  # the best value of the family's monitored scalar (None: the family has none)
    images_per_s: float
    seconds: float
    final: dict[str, Any] = dataclasses.field(default_factory=dict)  # the family's closing evaluation


def make_optimizer(name: str, params, cfg: TrainConfig, lr: float | None = None,
                   betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    """--optimizer over ``params``; a family may give its own base ``lr`` and Adam ``betas``."""
    lr = cfg.lr if lr is None else lr
    adam_kw = {} if betas is None else {"betas": betas}
    if name == "adamw":
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay, **adam_kw)
    elif name == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay, **adam_kw)
    elif name == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.RMSprop(params, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    for group in opt.param_groups:
        group["base_lr"] = lr  # the schedule scales every group from its own base
    return opt


def ema_update(decay: float):
    """EMA with warm-up: decay min(decay, (1 + n) / (10 + n)) after n updates, so short runs are not
    dominated by their random initial weights (as diffusers' EMAModel does)."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = int(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1 - d)
        for a, c in zip(averaged, current):
            if not a.is_floating_point():  # counters such as batch-norm's num_batches_tracked
                a.copy_(c)

    return update


def lr_at(step: int, cfg: TrainConfig, total: int | None, fraction: float | None = None) -> float:
    """Linear warm-up, then constant or cosine decay to 0 at ``total`` steps (or, for a time budget, when
    ``fraction`` of it is used)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant" or (not total and fraction is None):
        return cfg.lr
    if fraction is not None:
        progress = min(1.0, max(0.0, fraction))
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
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
    if config_from_saved(type(family_cfg), saved["model"]) != family_cfg and not changed:
        changed = ["the model options"]
    if changed:
        raise UsageError(f"--resume {run}: {', '.join(changed)} differ from the stopped run; "
                         "resume with the same options or start a new --out")


def metric_fields(family: Family) -> tuple[str, ...]:
    """The columns of metrics.csv: the loop's, then the family's step and validation scalars."""
    return ("step", "epoch", "lr", "loss", *family.log_terms, *family.val_terms, "images_per_s", "seconds")


def train(family_name: str, cfg: TrainConfig, family_cfg: Any, resume: bool = False) -> TrainResult | None:
    """Train a ``family_name`` model on ``cfg.data`` into the run directory ``cfg.out``.

    With ``cfg.nproc`` > 1 (or under torchrun) every process runs this function under DDP (see
    train/distributed.py); rank 0 writes the run and returns the result, the other processes return None.
    """
    # -- 0. check everything before any work --------------------------------------------------------
    cfg.validate()
    family_cfg.validate()
    run = Path(cfg.out)
    saved_path = run / "config.json"
    if saved_path.exists() and not resume:
        raise UsageError(f"--out {run} already holds a run: pass --resume to continue it or choose another --out")
    if resume and not saved_path.exists():
        raise UsageError(f"--resume {run}: no run there to resume (no config.json)")
    if resume and (old := json.loads(saved_path.read_text()).get("family")) != family_name:
        raise UsageError(f"--resume {run}: it holds a {old} run, not a {family_name} run; choose another --out")
    ds = Dataset.open(cfg.data)
    policy = check_training_allowed(ds, cfg.allow_opt_out, policy=cfg.policy)
    if distributed.must_spawn(cfg):
        return distributed.spawn(family_name, cfg, family_cfg, resume)  # N processes, each runs this function
    ranks = distributed.join(cfg)  # this process's rank, the world size and its device
    cfg = dataclasses.replace(cfg, nproc=ranks.world)
    cfg.validate()  # under torchrun: --batch-size must split over its processes
    device = ranks.device
    torch.manual_seed(cfg.seed)
    family = family_for(family_name)(family_cfg, device, cfg)

    # -- 1. data: split, then decode once into memory (or stream the training shards), batches ---------
    index, rows = index_table(ds, family.label_column)
    train_idx, val_idx, test_idx = split_indices(index.keys, [r["split"] for r in rows], cfg.val_fraction)
    augment = None
    if cfg.augment:
        from pixelforge.prepare.augment import parse_spec

        augment = parse_spec(cfg.augment)
    decoded_bytes = ds.num_samples * 3 * cfg.image_size ** 2
    stream = cfg.stream if cfg.stream is not None else decoded_bytes > cfg.memory_gb * 2**30
    if stream:
        from pixelforge.train.stream import StreamBatches

        train_t = index.subset(train_idx)  # labels and captions only: the images stay in the shards
        batches = StreamBatches(ds, [rows[i] for i in train_idx], cfg.image_size, cfg.batch_size, cfg.seed,
                                augment, cfg.num_workers, part=(ranks.rank, ranks.world))
        val_t, test_t = (decode_rows(ds, index, cfg.image_size, idx) for idx in (val_idx, test_idx))
    else:
        table = decode_rows(ds, index, cfg.image_size)
        train_t, val_t, test_t = (table.subset(idx) for idx in (train_idx, val_idx, test_idx))
        batches = Batches(train_t, cfg.batch_size, cfg.seed, augment, cfg.num_workers, part=(ranks.rank, ranks.world))
    val_batches = Batches(val_t, min(cfg.batch_size, len(val_t)), cfg.seed + 1)

    # -- 2. model, EMA, optimisers ----------------------------------------------------------------
    family.prepare(train_t, val_t)
    modules = family.build()
    # what train_step calls: DDP wrappers under N processes (with batch norm over the global batch)
    modules, step_modules = distributed.wrap(modules, ranks)
    ema = {name: torch.optim.swa_utils.AveragedModel(modules[name], multi_avg_fn=ema_update(cfg.ema_decay),
                                                     use_buffers=True)
           for name in family.ema_names}
    optimizers = family.optimizers(modules, lambda params, lr=None, betas=None: make_optimizer(
        cfg.optimizer, params, cfg, lr, betas))
    n_params = sum(p.numel() for m in modules.values() for p in m.parameters())

    def eval_modules() -> dict[str, torch.nn.Module]:
        """The weights we evaluate, sample and export: the EMA copy where the family keeps one."""
        out = {k: (ema[k].module if k in ema else m) for k, m in modules.items()}
        for m in out.values():
            m.eval()
        return out

    # -- 3. run directory: config, or the state of the stopped run --------------------------------
    if ranks.main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "samples").mkdir(exist_ok=True)
    start_step, best, evals_without_gain, total_steps, prior_seconds = 0, None, 0, None, 0.0
    fields = metric_fields(family)
    if resume:
        saved = json.loads(saved_path.read_text())
        _check_resume(run, saved, cfg, family_cfg)
        last = ckpt.latest_checkpoint(run)
        if last is not None:
            state = ckpt.load_checkpoint(last, modules, ema, optimizers)
            start_step, best = state["step"], state.get("best")
            evals_without_gain, total_steps = state.get("evals_without_gain", 0), state.get("total_steps")
            prior_seconds = state.get("train_seconds", 0.0)
            if ranks.main:
                _truncate_metrics(run / "metrics.csv", start_step, fields)
    config_doc = {
        "pixelforge_version": __version__, "family": family_name, "train": dataclasses.asdict(cfg),
        "model": dataclasses.asdict(family_cfg), "dataset": {"path": cfg.data, "name": ds.name,
        "num_samples": ds.num_samples, "train": len(train_t), "val": len(val_t), "test": len(test_t),
        "streamed": stream},
        "labels": index.label_names, "label_column": family.label_column, "parameters": n_params,
        "device": str(device), "opt_out_samples_used": policy.opted_out if policy.allowed_by_override else 0,
        **family.meta(),
    }
    distributed.barrier(ranks)  # every process has read the stopped run before rank 0 writes over it
    if ranks.main:
        saved_path.write_text(json.dumps(config_doc, indent=2, default=str))
        if hasattr(family, "save_extras"):
            family.save_extras(run)
    if cfg.epochs is not None:
        total_steps = cfg.epochs * batches.per_epoch if cfg.max_steps is None else min(
            cfg.max_steps, cfg.epochs * batches.per_epoch)
    elif cfg.max_steps is not None:
        total_steps = cfg.max_steps
    if ranks.main:  # only rank 0 writes metrics.csv, TensorBoard, samples, checkpoints and result.json
        metrics_new = not (run / "metrics.csv").exists()
        metrics_file = (run / "metrics.csv").open("a", newline="")
        metrics = csv.DictWriter(metrics_file, fieldnames=fields)
        if metrics_new:
            metrics.writeheader()
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(run / "tensorboard"), purge_step=start_step or None)

    # -- 4. the loop ------------------------------------------------------------------------------
    use_amp = device.type == "cuda" and cfg.mixed_precision

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)

    start_time = time.monotonic() - prior_seconds  # a resumed run's time budget counts its earlier time too
    budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    window: dict[str, list[torch.Tensor]] = {}
    window_start, window_images = time.monotonic(), 0
    step, stopped, last_loss, val = start_step, "", None, {}
    rate = 0.0
    horizon = total_steps
    monitor = family.monitor

    def evaluate_and_save(step: int) -> None:
        nonlocal best, evals_without_gain, val
        current = eval_modules()
        val = family.validate(current, val_batches, lambda b: _step_generator(cfg.seed, b, salt=99),
                              cfg.val_batches)
        grid = family.samples(current, _step_generator(cfg.seed, 0, salt=7), steps=cfg.sample_steps)
        if grid is not None:
            _save_grid(grid[0], run / "samples" / f"step_{step:07d}.png")
        if monitor is None:
            improved = True
        else:
            value, sign = val[monitor[0]], (1 if monitor[1] == "min" else -1)
            # better by more than a relative MIN_IMPROVEMENT: a change in the 5th digit is rounding, not learning
            improved = best is None or sign * value < sign * best - MIN_IMPROVEMENT * abs(best)
            if improved:
                best = value
        evals_without_gain = 0 if improved else evals_without_gain + 1
        path = ckpt.save_checkpoint(run, step, modules, ema, optimizers, {
            "best": best, "evals_without_gain": evals_without_gain, "total_steps": total_steps, "val": val,
            "train_seconds": time.monotonic() - start_time})
        if improved:
            ckpt.mark_best(run, path, val)
        ckpt.prune(run)
        for k, v in val.items():
            tb.add_scalar(f"val/{k}", v, step)
        metrics.writerow({"step": step, "epoch": round(step / batches.per_epoch, 3),
                          **{k: f"{v:.6f}" for k, v in val.items()}})
        metrics_file.flush()
        for m in modules.values():
            m.train()

    try:
        with distributed.progress(ranks, f"train {family_name}", total_steps) as bar:
            bar.advance(start_step)
            for m in modules.values():
                m.train()
            for step, x, labels, captions in batches.iterate(start_step):
                # stopping rules, checked before the step so `step` counts completed steps
                if total_steps is not None and step >= total_steps:
                    stopped = "reached --max-steps" if cfg.max_steps == total_steps else "reached --epochs"
                    break
                if budget is not None:  # rank 0's clock decides for every process: same last step, same lr
                    (elapsed,) = distributed.from_main(ranks, time.monotonic() - start_time)
                if budget is not None and elapsed >= budget:
                    stopped = f"reached --max-minutes {cfg.max_minutes:g}"
                    break
                if total_steps is None and budget is not None:
                    # a time budget: the cosine follows the share of the budget used, not a step count
                    # estimated early (a machine that speeds up later would idle at lr 0)
                    lr = lr_at(step, cfg, None, fraction=elapsed / budget)
                else:
                    lr = lr_at(step, cfg, horizon)
                for opt in optimizers.values():
                    for group in opt.param_groups:
                        group["lr"] = group["base_lr"] * lr / cfg.lr
                # under DDP: this process's rows of the global batch; the step's draws are split over the
                # processes (or, for a family that cannot split them, drawn from a generator per process)
                family.batch_rows = distributed.batch_rows(ranks, batches.batch_size)
                salt = 0 if family.splits_draws else ranks.rank * 1_000_000_007
                if ranks.world > 1:
                    torch.manual_seed(distributed.rank_seed(cfg.seed, step, ranks.rank))  # dropout masks per process
                terms = family.train_step(step_modules, optimizers, x, labels, captions,
                                          _step_generator(cfg.seed, step, salt), step, autocast)
                family.batch_rows = None
                for name, averaged in ema.items():
                    averaged.update_parameters(modules[name])
                for k, v in terms.items():
                    window.setdefault(k, []).append(v)  # no host sync per step
                window_images += x.shape[0] * ranks.world
                done = step + 1
                bar.advance()
                if done % cfg.log_every == 0:
                    # the mean over the global batch: each process averaged an equal share of it
                    means = distributed.mean_over_ranks(ranks, {k: torch.stack(v).float().mean()
                                                                for k, v in window.items()})
                    last_loss = means["loss"]
                    now = time.monotonic()
                    rate = window_images / max(now - window_start, 1e-9)
                    lr_now = next(iter(optimizers.values())).param_groups[0]["lr"]  # e.g. a GAN's generator's
                    window, window_start, window_images = {}, now, 0
                if done % cfg.log_every == 0 and ranks.main:
                    metrics.writerow({"step": done, "epoch": round(done / batches.per_epoch, 3), "lr": f"{lr_now:.6g}",
                                      **{k: f"{v:.6f}" for k, v in means.items()}, "images_per_s": f"{rate:.1f}",
                                      "seconds": f"{now - start_time:.1f}"})
                    metrics_file.flush()
                    for k, v in means.items():
                        tb.add_scalar(f"train/{k}", v, done)
                    tb.add_scalar("lr", lr_now, done)
                    tb.add_scalar("images_per_s", rate, done)
                if done % cfg.eval_every == 0:
                    paused = time.monotonic()
                    if ranks.main:
                        evaluate_and_save(done)
                    # rank 0 evaluated: every process takes its verdict
                    evals_without_gain, best = distributed.from_main(ranks, evals_without_gain, best)
                    window_start += time.monotonic() - paused  # images/s counts training, not evaluation
                    if cfg.patience is not None and monitor is not None and evals_without_gain >= cfg.patience:
                        step = done
                        stopped = (f"early stopping: {MONITOR_NAMES.get(monitor[0], monitor[0])} did not improve "
                                   f"for {cfg.patience} evaluations (best {best:.5f})")
                        break
                step = done
    except KeyboardInterrupt:
        if ranks.world > 1:
            raise  # the other processes may be mid-step: resume from the last checkpoint
        stopped = "interrupted"
    if not ranks.main:
        distributed.leave(ranks)
        return None
    last = ckpt.latest_checkpoint(run)
    if last is None or last.name != f"step_{step:07d}":
        evaluate_and_save(step)
    # the closing evaluation runs on the best checkpoint's weights
    best_dir = ckpt.best_checkpoint(run)
    if best_dir is not None and best_dir != ckpt.latest_checkpoint(run):
        ckpt.load_model_weights(best_dir, modules, ema)
    final = family.finish(eval_modules(), {"val": val_t, "test": test_t})
    seconds = time.monotonic() - start_time
    metrics_file.close()
    tb.close()
    result = TrainResult(run=str(run), steps=step, epochs=round(step / batches.per_epoch, 3), stopped=stopped,
                         loss=last_loss, val=val, best=best, images_per_s=round(rate, 1),
                         seconds=round(seconds, 1), final=final)
    (run / "result.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    distributed.leave(ranks)
    return result


def _truncate_metrics(path: Path, step: int, fields: tuple[str, ...]) -> None:
    """Drop metric rows written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
