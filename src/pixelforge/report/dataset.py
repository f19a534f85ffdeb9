"""Dataset sections: counts, sources, licences and opt-outs, a sample grid, quality, curation, duplicates."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pixelforge.errors import DatasetError, ItemError
from pixelforge.report import figures
from pixelforge.report.blocks import Section, fmt, pct
from pixelforge.store import Dataset

GRID = 24  # samples in the grid
EXAMPLES_PER_RULE = 6  # removed examples shown per curation rule
DUP_GROUPS = 6  # duplicate groups shown side by side
QUALITY = (
    ("q_blur", "sharpness (variance of the Laplacian; low = blurry)"),
    ("q_brightness", "brightness"),
    ("q_contrast", "RMS contrast"),
    ("q_entropy", "entropy (bits)"),
    ("q_watermark", "watermark probability"),
    ("q_min_side", "shorter side (px)"),
    ("q_jpeg_quality", "JPEG quality"),
    ("c_words", "caption words"),
)
CURATION_JSON = "curation.json"
HUMAN_EVAL = "human_eval.json"  # what `pixelforge label results` writes beside the dataset


MAP_POINTS = 10_000  # the map draws at most this many samples
MAP_CLUSTERS = 12  # clusters whose central samples are shown


def samples_by_key(ds: Dataset, keys: Iterable[str]) -> dict[str, Any]:
    """The samples of ``keys`` that exist in ``ds`` (reading only the shards that hold them)."""
    wanted = list(dict.fromkeys(k for k in keys if k is not None))
    if not wanted:
        return {}
    import pyarrow as pa
    import pyarrow.compute as pc

    idx = ds.index(columns=["key", "shard"])
    rows = idx.filter(pc.is_in(idx.column("key"), value_set=pa.array(wanted, pa.string())))
    shards = sorted(set(rows.column("shard").to_pylist()))
    found = {}
    wanted_set = set(wanted)
    for sample in ds.iter_samples(shards=shards):
        if sample.key in wanted_set:
            found[sample.key] = sample
            if len(found) == len(wanted_set):
                break
    return found


def sample_uri(sample) -> str | None:
    """A thumbnail of a sample, or None when its image does not decode."""
    try:
        return figures.thumbnail(sample.decode())
    except (ItemError, OSError, ValueError):
        return None


def first_samples(ds: Dataset, n: int) -> list:
    """The first ``n`` samples in shard order (only the first shards are read)."""
    out = []
    for sample in ds.iter_samples(shards=ds.shards()[: max(1, n // 100 + 1)]):
        out.append(sample)
        if len(out) >= n:
            break
    return out


def _caption(row: dict[str, Any]) -> str:
    return row.get("caption") or row.get("label_name") or (str(row["label"]) if row.get("label") is not None else "")


def sample_grid(ds: Dataset, n: int = GRID) -> list[dict[str, Any]]:
    items = []
    for s in first_samples(ds, n):
        uri = sample_uri(s)
        if uri:
            sub = " · ".join(x for x in (s.row.get("license"), s.row.get("split")) if x)
            items.append({"uri": uri, "caption": _caption(s.row), "sub": f"{s.key}" + (f" · {sub}" if sub else "")})
    return items


def dataset_section(path: str, title_prefix: str = "Dataset", generated: bool = False) -> Section:
    """Everything the dataset directory at ``path`` tells about itself.

    ``generated``: a set `pixelforge generate` wrote; its images are shown by the provenance
    section, and it is not expected to be curated.
    """
    from pixelforge.store.summary import summarize

    ds = Dataset.open(path)
    s = summarize(ds)
    stats = _stats(ds)
    lineage = ds.info.get("lineage") or {}
    sec = Section(
        "dataset",
        f"{title_prefix}: {ds.name}",
        path,
        summary=f"{s['samples']:,} samples, {s['failures']:,} failures, made by `pixelforge "
        f"{lineage.get('command', '?')}`",
    )
    inputs = ", ".join(i.get("path", "") for i in lineage.get("inputs", [])) or "—"
    w, h = s["width"], s["height"]
    sec.facts(
        [
            ("made by", f"pixelforge {lineage.get('command', '?')} at {s['created_at']}"),
            ("inputs", inputs),
            ("samples", s["samples"]),
            ("shards", s["shards"]),
            ("on disk", _human_bytes(s["disk_bytes"])),
            ("failures", s["failures"]),
            ("with caption", f"{s['with_caption']:,} ({pct(s['with_caption'], s['samples'])})"),
            ("labelled", f"{s['with_label']:,} in {s['distinct_labels']} classes"),
            ("opted out (kept)", s["opt_outs"]),
            (
                "image size",
                f"{fmt(w['min'])}–{fmt(w['max'])} × {fmt(h['min'])}–{fmt(h['max'])} px (median "
                f"{fmt(w['median'])} × {fmt(h['median'])})"
                if s["samples"]
                else "—",
            ),
            ("extra columns", ", ".join(s["extra_columns"]) or "—"),
        ],
        title="Counts",
    )
    con_counts = _column_counts(ds)
    opt_outs = dict(con_counts.get("opt_out", {}))
    for reason, n in s["failure_reasons"].items():
        if reason.startswith("opt_out"):
            opt_outs[f"{reason} (not downloaded)"] = n
    sec.figures(
        [
            (figures.bar_chart(s["source_kinds"], "Sources (source_kind)"), "samples per source kind"),
            (figures.bar_chart(s["licenses"], "Licences"), "samples per licence id"),
            (
                figures.bar_chart(opt_outs, "Opt-outs", xlabel="images"),
                "opted-out images: refused at collection (failure rows) or kept with --ignore-opt-outs",
            ),
            (figures.bar_chart(con_counts.get("label", {}), "Labels"), "samples per label"),
            (figures.bar_chart(s["splits"], "Splits"), "samples per split"),
            (
                figures.bar_chart(s["failure_reasons"], "Failures", xlabel="inputs"),
                "inputs that gave no sample, by reason",
            ),
        ],
        title="Sources, licences and opt-outs",
    )
    if not opt_outs:
        sec.note("No opted-out images: no failure row with an opt_out_* reason and no sample with opt_out set.")
    if "crawl" in stats:
        _crawl_block(sec, stats["crawl"])
    _human_block(sec, ds)
    if generated:
        return sec
    grid = sample_grid(ds)
    if grid:
        sec.gallery(grid, title=f"Samples (the first {len(grid)}, with captions)")
    else:
        sec.missing("No samples to show: the dataset is empty.")
    _quality_block(sec, ds)
    _curation_block(sec, ds)
    _duplicates_block(sec, ds)
    _clusters_block(sec, ds, stats)
    return sec


def _human_block(sec: Section, ds: Dataset) -> None:
    """People's judgements of the images (`pixelforge label results` wrote DIR/human_eval.json): mean ratings
    and the blind side-by-side comparison with another model's images of the same prompts."""
    path = Path(ds.root) / HUMAN_EVAL
    if not path.is_file():
        return
    doc = json.loads(path.read_text())
    ratings = doc.get("ratings") or {}
    if ratings:
        sec.table(
            ["rating (1-5)", "mean", "95% interval", "judgements", "images", "annotators"],
            [
                [
                    f,
                    fmt(r["mean"]),
                    "—" if not r.get("ci95") else f"{r['ci95'][0]:.2f}–{r['ci95'][1]:.2f}",
                    r["n"],
                    r["items"],
                    r["annotators"],
                ]
                for f, r in ratings.items()
            ],  # fmt: skip
            title="Human ratings",
        )
    compare = doc.get("compare")
    if compare:
        names = compare["models"]
        sec.table(
            ["model", "wins", "win rate (a tie is half)", "Bradley-Terry strength"],
            [[n, compare["wins"][n], fmt(compare["win_rate"][n]), fmt(compare["bradley_terry"][n])] for n in names],
            title="Human comparison (blind, side by side)",
            note=f"{compare['n']} judgements of {compare['items']} pairs of images of the same prompt by "
            f"{compare['annotators']} annotators, {compare['ties']} ties; each pair is shown left/right in a "
            "seeded order, never labelled by model.",
        )


