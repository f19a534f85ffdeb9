"""CLI of the generate stage: `pixelforge generate RUN ...` and `pixelforge verify PATH...`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pixelforge.console import print_result
from pixelforge.errors import UsageError
from pixelforge.options import TRAIN, AsJson


def generate_command(
    run: Annotated[str, typer.Argument(help="Training run directory.")],
    out: Annotated[str, typer.Option("--out", "-o", help="New dataset directory for the images.")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", help="A prompt (repeatable).")] = None,
    prompts: Annotated[
        str | None, typer.Option(help="File of prompts: one per line, or a .csv / .jsonl with a prompt column.")
    ] = None,
    class_: Annotated[list[str] | None, typer.Option("--class", help="A class name (repeatable).")] = None,
    n: Annotated[int, typer.Option(help="Images per prompt or class (in all, for unconditional runs).")] = 1,
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 50,
    sampler: Annotated[
        str, typer.Option(help="ddim, ddpm or dpm++; euler for flow models (ddim is the same step).")
    ] = "ddim",
    guidance: Annotated[
        float, typer.Option(help="Classifier-free guidance scale (1: none).")
    ] = 2.0,  # = models.diffusion.GUIDANCE
    seed: Annotated[int, typer.Option(help="The same seed and settings give the same images.")] = 0,
    batch_size: Annotated[int, typer.Option()] = 64,
    checkpoint: Annotated[str, typer.Option(help="best (lowest validation loss) or latest.")] = "best",
    mark_size: Annotated[
        int,
        typer.Option(
            help="Images are enlarged to this side before the watermark "
            "(0: native size; the mark survives re-encoding poorly under 128)."
        ),
    ] = 256,
    mark: Annotated[
        str,
        typer.Option(
            help="Invisible watermarks, comma-separated: tile (survives crops, resizes, rotations, screenshots), "
            "dwtdctsvd (invisible-watermark's format, survives re-encoding only), treering (diffusion runs: a key "
            "in the starting noise, read by `verify --run`), or none."
        ),
    ] = "tile",
    device: Annotated[str, typer.Option()] = "auto",
    c2pa_cert: Annotated[
        str | None, typer.Option(help="PEM certificate chain (signer first): also embed a signed C2PA manifest.")
    ] = None,
    c2pa_key: Annotated[str | None, typer.Option(help="PEM private key of --c2pa-cert.")] = None,
    overwrite: Annotated[bool, typer.Option()] = False,
    as_json: AsJson = False,
) -> None:
    """Generate images from a trained run, each with an invisible watermark and provenance metadata.

    Example:

        pixelforge generate runs/shapes --prompt "a large red circle in the center on a blue background" --n 8 --out gen
    """
    from pixelforge.generate.run import GenerateConfig, generate
    from pixelforge.prompts import read_prompt_texts

    texts = list(prompt or [])
    if prompts:
        texts += read_prompt_texts(prompts)
    gc = GenerateConfig(
        prompts=texts,
        classes=list(class_ or []),
        n=n,
        steps=steps,
        sampler=sampler,
        guidance=guidance,
        seed=seed,
        batch_size=batch_size,
        checkpoint=checkpoint,
        mark_size=mark_size,
        mark=mark,
        device=device,
        c2pa_cert=c2pa_cert,
        c2pa_key=c2pa_key,
    )
    print_result(
        generate(run, out, gc, overwrite=overwrite),
        as_json,
        lambda r: f"{r.images} images in {r.out} (run {r.run_id}, {r.seconds} s)",
    )


def verify_command(
    paths: Annotated[list[str], typer.Argument(help="Images or folders of images.")],
    attacks: Annotated[
        bool,
        typer.Option(
            help="Put each (marked) image through JPEG, resizes, crops, rotations, colour changes, blur, noise "
            "and a screenshot, and report which watermark still finds its mark after each."
        ),
    ] = False,
    run: Annotated[
        str | None,
        typer.Option(
            help="A diffusion run: also look for its Tree-Ring mark (generate --mark treering) by inverting "
            "the images with the run's model."
        ),
    ] = None,
    checkpoint: Annotated[str, typer.Option(help="The --run checkpoint: best or latest.")] = "best",
    device: Annotated[str, typer.Option()] = "auto",
    as_json: AsJson = False,
) -> None:
    """Check images for pixelforge's watermarks (every method), provenance metadata and C2PA manifest.

    Example:

        pixelforge verify gen/images/
        pixelforge verify gen/images/000000000.png --attacks
    """
    from pixelforge.generate.verify import attack_file, expand, verify_file

    files = expand(paths)
    loaded = None
    if run is not None:
        from pixelforge.device import resolve_device
        from pixelforge.train.rundir import load_run

        loaded = load_run(run, checkpoint, resolve_device(device))
        if loaded.config.get("family") != "diffusion":
            raise UsageError(f"--run {run}: a {loaded.config.get('family')} run has no Tree-Ring mark (diffusion only)")
    if attacks:
        reports = [attack_file(p, loaded) for p in files]
        print_result(reports, as_json, lambda reports: "\n".join(map(_attack_lines, reports)))
        return
    results = [verify_file(p, loaded) for p in files]
    print_result(results, as_json, lambda results: "\n".join(_verdict(r) for r in results))


def _attack_lines(r: Any) -> str:
    """One image's table: per attack, the tag bits each method read (- where it found no mark)."""
    if r.error:
        return f"{r.path}: error: {r.error}"
    methods = list(next(iter(r.attacks.values())))
    lines = [r.path, f"  {'attack':26}" + "".join(f"{m:>12}" for m in methods)]
    for name, row in r.attacks.items():
        cells = "".join(f"{_cell(m, row[m]):>12}" for m in methods)
        lines.append(f"  {name:26}{cells}")
    return "\n".join(lines)


def _cell(method: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"z {value}" if method == "treering" else f"{value}/32"


def _verdict(r: Any) -> str:
    """One image's line: its verdict, then what was found."""
    by = f" by {', '.join(r.watermark_methods)}" if r.watermark_methods else ""
    wm = f"watermark {'found' + by if r.watermark_found else 'not found'} ({r.bits_matched}/32 tag bits)"
    md = "metadata found" if r.metadata_found else "no metadata"
    c2 = f", C2PA manifest {r.c2pa_state}" if r.c2pa_found else ""
    return f"{r.path}: {r.verdict}  [{wm}, {md}{c2}]" + (f"  error: {r.error}" if r.error else "")


def register(app: typer.Typer) -> None:
    """Add `generate` and `verify` to ``app``."""
    app.command("generate", rich_help_panel=TRAIN)(generate_command)
    app.command("verify", rich_help_panel=TRAIN)(verify_command)
