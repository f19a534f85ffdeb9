"""CLI commands of the evaluate stage, registered on the main app by pixelforge.cli."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""
