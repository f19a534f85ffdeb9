"""The check every training command runs first: no opted-out samples unless the user overrides it."""

from __future__ import annotations

from dataclasses import dataclass

from pixelforge.errors import UsageError
from pixelforge.store import Dataset, query


@dataclass
class TrainingCheck:
    samples: int
    opted_out: int
    allowed_by_override: bool


def check_training_allowed(ds: Dataset, allow_opt_out: bool = False) -> TrainingCheck:
    """Refuse a dataset holding opted-out samples unless ``allow_opt_out`` (recorded in the run).

    Opted-out URLs are never downloaded by `collect`, but a dataset can still carry such rows
    (imported with an opt_out column, or collected with --ignore-opt-outs).
    """
    n, opted = query(ds, "SELECT count(*) AS n, count(opt_out) AS o FROM samples").to_pylist()[0].values()
    if opted and not allow_opt_out:
        raise UsageError(f"{ds.path} holds {opted} opted-out samples: remove them with `pixelforge curate` "
                         "(it drops them by default) or pass --allow-opt-out to train on them anyway")
    return TrainingCheck(int(n), int(opted), bool(opted and allow_opt_out))
