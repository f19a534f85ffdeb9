"""`pixelforge demo`: the whole pipeline on 127.0.0.1 with nothing but the repository, resumable stage by stage.

serve the bundled site -> crawl it -> import digits and shapes -> curate -> audit -> split -> train a
text-to-image diffusion model and two judge classifiers -> generate -> verify -> evaluate -> report.
Each stage calls the same function its CLI command calls. OUT/demo.json records the options and
the finished stages: a second run with the same OUT and options skips them; other options are refused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pixelforge import __version__
from pixelforge.console import print_text
from pixelforge.errors import UsageError
from pixelforge.options import RUN

STATE = "demo.json"
# the best of the 5-minute levers measured by benchmarks/text2img_shapes.py (docs/benchmarks.md#text-to-image):
# the UNet on 2x2 pixel patches (--patch-size 2) with block widths 64, 96, 96, batch 32 and Min-SNR gamma 20 drew
# all five attributes right 0.894 / 0.887 of the time after 5 minutes (seeds 0 / 1; widths 48, 96, 96 in the same
# hour: 0.856; full-resolution tiny UNet, batch 16: 0.394); DPM-Solver++ in 20 steps draws as well as DDIM in 50
DEMO_BATCH, DEMO_SNR_GAMMA = 32, 20.0
DEMO_MODEL = {"model_size": "tiny", "patch_size": 2, "widths": "64,96,96", "snr_gamma": DEMO_SNR_GAMMA}
STATE_VERSION = 1


@dataclass
class DemoConfig:
    """What the demo builds; every value is recorded in OUT/demo.json and must match to resume."""

    minutes: float = 7.0  # training time of the diffusion model (the whole demo: ~9.5 min on 2 cores)
    shapes: int = 3000  # images of the synthetic shapes set
    image_size: int = 32
    max_pages: int = 60  # pages the crawl may fetch from the bundled site
    classifier_minutes: float = 0.5
    classifier_epochs: int = 4
    per_prompt: int = 4  # images generated per prompt
    prompts: int = 12
    sample_steps: int = 20
    eval_every: int = 250  # diffusion: validation, sample grid and checkpoint every N steps
    watermark_scores: bool = True  # curate's watermark CNN
    seed: int = 0

    def validate(self) -> None:
        if not 0 < self.minutes <= 24 * 60:
            raise UsageError(f"--minutes {self.minutes}: choose a positive number of minutes")
        if self.shapes < 60:
            raise UsageError(f"--shapes {self.shapes}: at least 60 images (ten of each shape)")
        if self.image_size not in (16, 32, 64):
            raise UsageError(f"--image-size {self.image_size}: choose 16, 32 or 64")
        if not 1 <= self.prompts <= 36:
            raise UsageError(f"--prompts {self.prompts}: choose 1 to 36")
        for flag, v in (
            ("--max-pages", self.max_pages),
            ("--per-prompt", self.per_prompt),
            ("--sample-steps", self.sample_steps),
            ("--eval-every", self.eval_every),
            ("--classifier-epochs", self.classifier_epochs),
        ):
            if v < 1:
                raise UsageError(f"{flag} {v}: must be at least 1")
        if self.classifier_minutes <= 0:
            raise UsageError(f"--classifier-minutes {self.classifier_minutes}: must be positive")


@dataclass
class DemoResult:
    out: str
    report: str
    stages_run: list[str]
    stages_skipped: list[str]
    seconds: float
    summaries: dict[str, str] = field(default_factory=dict)


def demo_prompts(n: int) -> list[str]:
    """``n`` prompts in the shapes set's caption language, cycling through shapes, colours and backgrounds."""
    from pixelforge.sources.shapes import BACKGROUNDS, SHAPE_COLOURS, SHAPES, contrasts

    out = []
    for i in range(n):
        shape, colour = SHAPES[i % len(SHAPES)], SHAPE_COLOURS[(i + i // len(SHAPES)) % len(SHAPE_COLOURS)]
        background = next(
            b for k in range(len(BACKGROUNDS)) if contrasts(colour, b := BACKGROUNDS[(i + k) % len(BACKGROUNDS)])
        )
        out.append(f"a large {colour} {shape} in the center on a {background} background")
    return out


class Demo:
    """The stages and where each writes; ``run`` walks them, skipping those demo.json marks done."""

    def __init__(self, out: Path, config: DemoConfig):
        self.out, self.c = out, config
        d = out
        self.p = {  # every path the demo writes, by name
            "site": d / "data" / "site",
            "digits": d / "data" / "digits",
            "shapes": d / "data" / "shapes",
            "site_clean": d / "data" / "site-clean",
            "digits_clean": d / "data" / "digits-clean",
            "shapes_clean": d / "data" / "shapes-clean",
            "shapes_split": d / "data" / "shapes-split",
            "audit_site": d / "audits" / "site",
            "audit_shapes": d / "audits" / "shapes",
            "run_diffusion": d / "runs" / "shapes-diffusion",
            "run_shape": d / "runs" / "judge-shape",
            "run_colour": d / "runs" / "judge-colour",
            "generated": d / "generated",
            "prompts": d / "prompts.txt",
            "verify": d / "eval" / "verify.json",
            "fid": d / "eval" / "fid.json",
            "conditional": d / "eval" / "conditional.json",
            "memorization": d / "eval" / "memorization.json",
            "report": d / "report.html",
        }
        # (name, function, the paths it writes: removed before a stage runs again after a stop)
        self.stages: list[tuple[str, Callable[[], str], list[str]]] = [
            ("crawl", self.crawl, ["site"]),
            ("import digits", self.import_digits, ["digits"]),
            ("import shapes", self.import_shapes, ["shapes"]),
            ("curate", self.curate, ["site_clean", "digits_clean", "shapes_clean"]),
            ("audit", self.audit, ["audit_site", "audit_shapes"]),
            ("split", self.split, ["shapes_split"]),
            ("train diffusion", self.train_diffusion, ["run_diffusion"]),
            ("train classifiers", self.train_classifiers, ["run_shape", "run_colour"]),
            ("generate", self.generate, ["generated", "prompts"]),
            ("verify", self.verify, ["verify"]),
            ("evaluate", self.evaluate, ["fid", "conditional", "memorization"]),
            ("report", self.report, ["report"]),
        ]

    def s(self, name: str) -> str:
        return str(self.p[name])

    # -- stages -----------------------------------------------------------------------------------
    def crawl(self) -> str:
        from pixelforge.collect.config import CollectConfig
        from pixelforge.collect.crawl import CrawlConfig, crawl
        from pixelforge.collect.site import SiteServer
        from pixelforge.run import ExecutorSettings

        with SiteServer(port=0) as server:
            download = CollectConfig(
                caption_col=None,
                image_size=64,
                encode="jpg",
                concurrency=16,
                executor=ExecutorSettings(processes=2),
                allow_private_networks=True,
            )
            r = crawl(
                self.s("site"),
                CrawlConfig(seeds=(server.url("/"),), max_pages=self.c.max_pages, delay=0.0, download=download),
            )
            url = server.url("/")
        opted = sum(v for k, v in r.failure_reasons.items() if k.startswith("opt_out"))
        return (
            f"served the bundled site at {url} and crawled {r.pages_fetched} pages: {r.samples} images "
            f"with captions, {opted} refused by opt-outs"
        )

    def _import(self, kind: str, name: str, **options: Any) -> str:
        from pixelforge.sources import make_source
        from pixelforge.sources.base import ImportOptions, run_import

        r = run_import(make_source(kind, **options), ImportOptions(out=self.s(name)))
        return f"{r.samples} samples, {r.failures} failures"

    def import_digits(self) -> str:
        return "scikit-learn's handwritten digits: " + self._import("digits", "digits", size=16)

    def import_shapes(self) -> str:
        return "synthetic shapes with exact captions: " + self._import(
            "shapes", "shapes", n=self.c.shapes, size=self.c.image_size, seed=self.c.seed
        )

    def curate(self) -> str:
        from pixelforge.curate.stage import CurateConfig, curate

        wm = self.c.watermark_scores
        # Duplicates are found and shown, not dropped: the site's flat drawn shapes of one colour hash alike
        # (the colour check only separates different colours), so --drop-duplicates would keep one image of each look.
        site = curate(
            self.s("site"),
            self.s("site_clean"),
            CurateConfig(where="license <> 'all-rights-reserved'", drop_bad_captions=True, watermark=wm),
        )
        digits = curate(self.s("digits"), self.s("digits_clean"), CurateConfig(watermark=False))
        shapes = curate(self.s("shapes"), self.s("shapes_clean"), CurateConfig(watermark=wm))
        return (
            f"site {site.input_samples} -> {site.samples} (removed {sum(site.removed.values())}: all rights "
            f"reserved, bad captions; {site.duplicate_groups} duplicate groups), digits {digits.samples} and "
            f"shapes {shapes.samples} scored"
        )

    def audit(self) -> str:
        from pixelforge.audit.stage import AuditConfig, audit

        site = audit(self.s("site_clean"), self.s("audit_site"), AuditConfig(policy="commercial"))
        shapes = audit(self.s("shapes_clean"), self.s("audit_shapes"), AuditConfig())
        return (
            f"site: {site.report['policy']['violation_count']} samples the commercial policy forbids; "
            f"shapes: {len(shapes.report['labels']['counts'])} classes, imbalance "
            f"{shapes.report['labels']['imbalance_ratio']:.2f}"
        )

    def split(self) -> str:
        from pixelforge.curate.split import SplitConfig, split_dataset

        # group none: every shapes image is drawn on its own; their dup_groups are look-alikes of flat
        # same-coloured shapes, and grouping by them would leave val and test nearly empty
        split_dataset(
            self.s("shapes_clean"),
            self.s("shapes_split"),
            SplitConfig(val=0.1, test=0.1, stratify="label", group="none", seed=self.c.seed),
        )
        counts = _split_counts(self.s("shapes_split"))
        return "shapes: " + ", ".join(f"{k} {v}" for k, v in counts.items())

    def _train(self, family: str, out: str, train: dict[str, Any], model: dict[str, Any]):
        from pixelforge.train.commands import build_configs
        from pixelforge.train.loop import train as run_training

        cfg, fam = build_configs(
            None,
            family,
            {
                "data": self.s("shapes_split"),
                "out": out,
                "device": "cpu",
                "image_size": self.c.image_size,
                "seed": self.c.seed,
                **train,
            },
            model,
        )
        return run_training(family, cfg, fam)

    def train_diffusion(self) -> str:
        r = self._train(
            "diffusion",
            self.s("run_diffusion"),
            {
                "max_minutes": self.c.minutes,
                "batch_size": DEMO_BATCH,
                "eval_every": self.c.eval_every,
                "log_every": 10,
                "sample_steps": min(15, self.c.sample_steps),
                "val_batches": 2,
            },
            {"condition": "text", **DEMO_MODEL},
        )
        if r.stopped == "interrupted":  # the loop stops cleanly on Ctrl-C; the demo must not go on with it
            raise KeyboardInterrupt
        return (
            f"text-conditioned UNet, {r.steps} steps in {r.seconds:.0f} s ({r.images_per_s} images/s), "
            f"validation loss {r.val.get('val_loss', float('nan')):.4f}"
        )

    def train_classifiers(self) -> str:
        parts = []
        for label, name in (("shape", "run_shape"), ("colour", "run_colour")):
            r = self._train(
                "classifier",
                self.s(name),
                {
                    "epochs": self.c.classifier_epochs,
                    "max_minutes": self.c.classifier_minutes,
                    "batch_size": 64,
                    "eval_every": 50,
                    "log_every": 10,
                },
                {"label": label},
            )
            if r.stopped == "interrupted":
                raise KeyboardInterrupt
            test = (r.final.get("test") or r.final.get("val") or {}).get("accuracy")
            parts.append(f"{label} {test:.3f}" if test is not None else f"{label} -")
        return "judges' test accuracy: " + ", ".join(parts)

    def generate(self) -> str:
        from pixelforge.generate.run import GenerateConfig, generate

        prompts = demo_prompts(self.c.prompts)
        self.p["prompts"].write_text("\n".join(prompts) + "\n")
        r = generate(
            self.s("run_diffusion"),
            self.s("generated"),
            GenerateConfig(
                prompts=prompts,
                n=self.c.per_prompt,
                steps=self.c.sample_steps,
                sampler="dpm++",
                seed=self.c.seed,
                device="cpu",
            ),
        )
        return f"{r.images} watermarked images from {len(prompts)} prompts (run {r.run_id}) in {r.seconds:.0f} s"

    def verify(self) -> str:
        from pixelforge.generate.verify import expand, verify_file

        results = [verify_file(p) for p in expand([str(self.p["generated"] / "images")])]
        marked = sum(r.watermark_found for r in results)
        meta = sum(r.metadata_found for r in results)
        _write_json(self.p["verify"], [dataclasses.asdict(r) for r in results])
        return f"watermark found in {marked}/{len(results)} images, metadata in {meta}/{len(results)}"

    def evaluate(self) -> str:
        from pixelforge.evaluate.conditional import ConditionalConfig, evaluate_conditional
        from pixelforge.evaluate.features import load_classifier
        from pixelforge.evaluate.memorization import MemorizationConfig, find_memorized
        from pixelforge.evaluate.quality import EvaluateConfig, evaluate

        features = f"classifier:{self.s('run_shape')}"
        n_fake = self.c.prompts * self.c.per_prompt
        # precision/recall's k = 3 nearest-neighbour balls need a few more images than k
        metrics = ("fid", "kid", "precision", "recall") if n_fake >= 10 else ("fid", "kid")
        fid_cfg = EvaluateConfig(metrics=metrics, features=features, n=1000)  # the first 1,000 real images
        fid = evaluate(self.s("shapes_split"), self.s("generated"), fid_cfg)
        _write_json(
            self.p["fid"],
            {
                "command": "evaluate",
                "config": dataclasses.asdict(fid_cfg),
                "result": {
                    **fid.to_json(),
                    "real": self.s("shapes_split"),
                    "fake": self.s("generated"),
                    "failed": fid.failed,
                },
            },
        )
        judges = {"shape": load_classifier(self.s("run_shape")), "colour": load_classifier(self.s("run_colour"))}
        cond_cfg = ConditionalConfig()
        cond = evaluate_conditional(self.s("generated"), judges, cond_cfg)
        _write_json(
            self.p["conditional"],
            {
                "command": "evaluate conditional",
                "config": dataclasses.asdict(cond_cfg),
                "result": {
                    **dataclasses.asdict(cond),
                    "fake": self.s("generated"),
                    "classifiers": {"shape": self.s("run_shape"), "colour": self.s("run_colour")},
                },
            },
        )
        mem_cfg = MemorizationConfig(features=features, top=12)
        mem = find_memorized(self.s("shapes_split"), self.s("generated"), mem_cfg)
        _write_json(
            self.p["memorization"],
            {
                "command": "evaluate memorization",
                "config": dataclasses.asdict(mem_cfg),
                "result": {**mem.to_json(), "train": self.s("shapes_split"), "fake": self.s("generated")},
            },
        )
        acc = {a: v.accuracy for a, v in cond.attributes.items()}
        return (
            f"domain FID {fid.metrics['fid']:.2f} (classifier features), prompt accuracy shape "
            f"{_f(acc.get('shape'))} colour {_f(acc.get('colour'))}, memorised {mem.n_flagged}/{mem.n_fake}"
        )

    def report(self) -> str:
        from pixelforge.report import ReportConfig, build_report

        paths = [
            "site",
            "site_clean",
            "digits_clean",
            "shapes_split",
            "audit_site",
            "audit_shapes",
            "run_diffusion",
            "run_shape",
            "run_colour",
            "generated",
            "fid",
            "conditional",
            "memorization",
        ]
        r = build_report([self.s(p) for p in paths], self.s("report"), ReportConfig(title="pixelforge demo"))
        return f"{len(r.sections)} sections, {r.bytes / 2**20:.1f} MB"

    # -- the walk ---------------------------------------------------------------------------------
    def run(self, overwrite: bool = False, log: Callable[[str], None] = print) -> DemoResult:
        state = self._open_state(overwrite)
        start = time.monotonic()
        ran, skipped = [], []
        total = len(self.stages)
        for i, (name, func, outputs) in enumerate(self.stages, 1):
            done = state["stages"].get(name)
            if done:
                log(f"[{i:2d}/{total}] {name:18s} done earlier: {done['summary']}")
                skipped.append(name)
                continue
            for o in outputs:  # a stage stopped half way left partial files: never mix them in
                _remove(self.p[o])
            for o in outputs:
                self.p[o].parent.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            try:
                summary = func()
            except KeyboardInterrupt:
                log(f"[{i:2d}/{total}] {name:18s} stopped: run the same command again to resume from this stage")
                raise SystemExit(130) from None
            seconds = round(time.monotonic() - t0, 1)
            state["stages"][name] = {
                "summary": summary,
                "seconds": seconds,
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            _write_json(self.out / STATE, state)
            log(f"[{i:2d}/{total}] {name:18s} {summary} ({seconds:g} s)")
            ran.append(name)
        return DemoResult(
            out=str(self.out),
            report=self.s("report"),
            stages_run=ran,
            stages_skipped=skipped,
            seconds=round(time.monotonic() - start, 1),
            summaries={k: v["summary"] for k, v in state["stages"].items()},
        )

    def _open_state(self, overwrite: bool) -> dict[str, Any]:
        path = self.out / STATE
        options = dataclasses.asdict(self.c)
        if path.is_file():
            state = json.loads(path.read_text())
            if overwrite:
                _remove(self.out)
            elif state.get("options") != options or state.get("version") != STATE_VERSION:
                old = state.get("options") or {}
                diff = ", ".join(f"{k} {old.get(k)!r} (now {v!r})" for k, v in options.items() if old.get(k) != v)
                raise UsageError(
                    f"--out {self.out} holds a demo made with other options ({diff or 'another version'}):"
                    " run it with the same options to resume, pass --overwrite to start again, or "
                    "choose another --out"
                )
            else:
                return state
        elif self.out.exists() and any(self.out.iterdir()):
            raise UsageError(f"--out {self.out} is not empty and holds no demo ({STATE}): choose a new or empty folder")
        self.out.mkdir(parents=True, exist_ok=True)
        state = {
            "version": STATE_VERSION,
            "pixelforge_version": __version__,
            "options": options,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "stages": {},
        }
        _write_json(path, state)
        return state


def run_demo(
    out: str, config: DemoConfig | None = None, overwrite: bool = False, log: Callable[[str], None] | None = None
) -> DemoResult:
    """Run (or resume) the demo into ``out``; one line per stage goes to ``log`` (stdout by default)."""
    config = config or DemoConfig()
    config.validate()
    log = log or (lambda line: print(line, flush=True))
    return Demo(Path(out), config).run(overwrite=overwrite, log=log)


def _split_counts(path: str) -> dict[str, int]:
    from pixelforge.store import Dataset

    counts: dict[str, int] = {}
    for r in Dataset.open(path).iter_rows(columns=["split"]):
        counts[r["split"] or "none"] = counts.get(r["split"] or "none", 0) + 1
    return {k: counts[k] for k in ("train", "val", "test", "none") if k in counts}


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


# ---- the `pixelforge demo` command ----------------------------------------------------------------

DEFAULTS = DemoConfig()  # the flags' defaults


def demo_command(
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="Folder for every dataset, run, evaluation and the report (a second run resumes it)."
        ),
    ] = "demo-out",
    minutes: Annotated[
        float,
        typer.Option(
            help="Training time of the text-to-image diffusion model (the whole "
            "demo takes about 2.5 minutes more on 2 cores)."
        ),
    ] = DEFAULTS.minutes,
    overwrite: Annotated[bool, typer.Option(help="Delete a previous demo in --out and start again.")] = False,
    shapes: Annotated[int, typer.Option(hidden=True, help="Images of the synthetic shapes set.")] = DEFAULTS.shapes,
    image_size: Annotated[
        int, typer.Option(hidden=True, help="Side of the shapes images and of the model.")
    ] = DEFAULTS.image_size,
    max_pages: Annotated[
        int, typer.Option(hidden=True, help="Pages the crawl of the bundled site may fetch.")
    ] = DEFAULTS.max_pages,
    classifier_minutes: Annotated[
        float, typer.Option(hidden=True, help="Time budget of each judge classifier.")
    ] = DEFAULTS.classifier_minutes,
    classifier_epochs: Annotated[
        int, typer.Option(hidden=True, help="Epochs of each judge classifier.")
    ] = DEFAULTS.classifier_epochs,
    per_prompt: Annotated[int, typer.Option(hidden=True, help="Images generated per prompt.")] = DEFAULTS.per_prompt,
    prompts: Annotated[int, typer.Option(hidden=True, help="Prompts generated from (up to 36).")] = DEFAULTS.prompts,
    sample_steps: Annotated[int, typer.Option(hidden=True, help="Sampling steps of generate.")] = DEFAULTS.sample_steps,
    eval_every: Annotated[
        int, typer.Option(hidden=True, help="Diffusion evaluation (grid, checkpoint) interval.")
    ] = DEFAULTS.eval_every,
    watermark_scores: Annotated[
        bool, typer.Option(hidden=True, help="Run curate's watermark CNN.")
    ] = DEFAULTS.watermark_scores,
) -> None:
    """Run the whole pipeline on 127.0.0.1 with nothing but this repository, and write report.html.

    Serves the bundled site, crawls it, imports the digits and the shapes set, curates, audits,
    splits, trains a text-to-image diffusion model (--minutes) and two judge classifiers, generates
    marked images from prompts, verifies the marks, evaluates (domain FID, prompt accuracy,
    memorisation) and renders the report. One line per stage; the stages done are recorded in
    OUT/demo.json, so running it again with the same --out and options resumes where it stopped.

    Example:

        pixelforge demo --out demo-out --minutes 7
    """
    config = DemoConfig(
        minutes=minutes,
        shapes=shapes,
        image_size=image_size,
        max_pages=max_pages,
        classifier_minutes=classifier_minutes,
        classifier_epochs=classifier_epochs,
        per_prompt=per_prompt,
        prompts=prompts,
        sample_steps=sample_steps,
        eval_every=eval_every,
        watermark_scores=watermark_scores,
    )
    result = run_demo(out, config, overwrite=overwrite)
    print_text(f"report: {result.report}")


def register(app: typer.Typer) -> None:
    """Add `demo` to ``app``."""
    app.command("demo", rich_help_panel=RUN)(demo_command)
