"""CLI command `report`: one HTML report over datasets, audits, runs and evaluations."""

from __future__ import annotations

from typing import Annotated

import typer

from pixelforge.console import print_result
from pixelforge.options import EVALUATE, AsJson


def report_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH...",
            help="Dataset directories (collected, curated, "
            "generated), audit dirs, training runs and evaluation JSON files, "
            "in any mix.",
        ),
    ],
    out: Annotated[str, typer.Option("--out", "-o", help="HTML file to write.")] = "report.html",
    title: Annotated[str, typer.Option(help="Title at the top of the report.")] = "pixelforge report",
    verify_limit: Annotated[
        int, typer.Option(help="Generated images checked for the watermark per generated set (evenly spaced).")
    ] = 200,
    as_json: AsJson = False,
) -> None:
    """Render datasets, audits, training runs and evaluations into one self-contained HTML report.

    Each PATH's kind is detected: a dataset (counts, sources, licences, opt-outs, sample grid,
    quality, curation, duplicates), a generated dataset (also prompts, seeds, model, watermark
    verification rate), an audit dir (representation, associations, licence policy), a training
    run of any family (curves, sample grids over time, config, confusion matrix) or an evaluation
    output from `pixelforge evaluate ... --out FILE` (metrics, per-class accuracy, memorised pairs).
    Images and plots are inline: the file opens offline, on a laptop or a phone.

    Example:

        pixelforge report data/web-clean audits/web runs/shapes eval/fid.json --out report.html
    """
    from pixelforge.report import ReportConfig, build_report

    result = build_report(list(paths), out, ReportConfig(title=title, verify_limit=verify_limit))
    print_result(
        result,
        as_json,
        lambda r: (
            f"{r.out}: {len(r.sections)} sections from {len(r.inputs)} inputs "
            f"({', '.join(f'{k}: {v}' for k, v in r.kinds.items())}), {r.bytes / 2**20:.1f} MB, "
            f"{r.missing} notes on missing files, {r.seconds} s"
        ),
    )


def register(app: typer.Typer) -> None:
    """Add `report` to ``app``."""
    app.command("report", rich_help_panel=EVALUATE)(report_command)
