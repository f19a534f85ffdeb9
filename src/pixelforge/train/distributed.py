"""Data-parallel training: N processes (spawned by --nproc, or by torchrun) run the one loop under DDP.

Every process runs ``train()`` from the top with the same config. What differs per process is
small and lives here:
- the process group: gloo on CPU, nccl on CUDA (process r drives GPU LOCAL_RANK);
- the modules a family's ``train_step`` calls: DistributedDataParallel wrappers, so gradients are
  averaged over the processes before any clipping or optimiser step; batch-norm layers compute their
  statistics over the global batch, so N x (B/N) normalises exactly as 1 x B;
- a few scalars only rank 0 knows (its clock, its validation verdict) are broadcast from it, so
  every process stops on the same step with the same learning rate.
``--batch-size`` stays the global batch: each process takes its B/N rows of every global batch
(see ``Batches`` and ``StreamBatches``' ``part``). Only rank 0 writes the run directory; the
checkpoint holds the plain modules' weights, so a run resumes with any number of processes.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import inspect
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from pixelforge import errors
from pixelforge.errors import PixelforgeError, UsageError
from pixelforge.progress import track

TIMEOUT = datetime.timedelta(minutes=60)  # rank 0 may evaluate and save for a while as the others wait
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Ranks:
    """This process's place in the group: one process is rank 0 of a world of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # join() made the process group (torchrun), so leave() ends it

    @property
    def main(self) -> bool:
        return self.rank == 0


def _launched_world() -> int:
    """WORLD_SIZE set by torchrun (or by our spawned workers); 1 when absent."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def must_spawn(cfg: Any) -> bool:
    """Whether ``train()`` has to start ``cfg.nproc`` processes (it is not one of them already)."""
    return cfg.nproc > 1 and not dist.is_initialized() and "RANK" not in os.environ


def check_launch(cfg: Any, world: int) -> torch.device:
    """The device type every process uses, checked against ``world`` processes before any work."""
    from pixelforge.device import resolve_device

    device = resolve_device(cfg.device)
    if world == 1:
        return device
    if device.type == "mps":
        raise UsageError(
            f"--device {cfg.device} with {world} processes: there is no distributed backend for "
            "Apple MPS; use --device cpu or a single process"
        )
    if device.type == "cuda":
        if device.index is not None:
            raise UsageError(
                f"--device {cfg.device} with {world} processes: pass --device cuda (process r uses "
                "GPU r of its machine)"
            )
        if torch.cuda.device_count() < world and _launched_world() == 1:
            raise UsageError(
                f"--nproc {world}: this machine has {torch.cuda.device_count()} GPUs and each process "
                f"needs one; pass --nproc {torch.cuda.device_count()} or --device cpu"
            )
    return device


def join(cfg: Any) -> Ranks:
    """This process's rank, world size and device; makes the process group under torchrun.

    Launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the environment),
    the world size is torchrun's; a --nproc other than 1 or that size is an error.
    """
    if dist.is_initialized():
        world, rank, owns = dist.get_world_size(), dist.get_rank(), False
    else:
        world, rank, owns = _launched_world(), int(os.environ.get("RANK", "0")), False
    if world > 1 and cfg.nproc not in (1, world):
        raise UsageError(
            f"--nproc {cfg.nproc} under torchrun, which started {world} processes: drop --nproc "
            "(torchrun's --nproc-per-node sets the processes)"
        )
    device = check_launch(cfg, world)
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend_for(device), init_method="env://", rank=rank, world_size=world, timeout=TIMEOUT)
        owns = True
    return Ranks(rank, world, local_rank, device, owns)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def leave(ranks: Ranks) -> None:
    """End the process group if :func:`join` made it."""
    if ranks.owns_group and dist.is_initialized():
        dist.destroy_process_group()


# -- launching N processes on this machine -------------------------------------------------------------


def spawn(family_name: str, cfg: Any, family_cfg: Any, resume: bool):
    """Run ``train()`` in ``cfg.nproc`` new processes on this machine and return rank 0's TrainResult.

    The processes meet at a TCP store this process holds on 127.0.0.1 (a free port, no race for it).
    They are forked from a fork server that imported torch and the loop once (not fork: this process
    may run threads; not spawn: N fresh interpreters importing torch at once are slow on a small machine).
    Each gets cpu_count / nproc threads unless OMP_NUM_THREADS says otherwise (as torchrun does).
    A PixelforgeError in any process is raised here with its one-line message.
    """
    import multiprocessing

    import torch.multiprocessing as mp

    from pixelforge.train.families import FAMILIES
    from pixelforge.train.loop import TrainResult

    check_launch(cfg, cfg.nproc)
    store = dist.TCPStore(HOST, 0, None, True, TIMEOUT, wait_for_workers=False)
    threads = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // cfg.nproc))
    multiprocessing.set_forkserver_preload(["pixelforge.train.loop", FAMILIES[family_name].split(":")[0]])
    messages = mp.get_context("forkserver").SimpleQueue()
    spawn_log = logging.getLogger("torch.multiprocessing.spawn")
    level = spawn_log.level
    spawn_log.setLevel(logging.ERROR)  # not "Terminating process N": a failed process's error is what counts
    try:
        mp.start_processes(
            _worker,
            args=(cfg.nproc, store.port, threads, family_name, cfg, family_cfg, resume, messages),
            nprocs=cfg.nproc,
            join=True,
            start_method="forkserver",
        )
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        while not messages.empty():
            message = messages.get()
            if message[0] == "error":
                cls = getattr(errors, message[1], PixelforgeError)
                raise cls(message[2]) from None
        raise
    finally:
        spawn_log.setLevel(level)
    while not messages.empty():
        message = messages.get()
        if message[0] == "result":
            return TrainResult(**message[1])
    raise RuntimeError("the training processes ended without a result")


def _worker(
    rank: int, world: int, port: int, threads: int, family_name: str, cfg: Any, family_cfg: Any, resume: bool, messages
) -> None:
    from pixelforge.train.loop import train

    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR=HOST,
        MASTER_PORT=str(port),
        OMP_NUM_THREADS=str(threads),
    )
    torch.set_num_threads(threads)
    try:
        device = check_launch(cfg, world)
        if device.type == "cuda":
            torch.cuda.set_device(rank)
        store = dist.TCPStore(HOST, port, None, False, TIMEOUT)
        dist.init_process_group(backend_for(device), store=store, rank=rank, world_size=world, timeout=TIMEOUT)
        result = train(family_name, cfg, family_cfg, resume)
        if rank == 0:
            messages.put(("result", dataclasses.asdict(result)))
    except PixelforgeError as exc:
        messages.put(("error", type(exc).__name__, str(exc)))
        raise SystemExit(exc.exit_code) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# -- the modules a family's train_step calls ------------------------------------------------------------


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: each process's input feeds every process's output, so the
    gradient with respect to it is the sum of the processes' output gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics cover every process's rows (on CPU, where torch's
    SyncBatchNorm does not run). Same parameters and buffers as the BatchNorm it replaces.

    The all-reduces are differentiable: the backward pass sums each process's gradient with respect to
    the shared statistics, so the gradient is the one of the global batch (as SyncBatchNorm's).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and self.running_mean is not None:
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        if not self.training:  # no running statistics: this batch's, as BatchNorm does
            return nn.functional.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        # 1. mean over the global batch   n: rows x positions of all processes;  mean: (C,)
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims), x.new_full((1,), x.numel() // x.shape[1])]))
        n = sums[-1]
        mean = sums[:-1] / n
        # 2. biased variance over the global batch (two passes, as BatchNorm: no cancellation)  var: (C,)
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        # 3. running statistics with BatchNorm's rule: unbiased variance, momentum or a cumulative average
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), f)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), f)
        return y


def global_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every BatchNorm layer normalising over the global batch: torch's SyncBatchNorm on
    CUDA, :class:`GlobalBatchNorm` elsewhere. Parameters and buffers are kept (the same tensors)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, global_batch_norm(child, device))
    return out


class _Methods(nn.Module):
    """What DDP wraps: ``forward(*args, _method=name)`` calls the module's method ``name``, so calls such
    as a VAE's ``encode`` and ``decode_logits`` go through DDP too (and their gradients are averaged)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: Any, _method: str = "forward", **kwargs: Any) -> Any:
        return getattr(self.module, _method)(*args, **kwargs)


