"""Shared I/O of the dataset-to-dataset stages (curate, split, prepare): open, plan and resume, copy shards."""

from __future__ import annotations

import json
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.progress import track
from pixelforge.run import run_tasks
from pixelforge.store import Dataset, completed_shards, config_to_dict, index_schema, prepare_output, remove_partial
from pixelforge.store import fs as fsutil
from pixelforge.store.dataset import read_plan, write_plan
from pixelforge.store.shards import shard_id_of, shard_name

# Config fields that say how the work runs, not what it makes: a resumed run may change them.
RUN_ONLY = ("processes", "backend", "ray_address", "ray_task_cpus")


def name_of(out: str) -> str:
    """The dataset name: the last part of its path."""
    return str(out).rstrip("/").rsplit("/", 1)[-1] or "dataset"


def open_input(inp: str, out: str, overwrite: bool, resume: bool = False) -> tuple[Dataset, Any, str]:
    """Open dataset ``inp`` and make ``out`` ready for a new dataset; refuse to write over the input.

    With ``resume``, a partly written ``out`` (a stopped run) is kept (store.prepare_output).
    """
    ds = Dataset.open(inp)
    fs, root = fsutil.resolve(out)
    in_fs, in_root = fsutil.resolve(inp)
    if type(fs) is type(in_fs) and fs.unstrip_protocol(root) == in_fs.unstrip_protocol(in_root):
        raise UsageError(f"--out {out} is the input dataset: inputs are never modified; choose another --out")
    fs, root = prepare_output(out, overwrite=overwrite, resume=resume)
    return ds, fs, root


def begin_run(out: str, command: str, inp: str, config: Any, resume: bool) -> set[str]:
    """Record what this run makes in ``out``'s plan, or with ``resume`` check it is what the stopped
    run was making; return the output shards that run finished (empty for a new run).

    The plan is the command, the input and the config less RUN_ONLY fields, so a resumed run
    writes exactly what an uninterrupted one would. Temporary files of the stopped run go.
    """
    plan = json.loads(json.dumps({"command": command, "input": inp, "config": {
        k: v for k, v in config_to_dict(config).items() if k not in RUN_ONLY}}))
    saved = read_plan(out) if resume else None
    if saved is None:
        if completed_shards(out):
            raise UsageError(f"--out {out} has shards but no plan of the run that made them: "
                             "pass --overwrite to start again")
        write_plan(out, plan)
        return set()
    if saved.get("command") != command or saved.get("input") != inp:
        raise UsageError(f"--resume: {out} was started by `{saved.get('command')}` from {saved.get('input')}, "
                         f"not `{command}` from {inp}; pass the same input or use --overwrite")
    changed = sorted(k for k in set(saved["config"]) | set(plan["config"])
                     if saved["config"].get(k) != plan["config"].get(k))
    if changed:
        was = ", ".join(f"{k}={saved['config'].get(k)!r}" for k in changed)
        raise UsageError(f"--resume: {out} was started with {was}; pass the same options or use --overwrite")
    remove_partial(out)
    return set(completed_shards(out))


def output_schema(ds: Dataset, added: Iterable[pa.Field]) -> pa.Schema:
    """The input's schema with ``added`` columns (replacing input columns of the same name) at the end."""
    added = list(added)
    names = {f.name for f in added}
    return index_schema([f for f in ds.extra_fields if f.name not in names] + added)


def copy_shards(ds: Dataset, out: str, kept: pa.Table, failures: list[dict[str, Any]], schema: pa.Schema,
                config: Any, label: str, done: set[str] = frozenset()) -> int:
    """Write ``kept`` rows (their samples' bytes copied unchanged) into ``out``, one output shard per
    input shard under the same shard number; ``failures`` (dicts with key, source, reason, detail)
    go to the shard their key came from. Runs write_shard through the executor. Output shards
    named in ``done`` (finished by a stopped run) are not written again."""
    from pixelforge.curate.worker import WriteTask, write_shard

    shard_of_key = dict(zip(ds.index(columns=["key"]).column("key").to_pylist(),
                            ds.index(columns=["shard"]).column("shard").to_pylist()))
    by_shard_fail: dict[str, list[dict[str, Any]]] = {}
    for f in failures:
        by_shard_fail.setdefault(shard_of_key[f["key"]], []).append(
            {"source": f["source"], "reason": f["reason"], "detail": f"sample {f['key']}: {f['detail']}"})
    rows = kept.to_pylist()
    shards = np.array([r["shard"] for r in rows], dtype=object)
    by_shard_rows: dict[str, list[dict[str, Any]]] = {s: [] for s in ds.shards()}
    for shard in np.unique(shards) if len(shards) else []:
        by_shard_rows[shard] = [rows[i] for i in np.flatnonzero(shards == shard)]

    def tasks():
        for shard in ds.shards():
            if shard_name(shard_id_of(shard)) in done:
                bar.advance(len(by_shard_rows.get(shard, [])))
                continue
            yield WriteTask(ds.path, shard, out, shard_id_of(shard), by_shard_rows.get(shard, []),
                            by_shard_fail.get(shard, []), schema)

    written = 0
    with track(label, total=len(rows)) as bar:
        for n in run_tasks(write_shard, tasks(), backend=config.backend, processes=config.processes,
                           ray_address=config.ray_address, ray_task_cpus=config.ray_task_cpus):
            written += n
            bar.advance(n)
    return written
