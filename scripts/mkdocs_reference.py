"""MkDocs hook: fill docs/reference.md with every command's help, options and defaults, from the CLI itself."""

from __future__ import annotations

MARKER = "<!-- the command reference is inserted here -->"


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if page.file.src_uri != "reference.md":
        return markdown
    import typer
    from typer.cli import get_docs_for_click

    from pixelforge.cli import app

    command = typer.main.get_command(app)
    ctx = command.make_context("pixelforge", [], resilient_parsing=True)
    reference = get_docs_for_click(obj=command, ctx=ctx, name="pixelforge", indent=1)
    return markdown.replace(MARKER, reference)
