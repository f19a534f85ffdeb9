"""The pixelforge command line: one thin sub-command per stage over the Python API."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from pixelforge import __version__
from pixelforge.errors import PixelforgeError, UsageError
from pixelforge.collect.options import AllowPrivate, Encode, ImageSize, MinSide, Quality, ResizeMode, UserAgent
from pixelforge.run.options import Backend, RayAddress, RayTaskCpus
from pixelforge.sources import make_source

app = typer.Typer(help="pixelforge: the data behind image models, with every sample's origin kept.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
import_app = typer.Typer(help="Import a curated dataset into a pixelforge dataset directory.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")
collect_app = typer.Typer(help="Collect image-text pairs from the web (URL lists), honouring opt-outs.",
                          no_args_is_help=True)
app.add_typer(collect_app, name="collect")

out_console = Console()
state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"pixelforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    state["debug"] = debug


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _print_result(result: Any, as_json: bool) -> None:
    data = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else result
    if as_json:
        _print_json(data)
        return
    table = Table(show_header=False, box=None)
    for k, v in data.items():
        table.add_row(f"[bold]{k}[/bold]", json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    out_console.print(table)


# ---- import -------------------------------------------------------------------------------------

Out = Annotated[str, typer.Option("--out", "-o", help="New dataset directory to write.")]
License = Annotated[str, typer.Option(help="Licence id for samples whose source states none (never guessed).")]
LicenseUrl = Annotated[Optional[str], typer.Option(help="Licence URL for samples whose source states none.")]
Attribution = Annotated[Optional[str], typer.Option(help="Attribution for samples whose source states none.")]
PerShard = Annotated[int, typer.Option(help="Samples per WebDataset shard.")]
Overwrite = Annotated[bool, typer.Option(help="Replace --out if it already holds a dataset.")]
MaxPixels = Annotated[int, typer.Option(help="Images declaring more pixels fail with too_many_pixels.")]
MaxBytes = Annotated[int, typer.Option(help="Files larger than this many bytes fail with too_large.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Processes = Annotated[int, typer.Option(help="Worker processes decoding and hashing the images (imports of "
                                             "fewer than 512 items run in one).")]


def _run_import(source: Any, out: str, license: str, license_url: Optional[str], attribution: Optional[str],
                samples_per_shard: int, overwrite: bool, max_pixels: int, max_bytes: int, as_json: bool,
                processes: int) -> None:
    from pixelforge.sources.base import ImportOptions, run_import

    options = ImportOptions(out=out, license=license, license_url=license_url, attribution=attribution,
                            samples_per_shard=samples_per_shard, overwrite=overwrite, max_pixels=max_pixels,
                            max_bytes=max_bytes, processes=processes)
    _print_result(run_import(source, options), as_json)


def _import_command(name: str, example: str):
    """Register an import sub-command whose help ends with an example."""
    def wrap(func):
        doc = (func.__doc__ or "").strip()
        func.__doc__ = f"{doc}\n\nExample:\n\n    {example}"
        return import_app.command(name)(func)
    return wrap


@_import_command("imagefolder", "pixelforge import imagefolder ~/imagenet/train --out data/imagenet")
def import_imagefolder(
    root: Annotated[str, typer.Argument(help="Folder with one sub-folder per class.")],
    out: Out, license: License = "unknown", license_url: LicenseUrl = None, attribution: Attribution = None,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, max_pixels: MaxPixels = 100_000_000,
    max_bytes: MaxBytes = 20 * 2**20, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Import ROOT/<class>/<image> (ImageNet layout): class folders become labels."""
    _run_import(make_source("imagefolder", root=root), out, license, license_url, attribution, samples_per_shard, overwrite,
                max_pixels, max_bytes, as_json, processes)


