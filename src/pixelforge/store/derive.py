"""Derive a new dataset from another shard by shard (curate, split, prepare): open, plan and resume, schema."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.store import fs as fsutil
from pixelforge.store.dataset import (
    Dataset,
    completed_shards,
    config_to_dict,
    prepare_output,
    read_plan,
    remove_partial,
    write_plan,
)
from pixelforge.store.schema import index_schema
from pixelforge.store.shards import SHARDS_DIR, carry_shard

# Config fields that say how the work runs, not what it makes: a resumed run may change them.
RUN_ONLY = ("executor",)


def open_input(inp: str, out: str, overwrite: bool, resume: bool = False) -> tuple[Dataset, Any, str]:
    """Open dataset ``inp`` and make ``out`` ready for a new dataset; refuse to write over the input.

    With ``resume``, a partly written ``out`` (a stopped run) is kept (store.prepare_output).
    """
    ds = Dataset.open(inp)
    fs, root = fsutil.resolve(out)
    in_fs, in_root = fsutil.resolve(inp)
    if type(fs) is type(in_fs) and fs.unstrip_protocol(root) == in_fs.unstrip_protocol(in_root):
        raise UsageError(f"--out {out} is the input dataset: inputs are never modified; choose another --out")
    if fsutil.is_local(fs) and fsutil.is_local(in_fs):  # a link to the input, or a folder holding it
        import os

        real_out, real_in = os.path.realpath(root), os.path.realpath(in_root)
        if real_out == real_in or real_in.startswith(real_out.rstrip(os.sep) + os.sep):
            raise UsageError(
                f"--out {out} is or holds the input dataset: inputs are never modified; choose another --out"
            )
    fs, root = prepare_output(out, overwrite=overwrite, resume=resume)
    return ds, fs, root


def begin_run(out: str, command: str, inp: str, config: Any, resume: bool) -> set[str]:
    """Record what this run makes in ``out``'s plan, or with ``resume`` check it is what the stopped
    run was making; return the output shards that run finished (empty for a new run).

    The plan is the command, the input and the config less RUN_ONLY fields, so a resumed run
    writes exactly what an uninterrupted one would. Temporary files of the stopped run go.
    """
    plan = json.loads(
        json.dumps(
            {
                "command": command,
                "input": inp,
                "config": {k: v for k, v in config_to_dict(config).items() if k not in RUN_ONLY},
            }
        )
    )
    saved = read_plan(out) if resume else None
    if saved is None:
        if completed_shards(out):
            raise UsageError(
                f"--out {out} has shards but no plan of the run that made them: pass --overwrite to start again"
            )
        write_plan(out, plan)
        return set()
    if saved.get("command") != command or saved.get("input") != inp:
        raise UsageError(
            f"--resume: {out} was started by `{saved.get('command')}` from {saved.get('input')}, "
            f"not `{command}` from {inp}; pass the same input or use --overwrite"
        )
    newer = sorted(set(plan["config"]) - set(saved["config"]))
    if newer:  # an option added since: what the old run did in its place is not known
        raise UsageError(
            f"--resume: {out} was started by an older pixelforge, without the option(s) {', '.join(newer)}; "
            "use --overwrite to start again"
        )
    changed = sorted(
        k for k in set(saved["config"]) | set(plan["config"]) if saved["config"].get(k) != plan["config"].get(k)
    )
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


def carry_shards(ds: Dataset, out: str, done: Iterable[str] = ()) -> None:
    """Put every shard of ``ds`` into the dataset being written at ``out``, under its own name,
    bytes and rows unchanged (hard links when both are local); shards in ``done`` are there already."""
    import pyarrow.compute as pc

    done = set(done)
    index = ds.index()
    for shard in ds.shards():
        if shard not in done:
            rows = index.filter(pc.equal(index.column("shard"), shard))
            carry_shard(ds.fs, ds.file(f"{SHARDS_DIR}/{shard}"), out, shard, rows, [])
