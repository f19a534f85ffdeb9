"""The pixelforge command line: the Typer app, each package's commands added by its ``register(app)``.

Each registrar below adds its package's commands under one of the help panels of
pixelforge.options.PANELS; `pixelforge --help` lists them panel by panel in pipeline order.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from pixelforge import __version__, demo
from pixelforge.audit import commands as audit_commands
from pixelforge.collect import commands as collect_commands
from pixelforge.curate import commands as curate_commands
from pixelforge.errors import PixelforgeError
from pixelforge.evaluate import commands as evaluate_commands
from pixelforge.extras import extra_of, require_for_command
from pixelforge.generate import commands as generate_commands
from pixelforge.inspect import commands as inspect_commands
from pixelforge.label import commands as label_commands
from pixelforge.options import PANELS
from pixelforge.organise import commands as organise_commands
from pixelforge.people import commands as people_commands
from pixelforge.prepare import commands as prepare_commands
from pixelforge.report import commands as report_commands
from pixelforge.sources import commands as sources_commands
from pixelforge.train import commands as train_commands

# in pipeline order, which is also the order of the commands within a help panel
REGISTRARS = (
    sources_commands.register,  # import ...
    collect_commands.register,  # collect urls|crawl, serve-site
    curate_commands.register,  # curate, split
    organise_commands.register,  # embed, cluster, similar
    people_commands.register,  # takedown
    prepare_commands.register,  # prepare
    audit_commands.register,  # audit, attribution
    inspect_commands.register,  # info, query, export
    label_commands.register,  # label ...
    train_commands.register,  # train ..., predict, vae ...
    generate_commands.register,  # generate, verify
    evaluate_commands.register,  # evaluate ...
    report_commands.register,  # report
    demo.register,  # demo
)


class _PipelineGroup(TyperGroup):
    """Lists the commands panel by panel, in the order of PANELS.

    Typer would list every plain command before every group, so a panel's place would depend on
    whether its first command happens to be a group; within a panel, groups (import, train ...)
    come first, then the plain commands in the order they were registered.
    """

    def list_commands(self, ctx: typer.Context) -> list[str]:
        rank = {panel: i for i, panel in enumerate(PANELS)}

        def key(name: str) -> tuple[int, bool]:
            command = self.commands[name]
            return rank.get(getattr(command, "rich_help_panel", None), len(PANELS)), not hasattr(command, "commands")

        return sorted(super().list_commands(ctx), key=key)


app = typer.Typer(
    help="pixelforge: the data behind image models, with every sample's origin kept.",
    cls=_PipelineGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"pixelforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    state["debug"] = debug


for register in REGISTRARS:
    register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point: PixelforgeError becomes one line on stderr and exit code 2 (``--debug``: traceback)."""
    try:
        require_for_command(sys.argv[1:] if argv is None else argv)
        app(args=argv)  # standalone mode: usage errors print and exit 2 by themselves
    except PixelforgeError as exc:
        if state["debug"]:
            raise
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        # a path that needs an extra the command as a whole does not (curate's watermark detector)
        extra = extra_of(exc.name)
        if extra is None or state["debug"]:
            raise
        print(f"Error: {exc.name} is not installed: pip install 'pixelforge[{extra}]'", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
