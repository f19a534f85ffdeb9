"""CLI command of the people stage: takedown."""

from __future__ import annotations

from typing import Annotated

import typer

from pixelforge.console import print_result
from pixelforge.options import CURATE, AsJson, DerivedOut, In, Overwrite


def takedown_command(
    inp: In,
    out: DerivedOut,
    match: Annotated[
        str,
        typer.Option(
            help="Request file: one KIND:VALUE per line, KIND key, url, url-prefix, sha256, phash or image "
            "(a copy of the photo, relative to the file)."
        ),
    ],
    radius: Annotated[int, typer.Option(help="phash bits within which a phash or image entry matches.")] = 8,
    aligned: Annotated[
        bool, typer.Option(help="Image entries also match crops, small rotations and rescales of the photo.")
    ] = True,
    find_derived: Annotated[
        str | None,
        typer.Option(help="List the datasets, training runs and generated sets under this folder made from IN."),
    ] = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Write a dataset without the samples a takedown request names, their bytes removed; list what was built on IN.

    OUT/takedown.json and the lineage say which request lines removed which samples.

    Example:

        pixelforge takedown data/web --out data/web-td --match request.txt --find-derived .
    """
    from pixelforge.people.takedown import TakedownConfig, takedown

    config = TakedownConfig(match=match, radius=radius, aligned=aligned, find_derived=find_derived)
    print_result(takedown(inp, out, config, overwrite=overwrite), as_json)


def register(app: typer.Typer) -> None:
    """Add takedown to ``app``."""
    app.command("takedown", rich_help_panel=CURATE)(takedown_command)
