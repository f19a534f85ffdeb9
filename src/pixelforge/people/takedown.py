"""`pixelforge takedown`: a new dataset without the samples a takedown request names, and what was built on the old one.

A person asking for their photo to be removed rarely knows the sample's key. The request file
(``--match FILE``) names samples any way they can be known, one entry per line (``#`` starts a
comment, as does a ``#`` after whitespace; a URL's own ``#fragment`` stays), each with its kind:

    key:000123                      a sample key
    url:https://example.org/me.jpg  the URL a sample was collected from, or the page it was found on (exact)
    url-prefix:https://example.org/albums/me/   every such URL under it
    sha256:<64 hex>                 the stored file's hash
    phash:<16 hex>                  a 64-bit perceptual hash, within --radius bits (default 8)
    image:me.jpg                    a copy of the photo (relative to the request file): its sha256,
                                    its phash within --radius, and - unless --no-aligned - a crop,
                                    small rotation or rescale of it (pixelforge.alignment, in colour)

The samples are removed with their bytes: their shards are written again without them, the others
are carried unchanged (hard links when local; the input's failure rows, which have no sample, are
not carried). Embeddings are carried without the removed
rows. ``takedown.json`` in the new dataset and its lineage list each removed key with the entries
(file line numbers) that matched it. With ``--find-derived DIR``, every dataset, training run and
generated set under DIR that was made from the old dataset (directly or through other datasets, by
their lineage) is listed: what to rebuild or retrain.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pixelforge.errors import DatasetError, UsageError
from pixelforge.store import Dataset, Lineage, begin_run, config_to_dict, default_name, finalize, is_dataset, open_input
from pixelforge.store import embeddings as store_embeddings
from pixelforge.store import fs as fsutil
from pixelforge.store.derive import carry_shards

KINDS = ("key", "url", "url-prefix", "sha256", "phash", "image")
TAKEDOWN_JSON = "takedown.json"
ALIGN_BITS = 24  # an image entry is aligned with the samples whose phash is within this many bits
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass
class Entry:
    kind: str
    value: str
    line: int
    # image entries: the photo's sha256, phash and colour thumbnail (read when the request is)
    sha256: str | None = None
    phash: int | None = None
    thumb: np.ndarray | None = None


@dataclass
class TakedownConfig:
    match: str  # the request file
    radius: int = 8  # phash bits within which a phash or image entry matches (curate's near-duplicate radius)
    aligned: bool = True  # image entries also match crops, rotations and rescales
    find_derived: str | None = None  # a folder searched for datasets, runs and generated sets made from the input

    def validate(self) -> None:
        if not 0 <= self.radius <= 16:
            raise UsageError(f"--radius {self.radius}: choose 0..16 bits")
        if self.find_derived is not None and not Path(self.find_derived).is_dir():
            raise UsageError(f"--find-derived {self.find_derived}: no such folder")


@dataclass
class TakedownResult:
    out: str
    input_samples: int
    removed: int
    samples: int
    by_kind: dict[str, int]  # entries' kinds -> samples they matched
    unmatched_lines: list[int]  # request lines that matched no sample
    derived: dict[str, list[str]] = field(default_factory=dict)  # datasets, runs, generated: paths
    seconds: float = 0.0


def parse_request(path: str) -> list[Entry]:
    """The entries of request file ``path``; UsageError naming the line of a malformed one."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--match {path}: no such file")
    entries = []
    for n, raw in enumerate(p.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        # a comment starts a line or follows whitespace: a URL's own #fragment (no space before it) stays
        text = "" if raw.lstrip().startswith("#") else re.split(r"\s#", raw, maxsplit=1)[0].strip()
        if not text:
            continue
        kind, sep, value = text.partition(":")
        kind, value = kind.strip().lower(), value.strip()
        low = value.lower()
        ok = sep and kind in KINDS and value
        if ok and kind == "sha256":
            ok = len(low) == 64 and bool(_HEX.match(low))
        elif ok and kind == "phash":
            ok = len(low) == 16 and bool(_HEX.match(low))
        elif ok and kind in ("url", "url-prefix"):
            ok = low.startswith(("http://", "https://"))
        elif ok and kind == "image":
            image = (p.parent / value) if not Path(value).is_absolute() else Path(value)
            if not image.is_file():
                raise UsageError(
                    f"--match {path} line {n}: image {value!r}: no such file (paths are relative to {p.parent})"
                )
            value = str(image)
        if not ok:
            raise UsageError(
                f"--match {path} line {n}: {text[:80]!r}: write KIND:VALUE with KIND one of {', '.join(KINDS)} "
                "(sha256: 64 hex digits, phash: 16, url: http(s)://...)"
            )
        entry = Entry(kind, low if kind in ("sha256", "phash") else value, n)
        if kind == "image":
            _read_image(entry, path)
        entries.append(entry)
    if not entries:
        raise UsageError(f"--match {path}: no entries (write one KIND:VALUE per line)")
    return entries


def _read_image(entry: Entry, path: str) -> None:
    """The sha256, phash and colour thumbnail of an image entry's photo; UsageError when it is no image."""
    from pixelforge import media

    data = Path(entry.value).read_bytes()
    try:
        img = media.decode(data)
    except media.MediaError as exc:
        raise UsageError(f"--match {path} line {entry.line}: {entry.value}: not a readable image ({exc})") from None
    entry.sha256 = hashlib.sha256(data).hexdigest()
    entry.phash = media.phash64(img)
    entry.thumb = _colour_thumb(img)


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def match_rows(ds: Dataset, entries: list[Entry], config: TakedownConfig) -> dict[str, list[int]]:
    """{sample key: request lines that match it}."""
    names = ds.schema.names
    cols = [c for c in ("key", "source", "page_url", "sha256", "phash") if c in names]
    index = ds.index(columns=cols).to_pydict()
    keys = index["key"]
    row_of = {k: i for i, k in enumerate(keys)}
    matched: dict[str, list[int]] = {}

    def add(rows, line: int) -> None:
        for i in rows:
            matched.setdefault(keys[int(i)], []).append(line)

    # a sample's URLs: where its image came from (source) and the page it was found on
    urls = [
        tuple(u for u in pair if u)
        for pair in zip(
            index.get("source") or [None] * len(keys), index.get("page_url") or [None] * len(keys), strict=True
        )
    ]
    shas = index.get("sha256") or [None] * len(keys)
    phash = np.array([0 if p is None else p for p in index.get("phash") or [None] * len(keys)], dtype=np.uint64)
    has_phash = np.array([p is not None for p in index.get("phash") or [None] * len(keys)], bool)
    images = []
    for e in entries:
        if e.kind == "key":
            add([row_of[e.value]] if e.value in row_of else [], e.line)
        elif e.kind == "url":
            add([i for i, us in enumerate(urls) if e.value in us], e.line)
        elif e.kind == "url-prefix":
            add([i for i, us in enumerate(urls) if any(u.startswith(e.value) for u in us)], e.line)
        elif e.kind == "sha256":
            add([i for i, s in enumerate(shas) if s == e.value], e.line)
        elif e.kind == "phash":
            bits = _popcount(phash ^ np.uint64(int(e.value, 16)))
            add(np.flatnonzero(has_phash & (bits <= config.radius)), e.line)
        else:
            bits = _popcount(phash ^ np.uint64(e.phash))
            add([i for i, s in enumerate(shas) if s == e.sha256], e.line)
            add(np.flatnonzero(has_phash & (bits <= config.radius)), e.line)
            images.append((e, bits))
    if config.aligned and images:
        _match_aligned(ds, keys, has_phash, images, set(matched), add)
    for k in matched:
        matched[k] = sorted(set(matched[k]))
    return matched


def _match_aligned(ds: Dataset, keys: list[str], has_phash: np.ndarray, images, matched: set[str], add) -> None:
    """Image entries against the samples not matched yet whose phash is within ALIGN_BITS: those are
    read (only their bytes, shard by shard), decoded at about the detector's size, and match when
    alignment.alignment_score of the two colour thumbnails reaches alignment.COPY_SCORE."""
    from pixelforge import alignment, media
    from pixelforge.store import split_member

    wanted: dict[str, list[Entry]] = {}
    for e, bits in images:
        for i in np.flatnonzero(has_phash & (bits <= ALIGN_BITS)):
            if keys[int(i)] not in matched:
                wanted.setdefault(keys[int(i)], []).append(e)
    if not wanted:
        return
    row = {k: i for i, k in enumerate(keys)}
    index = ds.index(columns=["key", "shard", "member"]).to_pylist()
    by_shard: dict[str, dict[str, str]] = {}
    for r in index:
        if r["key"] in wanted:
            by_shard.setdefault(r["shard"], {})[r["key"]] = split_member(r["member"])[1]
    for shard, members in by_shard.items():
        for key, files in ds.read_shard(shard, keys=members):
            try:
                img = media.decode(files[members[key]], draft_size=(128, 128))
            except (KeyError, media.MediaError):  # a damaged sample cannot be compared; its hashes were
                continue
            mine = _colour_thumb(img)
            for e in wanted[key]:
                score = max(alignment.alignment_score(mine, e.thumb), alignment.alignment_score(e.thumb, mine))
                if score >= alignment.COPY_SCORE:
                    add([row[key]], e.line)


def _colour_thumb(img) -> np.ndarray:
    from PIL import Image

    from pixelforge.alignment import THUMB_SIDE

    return np.asarray(img.convert("RGB").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR))


