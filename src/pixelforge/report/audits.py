"""Audit sections: representation (labels, caption groups), associations, licences, policy violations, people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixelforge.report import figures
from pixelforge.report.blocks import Section, fmt, pct

ASSOCIATIONS = 15  # strongest associations listed
VIOLATIONS = 20  # violations listed by key


def audit_section(path: str) -> Section:
    """The audit.json in ``path`` as charts and tables."""
    doc: dict[str, Any] = json.loads((Path(path) / "audit.json").read_text(encoding="utf-8"))
    ds = doc.get("dataset") or {}
    policy = doc.get("policy") or {}
    sec = Section(
        "audit",
        f"Audit: {ds.get('name', path)}",
        path,
        summary=f"{fmt(ds.get('samples'))} samples audited under the {policy.get('name', '?')} policy: "
        f"{fmt(policy.get('violation_count'))} violations",
    )
    meta = doc.get("audit") or {}
    sec.facts(
        [
            ("dataset", ds.get("path")),
            ("samples", ds.get("samples")),
            ("failures", ds.get("failures")),
            ("audited at", meta.get("created_at")),
            ("policy", policy.get("name")),
        ],
        title="Audit",
    )
    if doc.get("empty"):
        sec.note(doc.get("note") or "The dataset has no samples.")

    labels = doc.get("labels") or {}
    groups = doc.get("caption_groups") or {}
    group_shares = _caption_group_counts(groups)
    sec.figures(
        [
            (figures.bar_chart(labels.get("counts") or {}, "Labels"), "samples per label"),
            *[
                (
                    figures.bar_chart(counts, f"Caption group: {g}", xlabel="captions"),
                    f"captions mentioning each {g} subgroup",
                )
                for g, counts in group_shares.items()
            ],
            (figures.bar_chart((doc.get("sources") or {}).get("kinds") or {}, "Sources"), "samples per source kind"),
            (figures.bar_chart((doc.get("sources") or {}).get("domains") or {}, "Web domains"), "samples per domain"),
        ],
        title="Representation",
    )
    if labels.get("classes"):
        sec.facts(
            [
                ("classes", labels.get("classes")),
                ("labelled", labels.get("labelled")),
                ("unlabelled", labels.get("unlabelled")),
                ("imbalance ratio (max / min)", labels.get("imbalance_ratio")),
                ("normalised entropy", labels.get("normalized_entropy")),
                ("classes under half a uniform share", labels.get("under_half_uniform") or "none"),
            ],
            title="Label balance",
        )
    else:
        sec.missing("Label balance: no sample has a label.")
    if not group_shares:
        sec.missing("Caption groups: no caption mentions a lexicon term (or the dataset has no captions).")

    assoc = doc.get("associations") or []
    if assoc:
        sec.table(
            ["term", "group / subgroup", "captions with both", "npmi", "pmi", "share in group"],
            [
                [
                    a["term"],
                    f"{a['group']} / {a['subgroup']}",
                    a["count"],
                    a.get("npmi"),
                    a.get("pmi"),
                    pct(a.get("share_in_group")),
                ]
                for a in assoc[:ASSOCIATIONS]
            ],
            title=f"Strongest associations (the first {min(len(assoc), ASSOCIATIONS)} of {len(assoc)})",
            note="npmi in [-1, 1]: 0 = as often as chance; share in group: of the captions holding the "
            "term and any subgroup of its group.",
        )
    else:
        sec.missing("Associations: no term shares enough captions with a lexicon subgroup (see --min-count).")

    lic = doc.get("licenses") or {}
    opt = doc.get("opt_outs") or {}
    sec.figures(
        [
            (figures.bar_chart(lic.get("counts") or {}, "Licences"), "samples per licence id"),
            (
                figures.bar_chart(policy.get("by_license") or {}, f"Violations of the {policy.get('name')} policy"),
                "violating samples per licence",
            ),
            (figures.bar_chart(opt.get("by_reason") or {}, "Opt-outs kept in the data"), "opted-out samples by reason"),
        ],
        title="Licences and policy",
    )
    sec.facts(
        [
            ("distinct licences", lic.get("distinct")),
            ("unknown licence", f"{fmt(lic.get('unknown'))} ({pct(lic.get('share_unknown'))})"),
            ("attribution required", lic.get("attribution_required")),
            ("policy allows", fmt(policy.get("allow")) if policy.get("allow") else "every licence"),
            ("policy denies", fmt(policy.get("deny")) if policy.get("deny") else "—"),
            ("violations", policy.get("violation_count")),
            ("by reason", policy.get("by_reason") or {}),
            ("opted-out samples", f"{fmt(opt.get('count'))} ({pct(opt.get('share'))})"),
        ],
        title="Licence policy",
    )
    listed = policy.get("violations") or []
    if listed:
        sec.table(
            ["key", "licence", "reason", "source"],
            [[v["key"], v["license"], v["reason"], v.get("source") or ""] for v in listed[:VIOLATIONS]],
            title=f"Licence-policy violations (the first {min(len(listed), VIOLATIONS)} of "
            f"{policy.get('violation_count')}; all in violations.parquet)",
        )
    else:
        sec.note(f"No sample violates the {policy.get('name')} policy.")

    _people(sec, doc.get("people"), doc.get("takedowns"))

    props = doc.get("image_properties") or {}
    dists = [
        ("width", "stored width (px)"),
        ("height", "stored height (px)"),
        ("aspect", "aspect (w / h)"),
        ("brightness", "brightness"),
    ]
    sec.figures([(_dist_plot(props.get(k), label), label) for k, label in dists], title="Image properties")
    same = [f"{label} = {fmt(d['min'])}" for k, label in dists if (d := props.get(k)) and d.get("min") == d.get("max")]
    if same:
        sec.note("The same for every sample: " + ", ".join(same) + ".")
    preds = doc.get("predictions")
    if preds:
        per_label = preds.get("per_label") or {}
        sec.table(
            ["label", "count", "correct", "accuracy", "points under overall"],
            [
                [k, v.get("count"), v.get("correct"), v.get("accuracy"), v.get("points_under_overall")]
                for k, v in per_label.items()
            ],
            title=f"Model accuracy per label (overall {fmt(preds.get('accuracy'))})",
        )
    return sec


def _people(sec: Section, people: dict[str, Any] | None, takedowns: dict[str, Any] | None) -> None:
    """Consent over all samples and those with faces (a small table); the runs trained on taken-down samples."""
    if not people:  # an audit made before the people section
        sec.missing("People: this audit predates consent and faces; audit the dataset again.")
        return
    consent, faces = people.get("consent") or {}, people.get("with_faces") or {}
    sec.table(
        ["samples", "count", *consent],
        [
            ["all", sum(consent.values()), *consent.values()],
            ["with faces", faces.get("samples"), *((faces.get("consent") or {}).get(s) for s in consent)],
        ],
        title="People: consent",
        note=f"{fmt(people.get('faces_not_checked'))} samples not checked for faces; "
        f"{fmt(faces.get('blurred'))} of those with faces blurred. With faces, by consent source: "
        f"{fmt(faces.get('consent_sources') or {})}; by licence: {fmt(faces.get('licenses') or {})}.",
    )
    if people.get("note"):
        sec.note(f"People: {people['note']}.")
    if not (takedowns or {}).get("asked"):
        return
    rows = [[r["run"], t["path"], _read(r, t), r["generated"]] for t in takedowns["takedowns"] for r in t["runs"]]
    if rows:
        sec.table(
            ["run", "takedown", "removed samples it read", "generated sets"],
            rows,
            title=f"Runs trained on samples later taken down ({len(takedowns['flagged_runs'])})",
        )
    else:
        sec.note(
            f"No run of the {fmt(takedowns.get('runs_checked'))} under {takedowns.get('runs_folder')} trained on "
            f"samples one of the {len(takedowns.get('takedowns') or [])} takedowns removed."
        )


def _read(run: dict[str, Any], takedown: dict[str, Any]) -> str:
    """How many of the removed samples a flagged run read: 'N of M', or 'by lineage' when its data is gone."""
    if run["found_by"] == "keys":
        return f"{fmt(run['removed_keys'])} of {fmt(takedown['removed'])}"
    return "by lineage"


def _caption_group_counts(groups: dict[str, Any]) -> dict[str, dict[str, int]]:
    """{group: {subgroup: captions mentioning it}} from audit.json's caption_groups; empty groups left out."""
    out: dict[str, dict[str, int]] = {}
    for g, v in (groups.get("groups") or {}).items():
        counts = {s: int(x.get("captions") or 0) for s, x in (v.get("subgroups") or {}).items()}
        if any(counts.values()):
            out[g] = counts
    return out


def _dist_plot(dist: dict[str, Any] | None, label: str) -> str | None:
    if not dist or not dist.get("histogram"):
        return None
    h = dist["histogram"]
    return figures.histogram(h["edges"], h["counts"], label, label)
