"""CLI command `prepare`: resize, denoise and augment a dataset for training."""

from __future__ import annotations

from typing import Annotated

import typer

from pixelforge.console import print_result
from pixelforge.options import CURATE, AsJson, ConfigFile, DerivedOut, FaceWeights, In, Overwrite, Resume, build_config
from pixelforge.run.options import EXECUTOR, Backend, Processes, RayAddress, RayTaskCpus


def prepare_command(
    ctx: typer.Context,
    inp: In,
    out: DerivedOut,
    size: Annotated[int, typer.Option(help="Side of the output images in pixels.")] = 64,
    resize_mode: Annotated[str, typer.Option(help="center_crop, keep_ratio, pad or none.")] = "center_crop",
    denoise: Annotated[str, typer.Option(help="none, median (3x3, OpenCV) or nlm (non-local means, OpenCV).")] = "none",
    augment: Annotated[
        str | None,
        typer.Option(help="Augmentation SPEC such as 'hflip,rotate=10,crop=0.9,brightness=0.2' (docs/prepare.md)."),
    ] = None,
    copies: Annotated[int, typer.Option(help="Augmented copies per train/unsplit sample (needs --augment).")] = 0,
    encoding: Annotated[str, typer.Option(help="Stored encoding: png, jpg or webp.")] = "png",
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality.")] = 95,
    seed: Annotated[int, typer.Option(help="Seed of the augmented copies.")] = 0,
    blur_faces: Annotated[
        bool,
        typer.Option(help="Blur every face (face_bboxes from `curate --faces`, else found here), after resizing."),
    ] = False,
    face_weights: FaceWeights = None,
    processes: Processes = EXECUTOR.processes,
    backend: Backend = EXECUTOR.backend,
    ray_address: RayAddress = EXECUTOR.ray_address,
    ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
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

    config = build_config(
        ctx,
        PrepareConfig,
        "prepare",
        config_file,
        dict(
            size=size,
            resize_mode=resize_mode,
            denoise=denoise,
            augment=augment,
            copies=copies,
            encoding=encoding,
            quality=quality,
            seed=seed,
            blur_faces=blur_faces,
            face_weights=face_weights,
            processes=processes,
            backend=backend,
            ray_address=ray_address,
            ray_task_cpus=ray_task_cpus,
        ),
    )
    print_result(prepare(inp, out, config, overwrite=overwrite, resume=resume), as_json)


def register(app: typer.Typer) -> None:
    """Add `prepare` to ``app``."""
    app.command("prepare", rich_help_panel=CURATE)(prepare_command)
