"""CLI commands of the evaluate stage: evaluate (the metrics), evaluate conditional, evaluate memorization."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table

from pixelforge.console import as_data, print_result, print_warnings
from pixelforge.errors import UsageError
from pixelforge.options import EVALUATE
from pixelforge.run.options import EXECUTOR, RayAddress, RayTaskCpus, executor_settings

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
N = Annotated[int | None, typer.Option("--n", help="Use the first N images of each input (default: all).")]
BatchSize = Annotated[int, typer.Option(help="Images per forward pass (results do not depend on it).")]
Workers = Annotated[int, typer.Option(help="Image-decoding processes (0: decode in the main process).")]
Weights = Annotated[
    str | None,
    typer.Option(
        "--inception-weights",
        help="pt_inception-2015-12-05-6726825d.pth (else $PIXELFORGE_INCEPTION_WEIGHTS, else the torch hub cache).",
    ),
]
Download = Annotated[bool, typer.Option(help="Download the Inception weights into the torch hub cache if missing.")]
Dims = Annotated[int, typer.Option(help="Inception feature layer: 64, 192, 768 or 2048.")]
FidImpl = Annotated[str, typer.Option(help="torch-fidelity (TensorFlow-exact resize, default) or pytorch-fid.")]


OutFile = Annotated[
    str | None,
    typer.Option(
        "--out", help="Also write the result, with the command's config, to this JSON file (for `pixelforge report`)."
    ),
]


def _save(path: str | None, command: str, config: Any, result: dict[str, Any]) -> None:
    """Write {command, config, result} to ``path``: the evaluation output the report reads."""
    if not path:
        return
    from pathlib import Path

    doc = {"command": command, "config": as_data(config), "result": result}
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # `--out eval/fid.json` in a fresh folder
    Path(path).write_text(json.dumps(doc, indent=2, default=str) + "\n")


def _metrics(
    ctx: typer.Context,
    real: str | None,
    fake: str | None,
    metrics: str,
    features: str,
    dims: int,
    fid_impl: str,
    n: int | None,
    batch_size: int,
    workers: int,
    inception_weights: str | None,
    download: bool,
    kid_subset_size: int,
    cache: bool,
    out_file: str | None,
    as_json: bool,
    backend: str,
    ray_address: str | None,
    ray_task_cpus: float,
) -> None:
    """FID, KID, Inception Score and precision/recall of --fake against --real, from one feature pass.

    --real and --fake are pixelforge datasets or plain image folders.

    Defaults reproduce torch-fidelity; --fid-impl pytorch-fid reproduces pytorch-fid.

    The real set's features are cached under DATASET/.cache/ (folders: ~/.cache/pixelforge/evaluate/).

    Example:

        pixelforge evaluate --real data/shapes --fake out/generated --metrics fid,kid,is --json
    """
    if ctx.invoked_subcommand is not None:
        return
    if not fake:
        raise UsageError(
            "--fake is needed: the generated images to evaluate (a dataset or a folder); "
            "see `pixelforge evaluate --help`"
        )
    from pixelforge.evaluate.quality import EvaluateConfig, evaluate

    config = EvaluateConfig(
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
        features=features,
        dims=dims,
        fid_impl=fid_impl,
        n=n,
        batch_size=batch_size,
        workers=workers,
        inception_weights=inception_weights,
        download=download,
        kid_subset_size=kid_subset_size,
        cache=cache,
        executor=executor_settings(backend=backend, ray_address=ray_address, ray_task_cpus=ray_task_cpus),
    )
    result = evaluate(real, fake, config)
    print_warnings(result.warnings)
    _save(out_file, "evaluate", config, {**result.to_json(), "real": real, "fake": fake, "failed": result.failed})
    print_result(result.to_json(), as_json, lambda metrics: _metrics_table(metrics, f"{fake} vs {real}"))


def _metrics_table(metrics: dict[str, Any], title: str) -> Table:
    t = Table(title=title, show_header=False)
    for key, value in metrics.items():
        t.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    return t


def _conditional(
    fake: Annotated[str, typer.Option(help="Generated dataset (its rows hold the prompt or class).")],
    classifier: Annotated[
        list[str],
        typer.Option(help="Classifier run judging an attribute; repeat it, one per --attribute, in the same order."),
    ],
    attribute: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated attributes the classifiers judge (index columns such as shape,colour, or label)."
        ),
    ] = None,
    n: N = None,
    batch_size: BatchSize = 64,
    workers: Workers = 2,
    out_file: OutFile = None,
    as_json: AsJson = False,
) -> None:
    """Judge whether each generated image shows what was asked: accuracy per attribute and class, confusion matrix.

    A row's target is its own column (shape, colour, label_name), else the first class its prompt names.

    Example:

        pixelforge evaluate conditional --fake out/generated --classifier runs/shape --classifier runs/colour \\
            --attribute shape,colour
    """
    from pixelforge.evaluate.conditional import ConditionalConfig, evaluate_conditional
    from pixelforge.evaluate.features import load_classifier

    attributes = [a.strip() for a in attribute.split(",") if a.strip()] if attribute else []
    judges_runs = list(classifier)
    if not attributes:
        attributes = [_trained_label(run) for run in judges_runs]
    if len(attributes) != len(judges_runs):
        raise UsageError(
            f"--attribute names {len(attributes)} attributes but {len(judges_runs)} --classifier runs "
            "were given: pass one classifier per attribute, in the same order"
        )
    judges = {a: load_classifier(run) for a, run in zip(attributes, judges_runs)}
    config = ConditionalConfig(n=n, batch_size=batch_size, workers=workers)
    result = evaluate_conditional(fake, judges, config)
    _save(
        out_file,
        "evaluate conditional",
        config,
        {**as_data(result), "fake": fake, "classifiers": dict(zip(attributes, judges_runs))},
    )
    print_result(result, as_json, _confusion_tables)


def _confusion_tables(result: Any) -> Group:
    """One confusion matrix per attribute (rows: the class asked for, columns: the class seen)."""
    parts: list[Any] = []
    for name, acc in result.attributes.items():
        t = Table(
            title=f"{name}: accuracy {acc.accuracy if acc.accuracy is None else f'{acc.accuracy:.3f}'} "
            f"({acc.correct}/{acc.judged}, {acc.unjudged} without a target)"
        )
        t.add_column("asked \\ seen")
        for label in acc.labels:
            t.add_column(label, justify="right")
        for label, row in zip(acc.labels, acc.confusion):
            t.add_row(label, *map(str, row))
        parts.append(t)
    if len(result.attributes) > 1:
        parts.append(f"all attributes right: {result.all_correct} over {result.n_all} images")
    return Group(*parts)


def _trained_label(run: str) -> str:
    """The column a classifier run was trained on (its config's 'label_column'), else 'label'."""
    from pixelforge.train.rundir import RunDir

    try:
        return str(RunDir(run).config.get("label_column") or "label")
    except (OSError, ValueError):
        return "label"


def _memorization(
    train: Annotated[str, typer.Option(help="Training dataset or folder.")],
    fake: Annotated[str, typer.Option(help="Generated dataset or folder.")],
    threshold: Annotated[float, typer.Option(help="Carlini et al.'s delta on the relative l2 of pixels.")] = 1 / 3,
    feature_threshold: Annotated[float, typer.Option(help="The same relative test on feature cosine distance.")] = 1
    / 3,
    features: Annotated[
        str, typer.Option(help="pixels (only), inception or classifier:RUN (adds features).")
    ] = "pixels",
    neighbours: Annotated[int, typer.Option(help="n nearest training images the distance is compared with.")] = 50,
    pixel_size: Annotated[int, typer.Option(help="Side images are resized to for the pixel distance.")] = 32,
    top: Annotated[int, typer.Option(help="Closest pairs listed for the report.")] = 20,
    aligned: Annotated[
        bool, typer.Option(help="Also find crops, small rotations and rescales of training images by alignment.")
    ] = True,
    n: N = None,
    batch_size: BatchSize = 64,
    workers: Workers = 2,
    dims: Dims = 2048,
    fid_impl: FidImpl = "torch-fidelity",
    inception_weights: Weights = None,
    download: Download = False,
    out_file: OutFile = None,
    as_json: AsJson = False,
) -> None:
    """Find generated images that copy a training image (Carlini et al. 2023's relative l2, and features).

    Example:

        pixelforge evaluate memorization --train data/shapes --fake out/generated \\
            --features classifier:runs/shape --json
    """
    from pixelforge.evaluate.memorization import MemorizationConfig, find_memorized

    config = MemorizationConfig(
        features=features,
        threshold=threshold,
        feature_threshold=feature_threshold,
        neighbours=neighbours,
        pixel_size=pixel_size,
        top=top,
        aligned=aligned,
        n=n,
        batch_size=batch_size,
        workers=workers,
        dims=dims,
        fid_impl=fid_impl,
        inception_weights=inception_weights,
        download=download,
    )
    result = find_memorized(train, fake, config)
    print_warnings(result.warnings)
    _save(out_file, "evaluate memorization", config, {**result.to_json(), "train": train, "fake": fake})
    print_result(result.to_json(), as_json, lambda _: _copies_table(result, top))


def _copies_table(result: Any, top: int) -> Group:
    """How many generated images copy a training image, and the ``top`` closest pairs."""
    t = Table("fake", "train", "score", "by")
    for p in result.flagged[:top]:
        t.add_row(p["fake"], p["train"], f"{p['score']:.4f}", p["by"])
    return Group(
        f"{result.n_flagged} of {result.n_fake} generated images copy a training image "
        f"(share {result.share:.4f}; {result.n_train} training images)",
        t,
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``: `evaluate` (the metrics) with `conditional` and `memorization`."""
    group = typer.Typer(help=_metrics.__doc__, invoke_without_command=True, no_args_is_help=False)

    @group.callback(invoke_without_command=True, help=_metrics.__doc__)
    def evaluate_metrics(
        ctx: typer.Context,
        real: Annotated[str | None, typer.Option(help="Real images: dataset or folder.")] = None,
        fake: Annotated[str | None, typer.Option(help="Generated images: dataset or folder.")] = None,
        metrics: Annotated[
            str, typer.Option(help="Comma-separated: fid,kid,is,precision,recall.")
        ] = "fid,kid,is,precision,recall",
        features: Annotated[
            str, typer.Option(help="inception, or classifier:RUN (domain features; not comparable to Inception FID).")
        ] = "inception",
        dims: Dims = 2048,
        fid_impl: FidImpl = "torch-fidelity",
        n: N = None,
        batch_size: BatchSize = 50,
        workers: Workers = 2,
        inception_weights: Weights = None,
        download: Download = False,
        kid_subset_size: Annotated[int, typer.Option(help="Images per KID subset (100 subsets).")] = 1000,
        cache: Annotated[bool, typer.Option(help="Cache the real set's features.")] = True,
        backend: Annotated[
            str,
            typer.Option(
                help="Feature pass: local (loader processes) or ray (one task per shard; needs the ray extra)."
            ),
        ] = EXECUTOR.backend,
        ray_address: RayAddress = EXECUTOR.ray_address,
        ray_task_cpus: RayTaskCpus = EXECUTOR.ray_task_cpus,
        out_file: OutFile = None,
        as_json: AsJson = False,
    ) -> None:
        _metrics(
            ctx,
            real,
            fake,
            metrics,
            features,
            dims,
            fid_impl,
            n,
            batch_size,
            workers,
            inception_weights,
            download,
            kid_subset_size,
            cache,
            out_file,
            as_json,
            backend,
            ray_address,
            ray_task_cpus,
        )

    group.command("conditional")(_conditional)
    group.command("memorization")(_memorization)
    app.add_typer(group, name="evaluate", rich_help_panel=EVALUATE)
