"""CLI commands of the audit stage: audit and attribution."""

from __future__ import annotations

from typing import Annotated

import typer

from pixelforge.console import print_result
from pixelforge.options import CURATE, AsJson

Dir = Annotated[str, typer.Argument(metavar="DIR", help="Dataset directory.")]


def audit_command(
    inp: Dir,
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for audit.json and violations.parquet.")],
    lexicon: Annotated[
        str | None,
        typer.Option(
            help="Caption lexicon TOML: one table per group, one array of "
            "terms per subgroup (default: the shipped gender, age and "
            "world-region lexicon)."
        ),
    ] = None,
    policy: Annotated[
        str, typer.Option(help="Licence policy: research, commercial, open, or a policy TOML file.")
    ] = "research",
    predictions: Annotated[
        str | None,
        typer.Option(
            help="Parquet of key, predicted, target (from "
            "`pixelforge predict`): adds accuracy per label and "
            "caption group."
        ),
    ] = None,
    min_count: Annotated[
        int,
        typer.Option(
            help="Captions a term and a subgroup must share to be listed as an "
            "association; predictions a label or group needs to be "
            "flagged."
        ),
    ] = 5,
    top_terms: Annotated[int, typer.Option(help="Most frequent caption words to seek associations with.")] = 1000,
    max_violations: Annotated[
        int, typer.Option(help="Policy violations listed in audit.json (all are in violations.parquet).")
    ] = 10_000,
    pixels: Annotated[
        bool,
        typer.Option(
            help="Decode the images to measure brightness when the dataset has no "
            "q_brightness from `pixelforge curate` (--no-pixels: index only)."
        ),
    ] = True,
    processes: Annotated[int, typer.Option(help="Worker processes for that decoding.")] = 2,
    runs: Annotated[
        str | None,
        typer.Option(
            help="Folder of training runs: flag those trained on samples a takedown (under it, or in DIR's "
            "lineage) later removed, and the sets they generated."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Audit a dataset for bias, representation, licences, opt-outs and the people in it.

    Reports labels, caption groups and their associations, sources, image properties, licences
    against a policy, opt-outs, consent and faces, (with --predictions) a classifier's accuracy per
    group and (with --runs) the training runs that learnt from samples later taken down.
    Writes OUT/audit.json and OUT/violations.parquet and prints a summary (--json: the whole audit).

    Example:

        pixelforge audit data/web --out audits/web --policy commercial --lexicon my_terms.toml --runs runs
    """
    from pixelforge.audit.stage import AuditConfig, audit

    config = AuditConfig(
        lexicon=lexicon,
        policy=policy,
        predictions=predictions,
        min_count=min_count,
        top_terms=top_terms,
        max_violations=max_violations,
        pixels=pixels,
        processes=processes,
        runs=runs,
    )
    from pixelforge.audit.summary import summary

    print_result(audit(inp, out, config).report, as_json, lambda report: summary(report, out))


def attribution_command(
    inp: Dir,
    out: Annotated[str, typer.Option("--out", "-o", help="CREDITS.md (Markdown list) or CREDITS.csv.")],
    as_json: AsJson = False,
) -> None:
    """Write the credits of a dataset (Markdown or CSV) for the samples whose licence requires attribution.

    One line per CC BY-family sample (BY, BY-SA, BY-NC, ...): its attribution, source URL, licence
    name and link.

    Example:

        pixelforge attribution data/web --out CREDITS.md
    """
    from pixelforge.audit.attribution import write_credits

    print_result(write_credits(inp, out), as_json)


def register(app: typer.Typer) -> None:
    """Add this stage's commands (audit, attribution) to ``app``."""
    app.command("audit", rich_help_panel=CURATE)(audit_command)
    app.command("attribution", rich_help_panel=CURATE)(attribution_command)