def find_derived(root: str, ds: Dataset) -> dict[str, list[str]]:
    """Datasets, training runs and generated sets under ``root`` made from ``ds``, by their lineage
    (directly or through other datasets). An input is ``ds`` when its path resolves to ``ds``'s or
    when it carries ``ds``'s name and creation time (paths recorded relative to another folder)."""
    me = identity(ds.path, ds.name, ds.info.get("created_at"))
    datasets, runs = scan_folder(root)
    tainted = [me]
    derived: set[str] = set()
    changed = True
    while changed:  # datasets made from a tainted one are tainted: to a fixed point
        changed = False
        for folder, info in datasets.items():
            if folder in derived or _same(folder, info, me):
                continue
            inputs = (info.get("lineage") or {}).get("inputs") or []
            if any(input_is(i, t) for i in inputs for t in tainted):
                derived.add(folder)
                tainted.append(identity(folder, info.get("name"), info.get("created_at")))
                changed = True
    affected_runs = sorted(folder for folder, cfg in runs.items() if any(input_is(cfg["dataset"], t) for t in tainted))
    generated = generated_by(datasets, affected_runs)
    made = {os.path.realpath(f) for f in [*affected_runs, *generated]}
    reports = sorted(
        path
        for path, records in scan_reports(root).items()
        if any(
            any(input_is(r, t) for t in tainted)
            or r.get("path") in made
            or (r.get("dataset") and any(input_is(r["dataset"], t) for t in tainted))
            for r in records
        )
    )
    return {
        "datasets": sorted(derived - set(generated)),
        "runs": affected_runs,
        "generated": generated,
        "reports": reports,
    }


