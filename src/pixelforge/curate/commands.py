"""CLI commands of the curate stage: curate and split."""

from __future__ import annotations

from typing import Annotated

import typer

from pixelforge.console import print_result, print_warnings
from pixelforge.options import CURATE, AsJson, ConfigFile, DerivedOut, FaceWeights, In, Overwrite, Resume, build_config
from pixelforge.run.options import EXECUTOR, Backend, Processes, RayAddress, RayTaskCpus

CurateIn = Annotated[
    str,
    typer.Argument(
        metavar="IN",
        help="Input dataset directory, or a folder of images: "
        "imported as `import folder` would and curated in one pass.",
    ),
]


def curate_command(
    ctx: typer.Context,
    inp: CurateIn,
    out: DerivedOut,
    where: Annotated[
        str | None,
        typer.Option(
            help='Keep only rows where this DuckDB condition holds (any column, such as "q_entropy > 3 AND label = 2").'
        ),
    ] = None,
    min_side: Annotated[int | None, typer.Option(help="Drop images whose shorter side is under N px.")] = None,
    max_blur: Annotated[
        float | None, typer.Option(help="Drop images blurrier than this: q_blur (variance of the Laplacian) under V.")
    ] = None,
    max_watermark: Annotated[float | None, typer.Option(help="Drop images whose q_watermark is over P.")] = None,
    max_outlier: Annotated[
        float | None, typer.Option(help="Drop samples whose outlier score (from `pixelforge cluster`) is over S.")
    ] = None,
    drop_duplicates: Annotated[bool, typer.Option(help="Keep one row per duplicate group (dup_keep).")] = False,
    drop_bad_captions: Annotated[bool, typer.Option(help="Drop rows with any caption flag (c_flags).")] = False,
    drop_opt_out: Annotated[bool, typer.Option(help="Drop rows whose owner opted out (opt_out set).")] = True,
    hamming: Annotated[int, typer.Option(help="phash or dhash within N bits nominates a near-duplicate pair.")] = 8,
    combined: Annotated[
        int, typer.Option(help="A nominated pair counts when phash + dhash distance <= N (128: no check).")
    ] = 24,
    colour: Annotated[
        float,
        typer.Option(
            help="Refuse a near-duplicate pair whose colour distance (0-2, hue "
            "histograms) is over D, such as a red and a blue copy of one "
            "shape (2: no check)."
        ),
    ] = 0.5,
    dedup: Annotated[
        str,
        typer.Option(
            help="full: the hashes, then crops and small rotations they miss, found by aligning each image "
            "with its nearest neighbours; hash: phash and dhash only."
        ),
    ] = "full",
    faces: Annotated[
        bool, typer.Option(help="Find faces: face_bboxes ([x0, y0, x1, y1] fractions) and n_faces columns.")
    ] = False,
    face_weights: FaceWeights = None,
    only: Annotated[
        str | None,
        typer.Option(
            help="'duplicates': compute only what duplicate groups need "
            "(hashes, colour, JPEG quality; other q_* null, no CNN): "
            "half the CPU of the full scoring."
        ),
    ] = None,
    check_leakage: Annotated[bool, typer.Option(help="Report duplicate pairs that straddle splits.")] = False,
    watermark: Annotated[bool, typer.Option(help="Score watermarks with the shipped CNN (q_watermark).")] = True,
    min_words: Annotated[int, typer.Option(help="Captions with fewer words are flagged too_short.")] = 3,
    max_words: Annotated[int, typer.Option(help="Captions with more words are flagged too_long.")] = 60,
    processes: Processes = EXECUTOR.processes,
    backend: Backend = EXECUTOR.backend,
    ray_address: RayAddress = EXECUTOR.ray_address,
    ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
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
        from pixelforge.run.local import EARLY_POOLS, start_fork_server

        start_fork_server(*EARLY_POOLS["curate"])  # no-op when the executable started it already
    from pixelforge.curate.stage import CurateConfig, curate

    config = build_config(
        ctx,
        CurateConfig,
        "curate",
        config_file,
        dict(
            where=where,
            min_side=min_side,
            max_blur=max_blur,
            max_watermark=max_watermark,
            max_outlier=max_outlier,
            drop_duplicates=drop_duplicates,
            drop_bad_captions=drop_bad_captions,
            drop_opt_out=drop_opt_out,
            hamming=hamming,
            combined=combined,
            colour=colour,
            dedup=dedup,
            faces=faces,
            face_weights=face_weights,
            only=only,
            check_leakage=check_leakage,
            watermark=watermark,
            min_words=min_words,
            max_words=max_words,
            processes=processes,
            backend=backend,
            ray_address=ray_address,
            ray_task_cpus=ray_task_cpus,
        ),
    )
    if config.combined is not None and config.combined >= 128:
        config.combined = None  # 128 bits: no combined check, phash alone nominates
    if config.colour is not None and config.colour >= 2:
        config.colour = None  # 2 is the largest colour distance: no colour check
    print_result(curate(inp, out, config, overwrite=overwrite, resume=resume), as_json)


def split_command(
    ctx: typer.Context,
    inp: In,
    out: DerivedOut,
    val: Annotated[float, typer.Option(help="Fraction of rows for validation.")] = 0.1,
    test: Annotated[float, typer.Option(help="Fraction of rows for test.")] = 0.1,
    stratify: Annotated[
        str | None, typer.Option(help="Column whose proportions every split keeps (such as label).")
    ] = None,
    group: Annotated[
        str,
        typer.Option(
            help="Column whose equal values share a split; 'auto' = dup_group if curated, else phash groups; 'none'."
        ),
    ] = "auto",
    hamming: Annotated[int, typer.Option(help="phash radius of the groups 'auto' computes on uncurated input.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same split.")] = 0,
    processes: Processes = EXECUTOR.processes,
    backend: Backend = EXECUTOR.backend,
    ray_address: RayAddress = EXECUTOR.ray_address,
    ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
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

    config = build_config(
        ctx,
        SplitConfig,
        "split",
        config_file,
        dict(
            val=val,
            test=test,
            stratify=stratify,
            group=group,
            hamming=hamming,
            seed=seed,
            processes=processes,
            backend=backend,
            ray_address=ray_address,
            ray_task_cpus=ray_task_cpus,
        ),
    )
    result = split_dataset(inp, out, config, overwrite=overwrite, resume=resume)
    print_warnings(result.warnings)
    print_result(result, as_json)


def register(app: typer.Typer) -> None:
    """Add this stage's commands (curate, split) to ``app``."""
    app.command("curate", rich_help_panel=CURATE)(curate_command)
    app.command("split", rich_help_panel=CURATE)(split_command)
