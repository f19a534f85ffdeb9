"""CLI commands `info`, `query` and `export`: summarise, query and export a dataset.

They own no stage of their own: each is a thin call to pixelforge.store (summarize, query,
export), so they sit in this small package of their own rather than in the CLI module, which
only lists registrars, or in store/, which knows nothing of the command line.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from pixelforge.console import print_json, print_result, print_table, print_text
from pixelforge.errors import UsageError
from pixelforge.options import CURATE, AsJson, Overwrite

Dir = Annotated[str, typer.Argument(help="Dataset directory.")]
QUERY_FORMATS = ("table", "csv", "json")


def _open(path: str):
    from pixelforge.store import Dataset

    return Dataset.open(path)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _info_table(s: dict[str, Any]) -> Table:
    """The summary of pixelforge.store.summary.summarize as one table."""
    t = Table(title=f"{s['name']}  ({s['path']})", show_header=False)
    t.add_row("made by", f"pixelforge {s['command']}  at {s['created_at']}")
    t.add_row("samples", f"{s['samples']:,}  in {s['shards']} shards, {_human_bytes(s['disk_bytes'])} on disk")
    t.add_row("failures", f"{s['failures']:,}  " + ", ".join(f"{k}: {v}" for k, v in s["failure_reasons"].items()))
    t.add_row("captions", f"{s['with_caption']:,} of {s['samples']:,}")
    t.add_row(
        "labels",
        f"{s['with_label']:,} labelled, {s['distinct_labels']} classes  "
        + ", ".join(f"{k}: {v}" for k, v in s["labels"].items()),
    )
    if s["boxes"] or s["with_mask"]:
        t.add_row("annotations", f"{s['boxes']:,} boxes, {s['with_mask']:,} masks")
    for key in ("source_kinds", "licenses", "splits", "formats"):
        t.add_row(key.replace("_", " "), ", ".join(f"{k}: {v}" for k, v in s[key].items()))
    t.add_row("opted out", str(s["opt_outs"]))
    w, h = s["width"], s["height"]
    t.add_row(
        "size (w x h)", f"min {w['min']}x{h['min']}, median {w['median']}x{h['median']}, max {w['max']}x{h['max']}"
    )
    if s["extra_columns"]:
        t.add_row("extra columns", ", ".join(s["extra_columns"]))
    return t


def info(path: Dir, as_json: AsJson = False) -> None:
    """Summarise a dataset: counts, labels, captions, licences, sources, image sizes, disk size.

    Example:

        pixelforge info data/shapes
    """
    from pixelforge.store.summary import summarize

    print_result(summarize(_open(path)), as_json, _info_table)


def _flat_for_csv(table):
    """``table`` with its nested columns (boxes, c_flags, ...) as JSON text: CSV has no nested values."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            text = [
                None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                for v in table.column(i).to_pylist()
            ]
            table = table.set_column(i, pa.field(f.name, pa.string()), pa.array(text, pa.string()))
    return table


def query(
    path: Dir,
    sql: Annotated[str, typer.Argument(help="DuckDB SQL over tables `samples` (the index) and `failures`.")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Run DuckDB SQL over a dataset's index (table `samples`) and failures (table `failures`).

    Example:

        pixelforge query data/shapes "SELECT label_name, count(*) FROM samples GROUP BY 1"
    """
    if format not in QUERY_FORMATS:
        raise UsageError(f"--format {format!r}: choose one of {', '.join(QUERY_FORMATS)}")
    from pixelforge.store import query as run_query

    table = run_query(_open(path), sql)
    if format == "csv":
        import io

        import pyarrow.csv as pacsv

        sink = io.BytesIO()
        pacsv.write_csv(_flat_for_csv(table), sink)
        print_text(sink.getvalue().decode("utf-8").removesuffix("\n"))
    elif format == "json":
        print_json(table.to_pylist())
    else:
        t = Table(*table.column_names)
        for row in table.to_pylist():
            t.add_row(*("" if v is None else str(v) for v in row.values()))
        print_table(Group(t, Text(f"{table.num_rows} rows", style="dim")))


def export(
    path: Dir,
    format: Annotated[str, typer.Option("--format", "-f", help="imagefolder, coco, yolo or labelstudio.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder to write.")],
    policy: Annotated[
        str | None,
        typer.Option(
            help="Refuse samples a use policy forbids (licences, opt-outs, faces, consent): research, "
            "commercial, open or a TOML file; the decision goes to OUT/.pixelforge-export.json."
        ),
    ] = None,
    override: Annotated[
        str | None,
        typer.Option(
            help="Export anyway samples breaking these policy rules, comma-separated: opt_out, license, faces, "
            "consent (recorded)."
        ),
    ] = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Export a dataset for other tools: ImageNet-style folders, COCO JSON (boxes, masks as polygons/RLE,
    captions), YOLO label files, or Label Studio tasks.

    Example:

        pixelforge export data/web --format coco --out exported/web --policy release.toml
    """
    from pixelforge.store.export import check_export
    from pixelforge.store.export import export as run_export

    ds = _open(path)
    record = None
    if policy is not None or override is not None:
        from pixelforge.audit.policy import check_use

        check_export(out, format, overwrite)  # bad arguments before the policy's queries
        record = {"use": check_use(ds, policy=policy, override=override, use="export").describe()}
    print_result(run_export(ds, out, format, overwrite=overwrite, record=record), as_json)


def register(app: typer.Typer) -> None:
    """Add `info`, `query` and `export` to ``app``."""
    app.command("info", rich_help_panel=CURATE)(info)
    app.command("query", rich_help_panel=CURATE)(query)
    app.command("export", rich_help_panel=CURATE)(export)
