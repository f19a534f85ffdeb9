"""CLI commands of the curate stage (curate, split) and of prepare, registered on the main app by pixelforge.cli."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated, Any, Optional

import typer

from pixelforge.run.options import Backend, RayAddress, RayTaskCpus

Out = Annotated[str, typer.Option("--out", "-o", help="New dataset directory to write (the input is never modified).")]
Overwrite = Annotated[bool, typer.Option(help="Replace --out if it already holds a dataset.")]
Processes = Annotated[int, typer.Option(help="Worker processes for the per-shard work.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
In = Annotated[str, typer.Argument(metavar="IN", help="Input dataset directory.")]
CurateIn = Annotated[str, typer.Argument(metavar="IN", help="Input dataset directory, or a folder of images: "
                                         "imported as `import folder` would and curated in one pass.")]
ConfigFile = Annotated[Optional[str], typer.Option("--config", help="TOML file: its table named after the command "
                                                                    "(curate, split or prepare) sets the options; "
                                                                    "flags win.")]
Resume = Annotated[bool, typer.Option(help="Continue a stopped run into --out: finished work is kept, not redone.")]
STAGE_TABLES = ("curate", "split", "prepare")  # one TOML file may configure all three
_TOML_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def build_config(ctx: typer.Context, cls: type, table: str, config_file: Optional[str], flags: dict[str, Any]) -> Any:
    """The stage config: its defaults, then ``config_file``'s [table], then the flags given on the command line.

    Reuses the train stage's TOML reader and merge (an unknown key is an error naming the known
    ones); a value of the wrong type is an error naming the key. Flags left at their default do
    not override the file.
    """
    from pixelforge.errors import UsageError
    from pixelforge.configfile import load_toml, merge

    config = cls()
    if config_file:
        doc = load_toml(config_file)
        unknown = sorted(set(doc) - set(STAGE_TABLES))
        if unknown:
            raise UsageError(f"--config {config_file}: unknown table(s) {', '.join(unknown)}; "
                             f"use [{table}] (the same file may hold [{'], ['.join(STAGE_TABLES)}])")
        values = doc.get(table, {})
        if not isinstance(values, dict):
            raise UsageError(f"--config {config_file}: {table} must be a table: write [{table}] on its own line")
        types = {f.name: str(f.type).split(" |")[0] for f in dataclasses.fields(cls)}
        for key, value in values.items():
            ok = _TOML_TYPES.get(types.get(key, ""))
            if ok and (not isinstance(value, ok) or (isinstance(value, bool) and bool not in ok)):
                raise UsageError(f"--config {config_file} [{table}] {key} = {value!r}: must be {types[key]}")
        config = merge(cls, config, values, f"--config {config_file} [{table}]")
    # by name: Typer ships its own copy of click, whose ParameterSource is not click's
    given = {k: v for k, v in flags.items()
             if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")}
    return merge(cls, config, given, "flags")


def _print(result: Any, as_json: bool) -> None:
    from pixelforge.cli import _print_result  # the CLI's one result printer (table or --json)

    _print_result(result, as_json)


def curate_command(
    ctx: typer.Context,
    inp: CurateIn,
    out: Out,
    where: Annotated[Optional[str], typer.Option(help="Keep only rows where this DuckDB condition holds "
                                                      "(any column, such as \"q_entropy > 3 AND label = 2\").")] = None,
    min_side: Annotated[Optional[int], typer.Option(help="Drop images whose shorter side is under N px.")] = None,
    max_blur: Annotated[Optional[float], typer.Option(help="Drop images blurrier than this: q_blur (variance of "
                                                           "the Laplacian) under V.")] = None,
    max_watermark: Annotated[Optional[float], typer.Option(help="Drop images whose q_watermark is over P.")] = None,
    drop_duplicates: Annotated[bool, typer.Option(help="Keep one row per duplicate group (dup_keep).")] = False,
    drop_bad_captions: Annotated[bool, typer.Option(help="Drop rows with any caption flag (c_flags).")] = False,
    drop_opt_out: Annotated[bool, typer.Option(help="Drop rows whose owner opted out (opt_out set).")] = True,
    hamming: Annotated[int, typer.Option(help="phash or dhash within N bits nominates a near-duplicate pair.")] = 8,
    combined: Annotated[int, typer.Option(help="A nominated pair counts when phash + dhash distance <= N "
                                               "(128: no check).")] = 24,
    colour: Annotated[float, typer.Option(help="Refuse a near-duplicate pair whose colour distance (0-2, hue "
                                               "histograms) is over D, such as a red and a blue copy of one "
                                               "shape (2: no check).")] = 0.5,
    only: Annotated[Optional[str], typer.Option(help="'duplicates': compute only what duplicate groups need "
                                                     "(hashes, colour, JPEG quality; other q_* null, no CNN): "
                                                     "half the CPU of the full scoring.")] = None,
    check_leakage: Annotated[bool, typer.Option(help="Report duplicate pairs that straddle splits.")] = False,
    watermark: Annotated[bool, typer.Option(help="Score watermarks with the shipped CNN (q_watermark).")] = True,
    min_words: Annotated[int, typer.Option(help="Captions with fewer words are flagged too_short.")] = 3,
    max_words: Annotated[int, typer.Option(help="Captions with more words are flagged too_long.")] = 60,
    processes: Processes = 2,
    backend: Backend = "local",
    ray_address: RayAddress = None,
    ray_task_cpus: RayTaskCpus = 1.0,
    config_file: ConfigFile = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Score quality, watermarks, captions and duplicates; drop what the presets say; write a new dataset.

    Every row keeps its columns and gains q_*, c_* and dup_* columns; curation.json in OUT tells
    how many rows each rule removed, with example keys. IN may be a plain folder of images: each
    image is then read and decoded once and the dataset written once (import + curate in one pass).

    Examples:

        pixelforge curate data/web --out data/web-clean --min-side 64 --max-watermark 0.5 --drop-duplicates

        pixelforge curate ~/photos --out data/photos --only duplicates --drop-duplicates
    """
    if backend == "local" and processes > 1:  # the pool's imports overlap with this process's own
        from pixelforge.entry import EARLY_POOLS
        from pixelforge.run.local import start_fork_server

        start_fork_server(*EARLY_POOLS["curate"])  # no-op when the executable started it already
    from pixelforge.curate.stage import CurateConfig, curate

    config = build_config(ctx, CurateConfig, "curate", config_file, dict(
        where=where, min_side=min_side, max_blur=max_blur, max_watermark=max_watermark,
        drop_duplicates=drop_duplicates, drop_bad_captions=drop_bad_captions, drop_opt_out=drop_opt_out,
        hamming=hamming, combined=combined, colour=colour, only=only, check_leakage=check_leakage,
        watermark=watermark, min_words=min_words, max_words=max_words, processes=processes, backend=backend,
        ray_address=ray_address, ray_task_cpus=ray_task_cpus))
    if config.combined is not None and config.combined >= 128:
        config.combined = None  # 128 bits: no combined check, phash alone nominates
    if config.colour is not None and config.colour >= 2:
        config.colour = None  # 2 is the largest colour distance: no colour check
    _print(curate(inp, out, config, overwrite=overwrite, resume=resume), as_json)


