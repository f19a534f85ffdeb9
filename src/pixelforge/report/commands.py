"""CLI commands `report` and `demo`, registered on the main app by pixelforge.cli."""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer


def report_command(
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Dataset directories (collected, curated, "
                                               "generated), audit dirs, training runs and evaluation JSON files, "
                                               "in any mix.")],
    out: Annotated[str, typer.Option("--out", "-o", help="HTML file to write.")] = "report.html",
    title: Annotated[str, typer.Option(help="Title at the top of the report.")] = "pixelforge report",
    verify_limit: Annotated[int, typer.Option(help="Generated images checked for the watermark per generated "
                                                   "set (evenly spaced).")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Render datasets, audits, training runs and evaluations into one self-contained HTML report.

    Each PATH's kind is detected: a dataset (counts, sources, licences, opt-outs, sample grid,
    quality, curation, duplicates), a generated dataset (also prompts, seeds, model, watermark
    verification rate), an audit dir (representation, associations, licence policy), a training
    run of any family (curves, sample grids over time, config, confusion matrix) or an evaluation
    output from `pixelforge evaluate ... --out FILE` (metrics, per-class accuracy, memorised pairs).
    Images and plots are inline: the file opens offline, on a laptop or a phone.

    Example:

        pixelforge report data/web-clean audits/web runs/shapes eval/fid.json --out report.html
    """
    from pixelforge.report import ReportConfig, build_report

    result = build_report(list(paths), out, ReportConfig(title=title, verify_limit=verify_limit))
    if as_json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
        return
    print(f"{result.out}: {len(result.sections)} sections from {len(result.inputs)} inputs "
          f"({', '.join(f'{k}: {v}' for k, v in result.kinds.items())}), {result.bytes / 2**20:.1f} MB, "
          f"{result.missing} notes on missing files, {result.seconds} s")


def demo_command(
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for every dataset, run, evaluation and the "
                                                         "report (a second run resumes it).")] = "demo-out",
    minutes: Annotated[float, typer.Option(help="Training time of the text-to-image diffusion model (the whole "
                                                 "demo takes about 5 minutes more on 2 cores).")] = 3.5,
    overwrite: Annotated[bool, typer.Option(help="Delete a previous demo in --out and start again.")] = False,
    shapes: Annotated[int, typer.Option(hidden=True, help="Images of the synthetic shapes set.")] = 3000,
    image_size: Annotated[int, typer.Option(hidden=True, help="Side of the shapes images and of the model.")] = 32,
    max_pages: Annotated[int, typer.Option(hidden=True, help="Pages the crawl of the bundled site may fetch.")] = 60,
    classifier_minutes: Annotated[float, typer.Option(hidden=True, help="Time budget of each judge classifier.")]
    = 0.5,
    classifier_epochs: Annotated[int, typer.Option(hidden=True, help="Epochs of each judge classifier.")] = 4,
    per_prompt: Annotated[int, typer.Option(hidden=True, help="Images generated per prompt.")] = 4,
    prompts: Annotated[int, typer.Option(hidden=True, help="Prompts generated from (up to 36).")] = 12,
    sample_steps: Annotated[int, typer.Option(hidden=True, help="Sampling steps of generate.")] = 15,
    eval_every: Annotated[int, typer.Option(hidden=True, help="Diffusion evaluation (grid, checkpoint) interval.")]
    = 40,
    watermark_scores: Annotated[bool, typer.Option(hidden=True, help="Run curate's watermark CNN.")] = True,
) -> None:
    """Run the whole pipeline on 127.0.0.1 with nothing but this repository, and write report.html.

    Serves the bundled site, crawls it, imports the digits and the shapes set, curates, audits,
    splits, trains a text-to-image diffusion model (--minutes) and two judge classifiers, generates
    marked images from prompts, verifies the marks, evaluates (domain FID, prompt accuracy,
    memorisation) and renders the report. One line per stage; the stages done are recorded in
    OUT/demo.json, so running it again with the same --out and options resumes where it stopped.

    Example:

        pixelforge demo --out demo-out --minutes 3.5
    """
    from pixelforge.demo import DemoConfig, run_demo

    config = DemoConfig(minutes=minutes, shapes=shapes, image_size=image_size, max_pages=max_pages,
                        classifier_minutes=classifier_minutes, classifier_epochs=classifier_epochs,
                        per_prompt=per_prompt, prompts=prompts, sample_steps=sample_steps, eval_every=eval_every,
                        watermark_scores=watermark_scores)
    result = run_demo(out, config, overwrite=overwrite)
    print(f"report: {result.report}")


def register(app: typer.Typer) -> None:
    """Add `report` and `demo` to ``app``."""
    app.command("report")(report_command)
    app.command("demo")(demo_command)
