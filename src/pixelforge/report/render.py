"""`pixelforge report`: detect each PATH's kind, build its sections, render one self-contained HTML file."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pixelforge import __version__
from pixelforge.errors import PixelforgeError, UsageError
from pixelforge.report.blocks import Section
from pixelforge.report.detect import Input, detect
from pixelforge.store import Dataset

# sections appear in pipeline order whatever order the PATHs were given in
ORDER = ("dataset", "audit", "run", "generated", "evaluation")
TEMPLATE = "report.html.j2"


@dataclass
class ReportConfig:
    """Options of `pixelforge report`."""

    title: str = "pixelforge report"
    verify_limit: int = 200  # generated images checked for the watermark per generated set

    def validate(self) -> None:
        if self.verify_limit < 0:
            raise UsageError(f"--verify-limit {self.verify_limit}: must be 0 or more")


@dataclass
class ReportResult:
    out: str
    sections: list[str]  # section titles, in order
    kinds: dict[str, int]  # inputs per kind
    missing: int  # blocks saying what could not be shown
    bytes: int
    seconds: float
    inputs: list[str] = field(default_factory=list)


def build_sections(inputs: list[Input], config: ReportConfig) -> list[Section]:
    """One section per input (two for a generated set: its dataset and its provenance), in pipeline order."""
    from pixelforge.report.audits import audit_section
    from pixelforge.report.dataset import dataset_section
    from pixelforge.report.evaluations import evaluation_section
    from pixelforge.report.provenance import provenance_section
    from pixelforge.report.runs import run_section

    sections: list[Section] = []
    for inp in sorted(inputs, key=lambda i: ORDER.index(i.kind)):
        if inp.kind == "dataset":
            sections.append(dataset_section(inp.path))
        elif inp.kind == "generated":
            sections.append(provenance_section(inp.path, config.verify_limit))
            sections.append(dataset_section(inp.path, title_prefix="Generated dataset", generated=True))
        elif inp.kind == "audit":
            sections.append(audit_section(inp.path))
        elif inp.kind == "run":
            sections.append(run_section(inp.path))
        else:
            sections.append(evaluation_section(inp.path, inp.doc))
    for i, s in enumerate(sections):
        s.id = f"{s.kind}-{i + 1}"
    return sections


def render_html(sections: list[Section], title: str, inputs: list[Input]) -> str:
    """The report as one HTML string (Jinja2 template shipped as package data)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pixelforge.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(TEMPLATE).render(
        title=title,
        sections=sections,
        inputs=inputs,
        inputs_record=json.dumps(input_records(inputs), separators=(",", ":")),
        version=__version__,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def input_records(inputs: list[Input]) -> list[dict[str, Any]]:
    """What the report was made from, for tools that trace lineage (`takedown --find-derived`): each
    input's kind and real path; a dataset's name and creation time; an audit's audited dataset."""
    records = []
    for inp in inputs:
        rec: dict[str, Any] = {"kind": inp.kind, "path": os.path.realpath(inp.path)}
        try:
            if inp.kind in ("dataset", "generated"):
                info = Dataset.open(inp.path).info
                rec.update(name=info.get("name"), created_at=info.get("created_at"))
            elif inp.kind == "audit":
                audited = json.loads((Path(inp.path) / "audit.json").read_text()).get("dataset") or {}
                rec["dataset"] = os.path.realpath(audited["path"]) if audited.get("path") else None
        except (OSError, ValueError, PixelforgeError):  # the section says what is wrong with it
            pass
        records.append(rec)
    return records


def build_report(paths: list[str], out: str, config: ReportConfig | None = None) -> ReportResult:
    """Render the files at ``paths`` (datasets, audits, runs, evaluation outputs) into ``out``."""
    config = config or ReportConfig()
    config.validate()
    if not paths:
        raise UsageError("report: give at least one PATH (a dataset, audit dir, training run or evaluation JSON)")
    out_path = Path(out)
    if out_path.is_dir():
        raise UsageError(f"--out {out} is a folder: give a file name such as report.html")
    if not out_path.parent.exists():
        raise UsageError(f"--out {out}: the folder {out_path.parent} does not exist")
    inputs = [detect(p) for p in paths]  # every PATH is checked before any work
    start = time.monotonic()
    sections = build_sections(inputs, config)
    html = render_html(sections, config.title, inputs)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_path)
    kinds: dict[str, int] = {}
    for i in inputs:
        kinds[i.kind] = kinds.get(i.kind, 0) + 1
    return ReportResult(
        out=str(out_path),
        sections=[s.title for s in sections],
        kinds=kinds,
        missing=sum(len(s.missing_texts) for s in sections),
        bytes=len(html.encode("utf-8")),
        seconds=round(time.monotonic() - start, 2),
        inputs=[i.path for i in inputs],
    )