class DistributedModule:
    """What a family's ``train_step`` gets in place of a module under DDP: calling it, or one of the
    module's own methods, runs through DistributedDataParallel; any other attribute is the module's."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel, module: nn.Module):
        self._ddp, self._module = ddp, module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ddp(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if inspect.ismethod(value) and (name == "forward" or not hasattr(nn.Module, name)):
            return functools.partial(self._ddp, _method=name)
        return value


def wrap(modules: dict[str, nn.Module], ranks: Ranks) -> tuple[dict[str, nn.Module], dict[str, Any]]:
    """(the modules to keep, average and save; what ``train_step`` calls). One process: the same modules.

    Under DDP the kept modules have global batch norm and the callables are DDP wrappers over them;
    the wrappers share the parameters, so optimisers, EMA and checkpoints use the plain modules (no
    'module.' prefix: a checkpoint does not depend on the number of processes).
    """
    if ranks.world == 1:
        return modules, modules
    kept = {name: global_batch_norm(m, ranks.device) for name, m in modules.items()}
    ids = [ranks.local_rank] if ranks.device.type == "cuda" else None
    calls = {
        name: DistributedModule(nn.parallel.DistributedDataParallel(_Methods(m), device_ids=ids), m)
        for name, m in kept.items()
    }
    return kept, calls


# -- what every process must agree on ---------------------------------------------------------------------


def batch_rows(ranks: Ranks, batch_size: int) -> tuple[int, int, int] | None:
    """This process's rows (start, stop, global batch) of every global batch; None for one process."""
    if ranks.world == 1:
        return None
    local = batch_size // ranks.world
    return ranks.rank * local, (ranks.rank + 1) * local, batch_size


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The global RNG's seed of ``rank`` at ``step`` under DDP (dropout masks differ per process)."""
    return (seed * 1_000_003 + step * 7 + 1_000_000_007 * (rank + 1)) % (2**63)


def mean_over_ranks(ranks: Ranks, values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each scalar averaged over the processes (each averaged an equal share of the global batch)."""
    if ranks.world == 1 or not values:
        return {k: float(v) for k, v in values.items()}
    stacked = torch.stack([v.detach().float().reshape(()).to(ranks.device) for v in values.values()])
    dist.all_reduce(stacked)
    return dict(zip(values, (stacked / ranks.world).tolist()))


def from_main(ranks: Ranks, *values: Any) -> tuple[Any, ...]:
    """``values`` as rank 0 has them, on every process (small picklable values: a clock, a verdict)."""
    if ranks.world == 1:
        return values
    box = list(values)
    dist.broadcast_object_list(box, src=0, device=ranks.device if ranks.device.type == "cuda" else None)
    return tuple(box)


@contextmanager
def progress(ranks: Ranks, label: str, total: int | None) -> Iterator[Any]:
    """The loop's progress bar on rank 0; the other processes keep quiet."""
    if ranks.main:
        with track(label, total=total) as bar:
            yield bar
    else:
        yield SimpleNamespace(advance=lambda n=1, **fields: None)


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier(device_ids=[ranks.local_rank] if ranks.device.type == "cuda" else None)