# `pixelforge report` names its inputs in the page's head (report.render.input_records)
_REPORT_INPUTS = re.compile(rb'<meta name="pixelforge-inputs" content="([^"]*)">')


def scan_reports(root: str) -> dict[str, list[dict[str, Any]]]:
    """{file: its inputs} of every pixelforge report (an .html file naming its inputs) under ``root``."""
    found: dict[str, list[dict[str, Any]]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.endswith(".html"):
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    head = f.read(8192)  # the meta tag is in the head, before any section
                match = _REPORT_INPUTS.search(head)
                records = json.loads(html.unescape(match.group(1).decode())) if match else None
            except (OSError, ValueError):
                continue
            if isinstance(records, list):
                found[path] = [r for r in records if isinstance(r, dict)]
    return found


def scan_folder(root: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """({folder: dataset.json} of every dataset under ``root``, {folder: config.json} of every training
    run: a folder whose config.json has a "dataset" record and a "family"); hidden folders are skipped."""
    datasets: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if is_dataset(folder):
            try:
                datasets[folder] = Dataset.open(folder).info
            except (OSError, ValueError, DatasetError):  # an unreadable dataset.json: nothing to list
                pass
        elif "config.json" in files:
            try:
                cfg = json.loads(Path(folder, "config.json").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(cfg, dict) and isinstance(cfg.get("dataset"), dict) and "family" in cfg:
                runs[folder] = cfg
    return datasets, runs


def generated_by(datasets: dict[str, dict[str, Any]], runs: list[str]) -> list[str]:
    """The folders of ``datasets`` (folder -> dataset.json) that `pixelforge generate` made from one of ``runs``."""
    run_ids = {os.path.realpath(r) for r in runs}
    return sorted(
        folder
        for folder, info in datasets.items()
        if (info.get("lineage") or {}).get("command") == "generate"
        and os.path.realpath(str(((info.get("lineage") or {}).get("config") or {}).get("run", ""))) in run_ids
    )


def identity(path: str, name: Any, created_at: Any) -> tuple[str, Any, Any]:
    """What tells a dataset apart: its real path, and its name with its creation time wherever it moves."""
    return (os.path.realpath(path), name, created_at)


def _same(folder: str, info: dict[str, Any], me: tuple[str, Any, Any]) -> bool:
    return os.path.realpath(folder) == me[0]


def input_is(entry: Any, ident: tuple[str, Any, Any]) -> bool:
    """Whether a lineage input (or a run's dataset record) is the dataset of ``ident``."""
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict):
        return False
    if entry.get("path") and os.path.realpath(str(entry["path"])) == ident[0]:
        return True
    return entry.get("created_at") is not None and (entry.get("name"), entry.get("created_at")) == ident[1:]


def takedown(inp: str, out: str, config: TakedownConfig, *, overwrite: bool = False) -> TakedownResult:
    """Write ``out``: ``inp`` without the samples ``config.match`` names (see the module docstring)."""
    from pixelforge.curate.shards import copy_shards

    config.validate()
    start = time.monotonic()
    entries = parse_request(config.match)
    ds, _, _ = open_input(inp, out, overwrite, False)
    matched = match_rows(ds, entries, config)
    begin_run(out, "takedown", inp, config, False)
    index = ds.index()
    keep = np.array([k not in matched for k in index.column("key").to_pylist()], bool)
    kept = index.filter(pa.array(keep))
    # shards that lose no sample are carried unchanged (hard links when local); the others are written again
    touched = set(index.filter(pa.array(~keep)).column("shard").to_pylist())
    carry_shards(ds, out, done=touched)
    unchanged = [shard for shard in ds.shards() if shard not in touched]
    copy_shards(ds, out, kept, [], index.schema, _InThisProcess(), label="takedown write", done=set(unchanged))
    lines_of = {e.line: e for e in entries}
    by_kind: dict[str, int] = {}
    for lines in matched.values():
        for kind in {lines_of[n].kind for n in lines}:
            by_kind[kind] = by_kind.get(kind, 0) + 1
    used = {n for lines in matched.values() for n in lines}
    removed = [{"key": k, "lines": lines} for k, lines in sorted(matched.items())]
    fs, root = fsutil.resolve(out)
    carried = {}
    for name, info in (ds.info.get("embeddings") or {}).items():  # without the removed samples' vectors
        emb = ds.embeddings(name)
        rows = [i for i, k in enumerate(emb.keys) if k not in matched]
        carried[name] = store_embeddings.write(
            root,
            name,
            [emb.keys[i] for i in rows],
            np.asarray(emb.vectors[rows]),
            {k: v for k, v in info.items() if k != "count"},
        )
    derived = find_derived(config.find_derived, ds) if config.find_derived else {}
    report = {
        "input": inp,
        "request": config.match,
        "removed": removed,
        "unmatched_lines": sorted(set(lines_of) - used),
        "derived": derived,
    }
    fsutil.atomic_write_bytes(fs, fsutil.join(root, TAKEDOWN_JSON), json.dumps(report, indent=2).encode())
    settings = dict(config_to_dict(config), removed=[r["key"] for r in removed])
    finalize(
        out,
        name=default_name(out),
        lineage=Lineage(command="takedown", config=settings, inputs=[inp]),
        schema=index.schema,
        stats={"takedown": {"removed": len(removed), "by_kind": by_kind}},
        embeddings=carried or None,
    )
    return TakedownResult(
        out=out,
        input_samples=ds.num_samples,
        removed=len(removed),
        samples=int(keep.sum()),
        by_kind=by_kind,
        unmatched_lines=report["unmatched_lines"],
        derived=derived,
        seconds=round(time.monotonic() - start, 3),
    )


class _InThisProcess:
    """What copy_shards needs of a config: the executor (here: this process)."""

    def __init__(self):
        from pixelforge.run.settings import ExecutorSettings

        self.executor = ExecutorSettings(processes=1)
