"""The training config: one dataclass for the loop's options, filled from flags or a TOML file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pixelforge.device import resolve_device
from pixelforge.errors import UsageError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Options of the shared loop (the family's own options live in its config, e.g. DiffusionConfig)."""

    data: str = ""
    out: str = ""
    image_size: int = 32
    augment: str | None = None  # a prepare SPEC string, applied on the fly
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 4e-4
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd and rmsprop
    lr_schedule: str = "cosine"
    warmup_steps: int = 200
    epochs: int | None = None
    max_steps: int | None = None
    max_minutes: float | None = None
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    mixed_precision: bool = True  # bf16 autocast, on CUDA only
    cpu_bf16: bool = False  # bf16 autocast on a CPU with native bf16 instructions (AVX512-BF16 or AMX)
    eval_every: int = 500
    log_every: int = 50
    patience: int | None = None  # evaluations without a better validation loss before stopping
    val_fraction: float = 0.05  # held out when the dataset has no val split
    num_workers: int = 2
    sample_steps: int = 25  # sampling steps of the grid saved at each evaluation
    val_batches: int = 8  # validation batches per evaluation
    allow_opt_out: bool = False
    stream: bool | None = None  # stream the training images from the shards; None: when over memory_gb decoded
    memory_gb: float = 8.0  # decoded training data up to this size is held in memory
    policy: str | None = None  # a use policy (research, commercial, open, or a TOML file) the data must meet
    override: str | None = None  # policy rules knowingly broken, comma-separated: opt_out, license, faces, consent
    nproc: int = 1  # processes training together under DDP (torchrun sets it); batch_size is their total
    init: str | None = None  # start from this run's best weights (fine-tuning), same model options
    family: dict[str, Any] = field(default_factory=dict)  # the family config, as saved

    def validate(self) -> None:
        if not self.data:
            raise UsageError("--data is required: the dataset directory to train on")
        if not self.out:
            raise UsageError("--out is required: the run directory to write")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"--lr-schedule {self.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
        for flag, value in (
            ("--batch-size", self.batch_size),
            ("--eval-every", self.eval_every),
            ("--log-every", self.log_every),
        ):
            if value < 1:
                raise UsageError(f"{flag} {value}: must be at least 1")
        if self.nproc < 1:
            raise UsageError(f"--nproc {self.nproc}: must be at least 1")
        if self.batch_size % self.nproc:
            up = -(-self.batch_size // self.nproc) * self.nproc
            raise UsageError(
                f"--batch-size {self.batch_size} does not split over {self.nproc} processes (each takes "
                f"batch-size / nproc images): pass a multiple of {self.nproc}, e.g. --batch-size {up}"
            )
        if self.lr <= 0:
            raise UsageError(f"--lr {self.lr}: must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"--ema-decay {self.ema_decay}: choose a value in [0, 1)")
        if self.epochs is None and self.max_steps is None and self.max_minutes is None:
            raise UsageError("say when to stop: pass --epochs, --max-steps or --max-minutes")
        if self.memory_gb <= 0:
            raise UsageError(f"--memory-gb {self.memory_gb}: must be positive")
        if not 0.0 < self.val_fraction < 0.5:
            raise UsageError(f"--val-fraction {self.val_fraction}: choose a fraction in (0, 0.5)")
        resolve_device(self.device)