@_import_command("folder", "pixelforge import folder ./finetune --out data/ft --license cc-by-4.0")
def import_folder(
    root: Annotated[str, typer.Argument(help="Folder of images with optional NAME.txt captions and NAME.json.")],
    out: Out, license: License = "unknown", license_url: LicenseUrl = None, attribution: Attribution = None,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, max_pixels: MaxPixels = 100_000_000,
    max_bytes: MaxBytes = 20 * 2**20, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Import a folder of images (recursively) with same-name .txt captions and .json licence sidecars."""
    _run_import(make_source("folder", root=root), out, license, license_url, attribution, samples_per_shard, overwrite,
                max_pixels, max_bytes, as_json, processes)


@_import_command("coco", "pixelforge import coco --images val2017 --annotations instances_val2017.json "
                         "--captions captions_val2017.json --masks --out data/coco")
def import_coco(
    images: Annotated[str, typer.Option(help="Folder holding the COCO images.")],
    annotations: Annotated[str, typer.Option(help="COCO instances JSON (boxes, segmentations, licences).")],
    out: Out,
    captions: Annotated[Optional[str], typer.Option(help="COCO captions JSON.")] = None,
    masks: Annotated[bool, typer.Option(help="Render segmentations (polygons and RLE) to mask PNGs.")] = False,
    license: License = "unknown", license_url: LicenseUrl = None, attribution: Attribution = None,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, max_pixels: MaxPixels = 100_000_000,
    max_bytes: MaxBytes = 20 * 2**20, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Import a COCO detection set: boxes, category ids, captions, licences and optional masks."""
    _run_import(make_source("coco", images=images, annotations=annotations, captions=captions, masks=masks), out, license,
                license_url, attribution, samples_per_shard, overwrite, max_pixels, max_bytes, as_json, processes)


@_import_command("cifar10", "pixelforge import cifar10 cifar-10-python.tar.gz --out data/cifar10")
def import_cifar10(
    path: Annotated[str, typer.Argument(help="cifar-10-python.tar.gz or the extracted cifar-10-batches-py/.")],
    out: Out, license: License = "unknown", license_url: LicenseUrl = None, attribution: Attribution = None,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Import CIFAR-10 (python version): labels, label names, train/test split. Pickles are read safely."""
    _run_import(make_source("cifar10", path=path), out, license, license_url, attribution, samples_per_shard,
                overwrite, 100_000_000, 20 * 2**20, as_json, processes)


@_import_command("cifar100", "pixelforge import cifar100 cifar-100-python.tar.gz --out data/cifar100")
def import_cifar100(
    path: Annotated[str, typer.Argument(help="cifar-100-python.tar.gz or the extracted cifar-100-python/.")],
    out: Out, license: License = "unknown", license_url: LicenseUrl = None, attribution: Attribution = None,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Import CIFAR-100 (python version): fine and coarse labels and names, train/test split."""
    _run_import(make_source("cifar100", path=path), out, license, license_url, attribution, samples_per_shard,
                overwrite, 100_000_000, 20 * 2**20, as_json, processes)


@_import_command("mnist", "pixelforge import mnist ./mnist --out data/mnist")
def import_mnist(
    path: Annotated[str, typer.Argument(help="Folder with the four IDX files (gzipped or not).")],
    out: Out,
    label_names: Annotated[str, typer.Option(help="digits (MNIST) or fashion (Fashion-MNIST class names).")]
    = "digits",
    license: License = "unknown", license_url: LicenseUrl = None, attribution: Attribution = None,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Import MNIST or Fashion-MNIST IDX files: labels and train/test split."""
    _run_import(make_source("mnist", path=path, label_names=label_names), out, license, license_url, attribution,
                samples_per_shard, overwrite, 100_000_000, 20 * 2**20, as_json, processes)


@_import_command("digits", "pixelforge import digits --size 16 --out data/digits")
def import_digits(
    out: Out,
    size: Annotated[int, typer.Option(help="Upscale the 8x8 digits to SIZE x SIZE.")] = 8,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Import scikit-learn's bundled 1,797 handwritten digits (real data, no download)."""
    _run_import(make_source("digits", size=size), out, "unknown", None, None, samples_per_shard, overwrite,
                100_000_000, 20 * 2**20, as_json, processes)


@_import_command("shapes", "pixelforge import shapes --n 5000 --size 32 --seed 0 --out data/shapes")
def import_shapes(
    out: Out,
    n: Annotated[int, typer.Option(help="Number of images.")] = 1000,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same images.")] = 0,
    max_shapes: Annotated[int, typer.Option(help="Shapes per image: 1 or 2.")] = 1,
    samples_per_shard: PerShard = 1000, overwrite: Overwrite = False, as_json: AsJson = False, processes: Processes = 2,
) -> None:
    """Generate the synthetic shapes set: coloured shapes with captions stating exactly what is drawn."""
    _run_import(make_source("shapes", n=n, size=size, seed=seed, max_shapes=max_shapes), out, "unknown", None, None,
                samples_per_shard, overwrite, 100_000_000, 20 * 2**20, as_json, processes)


# ---- collect ------------------------------------------------------------------------------------

@collect_app.command("urls")
def collect_urls_command(
    list_path: Annotated[str, typer.Argument(metavar="LIST", help="URL list: .txt, .csv, .tsv, .jsonl or .parquet.")],
    out: Out,
    url_col: Annotated[str, typer.Option(help="Column holding the image URL.")] = "url",
    caption_col: Annotated[str, typer.Option(help="Column holding the caption ('' for none).")] = "caption",
    keep_cols: Annotated[str, typer.Option(help="Comma-separated columns kept in the JSON meta field.")] = "",
    image_size: ImageSize = 256,
    resize_mode: ResizeMode = "center_crop",
    encode: Encode = "jpg",
    quality: Quality = 95,
    min_side: MinSide = 0,
    max_bytes: MaxBytes = 20 * 2**20,
    max_pixels: MaxPixels = 100_000_000,
    timeout: Annotated[float, typer.Option(help="Seconds allowed per download.")] = 10.0,
    retries: Annotated[int, typer.Option(help="Retries on 429/5xx/connection errors (backoff; Retry-After honoured).")]
    = 2,
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    concurrency: Annotated[int, typer.Option(help="Downloads in flight per process.")] = 64,
    per_host: Annotated[int, typer.Option(help="At most N connections per host (0 = no cap).")] = 0,
    user_agent: UserAgent = None,
    samples_per_shard: PerShard = 1000,
    resume: Annotated[bool, typer.Option(help="Keep finished shards of a stopped run; fetch the rest.")] = False,
    overwrite: Overwrite = False,
    ignore_opt_outs: Annotated[bool, typer.Option(help="Do not honour robots.txt, X-Robots-Tag or TDM "
                                                   "reservations (recorded in dataset.json).")] = False,
    allow_private_networks: AllowPrivate = False,
    license: License = "unknown",
    backend: Backend = "local",
    ray_address: RayAddress = None,
    ray_task_cpus: RayTaskCpus = 1.0,
    as_json: AsJson = False,
) -> None:
    """Download a list of image URLs (with captions and licences) into a dataset.

    Every input row ends as one sample or one failure row with its reason.

    Example:

        pixelforge collect urls laion_part.parquet --url-col URL --caption-col TEXT --out data/laion
    """
    from pixelforge.collect.fetch import DEFAULT_USER_AGENT
    from pixelforge.collect.urls import CollectConfig, collect_urls

    config = CollectConfig(
        url_col=url_col, caption_col=caption_col or None,
        keep_cols=tuple(c.strip() for c in keep_cols.split(",") if c.strip()),
        image_size=image_size, resize_mode=resize_mode, encode=encode, quality=quality, min_side=min_side,
        max_bytes=max_bytes, max_pixels=max_pixels, timeout=timeout, retries=retries, processes=processes,
        concurrency=concurrency, per_host=per_host, user_agent=user_agent or DEFAULT_USER_AGENT,
        samples_per_shard=samples_per_shard, ignore_opt_outs=ignore_opt_outs,
        allow_private_networks=allow_private_networks, license=license, backend=backend,
        ray_address=ray_address, ray_task_cpus=ray_task_cpus,
    )
    _print_result(collect_urls(list_path, out, config, resume=resume, overwrite=overwrite), as_json)


# ---- inspect ------------------------------------------------------------------------------------

def _open(path: str):
    from pixelforge.store import Dataset

    return Dataset.open(path)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command()
def info(
    path: Annotated[str, typer.Argument(help="Dataset directory.")],
    as_json: AsJson = False,
) -> None:
    """Summarise a dataset: counts, labels, captions, licences, sources, image sizes, disk size.

    Example:

        pixelforge info data/shapes
    """
    from pixelforge.store.summary import summarize

    s = summarize(_open(path))
    if as_json:
        _print_json(s)
        return
    t = Table(title=f"{s['name']}  ({s['path']})", show_header=False)
    t.add_row("made by", f"pixelforge {s['command']}  at {s['created_at']}")
    t.add_row("samples", f"{s['samples']:,}  in {s['shards']} shards, {_human_bytes(s['disk_bytes'])} on disk")
    t.add_row("failures", f"{s['failures']:,}  " + ", ".join(f"{k}: {v}" for k, v in s["failure_reasons"].items()))
    t.add_row("captions", f"{s['with_caption']:,} of {s['samples']:,}")
    t.add_row("labels", f"{s['with_label']:,} labelled, {s['distinct_labels']} classes  "
              + ", ".join(f"{k}: {v}" for k, v in s["labels"].items()))
    if s["boxes"] or s["with_mask"]:
        t.add_row("annotations", f"{s['boxes']:,} boxes, {s['with_mask']:,} masks")
    for key in ("source_kinds", "licenses", "splits", "formats"):
        t.add_row(key.replace("_", " "), ", ".join(f"{k}: {v}" for k, v in s[key].items()))
    t.add_row("opted out", str(s["opt_outs"]))
    w, h = s["width"], s["height"]
    t.add_row("size (w x h)", f"min {w['min']}x{h['min']}, median {w['median']}x{h['median']}, "
              f"max {w['max']}x{h['max']}")
    if s["extra_columns"]:
        t.add_row("extra columns", ", ".join(s["extra_columns"]))
    out_console.print(t)


QUERY_FORMATS = ("table", "csv", "json")


def _flat_for_csv(table):
    """``table`` with its nested columns (boxes, c_flags, ...) as JSON text: CSV has no nested values."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            text = [None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                    for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(f.name, pa.string()), pa.array(text, pa.string()))
    return table


@app.command()
def query(
    path: Annotated[str, typer.Argument(help="Dataset directory.")],
    sql: Annotated[str, typer.Argument(help="DuckDB SQL over tables `samples` (the index) and `failures`.")],
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Run DuckDB SQL over a dataset's index (table `samples`) and failures (table `failures`).

    Example:

        pixelforge query data/shapes "SELECT label_name, count(*) FROM samples GROUP BY 1"
    """
    if format not in QUERY_FORMATS:
        raise UsageError(f"--format {format!r}: choose one of {', '.join(QUERY_FORMATS)}")
    from pixelforge.store import query as run_query

    table = run_query(_open(path), sql)
    if format == "csv":
        import io

        import pyarrow.csv as pacsv

        sink = io.BytesIO()
        pacsv.write_csv(_flat_for_csv(table), sink)
        sys.stdout.write(sink.getvalue().decode("utf-8"))
    elif format == "json":
        _print_json(table.to_pylist())
    else:
        t = Table(*table.column_names)
        for row in table.to_pylist():
            t.add_row(*("" if v is None else str(v) for v in row.values()))
        out_console.print(t)
        out_console.print(f"{table.num_rows} rows", style="dim")


@app.command()
def export(
    path: Annotated[str, typer.Argument(help="Dataset directory.")],
    format: Annotated[str, typer.Option("--format", "-f", help="imagefolder, coco, yolo or labelstudio.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder to write.")],
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Export a dataset for other tools: ImageNet-style folders, COCO JSON (boxes, masks as polygons/RLE,
    captions), YOLO label files, or Label Studio tasks.

    Example:

        pixelforge export data/digits --format imagefolder --out exported/digits
    """
    from pixelforge.store.export import export as run_export

    _print_result(run_export(_open(path), out, format, overwrite=overwrite), as_json)


# Stages whose commands live beside their code: each module has register(app) adding its commands.
STAGE_COMMANDS = (
    "pixelforge.curate.commands",
    "pixelforge.evaluate.commands",
    "pixelforge.train.commands",
    "pixelforge.generate.commands",
    "pixelforge.audit.commands",
    "pixelforge.collect.crawl_commands",
    "pixelforge.report.commands",
    "pixelforge.label.commands",
)


def _register_stages() -> None:
    import importlib

    for name in STAGE_COMMANDS:
        importlib.import_module(name).register(app)


_register_stages()


def main(argv: list[str] | None = None) -> int:
    """Entry point: PixelforgeError becomes one line on stderr and exit code 2 (``--debug``: traceback)."""
    try:
        app(args=argv)  # standalone mode: usage errors print and exit 2 by themselves
    except PixelforgeError as exc:
        if state["debug"]:
            raise
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
