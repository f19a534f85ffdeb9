"""The training loop shared by every model family: one function to read top to bottom."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from pixelforge import __version__
from pixelforge.audit.policy import check_training_allowed
from pixelforge.models.sampling import to_uint8
from pixelforge.store import Dataset
from pixelforge.train import checkpoint as ckpt
from pixelforge.train import distributed
from pixelforge.train.config import TrainConfig
from pixelforge.train.data import Batches, ImageTable, decode_rows, index_table, split_indices
from pixelforge.train.families import Family, family_for
from pixelforge.train.logger import TrainLogger
from pixelforge.train.rundir import Resumed, RunDir

if TYPE_CHECKING:
    from pixelforge.train.stream import StreamBatches

MIN_IMPROVEMENT = 1e-4  # the relative gain of the monitored score that counts as "improved"

MONITOR_NAMES = {"val_loss": "validation loss", "val_accuracy": "validation accuracy"}


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


def make_optimizer(
    name: str, params, cfg: TrainConfig, lr: float | None = None, betas: tuple[float, float] | None = None
) -> torch.optim.Optimizer:
    """--optimizer over ``params``; a family may give its own base ``lr`` and Adam ``betas``."""
    lr = cfg.lr if lr is None else lr
    adam_kw: dict[str, Any] = {} if betas is None else {"betas": betas}
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    if all(p.is_floating_point() and p.is_contiguous() and p.device.type in ("cpu", "cuda") for p in tensors):
        # one fused kernel for every tensor: torch's default on a CPU is a Python loop over the tensors
        # (measured, tiny text UNet of 3.5M parameters on 2 cores: 9.1 ms a step, fused 2.2 ms). Only for
        # contiguous parameters: the fused kernel walks parameter, gradient and moments as flat memory, and a
        # channels_last convolution's moments come back from a checkpoint contiguous (measured: a resumed
        # classifier's moments were updated at the wrong elements)
        adam_kw["fused"] = True
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


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively; elsewhere autocast emulates it, slower than float32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


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


def metric_fields(family: Family) -> tuple[str, ...]:
    """The columns of metrics.csv: the loop's, then the family's step and validation scalars."""
    return ("step", "epoch", "lr", "loss", *family.log_terms, *family.val_terms, "images_per_s", "seconds")


class _Data(NamedTuple):
    """The split data of a run: training batches (in memory or streamed), validation batches, the tables."""

    index: ImageTable  # labels and captions of every sample
    batches: Batches | StreamBatches
    val_batches: Batches
    train: ImageTable  # labels and captions only when streamed: the images stay in the shards
    val: ImageTable
    test: ImageTable
    streamed: bool


def _load_data(ds: Dataset, cfg: TrainConfig, family: Family, ranks: distributed.Ranks) -> _Data:
    """Split, then decode once into memory (or stream the training shards when over --memory-gb), batch."""
    index, rows = index_table(ds, family.label_column)
    train_idx, val_idx, test_idx = split_indices(index.keys, [r["split"] for r in rows], cfg.val_fraction)
    augment = None
    if cfg.augment:
        from pixelforge.prepare.augment import parse_spec

        augment = parse_spec(cfg.augment)
    decoded_bytes = ds.num_samples * 3 * cfg.image_size**2
    stream = cfg.stream if cfg.stream is not None else decoded_bytes > cfg.memory_gb * 2**30
    if stream:
        from pixelforge.train.stream import StreamBatches

        train_t = index.subset(train_idx)
        batches = StreamBatches(
            ds,
            [rows[i] for i in train_idx],
            cfg.image_size,
            cfg.batch_size,
            cfg.seed,
            augment,
            cfg.num_workers,
            part=(ranks.rank, ranks.world),
        )
        val_t, test_t = (decode_rows(ds, index, cfg.image_size, idx) for idx in (val_idx, test_idx))
    else:
        table = decode_rows(ds, index, cfg.image_size)
        train_t, val_t, test_t = (table.subset(idx) for idx in (train_idx, val_idx, test_idx))
        batches = Batches(train_t, cfg.batch_size, cfg.seed, augment, cfg.num_workers, part=(ranks.rank, ranks.world))
    val_batches = Batches(val_t, min(cfg.batch_size, len(val_t)), cfg.seed + 1)
    return _Data(index, batches, val_batches, train_t, val_t, test_t, stream)


def _total_steps(cfg: TrainConfig, per_epoch: int, resumed: int | None) -> int | None:
    """The step training stops at (--epochs, --max-steps, the smaller of both), else the stopped run's."""
    if cfg.epochs is not None:
        return cfg.epochs * per_epoch if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * per_epoch)
    if cfg.max_steps is not None:
        return cfg.max_steps
    return resumed