def _stats(ds: Dataset) -> dict[str, Any]:
    try:
        return ds.stats()
    except (OSError, ValueError):
        return {}


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _column_counts(ds: Dataset) -> dict[str, dict[str, int]]:
    from pixelforge.store.sql import connect

    con = connect(ds)
    try:

        def counts(expr: str) -> dict[str, int]:
            return {
                str(k): int(v)
                for k, v in con.execute(
                    f"SELECT {expr} AS k, count(*) AS n FROM samples WHERE {expr} IS NOT NULL "
                    "GROUP BY k ORDER BY n DESC, k"
                ).fetchall()
            }

        return {"opt_out": counts("opt_out"), "label": counts("coalesce(label_name, CAST(label AS VARCHAR))")}
    finally:
        con.close()


def _crawl_block(sec: Section, crawl: dict[str, Any]) -> None:
    sec.facts(
        [
            ("pages", crawl.get("pages")),
            ("parsed", crawl.get("pages_parsed")),
            ("opted out (page level)", crawl.get("pages_opted_out")),
            ("page errors", crawl.get("page_errors") or {}),
            ("images found", crawl.get("images_found")),
            ("decorative images skipped", crawl.get("decorative_images") or {}),
            ("URLs skipped", crawl.get("skipped_urls") or {}),
            ("crawl seconds", crawl.get("seconds")),
        ],
        title="Crawl",
    )


