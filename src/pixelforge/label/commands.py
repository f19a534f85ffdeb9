"""CLI commands of the label stage: label serve|apply|suggest|issues|results."""

from __future__ import annotations

from typing import Annotated

import typer

from pixelforge.console import print_result
from pixelforge.options import LABEL, AsJson, Out, Overwrite

Dir = Annotated[str, typer.Argument(metavar="DIR", help="Dataset directory.")]
Db = Annotated[str | None, typer.Option(help="Annotations file (default: DIR/annotations.sqlite).")]

label_app = typer.Typer(
    help="Label datasets in a web app, pre-label with a model, find wrong labels, "
    "collect human judgements of generated images.",
    no_args_is_help=True,
)


def _classes(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",")) if text.strip() else ()


@label_app.command("serve")
def serve_command(
    data: Dir,
    data_b: Annotated[
        str | None, typer.Argument(metavar="DIR_B", help="Second dataset, or the second of two runs (--task compare).")
    ] = None,
    task: Annotated[str, typer.Option(help="classify, boxes, caption, review, rate or compare.")] = "classify",
    classes: Annotated[
        str, typer.Option(help="Comma-separated class names (default: the dataset's label names).")
    ] = "",
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    token: Annotated[
        str | None, typer.Option(help="Access token (off loopback one is generated and printed when not given).")
    ] = None,
    db: Db = None,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (larger: 413).")] = 256 * 1024,
    seed: Annotated[
        int, typer.Option(help="Seed of the left/right order of compared images (and of two runs' images).")
    ] = 0,
    prompts: Annotated[
        str | None, typer.Option(help="Compare two runs: the prompts (one per line) both runs draw first.")
    ] = None,
    n: Annotated[int | None, typer.Option(help="Compare two runs: images of each prompt from each run [4].")] = None,
) -> None:
    """Serve the labelling web app for DIR (one image at a time, keyboard shortcuts, boxes, captions).

    Annotations go to DIR/annotations.sqlite with their author, time and the value they replaced.
    --task rate scores generated images 1-5 for realism and faithfulness to their prompt;
    --task compare DIR_A DIR_B shows two images of the same prompt side by side, models hidden; DIR_A
    and DIR_B are two generated datasets, or two training runs with --prompts (a base run and its
    reward-tuned run, say): both draw --n images of each prompt from the same seeds first, into
    RUN/compare-<hash>/ (reused when served again), and the annotations go to RUN_A's folder.

    Example:

        pixelforge label serve data/digits --task classify --port 8765
        pixelforge label serve runs/base runs/tuned --task compare --prompts prompts.txt
    """
    from pixelforge.errors import UsageError
    from pixelforge.label.project import Project, ProjectConfig
    from pixelforge.label.server import ServerConfig, is_loopback, new_token, serve

    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: choose 1-65535")
    if max_body < 1024:
        raise UsageError(f"--max-body {max_body}: at least 1024 bytes")
    if token is not None and len(token) < 16:
        raise UsageError("--token: use at least 16 characters (or omit it to have one generated)")
    if not is_loopback(host) and token is None:
        token = new_token()
    from pixelforge.label.runs import comparison_datasets, refuse_draw_options

    if task == "compare" and data_b is not None:
        data, data_b = comparison_datasets(data, data_b, prompts, n, seed)
    else:
        refuse_draw_options(prompts, n, "for --task compare of two training runs")
    project = Project(
        ProjectConfig(data=data, task=task, classes=_classes(classes), compare_with=data_b, db=db, seed=seed)
    )
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    typer.echo(f"pixelforge label: {project.progress()['total']} items ({task}) at {url}", err=True)
    if task == "compare":
        typer.echo(f"comparing {data} (A) with {data_b} (B)", err=True)
    typer.echo(f"annotations: {project.db.path}   (Ctrl+C stops)", err=True)
    serve(project, ServerConfig(host=host, port=port, token=token, max_body=max_body))


