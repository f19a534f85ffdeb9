"""What every command module shares: the help panels, common options (Typer types), and
flags + a --config TOML table -> a config dataclass.

Options one stage alone shares between its commands live beside it (collect/options.py); the
executor's (--processes, --backend, ...) in run/options.py.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

import typer

from pixelforge.configfile import load_toml, merge
from pixelforge.errors import UsageError

# `pixelforge --help` lists the commands under these panels, in this (pipeline) order
GET_DATA = "Get data"
CURATE = "Curate and audit"
LABEL = "Label"
TRAIN = "Train and generate"
EVALUATE = "Evaluate and report"
RUN = "Run and serve"
PANELS = (GET_DATA, CURATE, LABEL, TRAIN, EVALUATE, RUN)

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Out = Annotated[str, typer.Option("--out", "-o", help="New dataset directory to write.")]
In = Annotated[str, typer.Argument(metavar="IN", help="Input dataset directory.")]
DerivedOut = Annotated[
    str, typer.Option("--out", "-o", help="New dataset directory to write (the input is never modified).")
]
Overwrite = Annotated[bool, typer.Option(help="Replace --out if it already holds a dataset.")]
Resume = Annotated[bool, typer.Option(help="Continue a stopped run into --out: finished work is kept, not redone.")]
PerShard = Annotated[int, typer.Option(help="Samples per WebDataset shard.")]
License = Annotated[str, typer.Option(help="Licence id for samples whose source states none (never guessed).")]
MaxPixels = Annotated[int, typer.Option(help="Images declaring more pixels fail with too_many_pixels.")]
MaxBytes = Annotated[int, typer.Option(help="Files larger than this many bytes fail with too_large.")]
ConfigFile = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="TOML file: its table named after the command (curate, split or prepare) sets the options; flags win.",
    ),
]

# Defaults of the options above (media.MediaLimits holds the same limits; importing media here
# would load numpy and Pillow before `--help` could print).
SAMPLES_PER_SHARD = 1000
MAX_PIXELS = 100_000_000
MAX_BYTES = 20 * 2**20

DATASET_TABLES = ("curate", "split", "prepare")  # one --config file may configure all three stages
_TOML_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def read_tables(config_file: str | None, tables: tuple[str, ...], use: str) -> dict[str, dict[str, Any]]:
    """The tables of ``config_file`` (none without a file); a table not in ``tables`` is an error.

    ``use`` ends the error message: which tables to write, such as "use [train] and [gan]".
    """
    if not config_file:
        return {}
    doc = load_toml(config_file)
    unknown = sorted(set(doc) - set(tables))
    if unknown:
        raise UsageError(f"--config {config_file}: unknown table(s) {', '.join(unknown)}; {use}")
    for name, values in doc.items():
        if not isinstance(values, dict):
            raise UsageError(f"--config {config_file}: {name} must be a table: write [{name}] on its own line")
    return doc


def check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """Refuse a TOML value whose type is not its field's (``"6"`` for an int field), naming the key."""
    types = {f.name: str(f.type).split(" |")[0] for f in dataclasses.fields(cls)}
    for key, value in values.items():
        ok = _TOML_TYPES.get(types.get(key, ""))
        if ok and (not isinstance(value, ok) or (isinstance(value, bool) and bool not in ok)):
            raise UsageError(f"{where} {key} = {value!r}: must be {types[key]}")


def given_flags(ctx: typer.Context, flags: dict[str, Any]) -> dict[str, Any]:
    """The ``flags`` given on the command line: those left at their default must not override a file."""
    # by name: Typer ships its own copy of click, whose ParameterSource is not click's
    return {
        k: v
        for k, v in flags.items()
        if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    }


def fill_config(cls: type, base: Any, table: dict[str, Any], flags: dict[str, Any], where: str) -> Any:
    """``base`` with a --config file's ``table`` applied, then ``flags`` (flags win).

    An unknown key or a value of the wrong type is an error naming ``where`` (the file and table).
    """
    check_types(cls, table, where)
    return merge(cls, merge(cls, base, table, where), flags, "flags")


def build_config(ctx: typer.Context, cls: type, table: str, config_file: str | None, flags: dict[str, Any]) -> Any:
    """A dataset stage's config (curate, split, prepare): its defaults, then ``config_file``'s [table],
    then the flags given on the command line (those left at their default do not override the file).
    """
    use = f"use [{table}] (the same file may hold [{'], ['.join(DATASET_TABLES)}])"
    doc = read_tables(config_file, DATASET_TABLES, use)
    return fill_config(cls, cls(), doc.get(table, {}), given_flags(ctx, flags), f"--config {config_file} [{table}]")


FaceWeights = Annotated[
    str | None,
    typer.Option(help="A YuNet ONNX model file for OpenCV's FaceDetectorYN (default: OpenCV's Haar cascade)."),
]
