"""The terminal summary of an audit: a few Rich tables over audit.json's numbers (printed by pixelforge.console)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

TOP = 10


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _counts(d: dict[str, int], top: int = 6) -> str:
    items = list(d.items())
    text = ", ".join(f"{k}: {v:,}" for k, v in items[:top])
    return text + (f", ... ({len(items) - top} more)" if len(items) > top else "") if items else "none"


def _names(names: list[str], top: int = TOP) -> str:
    return ", ".join(names[:top]) + (f", ... ({len(names) - top} more)" if len(names) > top else "")


def summary(report: dict[str, Any], out_dir: str) -> Group:
    """The headline numbers of ``report`` (an audit.json document) as Rich text and tables."""
    ds = report["dataset"]
    parts: list[RenderableType] = [
        f"[bold]Audit of {ds['name']}[/bold] ({ds['path']}): {ds['samples']:,} samples -> {out_dir}/audit.json"
    ]
    if report["empty"]:
        parts.append("[yellow]The dataset is empty: there is nothing to audit (every count is zero).[/yellow]")
        return Group(*parts)
    t = Table(show_header=False, box=None)
    lab = report["labels"]
    if lab["classes"]:
        t.add_row(
            "labels",
            f"{lab['classes']} classes over {lab['labelled']:,} samples, imbalance "
            f"{_num(lab['imbalance_ratio'])}, normalised entropy {_num(lab['normalized_entropy'], 3)}",
        )
        if lab["under_half_uniform"]:
            t.add_row("", f"under half a uniform share: {_names(lab['under_half_uniform'])}")
    else:
        t.add_row("labels", "none")
    if lab["box_categories"]:
        b = lab["box_categories"]
        t.add_row(
            "box categories", f"{b['classes']} categories, {b['boxes']:,} boxes, imbalance {_num(b['imbalance_ratio'])}"
        )
    src = report["sources"]
    t.add_row("sources", _counts(src["kinds"]))
    if src["distinct_domains"]:
        t.add_row(
            "domains",
            f"{src['distinct_domains']:,} distinct; top {src['top_domain']} "
            f"{_pct(src['top_domain_share'])}, top 10 {_pct(src['top10_share'])}",
        )
    lic = report["licenses"]
    t.add_row("licences", f"{_counts(lic['counts'])}; unknown {_pct(lic['share_unknown'])}")
    opt = report["opt_outs"]
    t.add_row("opt-outs", f"{opt['count']:,}" + (f" ({_counts(opt['by_reason'])})" if opt["count"] else ""))
    pol = report["policy"]
    verdict = (
        "[green]no violations[/green]"
        if not pol["violation_count"]
        else f"[red]{pol['violation_count']:,} violations[/red] ({_counts(pol['by_reason'])})"
        f" -> {pol['violations_file']}"
    )
    t.add_row(f"policy {pol['name']}", verdict)
    t.add_row("people", _people(report["people"]))
    width = report["image_properties"]["width"]
    if width:
        h = report["image_properties"]["height"]
        t.add_row(
            "size",
            f"width {width['min']}-{width['max']} (median {width['quantiles']['p50']}), "
            f"height {h['min']}-{h['max']} (median {h['quantiles']['p50']})",
        )
    parts.append(t)
    parts.extend(_takedowns(report["takedowns"]))

    cg = report["caption_groups"]
    if not any(info["captions"] for info in cg["groups"].values()):
        parts.append(
            f"caption groups: none of {cg['captions']:,} captions mentions a term of the {cg['lexicon']} lexicon"
        )
    else:
        parts.append(f"caption groups ({cg['captions']:,} captions, lexicon {cg['lexicon']}):")
        g = Table()
        for col in ("group", "subgroup", "captions", "share"):
            g.add_column(col, justify="right" if col in ("captions", "share") else "left")
        for group, info in cg["groups"].items():
            for sub, s in info["subgroups"].items():
                g.add_row(group, sub, f"{s['captions']:,}", _pct(s["share"]))
        parts.append(g)
    assoc = report["associations"]
    if assoc:
        parts.append(f"strongest associations (by normalised PMI; {len(assoc):,} in audit.json):")
        a = Table()
        for col in ("term", "group / subgroup", "together", "pmi", "share in group"):
            a.add_column(col, justify="left" if col in ("term", "group / subgroup") else "right")
        for row in assoc[:TOP]:
            term = row["term"] if row["kind"] == "word" else f"label:{row['term']}"
            a.add_row(
                term,
                f"{row['group']} / {row['subgroup']}",
                f"{row['count']:,}",
                f"{row['pmi']:+.2f}",
                _pct(row["share_in_group"]),
            )
        parts.append(a)
    pred = report["predictions"]
    if pred:
        overall = pred["overall"]
        parts.append(
            f"predictions: {pred['matched']:,} matched, accuracy {_pct(overall['accuracy'])} over "
            f"{overall['count']:,} with a target; flagged (>{pred['flag_points']} points under): "
            + (_names(pred["flagged"]) or "none")
        )
    return Group(*parts)


def _people(people: dict[str, Any]) -> str:
    """One line: consent over every sample, then the samples with faces and how many were never checked."""

    def states(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v:,}" for k, v in counts.items())

    faces = people["with_faces"]
    text = f"consent {states(people['consent'])}; {faces['samples']:,} with faces"
    if faces["samples"]:
        text += f" ({faces['blurred']:,} blurred; consent {states(faces['consent'])})"
    text += f", {people['faces_not_checked']:,} not checked for faces"
    if people["columns_absent"]:
        text += f" [yellow](no {', '.join(people['columns_absent'])} column)[/yellow]"
    return text


def _takedowns(section: dict[str, Any]) -> list[RenderableType]:
    """The runs trained on samples a takedown removed, one row each; nothing when --runs was not given."""
    if not section["asked"]:
        return []
    takedowns = section["takedowns"]
    flagged = section["flagged_runs"]
    verdict = (
        f"[red]{len(flagged)} trained on samples later taken down[/red]"
        if flagged
        else "[green]none trained on samples later taken down[/green]"
    )
    runs = f"{section['runs_checked']:,} runs under {section['runs_folder']}"
    head = f"takedowns: {len(takedowns)} found; of {runs}, {verdict}"
    if not flagged:
        return [head]
    t = Table()
    for col in ("run", "takedown", "removed samples it read", "generated sets"):
        t.add_column(col)
    for td in takedowns:
        for run in td["runs"]:
            read = f"{run['removed_keys']:,} of {td['removed']:,}" if run["found_by"] == "keys" else "by lineage"
            t.add_row(run["run"], td["path"], read, _names(run["generated"]) or "-")
    return [head, t]
