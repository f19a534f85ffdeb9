"""CLI commands `pixelforge import KIND`: one per importer, each a thin call to sources.base.run_import."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any

import typer

from pixelforge.console import print_result
from pixelforge.options import (
    GET_DATA,
    MAX_BYTES,
    MAX_PIXELS,
    SAMPLES_PER_SHARD,
    AsJson,
    License,
    MaxBytes,
    MaxPixels,
    Out,
    Overwrite,
    PerShard,
)
from pixelforge.sources import make_source

LicenseUrl = Annotated[str | None, typer.Option(help="Licence URL for samples whose source states none.")]
Attribution = Annotated[str | None, typer.Option(help="Attribution for samples whose source states none.")]
Consent = Annotated[
    str | None,
    typer.Option(
        help="granted, denied or unknown: whether the people shown agreed to this use, for samples whose "
        "own record (a sidecar's consent) and image (its XMP model release) state none.",
        show_default="unknown",
    ),
]
Processes = Annotated[
    int,
    typer.Option(help="Worker processes decoding and hashing the images (imports of fewer than 512 items run in one)."),
]
PROCESSES = 2  # ImportOptions.processes

import_app = typer.Typer(help="Import a curated dataset into a pixelforge dataset directory.", no_args_is_help=True)


def _run_import(source: Any, flags: dict[str, Any]) -> None:
    """Import ``source`` with the command's ``flags``: those that are ImportOptions fields fill it, the
    rest (the source's own arguments, --json) were used already; an option a command lacks keeps its default."""
    from pixelforge.sources.base import ImportOptions, run_import

    names = {f.name for f in dataclasses.fields(ImportOptions)}
    options = ImportOptions(**{k: v for k, v in flags.items() if k in names})
    print_result(run_import(source, options), flags["as_json"])


def _import_command(name: str, example: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register an import sub-command whose help ends with an example."""

    def wrap(func: Callable[..., None]) -> Callable[..., None]:
        doc = (func.__doc__ or "").strip()
        func.__doc__ = f"{doc}\n\nExample:\n\n    {example}"
        return import_app.command(name)(func)

    return wrap


@_import_command("imagefolder", "pixelforge import imagefolder ~/imagenet/train --out data/imagenet")
def import_imagefolder(
    root: Annotated[str, typer.Argument(help="Folder with one sub-folder per class.")],
    out: Out,
    license: License = "unknown",
    license_url: LicenseUrl = None,
    attribution: Attribution = None,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    max_pixels: MaxPixels = MAX_PIXELS,
    max_bytes: MaxBytes = MAX_BYTES,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Import ROOT/<class>/<image> (ImageNet layout): class folders become labels."""
    _run_import(make_source("imagefolder", root=root), locals())


@_import_command("folder", "pixelforge import folder ./finetune --out data/ft --license cc-by-4.0")
def import_folder(
    root: Annotated[str, typer.Argument(help="Folder of images with optional NAME.txt captions and NAME.json.")],
    out: Out,
    license: License = "unknown",
    license_url: LicenseUrl = None,
    attribution: Attribution = None,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    max_pixels: MaxPixels = MAX_PIXELS,
    max_bytes: MaxBytes = MAX_BYTES,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Import a folder of images (recursively) with same-name .txt captions and .json licence sidecars."""
    _run_import(make_source("folder", root=root), locals())


@_import_command(
    "coco",
    "pixelforge import coco --images val2017 --annotations instances_val2017.json "
    "--captions captions_val2017.json --masks --out data/coco",
)
def import_coco(
    images: Annotated[str, typer.Option(help="Folder holding the COCO images.")],
    annotations: Annotated[str, typer.Option(help="COCO instances JSON (boxes, segmentations, licences).")],
    out: Out,
    captions: Annotated[str | None, typer.Option(help="COCO captions JSON.")] = None,
    masks: Annotated[bool, typer.Option(help="Render segmentations (polygons and RLE) to mask PNGs.")] = False,
    license: License = "unknown",
    license_url: LicenseUrl = None,
    attribution: Attribution = None,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    max_pixels: MaxPixels = MAX_PIXELS,
    max_bytes: MaxBytes = MAX_BYTES,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Import a COCO detection set: boxes, category ids, captions, licences and optional masks."""
    source = make_source("coco", images=images, annotations=annotations, captions=captions, masks=masks)
    _run_import(source, locals())


@_import_command("cifar10", "pixelforge import cifar10 cifar-10-python.tar.gz --out data/cifar10")
def import_cifar10(
    path: Annotated[str, typer.Argument(help="cifar-10-python.tar.gz or the extracted cifar-10-batches-py/.")],
    out: Out,
    license: License = "unknown",
    license_url: LicenseUrl = None,
    attribution: Attribution = None,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Import CIFAR-10 (python version): labels, label names, train/test split. Pickles are read safely."""
    _run_import(make_source("cifar10", path=path), locals())


@_import_command("cifar100", "pixelforge import cifar100 cifar-100-python.tar.gz --out data/cifar100")
def import_cifar100(
    path: Annotated[str, typer.Argument(help="cifar-100-python.tar.gz or the extracted cifar-100-python/.")],
    out: Out,
    license: License = "unknown",
    license_url: LicenseUrl = None,
    attribution: Attribution = None,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Import CIFAR-100 (python version): fine and coarse labels and names, train/test split."""
    _run_import(make_source("cifar100", path=path), locals())


@_import_command("mnist", "pixelforge import mnist ./mnist --out data/mnist")
def import_mnist(
    path: Annotated[str, typer.Argument(help="Folder with the four IDX files (gzipped or not).")],
    out: Out,
    label_names: Annotated[str, typer.Option(help="digits (MNIST) or fashion (Fashion-MNIST class names).")] = "digits",
    license: License = "unknown",
    license_url: LicenseUrl = None,
    attribution: Attribution = None,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Import MNIST or Fashion-MNIST IDX files: labels and train/test split."""
    _run_import(make_source("mnist", path=path, label_names=label_names), locals())


@_import_command("digits", "pixelforge import digits --size 16 --out data/digits")
def import_digits(
    out: Out,
    size: Annotated[int, typer.Option(help="Upscale the 8x8 digits to SIZE x SIZE.")] = 8,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Import scikit-learn's bundled 1,797 handwritten digits (real data, no download)."""
    _run_import(make_source("digits", size=size), locals())


@_import_command("shapes", "pixelforge import shapes --n 5000 --size 32 --seed 0 --out data/shapes")
def import_shapes(
    out: Out,
    n: Annotated[int, typer.Option(help="Number of images.")] = 1000,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same images.")] = 0,
    max_shapes: Annotated[int, typer.Option(help="Shapes per image: 1 or 2.")] = 1,
    consent: Consent = None,
    samples_per_shard: PerShard = SAMPLES_PER_SHARD,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
    processes: Processes = PROCESSES,
) -> None:
    """Generate the synthetic shapes set: coloured shapes with captions stating exactly what is drawn."""
    _run_import(make_source("shapes", n=n, size=size, seed=seed, max_shapes=max_shapes), locals())


def register(app: typer.Typer) -> None:
    """Add the `import` command group to ``app``."""
    app.add_typer(import_app, name="import", rich_help_panel=GET_DATA)
