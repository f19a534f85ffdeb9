"""The audit's people section: consent over every sample; consent, its source and licence of those with faces."""

from __future__ import annotations

import json

from rich.console import Console

from pixelforge.audit.stage import AuditConfig, audit
from pixelforge.audit.summary import summary
from pixelforge.cli import main
from pixelforge.store.schema import PEOPLE_FIELDS, PEOPLE_NAMES
from tests.audit.conftest import make_dataset

# (consent, consent_source, n_faces, faces_blurred, license) of each sample
PEOPLE = [
    ("granted", "sidecar", 2, True, "cc-by-4.0"),
    ("granted", "option", 1, False, "cc0-1.0"),
    ("denied", "sidecar", 1, None, "CC-BY-4.0"),
    ("denied", "xmp:MR-NON", 0, None, "cc-by-4.0"),
    ("unknown", None, 3, True, None),
    ("unknown", None, None, None, "unknown"),  # faces never looked for
    (None, None, None, None, "mit"),  # a null consent is unknown
    ("yes", None, 1, False, "MIT"),  # a value outside the states (a hand-written index) is unknown too
    ("granted", "option", 0, False, "cc0-1.0"),
    ("unknown", "sidecar (unreadable 'maybe')", 1, None, "cc-by-4.0"),
]


def rows() -> list[dict]:
    names = ("consent", "consent_source", "n_faces", "faces_blurred", "license")
    return [dict(zip(names, p)) for p in PEOPLE]


def audited(tmp_path, rows, extra_fields=()):
    ds = make_dataset(tmp_path / "ds", rows, extra_fields=extra_fields)
    return audit(ds, str(tmp_path / "audit"), AuditConfig(pixels=False)).report


def test_counts_of_consent_faces_sources_and_licences(tmp_path):
    people = audited(tmp_path, rows(), PEOPLE_FIELDS)["people"]
    assert people == {
        "columns_absent": [],
        "note": None,
        "consent": {"granted": 3, "denied": 2, "unknown": 5},
        "faces_not_checked": 2,
        "without_faces": 2,
        "with_faces": {
            "samples": 6,
            "faces": 9,
            "blurred": 2,
            "consent": {"granted": 2, "denied": 1, "unknown": 3},
            "consent_sources": {"none": 2, "sidecar": 2, "option": 1, "sidecar (unreadable 'maybe')": 1},
            "licenses": {"cc-by-4.0": 3, "cc0-1.0": 1, "mit": 1, "unknown": 1},  # as the licences section names them
        },
    }
    # largest first, then by name
    assert list(people["with_faces"]["consent_sources"]) == [
        "none",
        "sidecar",
        "option",
        "sidecar (unreadable 'maybe')",
    ]


def test_a_dataset_without_the_columns_is_all_unknown_and_says_so(tmp_path):
    report = audited(tmp_path, [{"license": "cc0-1.0"}] * 4)
    people = report["people"]
    assert people["columns_absent"] == list(PEOPLE_NAMES)
    assert "consent" in people["note"] and "count as null" in people["note"]
    assert people["consent"] == {"granted": 0, "denied": 0, "unknown": 4}
    assert (people["faces_not_checked"], people["without_faces"], people["with_faces"]["samples"]) == (4, 0, 0)
    assert people["with_faces"]["consent_sources"] == {} and people["with_faces"]["licenses"] == {}


def test_faces_found_on_a_dataset_made_before_consent(tmp_path):
    """curate --faces on an old dataset: n_faces is there, consent is not."""
    n_faces = [f for f in PEOPLE_FIELDS if f.name == "n_faces"]
    people = audited(tmp_path, [{"n_faces": n} for n in (0, 2, None)], n_faces)["people"]
    assert people["columns_absent"] == ["face_bboxes", "faces_blurred", "consent", "consent_source"]
    assert people["with_faces"]["samples"] == 1 and people["with_faces"]["blurred"] == 0
    assert people["with_faces"]["consent"] == {"granted": 0, "denied": 0, "unknown": 1}
    assert people["with_faces"]["consent_sources"] == {"none": 1}
    assert people["faces_not_checked"] == 1


def test_an_empty_dataset_counts_zero(empty, tmp_path):
    people = audit(empty, str(tmp_path / "a"), AuditConfig(pixels=False)).report["people"]
    assert people["consent"] == {"granted": 0, "denied": 0, "unknown": 0}
    assert people["with_faces"]["samples"] == 0 and people["faces_not_checked"] == 0


def test_summary_and_cli(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", rows(), extra_fields=PEOPLE_FIELDS)
    assert main(["audit", ds, "--out", str(tmp_path / "a"), "--no-pixels", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["people"]["consent"] == {"granted": 3, "denied": 2, "unknown": 5}
    assert report["takedowns"]["asked"] is False and "--runs DIR" in report["takedowns"]["note"]
    console = Console(width=300, record=True)
    console.print(summary(report, str(tmp_path / "a")))
    text = console.export_text()
    assert (
        "consent granted 3, denied 2, unknown 5; 6 with faces (2 blurred; consent granted 2, denied 1, unknown 3), "
        "2 not checked for faces" in text
    )
    assert "takedowns" not in text  # not asked for: nothing printed


def test_runs_must_be_a_folder(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", [{"license": "cc0-1.0"}])
    assert main(["audit", ds, "--out", str(tmp_path / "a"), "--runs", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith(f"Error: --runs {tmp_path / 'nowhere'}: no such folder")
    assert not (tmp_path / "a").exists()
