"""`pixelforge split`: group-aware, optionally stratified train/val/test splits that duplicates never straddle."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pixelforge.curate.dedup import MAX_RADIUS, hashes_to_groups
from pixelforge.curate.shards import copy_shards
from pixelforge.errors import UsageError
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import Lineage, begin_run, config_to_dict, default_name, finalize, open_input, output_schema

AUTO_GROUP = "auto"  # dup_group when the input was curated, else phash/sha256 groups computed here
NO_GROUP = "none"
SPLIT_ORDER = ("train", "val", "test")
# A split whose share of rows is off its asked fraction by more than this part of it (and by more
# than one row) is reported: whole groups cannot always be cut to size.
FRACTION_TOLERANCE = 0.1


@dataclass
class SplitConfig:
    """Fractions of val and test (train gets the rest), grouping, stratification and the seed."""

    val: float = 0.1
    test: float = 0.1
    stratify: str | None = None  # column whose value proportions each split keeps (such as label)
    group: str = AUTO_GROUP  # column whose equal values stay in one split; auto / none
    hamming: int = 8  # phash radius of the groups computed when group is auto and not curated
    seed: int = 0
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)  # where the per-shard work runs

    def validate(self, columns: list[str]) -> None:
        """Raise UsageError for a bad fraction or a column the dataset lacks, before any work."""
        for flag, value in (("--val", self.val), ("--test", self.test)):
            if not 0 <= value < 1:
                raise UsageError(f"{flag} {value}: choose a fraction in [0, 1)")
        if self.val + self.test >= 1:
            raise UsageError(f"--val {self.val} + --test {self.test} leaves no training data: keep the sum under 1")
        for flag, col in (("--stratify", self.stratify), ("--group", self.group)):
            if col is not None and col not in (AUTO_GROUP, NO_GROUP) and col not in columns:
                raise UsageError(f"{flag} {col!r} is not a column; columns: {', '.join(columns)}")
        if self.stratify == self.group:
            raise UsageError("--stratify and --group name the same column: stratify by a label, group by an id")
        if not 0 <= self.hamming <= MAX_RADIUS:
            raise UsageError(f"--hamming {self.hamming}: choose 0..{MAX_RADIUS} bits")
        self.executor.validate()


@dataclass
class SplitResult:
    out: str
    samples: int
    counts: dict[str, int]
    groups: int
    grouped_by: str
    straddling_groups: int
    seconds: float
    by_stratum: dict[str, dict[str, int]] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)  # achieved share of rows per split
    warnings: list[str] = field(default_factory=list)


def group_ids(table: pa.Table, config: SplitConfig) -> tuple[np.ndarray, str]:
    """An int group id per row and a description of where the groups came from."""
    n = table.num_rows
    if config.group == NO_GROUP:
        return np.arange(n), "none (every row alone)"
    if config.group == AUTO_GROUP and "dup_group" not in table.column_names:
        import pyarrow.compute as pc

        missing = pc.is_null(table.column("phash")).to_numpy(zero_copy_only=False)
        hashes = pc.fill_null(table.column("phash"), 0).to_numpy(zero_copy_only=False).astype(np.uint64)
        rows = np.flatnonzero(~missing)
        dups = hashes_to_groups(
            [table.column("sha256")[i].as_py() for i in rows], hashes[rows], None, config.hamming, None
        )
        ids = np.arange(n) + n  # rows without a phash stay alone
        ids[rows] = dups.groups
        return ids, f"phash within {config.hamming} bits or equal sha256 (computed: input not curated)"
    column = "dup_group" if config.group == AUTO_GROUP else config.group
    values = table.column(column).to_pylist()
    codes: dict[Any, int] = {}
    ids = np.array([codes.setdefault(v, len(codes)) if v is not None else -1 for v in values], dtype=np.int64)
    alone = np.flatnonzero(ids < 0)
    ids[alone] = len(codes) + np.arange(len(alone))  # a null id groups with nothing
    return ids, column


def assign_splits(groups: np.ndarray, strata: list[Any], fractions: dict[str, float], seed: int) -> np.ndarray:
    """A split name per row such that each group lands in one split and each stratum is divided
    by ``fractions`` as closely as whole groups allow.

    Groups take their stratum from their most common member value. Within a stratum, groups go
    largest first (seeded shuffle breaks ties) to the split furthest below its target count.
    """
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        members.setdefault(g, []).append(i)
    by_stratum: dict[Any, list[int]] = {}
    for g, rows in members.items():
        stratum = Counter(strata[i] for i in rows).most_common(1)[0][0]
        by_stratum.setdefault(stratum, []).append(g)
    out = np.empty(len(groups), dtype=object)
    names = [s for s in SPLIT_ORDER if fractions[s] > 0]
    for stratum in sorted(by_stratum, key=repr):
        gs = by_stratum[stratum]
        gs = [gs[i] for i in rng.permutation(len(gs))]
        gs.sort(key=lambda g: -len(members[g]))  # stable: the shuffle orders equal sizes
        total = sum(len(members[g]) for g in gs)
        have = dict.fromkeys(names, 0)
        for g in gs:
            # the split with the largest deficit; ties go to the earlier name (train first)
            split = max(names, key=lambda s: (fractions[s] * total - have[s], -names.index(s)))
            have[split] += len(members[g])
            out[members[g]] = split
    return out


def fraction_warnings(counts: dict[str, int], fractions: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """The achieved share of rows per split, and a warning line when one misses its asked fraction.

    Missing means off by more than FRACTION_TOLERANCE of the asked fraction and by more than
    one row: large groups (many near duplicates of one image) move in one piece.
    """
    n = sum(counts.values())
    achieved = {s: round(counts[s] / n, 4) if n else 0.0 for s in SPLIT_ORDER}
    missed = [
        s
        for s in SPLIT_ORDER
        if abs(achieved[s] - fractions[s]) > max(FRACTION_TOLERANCE * fractions[s], 1 / max(n, 1))
    ]
    if not missed:
        return achieved, []
    asked = ", ".join(f"{s} {fractions[s]:.3f}" for s in SPLIT_ORDER)
    got = ", ".join(f"{s} {achieved[s]:.3f}" for s in SPLIT_ORDER)
    return achieved, [
        f"split fractions missed ({', '.join(missed)}): asked {asked}, achieved {got}; groups are "
        "too large to cut finer (see --group, or --group none to split rows alone)"
    ]


def split_dataset(
    inp: str, out: str, config: SplitConfig, *, overwrite: bool = False, resume: bool = False
) -> SplitResult:
    """Write dataset ``inp`` to ``out`` with every row's ``split`` set to train, val or test.

    Rows of one group (by default: duplicate groups) always share a split, so near duplicates
    never leak between train and test. Sample bytes are copied unchanged. The achieved
    fractions are in the result, dataset.json's lineage and stats.json, with a warning when a
    split misses its asked fraction (fraction_warnings). With ``resume``, a stopped run into
    ``out`` continues (the split is recomputed, identically; finished shards are kept).
    """
    start = time.monotonic()
    from pixelforge.store import Dataset

    columns = Dataset.open(inp).schema.names
    config.validate(columns)
    config.executor.check_output(out)  # memory:// is private to one process
    ds, _, _ = open_input(inp, out, overwrite, resume)
    done = begin_run(out, "split", inp, config, resume)
    table = ds.index()
    groups, grouped_by = group_ids(table, config)
    strata = table.column(config.stratify).to_pylist() if config.stratify else [None] * table.num_rows
    fractions = {"train": 1.0 - config.val - config.test, "val": config.val, "test": config.test}
    splits = assign_splits(groups, strata, fractions, config.seed)
    table = table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits.tolist(), pa.string()))
    schema = output_schema(ds, [])
    copy_shards(ds, out, table.cast(schema), [], schema, config, label="split write", done=done)
    straddling = sum(1 for g, s in _group_splits(groups, splits).items() if len(s) > 1)
    counts = {s: int((splits == s).sum()) for s in SPLIT_ORDER}
    achieved, warnings = fraction_warnings(counts, fractions)
    by_stratum: dict[str, dict[str, int]] = {}
    if config.stratify:
        for value, split in zip(strata, splits.tolist()):
            by_stratum.setdefault(str(value), dict.fromkeys(SPLIT_ORDER, 0))[split] += 1
    seconds = time.monotonic() - start
    lineage_config = config_to_dict(config)
    lineage_config["grouped_by"] = grouped_by
    lineage_config["achieved_fractions"] = achieved
    result = finalize(
        out,
        name=default_name(out),
        schema=schema,
        lineage=Lineage("split", lineage_config, [inp]),
        stats={"seconds": round(seconds, 3), "splits": counts, "fractions": achieved, "warnings": warnings},
    )
    return SplitResult(
        out=out,
        samples=result.num_samples,
        counts=counts,
        groups=int(len(np.unique(groups))),
        grouped_by=grouped_by,
        straddling_groups=straddling,
        seconds=round(seconds, 3),
        by_stratum=by_stratum,
        fractions=achieved,
        warnings=warnings,
    )


def _group_splits(groups: np.ndarray, splits: np.ndarray) -> dict[int, set[str]]:
    seen: dict[int, set[str]] = {}
    for g, s in zip(groups.tolist(), splits.tolist()):
        seen.setdefault(g, set()).add(s)
    return seen
