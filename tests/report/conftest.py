"""Tiny fixtures for the report: a shapes set, its curation, audit, split, runs of every family, evaluations."""

from __future__ import annotations

import html
import re

import pytest

from pixelforge.cli import main

FAST = [
    "--batch-size",
    "16",
    "--eval-every",
    "1",
    "--log-every",
    "1",
    "--max-steps",
    "2",
    "--device",
    "cpu",
    "--sample-steps",
    "2",
    "--val-batches",
    "1",
    "--seed",
    "1",
]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Paths of everything the report reads, made once through the CLI (about 20 s on 2 cores)."""
    root = tmp_path_factory.mktemp("report")
    p = {k: root / k for k in ("shapes", "curated", "split", "audit", "clf", "diff", "gan", "vae", "gen")}
    assert main(["import", "shapes", "--n", "48", "--size", "16", "--seed", "2", "--out", str(p["shapes"])]) == 0
    # drop the red shapes with --where, so curation.json has a rule that removed rows with examples
    assert (
        main(
            [
                "curate",
                str(p["shapes"]),
                "--out",
                str(p["curated"]),
                "--where",
                "colour <> 'red'",
                "--no-watermark",
                "--processes",
                "1",
            ]
        )
        == 0
    )
    # the shapes are CC0: a policy file that denies cc0 makes every sample a violation
    (root / "no-cc0.toml").write_text('base = "commercial"\ndeny = ["cc0"]\n')
    assert (
        main(
            ["audit", str(p["curated"]), "--out", str(p["audit"]), "--policy", str(root / "no-cc0.toml"), "--no-pixels"]
        )
        == 0
    )
    assert (
        main(
            [
                "split",
                str(p["curated"]),
                "--out",
                str(p["split"]),
                "--val",
                "0.2",
                "--test",
                "0.2",
                "--group",
                "none",
                "--processes",
                "1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "classifier",
                "--data",
                str(p["split"]),
                "--out",
                str(p["clf"]),
                "--label",
                "shape",
                "--image-size",
                "16",
                *FAST,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "diffusion",
                "--data",
                str(p["split"]),
                "--out",
                str(p["diff"]),
                "--condition",
                "class",
                "--image-size",
                "8",
                *FAST,
            ]
        )
        == 0
    )
    for family in ("gan", "vae"):
        assert (
            main(["train", family, "--data", str(p["split"]), "--out", str(p[family]), "--image-size", "8", *FAST]) == 0
        )
    assert (
        main(
            [
                "generate",
                str(p["diff"]),
                "--class",
                "circle",
                "--class",
                "star",
                "--n",
                "3",
                "--steps",
                "2",
                "--mark-size",
                "128",
                "--out",
                str(p["gen"]),
            ]
        )
        == 0
    )
    feats = f"classifier:{p['clf']}"
    p["fid"], p["cond"], p["mem"] = root / "fid.json", root / "cond.json", root / "mem.json"
    assert (
        main(
            [
                "evaluate",
                "--real",
                str(p["split"]),
                "--fake",
                str(p["gen"]),
                "--features",
                feats,
                "--metrics",
                "fid,kid",
                "--workers",
                "0",
                "--out",
                str(p["fid"]),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "conditional",
                "--fake",
                str(p["gen"]),
                "--classifier",
                str(p["clf"]),
                "--attribute",
                "label",
                "--workers",
                "0",
                "--out",
                str(p["cond"]),
            ]
        )
        == 0
    )
    # the generated set is its own training set here: every image is an exact copy, so every pair is flagged
    assert (
        main(
            [
                "evaluate",
                "memorization",
                "--train",
                str(p["gen"]),
                "--fake",
                str(p["gen"]),
                "--workers",
                "0",
                "--neighbours",
                "3",
                "--out",
                str(p["mem"]),
            ]
        )
        == 0
    )
    return {k: str(v) for k, v in p.items()}


def sections_of(page: str) -> dict[str, str]:
    """{h2 title (without the kind badge): the section's HTML}."""
    out = {}
    for m in re.finditer(r'<section class="report"[^>]*>(.*?)</section>', page, flags=re.S):
        body = m.group(1)
        h2 = re.search(r"<h2>.*?</span>\s*(.*?)</h2>", body, flags=re.S).group(1)
        out[html.unescape(h2.strip())] = body
    return out


def facts_of(section: str) -> dict[str, str]:
    """Every <dt>label</dt><dd>value</dd> pair of a section (later blocks win on a repeated label)."""
    return {
        html.unescape(k): html.unescape(v) for k, v in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", section, flags=re.S)
    }


def rows_of(section: str, title: str) -> list[list[str]]:
    """The body rows of the table under the <h3> ``title`` (prefix match)."""
    m = re.search(
        r"<h3>" + re.escape(html.escape(title, quote=True)) + r".*?</h3>.*?<tbody>(.*?)</tbody>", section, flags=re.S
    )
    assert m, f"no table titled {title!r}"
    return [
        [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)]
        for r in re.findall(r"<tr>(.*?)</tr>", m.group(1), flags=re.S)
    ]