@label_app.command("apply")
def apply_command(data: Dir, out: Out, db: Db = None, overwrite: Overwrite = False, as_json: AsJson = False) -> None:
    """Write a new dataset with the accepted annotations (label, boxes, caption) merged in.

    Adds annotated_by, annotated_at and annotated_fields columns; OUT/annotations.parquet keeps
    every edit (value, previous value, annotator, time).

    Example:

        pixelforge label apply data/digits --out data/digits-labelled
    """
    from pixelforge.label.apply import ApplyConfig, apply_annotations

    print_result(apply_annotations(data, out, ApplyConfig(db=db, overwrite=overwrite)), as_json)


@label_app.command("suggest")
def suggest_command(
    data: Dir,
    out: Out,
    model: Annotated[str | None, typer.Option(help="Classifier run directory (pixelforge train classifier).")] = None,
    from_captions: Annotated[
        bool, typer.Option("--from-captions", help="Propose labels by finding class names and synonyms in captions.")
    ] = False,
    classes: Annotated[
        str, typer.Option(help="Classes for --from-captions (default: the dataset's label names).")
    ] = "",
    synonyms: Annotated[str | None, typer.Option(help='TOML of class = ["synonym", ...] for --from-captions.')] = None,
    batch_size: Annotated[int, typer.Option(help="Images per batch (--model).")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Pre-label a dataset: suggested_label and suggested_confidence from a classifier or from captions.

    The labelling app shows the suggestion and puts low-confidence ones first.

    Example:

        pixelforge label suggest data/web --from-captions --classes cat,dog --synonyms syn.toml --out data/web-s
    """
    from pixelforge.label.suggest import SuggestConfig, suggest

    config = SuggestConfig(
        model=model,
        from_captions=from_captions,
        classes=_classes(classes),
        synonyms=synonyms,
        batch_size=batch_size,
        device=device,
        overwrite=overwrite,
    )
    print_result(suggest(data, out, config), as_json)


@label_app.command("issues")
def issues_command(
    data: Dir,
    out: Out,
    model: Annotated[
        str | None,
        typer.Option(
            help="Classifier run whose architecture and options the k-fold models reuse (default: a small CNN)."
        ),
    ] = None,
    folds: Annotated[int, typer.Option(help="k of the k-fold out-of-fold predictions.")] = 5,
    epochs: Annotated[int, typer.Option(help="Epochs per fold.")] = 8,
    image_size: Annotated[int | None, typer.Option(help="Image side (default: the run's, else 16).")] = None,
    width: Annotated[int | None, typer.Option(help="Classifier width (default: the run's, else 16).")] = None,
    top: Annotated[int, typer.Option(help="Worst samples to list.")] = 20,
    keep_runs: Annotated[str | None, typer.Option(help="Keep the fold datasets and runs in this folder.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or mps.")] = "cpu",
    threads: Annotated[int, typer.Option(help="CPU threads for the fold models (small models: 1 is fastest).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the folds and training.")] = 0,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Find likely label errors by confident learning on out-of-fold classifier probabilities.

    Writes a new dataset with label_issue, label_quality (probability of the given label) and the
    out-of-fold suggestion, plus OUT/label_issues.json; lists the worst.

    Example:

        pixelforge label issues data/digits --model runs/digits-cls --folds 5 --out data/digits-issues
    """
    from pixelforge.label.issues import IssuesConfig, find_issues

    config = IssuesConfig(
        model=model,
        folds=folds,
        epochs=epochs,
        image_size=image_size,
        width=width,
        top=top,
        keep_runs=keep_runs,
        device=device,
        threads=threads,
        seed=seed,
        overwrite=overwrite,
    )
    print_result(find_issues(data, out, config), as_json)


@label_app.command("results")
def results_command(
    data: Dir,
    db: Db = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="JSON to write (default: DIR/human_eval.json, where the report reads it)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Summarise human judgements: mean scores with 95% intervals, win rates, Bradley-Terry strengths.

    Example:

        pixelforge label results data/generated
    """
    from pixelforge.label.results import results

    print_result(results(data, db=db, out=out), as_json)


def register(app: typer.Typer) -> None:
    """Add the `label` command group to ``app``."""
    app.add_typer(label_app, name="label", rich_help_panel=LABEL)