def _quality_block(sec: Section, ds: Dataset) -> None:
    names = ds.schema.names
    present = [(c, label) for c, label in QUALITY if c in names]
    if not present:
        sec.missing(
            "Quality histograms: the dataset has no q_* columns; run `pixelforge curate` on it to score "
            "sharpness, brightness, contrast, entropy and watermarks."
        )
        return
    table = ds.index(columns=[c for c, _ in present])
    values = {c: table.column(c).to_pylist() for c, _ in present}
    sec.figures(
        [(figures.histogram_of(values[c], label, c), f"{c} over {table.num_rows:,} samples") for c, label in present],
        title="Quality (curate's scores)",
    )
    same = [f"{c} = {fmt(v)}" for c, _ in present if (v := figures.constant_value(values[c])) is not None]
    if same:
        sec.note("The same for every sample: " + ", ".join(same) + ".")


def _curation_block(sec: Section, ds: Dataset) -> None:
    path = ds.file(CURATION_JSON)
    if not ds.fs.exists(path):
        sec.missing("What curation removed: no curation.json (this dataset was not made by `pixelforge curate`).")
        return
    with ds.fs.open(path, "rb") as f:
        cur = json.load(f)
    sec.table(
        ["rule", "setting", "matched", "removed", "examples"],
        [
            [r["rule"], fmt(r.get("setting")), r["matched"], r["removed"], ", ".join(r.get("examples", [])[:4])]
            for r in cur.get("rules", [])
        ],
        title=f"Curation: {cur.get('input_samples', 0):,} input samples → {cur.get('output_samples', 0):,} kept",
        note="Rules run in this order; a row removed by one rule is not counted again by later ones.",
    )
    d = cur.get("duplicates") or {}
    flags = {k: v for k, v in (cur.get("caption_flags") or {}).items() if v}
    sec.facts(
        [
            ("exact pairs", d.get("exact_pairs")),
            ("near pairs", d.get("near_pairs")),
            ("duplicate groups", d.get("groups")),
            ("rows in groups", d.get("rows_in_groups")),
            ("hamming / combined", f"{d.get('hamming')} / {d.get('combined')}"),
            ("failures", cur.get("failures") or {}),
            ("caption flags", flags or "none"),
        ],
        title="Duplicates and captions",
    )
    sec.figures([(figures.bar_chart(flags, "Caption flags", xlabel="captions"), "captions carrying each flag")])
    removed = [r for r in cur.get("rules", []) if r.get("removed") and r.get("examples")]
    if not removed:
        return
    try:
        source = Dataset.open(cur.get("input") or "")
    except DatasetError:
        sec.missing(f"Examples of removed samples: the curation input {cur.get('input')} is not readable here.")
        return
    wanted = [k for r in removed for k in r["examples"][:EXAMPLES_PER_RULE]]
    found = samples_by_key(source, wanted)
    groups = []
    for r in removed:
        images = [
            {"uri": uri, "caption": f"{k}: {_caption(found[k].row)}"[:80]}
            for k in r["examples"][:EXAMPLES_PER_RULE]
            if k in found and (uri := sample_uri(found[k]))
        ]
        groups.append({"title": f"{r['rule']} removed {r['removed']:,}", "images": images})
    sec.groups(groups, title="Examples of removed samples, per rule")


