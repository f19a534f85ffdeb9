"""Training runs that learnt from samples a takedown later removed: by the samples' keys while a run's
data is on disk, by lineage once it is gone (what `pixelforge audit --runs DIR` reports).

A takedown's dataset.json records the keys it removed (lineage config ``removed``) and the dataset it
removed them from (lineage inputs). Keys stay the same through every dataset made from another one, so
a run's data holds a removed sample exactly when it holds its key - but only within one origin: every
import numbers its keys from 0, so keys are compared only inside the takedown's *family*, the datasets
that share a lineage with its input: the input, the datasets it was made from, and every dataset made
from any of those, except through the takedown's own output (made without the samples) or a generated
set (new images with keys of their own).

A run is flagged for a takedown when

1. its dataset is on disk (at the path the run recorded or, moved, found by its name and creation
   time), is in the family and holds at least one removed key, or an augmented copy of one
   (`prepare --augment` keys it KEY_augN, ``aug_of`` KEY): found by ``keys``, with the count; or
2. its dataset is gone and the run's record names the takedown's input or a dataset the input was
   made from: found by ``lineage`` (it read the samples before they were removed; how many is unknown).

The datasets looked at are those under the runs folder, the audited dataset, each takedown's input
and each run's dataset, with the datasets they were made from that are still on disk. A dataset
deleted in the middle of a chain breaks it: what was made from it is not known to be related.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pixelforge.errors import DatasetError
from pixelforge.people.takedown import generated_by, identity, input_is, scan_folder
from pixelforge.store import Dataset, is_dataset

TAKEDOWN = "takedown"  # the lineage command of a takedown's output
REMOVED = "removed"  # its lineage config's list of removed keys
FOUND_BY = ("keys", "lineage")


@dataclass
class FlaggedRun:
    """A training run that read samples a takedown removed."""

    run: str
    family: str | None  # the model family its config.json names
    dataset: str | None  # the dataset path the run recorded
    found_by: str  # keys | lineage (FOUND_BY)
    removed_keys: int | None  # its dataset's samples that are removed ones (or augmented copies); None: by lineage
    generated: list[str] = field(default_factory=list)  # sets `pixelforge generate` made with the run


@dataclass
class TakedownRuns:
    """One takedown and the runs that trained on what it removed."""

    path: str  # the takedown's output dataset
    name: str | None
    input: dict[str, Any]  # the dataset it removed samples from, as its lineage records it (path, name, created_at)
    input_on_disk: bool
    removed: int  # keys it removed
    runs: list[FlaggedRun] = field(default_factory=list)


@dataclass
class TakenDownRuns:
    """What runs_trained_on_takedowns found under ``root``."""

    root: str
    runs_checked: int
    takedowns: list[TakedownRuns]

    @property
    def flagged_runs(self) -> list[str]:
        return sorted({r.run for t in self.takedowns for r in t.runs})


def runs_trained_on_takedowns(root: str, dataset: str | None = None) -> TakenDownRuns:
    """Every takedown under ``root`` (and ``dataset`` or a dataset it was made from, when that is a
    takedown's output) with the training runs under ``root`` that learnt from what it removed, and the
    sets those runs generated (see the module docstring for the rule)."""
    found, runs = scan_folder(root)
    known: dict[str, dict[str, Any]] = {}
    for folder, info in found.items():
        _add(known, folder, info)
    if dataset is not None:
        _add_with_ancestors(known, dataset)
    takedowns = sorted(folder for folder, info in known.items() if _lineage(info).get("command") == TAKEDOWN)
    for folder in takedowns:
        entry = _first_input(known[folder])
        if entry.get("path"):
            _add_with_ancestors(known, str(entry["path"]))
    for cfg in runs.values():
        if cfg["dataset"].get("path"):
            _add_with_ancestors(known, str(cfg["dataset"]["path"]))
    origins: dict[str, Counter[str]] = {}
    out = [_takedown_runs(folder, known, runs, origins) for folder in takedowns]
    return TakenDownRuns(root=root, runs_checked=len(runs), takedowns=out)


def _takedown_runs(
    folder: str, known: dict[str, dict[str, Any]], runs: dict[str, dict[str, Any]], origins: dict[str, Counter[str]]
) -> TakedownRuns:
    info = known[folder]
    removed = set((_lineage(info).get("config") or {}).get(REMOVED) or [])
    entry = _first_input(info)
    upstream, upstream_on_disk = _upstream(entry, known)
    family = _family(upstream_on_disk, upstream, folder, known)
    flagged = []
    for run, cfg in sorted(runs.items()):
        record = cfg["dataset"]
        on_disk = _find(record, known)
        if on_disk is not None:
            if on_disk not in family:
                continue
            if on_disk not in origins:
                origins[on_disk] = _origin_keys(on_disk)
            held = sum(origins[on_disk][k] for k in removed)
            if held:
                flagged.append(FlaggedRun(run, cfg.get("family"), record.get("path"), "keys", held))
        elif removed and any(_names(record, f, i) for f, i in upstream):
            flagged.append(FlaggedRun(run, cfg.get("family"), record.get("path"), "lineage", None))
    for r in flagged:
        r.generated = generated_by(known, [r.run])
    return TakedownRuns(
        path=folder,
        name=info.get("name"),
        input={k: entry.get(k) for k in ("path", "name", "created_at")},
        input_on_disk=_find(entry, known) is not None,
        removed=len(removed),
        runs=flagged,
    )


def _origin_keys(folder: str) -> Counter[str]:
    """How many samples of the dataset stem from each key: its own, and its augmented copies'
    (`prepare --augment` keys them KEY_augN with ``aug_of`` = KEY: the same photo, another key)."""
    ds = Dataset.open(folder)
    columns = ["key", "aug_of"] if "aug_of" in ds.schema.names else ["key"]
    index = ds.index(columns=columns).to_pydict()
    return Counter(a or k for k, a in zip(index["key"], index.get("aug_of") or [None] * len(index["key"])))


def _upstream(entry: dict[str, Any], known: dict[str, dict[str, Any]]) -> tuple[list[tuple[str, dict]], set[str]]:
    """The takedown's input and the datasets it was made from, as (folder, dataset.json) - a gone one as
    (its recorded path, its record) - and the folders of those on disk."""
    upstream: list[tuple[str, dict[str, Any]]] = []
    on_disk: set[str] = set()
    todo = [entry]
    while todo:
        e = todo.pop()
        folder = _find(e, known)
        if folder is None:
            if e.get("path") and not any(_names(e, f, i) for f, i in upstream):
                upstream.append((str(e["path"]), e))
            continue
        if folder in on_disk:
            continue
        on_disk.add(folder)
        upstream.append((folder, known[folder]))
        todo.extend(i for i in _inputs(known[folder]) if isinstance(i, dict))
    return upstream, on_disk


def _family(
    start: set[str], upstream: list[tuple[str, dict[str, Any]]], takedown: str, known: dict[str, dict[str, Any]]
) -> set[str]:
    """The on-disk datasets of the takedown's family: ``start`` (its input and ancestors on disk) and every
    dataset made from a member or from a gone ancestor, to a fixed point, not through ``takedown`` itself
    nor through a generated set."""
    family = set(start)
    members = list(upstream)
    changed = True
    while changed:
        changed = False
        for folder, info in known.items():
            if folder in family or folder == takedown or _lineage(info).get("command") == "generate":
                continue
            if any(_names(i, f, m) for i in _inputs(info) for f, m in members):
                family.add(folder)
                members.append((folder, info))
                changed = True
    return family


def _names(entry: Any, folder: str, info: dict[str, Any]) -> bool:
    """Whether a lineage input or a run's dataset record names the dataset at ``folder``: by name and
    creation time when the record has them (a dataset made again at the same path is another one),
    else by path."""
    if isinstance(entry, dict) and entry.get("created_at") is not None:
        entry = {k: v for k, v in entry.items() if k != "path"}
    return input_is(entry, identity(folder, info.get("name"), info.get("created_at")))


def _find(entry: dict[str, Any], known: dict[str, dict[str, Any]]) -> str | None:
    """The folder of the on-disk dataset ``entry`` names, or None when it is gone."""
    return next((folder for folder, info in known.items() if _names(entry, folder, info)), None)


def _add(known: dict[str, dict[str, Any]], folder: str, info: dict[str, Any]) -> None:
    real = os.path.realpath(folder)
    if not any(os.path.realpath(f) == real for f in known):
        known[folder] = info


def _add_with_ancestors(known: dict[str, dict[str, Any]], path: str) -> None:
    """Add the dataset at ``path`` and the datasets it was made from that are on disk."""
    todo, seen = [path], set()
    while todo:
        p = todo.pop()
        if os.path.realpath(p) in seen or not is_dataset(p):
            continue
        seen.add(os.path.realpath(p))
        try:
            info = Dataset.open(p).info
        except (OSError, ValueError, DatasetError):  # an unreadable dataset.json: nothing to follow
            continue
        _add(known, p, info)
        todo.extend(str(i["path"]) for i in _inputs(info) if isinstance(i, dict) and i.get("path"))


def _lineage(info: dict[str, Any]) -> dict[str, Any]:
    return info.get("lineage") or {}


def _inputs(info: dict[str, Any]) -> list[Any]:
    return _lineage(info).get("inputs") or []


def _first_input(info: dict[str, Any]) -> dict[str, Any]:
    inputs = _inputs(info)
    entry = inputs[0] if inputs else {}
    return {"path": entry} if isinstance(entry, str) else dict(entry)
