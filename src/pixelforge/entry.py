"""The `pixelforge` executable: starts a process pool's fork server first, then runs the CLI.

Importing the CLI (typer, rich, every stage's options) takes ~0.3 s, and a pool's fork server
then needs as long again to import what its workers run before the first task can start. For
commands that run a local process pool, the fork server is started here, before anything else,
so the two sets of imports overlap on the machine's cores.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

# EARLY_POOLS (command -> the modules its pool's workers import) lives beside the pool, where the
# curate command reads it too; run.local imports no more than starting the fork server needs.
from pixelforge.run.local import EARLY_POOLS, start_fork_server


def early_pool(argv: list[str]) -> tuple[str, ...]:
    """The modules to start a fork server with for ``argv``, or () when it runs no local pool."""
    if not argv or argv[0] not in EARLY_POOLS or "--help" in argv:
        return ()
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
        if arg.split("=", 1)[0] == "--processes" and value.strip() == "1":
            return ()
        if arg.split("=", 1)[0] == "--backend" and value.strip() != "local":
            return ()
    return EARLY_POOLS[argv[0]]


def main() -> int:
    modules = early_pool(sys.argv[1:])
    if modules:
        start_fork_server(*modules)
    from pixelforge.cli import main as cli_main

    code = cli_main()
    if threading.active_count() == 1:
        # The command is done and its files are closed. What the interpreter would still do is
        # free every imported module, 0.25 s with pyarrow, pandas and scipy loaded: run the exit
        # handlers (multiprocessing's, logging's, Ray's), flush the streams, and end here.
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