def _duplicates_block(sec: Section, ds: Dataset) -> None:
    if "dup_group" not in ds.schema.names:
        return
    from pixelforge.store.sql import connect

    con = connect(ds)
    try:
        top = con.execute(
            "SELECT dup_group, max(dup_count) AS n, count(*) AS here FROM samples WHERE dup_count > 1 "
            f"GROUP BY dup_group ORDER BY here DESC, n DESC, dup_group LIMIT {DUP_GROUPS}"
        ).fetchall()
        members = {
            g: [
                k
                for (k,) in con.execute(
                    "SELECT key FROM samples WHERE dup_group = ? ORDER BY key LIMIT 8", [g]
                ).fetchall()
            ]
            for g, _, _ in top
        }
    finally:
        con.close()
    if not top:
        sec.note("No duplicate groups: every sample is unique by sha256, phash and dhash.")
        return
    found = samples_by_key(ds, [k for ks in members.values() for k in ks])
    groups = []
    for g, n, here in top:
        images = [{"uri": uri, "caption": k} for k in members[g] if k in found and (uri := sample_uri(found[k]))]
        groups.append({"title": f"group {g}: {n} rows before curation, {here} here", "images": images})
    sec.groups(groups, title="Duplicate groups, side by side")


def _clusters_block(sec: Section, ds: Dataset, stats: dict[str, Any]) -> None:
    """`pixelforge cluster`'s map, each cluster's most central samples, and the most outlying samples."""
    if "cluster" not in ds.schema.names or "map_x" not in ds.schema.names:
        return
    every = ds.index(columns=["key", "cluster", "map_x", "map_y", "outlier"]).to_pylist()
    rows = every
    if len(rows) > MAP_POINTS:  # an even sample of the points: the picture is the same
        rows = rows[:: -(-len(rows) // MAP_POINTS)]
    groups = [-2 if r["cluster"] is None else r["cluster"] for r in rows]
    title = f"Map of the embedding ({stats.get('map', '?')}, {stats.get('embedding', '?')})"
    plot = figures.scatter_map([r["map_x"] for r in rows], [r["map_y"] for r in rows], groups, title)
    sec.figures([(plot, "each dot a sample, coloured by its cluster")], title="Clusters")
    clusters = [c for c in stats.get("clusters", []) if c["id"] >= 0][:MAP_CLUSTERS]
    found = samples_by_key(ds, [k for c in clusters for k in c["central"]])
    items = []
    for c in clusters:
        images = [{"uri": uri, "caption": k} for k in c["central"] if k in found and (uri := sample_uri(found[k]))]
        items.append({"title": f"cluster {c['id']}: {c['name']} ({c['size']:,} samples)", "images": images})
    if items:
        sec.groups(items, title="The most central samples of each cluster")
    outlying = sorted((r for r in every if r["outlier"] is not None), key=lambda r: -r["outlier"])[:8]
    found = samples_by_key(ds, [r["key"] for r in outlying])
    gallery = [
        {"uri": uri, "caption": r["key"], "sub": f"outlier {r['outlier']:.2f}"}
        for r in outlying
        if r["key"] in found and (uri := sample_uri(found[r["key"]]))
    ]
    if gallery:
        sec.gallery(gallery, title="The most outlying samples")