def split_command(
    ctx: typer.Context,
    inp: In,
    out: Out,
    val: Annotated[float, typer.Option(help="Fraction of rows for validation.")] = 0.1,
    test: Annotated[float, typer.Option(help="Fraction of rows for test.")] = 0.1,
    stratify: Annotated[Optional[str], typer.Option(help="Column whose proportions every split keeps (such as "
                                                         "label).")] = None,
    group: Annotated[str, typer.Option(help="Column whose equal values share a split; 'auto' = dup_group if "
                                            "curated, else phash groups; 'none'.")] = "auto",
    hamming: Annotated[int, typer.Option(help="phash radius of the groups 'auto' computes on uncurated input.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same split.")] = 0,
    processes: Processes = 2,
    backend: Backend = "local",
    ray_address: RayAddress = None,
    ray_task_cpus: RayTaskCpus = 1.0,
    config_file: ConfigFile = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Assign train/val/test so that duplicates never straddle splits (group-aware, optionally stratified).

    Example:

        pixelforge split data/clean --out data/split --val 0.1 --test 0.1 --stratify label --group dup_group --seed 0
    """
    from pixelforge.curate.split import SplitConfig, split_dataset

    config = build_config(ctx, SplitConfig, "split", config_file, dict(
        val=val, test=test, stratify=stratify, group=group, hamming=hamming, seed=seed, processes=processes,
        backend=backend, ray_address=ray_address, ray_task_cpus=ray_task_cpus))
    result = split_dataset(inp, out, config, overwrite=overwrite, resume=resume)
    for line in result.warnings:
        print(f"Warning: {line}", file=sys.stderr)
    _print(result, as_json)


def prepare_command(
    ctx: typer.Context,
    inp: In,
    out: Out,
    size: Annotated[int, typer.Option(help="Side of the output images in pixels.")] = 64,
    resize_mode: Annotated[str, typer.Option(help="center_crop, keep_ratio, pad or none.")] = "center_crop",
    denoise: Annotated[str, typer.Option(help="none, median (3x3, OpenCV) or nlm (non-local means, OpenCV).")]
    = "none",
    augment: Annotated[Optional[str], typer.Option(help="Augmentation SPEC such as "
                                                        "'hflip,rotate=10,crop=0.9,brightness=0.2' (README: Prepare).")]
    = None,
    copies: Annotated[int, typer.Option(help="Augmented copies per train/unsplit sample (needs --augment).")] = 0,
    encoding: Annotated[str, typer.Option(help="Stored encoding: png, jpg or webp.")] = "png",
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality.")] = 95,
    seed: Annotated[int, typer.Option(help="Seed of the augmented copies.")] = 0,
    processes: Processes = 2,
    backend: Backend = "local",
    ray_address: RayAddress = None,
    ray_task_cpus: RayTaskCpus = 1.0,
    config_file: ConfigFile = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Resize every image to one size, optionally denoise, and add augmented copies of training samples.

    Example:

        pixelforge prepare data/split --out data/train64 --size 64 --augment hflip,rotate=10 --copies 2
    """
    from pixelforge.prepare.stage import PrepareConfig, prepare

    config = build_config(ctx, PrepareConfig, "prepare", config_file, dict(
        size=size, resize_mode=resize_mode, denoise=denoise, augment=augment, copies=copies, encoding=encoding,
        quality=quality, seed=seed, processes=processes, backend=backend, ray_address=ray_address,
        ray_task_cpus=ray_task_cpus))
    _print(prepare(inp, out, config, overwrite=overwrite, resume=resume), as_json)


def register(app: typer.Typer) -> None:
    """Add this stage's commands (curate, split, prepare) to ``app``."""
    app.command("curate")(curate_command)
    app.command("split")(split_command)
    app.command("prepare")(prepare_command)
