"""`pixelforge curate`: score every sample, find duplicates, check captions, filter, write a new dataset."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pixelforge import media
from pixelforge.curate import columns
from pixelforge.curate.captions import CAPTION_FLAGS, CaptionRules, caption_flags, count_words
from pixelforge.curate.columns import (
    COLOUR,
    COLOUR_TYPE,
    CURATE_FIELDS,
    FACE_COLUMNS,
    NEAR_THUMB,
    NEAR_THUMB_SIDE,
    NEAR_THUMB_TYPE,
    SCORE_FIELDS,
)
from pixelforge.curate.dedup import MAX_RADIUS, Duplicates, hashes_to_groups, with_near_copies
from pixelforge.curate.rules import EXAMPLES_PER_RULE, RuleOutcome, apply_rules, check_where
from pixelforge.curate.shards import copy_shards
from pixelforge.errors import UsageError
from pixelforge.extras import require
from pixelforge.faces import FaceSettings
from pixelforge.progress import track
from pixelforge.run.local import PRELOAD
from pixelforge.run.settings import ExecutorSettings
from pixelforge.store import (
    Dataset,
    Lineage,
    begin_run,
    config_to_dict,
    default_name,
    finalize,
    open_input,
    output_schema,
    work_path,
)
from pixelforge.store import fs as fsutil

CURATION_JSON = "curation.json"
# Chosen from benchmarks/dedup_vs_imagededup.py (docs/curate.md): 8 bits is the largest radius
# the exact multi-index search keeps under a minute for 1M hashes on 2 cores; a combined
# phash + dhash distance of 24 gave recall above imagededup's at precision 0.99 in the sweep.
DEFAULT_HAMMING = 8
DEFAULT_COMBINED = 24
# dedup.colour_distance above which a near pair is refused: the sweep's true pairs reach 0.20 (a
# 10% crop), flat shapes that differ only in colour score 1.7-2.0 (tests/curate/test_colour.py)
DEFAULT_COLOUR = 0.5
ONLY = ("duplicates",)  # what --only may restrict the scoring to
DEDUP = ("hash", "full")  # hash: phash/dhash only; full: also crops and rotations by alignment (curate.nearcopy)
NEEDS_SCORES = (("min_side", "--min-side"), ("max_blur", "--max-blur"), ("max_watermark", "--max-watermark"))


@dataclass
class CurateConfig:
    """What `pixelforge curate` scores and which rows it drops (every preset is recorded)."""

    where: str | None = None  # keep rows for which this DuckDB expression is true
    min_side: int | None = None  # drop rows whose shorter side is under this many pixels
    max_blur: float | None = None  # drop rows whose q_blur (variance of Laplacian) is under this
    max_watermark: float | None = None  # drop rows whose q_watermark is over this
    max_outlier: float | None = None  # drop rows whose outlier score (from `pixelforge cluster`) is over this
    drop_duplicates: bool = False  # keep one row (dup_keep) per duplicate group
    drop_bad_captions: bool = False  # drop rows with any caption flag
    drop_opt_out: bool = True  # drop rows whose owner opted out (opt_out not null)
    hamming: int = DEFAULT_HAMMING  # phash or dhash within this many bits nominates a pair
    combined: int | None = DEFAULT_COMBINED  # phash + dhash distance a pair must not exceed (None: phash only)
    check_leakage: bool = False  # report duplicate pairs that straddle splits
    watermark: bool = True  # run the watermark CNN (q_watermark null when off)
    only: str | None = None  # "duplicates": score only what duplicate groups need (other q_* null, no CNN)
    colour: float | None = DEFAULT_COLOUR  # colour distance over which a near pair is refused (None: no check)
    dedup: str = "full"  # hash, or full: the hash pass and the near-copy pass (crops, rotations)
    faces: bool = False  # find faces: face_bboxes, n_faces (pixelforge.faces)
    face_weights: str | None = None  # a YuNet ONNX file for OpenCV's FaceDetectorYN; None: the Haar cascade
    min_words: int = 3
    max_words: int = 60
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)  # where the per-shard work runs

    @property
    def face_settings(self) -> FaceSettings | None:
        return FaceSettings(weights=self.face_weights) if self.faces else None

    def validate(self) -> None:
        """Raise UsageError naming the bad flag and its allowed values, before any work."""
        if self.min_side is not None and self.min_side < 1:
            raise UsageError(f"--min-side {self.min_side}: choose a positive number of pixels")
        if self.max_blur is not None and self.max_blur < 0:
            raise UsageError(f"--max-blur {self.max_blur}: choose a variance >= 0 (q_blur below it is dropped)")
        if self.max_watermark is not None and not 0 <= self.max_watermark <= 1:
            raise UsageError(f"--max-watermark {self.max_watermark}: choose a probability from 0 to 1")
        if self.max_outlier is not None and not 0 <= self.max_outlier <= 1:
            raise UsageError(f"--max-outlier {self.max_outlier}: choose a score from 0 to 1")
        if self.max_watermark is not None and not self.watermark:
            raise UsageError("--max-watermark needs the watermark scores: drop --no-watermark")
        if not 0 <= self.hamming <= MAX_RADIUS:
            raise UsageError(f"--hamming {self.hamming}: choose 0..{MAX_RADIUS} bits")
        if self.combined is not None and not 0 <= self.combined <= 128:
            raise UsageError(f"--combined {self.combined}: choose 0..128 bits (phash + dhash distance)")
        if self.only is not None and self.only not in ONLY:
            raise UsageError(f"--only {self.only!r}: choose one of {', '.join(ONLY)} (or leave it out for every score)")
        if self.only is not None:
            for name, flag in NEEDS_SCORES:
                if getattr(self, name) is not None:
                    raise UsageError(f"{flag} needs the image scores that --only {self.only} skips: drop one of them")
        if self.face_weights is not None:
            if not self.faces:
                raise UsageError("--face-weights needs --faces")
            if not Path(self.face_weights).is_file():
                raise UsageError(f"--face-weights {self.face_weights}: no such file (a YuNet .onnx model)")
        if self.dedup not in DEDUP:
            raise UsageError(f"--dedup {self.dedup!r}: choose full (also crops and rotations) or hash (phash, dhash)")
        if self.colour is not None and not 0 <= self.colour <= 2:
            raise UsageError(f"--colour {self.colour}: choose a colour distance from 0 to 2 (2: no colour check)")
        if not 0 <= self.min_words <= self.max_words:
            raise UsageError(f"--min-words {self.min_words} / --max-words {self.max_words}: need 0 <= min <= max")
        self.executor.validate()
        if self.watermark and self.only is None:
            require("train", "curate's watermark scores (q_watermark)", hint=", or pass --no-watermark")
        if self.where is not None and not self.where.strip():
            raise UsageError('--where is empty: give a DuckDB condition such as "q_min_side >= 64"')


@dataclass
class CurateResult:
    out: str
    input_samples: int
    samples: int
    failures: int
    removed: dict[str, int]
    duplicate_groups: int
    duplicate_rows: int
    caption_flags: dict[str, int]
    leakage_pairs: int | None
    seconds: float
    failure_reasons: dict[str, int] = field(default_factory=dict)


def keep_best(groups: np.ndarray, alive: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """One True per group among ``alive`` rows: the row with the smallest ``rank`` (a total order)."""
    keep = np.zeros(len(groups), dtype=bool)
    idx = np.flatnonzero(alive)
    if not len(idx):
        return keep
    order = idx[np.lexsort((rank[idx], groups[idx]))]  # by group, then best first
    first = np.ones(len(order), dtype=bool)
    first[1:] = groups[order][1:] != groups[order][:-1]
    keep[order[first]] = True
    return keep


def quality_rank(table: pa.Table) -> np.ndarray:
    """Rank of every row as a group representative: largest original, then best quality, then key."""

    def col(name: str, fill: float) -> np.ndarray:
        return pc.fill_null(table.column(name), fill).to_numpy(zero_copy_only=False).astype(np.float64)

    area = np.maximum(col("orig_width", 0) * col("orig_height", 0), col("width", 0) * col("height", 0))
    keys = table.column("key").to_numpy(zero_copy_only=False)
    # lexsort: last key is primary. Lossless (null JPEG quality) counts as best; less watermark,
    # then sharper, is better; the key breaks every remaining tie, so the choice is deterministic.
    order = np.lexsort((keys, -col("q_blur", 0), col("q_watermark", 0), -col("q_jpeg_quality", 101), -area))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def leakage(table: pa.Table, groups: np.ndarray) -> dict[str, Any]:
    """Duplicate pairs whose members sit in different splits, counted over duplicate groups."""
    splits = table.column("split").to_pylist()
    keys = table.column("key").to_pylist()
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups.tolist()):
        if splits[i] is not None:
            members.setdefault(g, []).append(i)
    pairs, leaky, examples = 0, 0, []
    for rows in members.values():
        per_split = Counter(splits[i] for i in rows)
        if len(per_split) < 2:
            continue
        leaky += 1
        counts = list(per_split.values())
        pairs += (sum(counts) ** 2 - sum(c * c for c in counts)) // 2
        for a, b in ((a, b) for a in rows for b in rows if a < b and splits[a] != splits[b]):
            if len(examples) >= EXAMPLES_PER_RULE:
                break  # a generator: a huge group is not walked pair by pair once examples are full
            examples.append({"a": keys[a], "a_split": splits[a], "b": keys[b], "b_split": splits[b]})
    return {"cross_split_pairs": int(pairs), "groups": leaky, "examples": examples}


def curate(inp: str, out: str, config: CurateConfig, *, overwrite: bool = False, resume: bool = False) -> CurateResult:
    """Score, deduplicate, check and filter dataset ``inp`` into a new dataset ``out``.

    Every output row keeps all input columns and gains CURATE_FIELDS. Samples whose image cannot
    be decoded become failure rows (reason from FAILURE_REASONS). ``out``/curation.json records
    how many rows each rule removed with example keys; dataset.json's lineage holds ``config``.
    With ``resume``, a stopped run into ``out`` continues: scores of finished scoring tasks and
    finished output shards are kept, and the result equals an uninterrupted run. A plain folder of
    images as ``inp`` is imported and curated in one pass (curate.folder).
    """
    from pixelforge.curate.folder import curate_folder, is_image_folder

    config.validate()
    config.executor.check_output(out)  # memory:// is private to one process
    if is_image_folder(inp):
        return curate_folder(inp, out, config, overwrite=overwrite, resume=resume)
    in_fs, in_root = fsutil.resolve(inp)
    if fsutil.is_local(in_fs) and not in_fs.exists(in_root):
        raise UsageError(f"IN {inp}: no such dataset or folder; pass a pixelforge dataset or a folder of images")
    schema = output_schema(Dataset.open(inp), CURATE_FIELDS)
    if config.where:  # before any output exists: a bad condition leaves nothing behind
        check_where(config.where, schema)
    if config.max_outlier is not None and "outlier" not in schema.names:
        raise UsageError(
            f"--max-outlier needs the outlier column: run `pixelforge embed` and `pixelforge cluster` on {inp}"
        )
    ds, _, _ = open_input(inp, out, overwrite, resume)
    done = begin_run(out, "curate", inp, config, resume)
    start = time.monotonic()
    import_while_scoring(config)
    table, failures, image_warnings = _score(ds, config, out)
    chosen = group_and_filter(table, config)
    kept = chosen.kept().cast(schema)
    copy_shards(ds, out, kept, failures, schema, config, label="curate write", done=done)
    return finish(inp, out, config, schema, chosen, kept.num_rows, failures, ds.num_samples, image_warnings, start)


def import_while_scoring(config: CurateConfig) -> None:
    """Import what grouping, the rules and pyarrow's first conversions need in a daemon thread, while
    this process waits for the scoring workers (Python's import lock makes a later import wait for it).

    Not when this process scores itself (`--processes 1`): then it is not idle, and its own scoring imports
    scipy (phash) while the thread imports scipy's subpackages — a race that failed one run in CPython 3.11
    with KeyError: 'scipy'."""
    import importlib
    import threading

    if config.executor.backend == "local" and config.executor.processes <= 1:
        return

    modules = ("scipy.sparse.csgraph", *PRELOAD, *(("duckdb",) if config.where else ()))
    threading.Thread(target=lambda: [importlib.import_module(m) for m in modules], daemon=True).start()


@dataclass
class Chosen:
    """The scored rows with their caption and duplicate columns, and what the rules kept of them."""

    table: pa.Table
    alive: np.ndarray  # bool per row of ``table``: kept by every rule
    dups: Duplicates
    outcomes: list[RuleOutcome]
    leakage: dict[str, Any] | None  # --check-leakage's report, else None

    def kept(self) -> pa.Table:
        return self.table.filter(pa.array(self.alive))


def group_and_filter(table: pa.Table, config: CurateConfig) -> Chosen:
    """Check captions, group duplicates and apply the rules to the scored rows (both routes' middle)."""
    colour = table.column(COLOUR).combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    thumbs = table.column(NEAR_THUMB).combine_chunks().flatten().to_numpy()
    thumbs = thumbs.reshape(table.num_rows, NEAR_THUMB_SIDE, NEAR_THUMB_SIDE)
    table = table.drop_columns([COLOUR, NEAR_THUMB])
    table = _add_captions(table, CaptionRules(config.min_words, config.max_words))
    phash = table.column("phash").to_numpy(zero_copy_only=False).astype(np.uint64)
    dhash = table.column("dhash").to_numpy(zero_copy_only=False).astype(np.uint64)
    dups = hashes_to_groups(
        table.column("sha256").to_pylist(), phash, dhash, config.hamming, config.combined, colour, config.colour
    )
    if config.dedup == "full":
        dups = with_near_copies(dups, thumbs, phash, dhash, colour, config.colour, threads=config.executor.processes)
    rank = quality_rank(table)
    table = _add_dup_columns(table, dups, rank)
    report_leak = leakage(table, dups.groups) if config.check_leakage else None
    table, alive, outcomes = apply_rules(table, config, rekeep=lambda a: keep_best(dups.groups, a, rank))
    return Chosen(table, alive, dups, outcomes, report_leak)


def finish(
    inp: str,
    out: str,
    config: CurateConfig,
    schema: pa.Schema,
    chosen: Chosen,
    output_samples: int,
    failures: list[dict[str, Any]],
    input_samples: int,
    image_warnings: dict[str, int],
    start: float,
) -> CurateResult:
    """Write curation.json and finalize ``out`` once its shards are written; the run's result.

    ``image_warnings``: Pillow's warnings while scoring, by kind (media.take_warnings), for stats.json.
    """
    dups, outcomes, report_leak = chosen.dups, chosen.outcomes, chosen.leakage
    sizes = np.bincount(dups.groups)
    flag_counts = Counter(f for flags in chosen.table.column("c_flags").to_pylist() for f in flags)
    report = {
        "input": inp,
        "input_samples": input_samples,
        "scored": chosen.table.num_rows,
        "output_samples": output_samples,
        "failures": dict(Counter(f["reason"] for f in failures)),
        "rules": [o.to_json() for o in outcomes],
        "duplicates": {
            "hamming": config.hamming,
            "combined": config.combined,
            "colour": config.colour,
            "exact_pairs": int(len(dups.exact)),
            "near_pairs": int(len(dups.near)),
            "colour_vetoed_pairs": dups.colour_vetoed,
            "candidate_pairs": dups.candidates,
            "dedup": config.dedup,
            "aligned_pairs": int(len(dups.aligned)),
            "aligned_candidates": dups.aligned_candidates,
            "aligned_verified": dups.aligned_verified,
            "groups": int((sizes > 1).sum()),
            "rows_in_groups": int(sizes[sizes > 1].sum()),
            "rows_not_representative": int((sizes[sizes > 1] - 1).sum()),
        },
        "caption_flags": {f: flag_counts.get(f, 0) for f in CAPTION_FLAGS},
    }
    if report_leak is not None:
        report["leakage"] = report_leak
    fs, root = fsutil.resolve(out)
    fsutil.atomic_write_bytes(fs, fsutil.join(root, CURATION_JSON), json.dumps(report, indent=2).encode())
    seconds = time.monotonic() - start
    result_ds = finalize(
        out,
        name=default_name(out),
        schema=schema,
        lineage=Lineage(command="curate", config=config_to_dict(config), inputs=[inp]),
        stats={
            "seconds": round(seconds, 3),
            "removed": {o.rule: o.removed for o in outcomes},
            "image_warnings": dict(sorted(image_warnings.items())),
        },
    )
    return CurateResult(
        out=out,
        input_samples=input_samples,
        samples=result_ds.num_samples,
        failures=len(failures),
        removed={o.rule: o.removed for o in outcomes},
        duplicate_groups=report["duplicates"]["groups"],
        duplicate_rows=report["duplicates"]["rows_not_representative"],
        caption_flags={k: v for k, v in report["caption_flags"].items() if v},
        leakage_pairs=report_leak["cross_split_pairs"] if report_leak else None,
        seconds=round(seconds, 3),
        failure_reasons=report["failures"],
    )


TASKS_PER_PROCESS = 4  # shards are cut into parts so the last shard does not leave processes idle
MIN_TASK_ROWS = 64  # below this a task's fixed cost (open the index, walk the tar) dominates


def score_tasks(ds: Dataset, config: CurateConfig) -> list:
    """Scoring tasks: every shard cut into row ranges of about N / (4 * processes) rows.

    Three 1,000-row shards on two processes would otherwise take two full rounds; eight
    375-row parts take about one and a half.
    """
    from pixelforge.curate.worker import ScoreTask

    counts = Counter(ds.index(columns=["shard"]).column("shard").to_pylist())
    size = max(MIN_TASK_ROWS, -(-ds.num_samples // (TASKS_PER_PROCESS * config.executor.processes)))
    return [
        ScoreTask(
            ds.path,
            shard,
            start,
            min(start + size, counts[shard]),
            watermark=config.watermark,
            only=config.only,
            faces=config.face_settings,
        )
        for shard in ds.shards()
        for start in range(0, counts.get(shard, 0), size)
    ]


def _cache_path(fs, root: str, task) -> str:
    """Where the scores of one scoring task are kept until the run finishes (its unit of resume)."""
    return work_path(root, f"scores-{task.shard[:-4]}-{task.start}-{task.stop}.arrow", fs)


# The layout of a saved score table: a table saved by a pixelforge whose scores differed (before the
# near-copy thumbnails, say) is scored again on --resume, not read back
SCORES_FORMAT = b"2"


def _save_scores(fs, path: str, res) -> None:
    sink = pa.BufferOutputStream()
    meta = {
        b"failures": json.dumps(res.failures).encode(),
        b"image_warnings": json.dumps(res.image_warnings).encode(),
        b"format": SCORES_FORMAT,
    }
    with pa.ipc.new_file(sink, res.table.schema.with_metadata(meta)) as writer:
        writer.write_table(res.table)
    fsutil.atomic_write_bytes(fs, path, sink.getvalue().to_pybytes())


def _load_scores(fs, path: str):
    """The saved scores at ``path``, or None when they were saved in another layout (SCORES_FORMAT)."""
    from pixelforge.curate.worker import ShardScores

    with fs.open(path, "rb") as f:
        table = pa.ipc.open_file(pa.BufferReader(f.read())).read_all()
    meta = table.schema.metadata or {}
    if meta.get(b"format") != SCORES_FORMAT:
        return None
    return ShardScores(
        "",
        table.replace_schema_metadata(None),
        json.loads(meta[b"failures"]),
        image_warnings=json.loads(meta[b"image_warnings"]),
    )


def run_saved(
    fn, tasks, path_of, fs, config: CurateConfig, label: str, total: int
) -> tuple[list[pa.Table], list[dict[str, Any]], dict[str, int]]:
    """Run scoring ``fn`` over ``tasks`` through the executor, saving each result at ``path_of(task)``
    as it arrives; a task already saved there (by a stopped run, see curate's ``resume``) is read
    back instead of run again. Returns the results' tables and failures, in no particular order,
    and their Pillow warning counts summed."""
    tables, failures, todo = [], [], []
    image_warnings: dict[str, int] = {}
    for task in tasks:
        res = _load_scores(fs, path_of(task)) if fs.exists(path_of(task)) else None
        if res is not None:
            tables.append(res.table)
            failures.extend(res.failures)
            media.add_warnings(image_warnings, res.image_warnings)
        else:
            todo.append(task)
    with track(label, total=total) as bar:
        bar.advance(sum(t.num_rows for t in tables) + len(failures))
        for res in config.executor.run(fn, todo):
            _save_scores(fs, path_of(res.task), res)
            tables.append(res.table)
            failures.extend(res.failures)
            media.add_warnings(image_warnings, res.image_warnings)
            bar.advance(res.table.num_rows + len(res.failures))
    return tables, failures, image_warnings


def _score(ds: Dataset, config: CurateConfig, out: str) -> tuple[pa.Table, list[dict[str, Any]], dict[str, int]]:
    """Run score_shard over every shard; return the input rows that scored (with scores), the
    failures and Pillow's warning counts.

    Each task's scores are saved in ``out``'s work folder as they arrive; tasks already saved there
    (by a stopped run, see curate's ``resume``) are read back instead of scored again.
    """
    from pixelforge.curate.worker import score_shard

    fs, root = fsutil.resolve(out)
    tables, failures, image_warnings = run_saved(
        score_shard,
        score_tasks(ds, config),
        lambda t: _cache_path(fs, root, t),
        fs,
        config,
        "curate score",
        ds.num_samples,
    )
    return _scores_into_index(ds.index(), tables), failures, image_warnings


def _scores_into_index(index: pa.Table, tables: list[pa.Table]) -> pa.Table:
    """The index rows that scored, each with its scores (the tables' rows are placed by key)."""
    scores = pa.concat_tables(tables) if tables else None  # task order does not matter: rows are placed by key
    drop = [c.name for c in CURATE_FIELDS if c.name in index.column_names]
    # faces found before (collect --faces, an earlier curate --faces) stay when this run does not look
    earlier_faces = {n: index.column(n) for n in FACE_COLUMNS if n in index.column_names}
    index = index.drop_columns(drop)  # re-curating a curated dataset recomputes its columns
    if scores is None or not scores.num_rows:
        return _empty_scored(index)
    pos = {k: i for i, k in enumerate(scores.column("key").to_pylist())}
    at = [pos.get(k, -1) for k in index.column("key").to_pylist()]
    ok = np.array(at) >= 0
    kept = pa.array(ok)
    index = index.filter(kept)
    scores = scores.take(pa.array(np.array(at)[ok]))
    phash = pc.coalesce(index.column("phash"), scores.column("phash"))
    index = index.set_column(index.schema.get_field_index("phash"), "phash", phash)
    for name in scores.column_names:
        if name not in ("key", "phash"):
            column = scores.column(name)
            if name in earlier_faces:  # null where faces were not looked for in this run
                column = pc.coalesce(column, earlier_faces[name].filter(kept).cast(column.type))
            index = index.append_column(name, column)
    return index


def _empty_scored(index: pa.Table) -> pa.Table:
    index = index.slice(0, 0)
    for f in SCORE_FIELDS:
        index = index.append_column(f, pa.nulls(0, f.type))
    index = index.append_column(pa.field(COLOUR, COLOUR_TYPE), pa.nulls(0, COLOUR_TYPE))
    return index.append_column(pa.field(NEAR_THUMB, NEAR_THUMB_TYPE), pa.nulls(0, NEAR_THUMB_TYPE))


def _add_captions(table: pa.Table, rules: CaptionRules) -> pa.Table:
    captions = table.column("caption").to_pylist()
    table = table.append_column(columns.field("c_words"), pa.array([count_words(c) for c in captions], pa.int32()))
    return table.append_column(
        columns.field("c_flags"), pa.array([caption_flags(c, rules) for c in captions], pa.list_(pa.string()))
    )


def _add_dup_columns(table: pa.Table, dups: Duplicates, rank: np.ndarray) -> pa.Table:
    """dup_group: key of the group's best row over all scored rows; dup_count; dup_keep (all alive)."""
    keep = keep_best(dups.groups, np.ones(table.num_rows, dtype=bool), rank)
    keys = table.column("key").to_numpy(zero_copy_only=False)
    rep = np.empty(int(dups.groups.max()) + 1 if len(dups.groups) else 0, dtype=object)
    rep[dups.groups[keep]] = keys[keep]
    counts = np.bincount(dups.groups) if len(dups.groups) else np.zeros(0, np.int64)
    table = table.append_column(columns.field("dup_group"), pa.array(rep[dups.groups].tolist(), pa.string()))
    table = table.append_column(columns.field("dup_count"), pa.array(counts[dups.groups].astype(np.int32)))
    return table.append_column(columns.field("dup_keep"), pa.array(keep, pa.bool_()))