def train(family_name: str, cfg: TrainConfig, family_cfg: Any, resume: bool = False) -> TrainResult | None:
    """Train a ``family_name`` model on ``cfg.data`` into the run directory ``cfg.out``.

    With ``cfg.nproc`` > 1 (or under torchrun) every process runs this function under DDP (see
    train/distributed.py); rank 0 writes the run and returns the result, the other processes return None.
    """
    # -- 0. check everything before any work --------------------------------------------------------
    cfg.validate()
    family_cfg.validate()
    run = RunDir(cfg.out)
    run.check_start(family_name, resume)
    ds = Dataset.open(cfg.data)
    policy = check_training_allowed(ds, cfg.allow_opt_out, policy=cfg.policy, override=cfg.override)
    if distributed.must_spawn(cfg):
        return distributed.spawn(family_name, cfg, family_cfg, resume)  # N processes, each runs this function
    ranks = distributed.join(cfg)  # this process's rank, the world size and its device
    cfg = dataclasses.replace(cfg, nproc=ranks.world)
    cfg.validate()  # under torchrun: --batch-size must split over its processes
    device = ranks.device
    torch.manual_seed(cfg.seed)
    family = family_for(family_name)(family_cfg, device, cfg)

    # -- 1. data ----------------------------------------------------------------------------------
    data = _load_data(ds, cfg, family, ranks)
    batches = data.batches

    # -- 2. model, EMA, optimisers ----------------------------------------------------------------
    family.prepare(data.train, data.val)
    modules = family.build()
    # what train_step calls: DDP wrappers under N processes (with batch norm over the global batch)
    modules, step_modules = distributed.wrap(modules, ranks)
    ema = {
        name: torch.optim.swa_utils.AveragedModel(
            modules[name], multi_avg_fn=ema_update(cfg.ema_decay), use_buffers=True
        )
        for name in family.ema_names
    }
    optimizers = family.optimizers(
        modules, lambda params, lr=None, betas=None: make_optimizer(cfg.optimizer, params, cfg, lr, betas)
    )
    n_params = sum(p.numel() for m in modules.values() for p in m.parameters())

    def eval_modules() -> dict[str, torch.nn.Module]:
        """The weights we evaluate, sample and export: the EMA copy where the family keeps one."""
        out = {k: (ema[k].module if k in ema else m) for k, m in modules.items()}
        for m in out.values():
            m.eval()
        return out

    # -- 3. run directory: config, or the state of the stopped run --------------------------------
    if ranks.main:
        run.create()
    fields = metric_fields(family)
    resumed = Resumed()
    if resume:
        run.check_resume(cfg, family_cfg)
        resumed = run.resume(modules, ema, optimizers)
        if resumed.checkpoint is not None:
            family.restore_checkpoint_state(resumed.family_state)
            if ranks.main:
                run.truncate_metrics(resumed.step, fields)
    if cfg.init and resumed.checkpoint is None:
        RunDir(cfg.init).load_into(family.saved_family or family_name, modules, ema)
    config_doc = {
        "pixelforge_version": __version__,
        "family": family.saved_family or family_name,
        "trained_as": family_name,
        "train": dataclasses.asdict(cfg),
        "model": family.saved_model(),
        "dataset": {
            "path": cfg.data,
            "name": ds.name,
            "created_at": ds.info.get("created_at"),  # with the name, tells the dataset apart wherever it moves
            "num_samples": ds.num_samples,
            "train": len(data.train),
            "val": len(data.val),
            "test": len(data.test),
            "streamed": data.streamed,
        },
        "labels": data.index.label_names,
        "label_column": family.label_column,
        "parameters": n_params,
        "device": str(device),
        "opt_out_samples_used": policy.opted_out if policy.allowed_by_override else 0,
        "policy": policy.describe(),  # what the data was checked against and what was knowingly overridden
        **family.meta(),
    }
    distributed.barrier(ranks)  # every process has read the stopped run before rank 0 writes over it
    if ranks.main:
        run.write_config(config_doc)
        if hasattr(family, "save_extras"):
            family.save_extras(run.path)
    total_steps = _total_steps(cfg, batches.per_epoch, resumed.total_steps)
    log = TrainLogger(run, ranks, fields, batches.per_epoch, resumed.step)

    # -- 4. the loop ------------------------------------------------------------------------------
    use_amp = (device.type == "cuda" and cfg.mixed_precision) or (
        device.type == "cpu" and cfg.cpu_bf16 and cpu_has_bf16()
    )

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)

    start_time = time.monotonic() - resumed.seconds  # a resumed run's time budget counts its earlier time too
    budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    step, stopped, val = resumed.step, "", {}
    best, evals_without_gain = resumed.best, resumed.evals_without_gain
    monitor = family.monitor
    # under DDP: this process's rows of the global batch; the step's draws are split over the processes
    # (or, for a family that cannot split them, drawn from a generator per process)
    rows = distributed.batch_rows(ranks, batches.batch_size)
    salt = 0 if family.splits_draws else ranks.rank * 1_000_000_007

    def evaluate_and_save(step: int) -> None:
        nonlocal best, evals_without_gain, val
        current = eval_modules()
        val = family.validate(
            current, data.val_batches, lambda b: _step_generator(cfg.seed, b, salt=99), cfg.val_batches
        )
        grid = family.samples(current, _step_generator(cfg.seed, 0, salt=7), steps=cfg.sample_steps)
        if grid is not None:
            run.save_samples(step, to_uint8(grid[0]).numpy())
        if monitor is None:
            improved = True
        else:
            value, sign = val[monitor[0]], (1 if monitor[1] == "min" else -1)
            # better by more than a relative MIN_IMPROVEMENT: a change in the 5th digit is rounding, not learning
            improved = best is None or sign * value < sign * best - MIN_IMPROVEMENT * abs(best)
            if improved:
                best = value
        evals_without_gain = 0 if improved else evals_without_gain + 1
        path = run.save_checkpoint(
            step,
            modules,
            ema,
            optimizers,
            {
                "best": best,
                "evals_without_gain": evals_without_gain,
                "total_steps": total_steps,
                "val": val,
                "train_seconds": time.monotonic() - start_time,
            },
            family.checkpoint_state(),
        )
        if improved:
            run.mark_best(path, val)
        run.prune()
        log.log_validation(step, val)
        for m in modules.values():
            m.train()

    try:
        with distributed.progress(ranks, f"train {family_name}", total_steps) as bar:
            bar.advance(resumed.step)
            for m in modules.values():
                m.train()
            for step, x, labels, captions in batches.iterate(resumed.step):
                # stopping rules, checked before the step so `step` counts completed steps
                if total_steps is not None and step >= total_steps:
                    stopped = "reached --max-steps" if cfg.max_steps == total_steps else "reached --epochs"
                    break
                if budget is not None:  # rank 0's clock decides for every process: same last step, same lr
                    (elapsed,) = distributed.from_main(ranks, time.monotonic() - start_time)
                    if elapsed >= budget:
                        stopped = f"reached --max-minutes {cfg.max_minutes:g}"
                        break
                if total_steps is None and budget is not None:
                    # a time budget: the cosine follows the share of the budget used, not a step count
                    # estimated early (a machine that speeds up later would idle at lr 0)
                    lr = lr_at(step, cfg, None, fraction=elapsed / budget)
                else:
                    lr = lr_at(step, cfg, total_steps)
                for opt in optimizers.values():
                    for group in opt.param_groups:
                        group["lr"] = group["base_lr"] * lr / cfg.lr
                if ranks.world > 1:
                    torch.manual_seed(distributed.rank_seed(cfg.seed, step, ranks.rank))  # dropout masks per process
                terms = family.train_step(
                    step_modules,
                    optimizers,
                    x,
                    labels,
                    captions,
                    _step_generator(cfg.seed, step, salt),
                    step,
                    autocast,
                    rows=rows,
                )
                for name, averaged in ema.items():
                    averaged.update_parameters(modules[name])
                log.add(terms, x.shape[0] * ranks.world)
                done = step + 1
                bar.advance()
                if done % cfg.log_every == 0:
                    lr_now = next(iter(optimizers.values())).param_groups[0]["lr"]  # e.g. a GAN's generator's
                    log.log_window(done, lr_now, start_time)
                if done % cfg.eval_every == 0:
                    paused = time.monotonic()
                    if ranks.main:
                        evaluate_and_save(done)
                    # rank 0 evaluated: every process takes its verdict
                    evals_without_gain, best = distributed.from_main(ranks, evals_without_gain, best)
                    log.paused(time.monotonic() - paused)
                    if cfg.patience is not None and monitor is not None and evals_without_gain >= cfg.patience:
                        step = done
                        stopped = (
                            f"early stopping: {MONITOR_NAMES.get(monitor[0], monitor[0])} did not improve "
                            f"for {cfg.patience} evaluations (best {best:.5f})"
                        )
                        break
                step = done
    except KeyboardInterrupt:
        if ranks.world > 1:
            raise  # the other processes may be mid-step: resume from the last checkpoint
        stopped = "interrupted"
    if not ranks.main:
        distributed.leave(ranks)
        return None

    # -- 5. the last checkpoint, the closing evaluation on the best weights, result.json -----------
    last = run.latest()
    if last is None or last.name != f"step_{step:07d}":
        evaluate_and_save(step)
    best_dir = run.best()
    if best_dir is not None and best_dir != run.latest():
        ckpt.load_model_weights(best_dir, modules, ema)
    final = family.finish(eval_modules(), {"val": data.val, "test": data.test})
    seconds = time.monotonic() - start_time
    log.close()
    result = TrainResult(
        run=str(run.path),
        steps=step,
        epochs=round(step / batches.per_epoch, 3),
        stopped=stopped,
        loss=log.last_loss,
        val=val,
        best=best,
        images_per_s=round(log.rate, 1),
        seconds=round(seconds, 1),
        final=final,
    )
    run.write_result(dataclasses.asdict(result))
    distributed.leave(ranks)
    return result
