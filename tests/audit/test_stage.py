"""The audit of a tiny dataset with known skews: every reported number, checked exactly."""

import json
import math

import pyarrow.parquet as pq
import pytest

from pixelforge.audit.stage import AUDIT_JSON, SECTIONS, VIOLATIONS, AuditConfig, audit
from pixelforge.cli import main
from tests.audit.conftest import make_dataset


def disc(values, q):
    """DuckDB's quantile_disc: the sorted value at index floor((n - 1) * q)."""
    s = sorted(values)
    return s[math.floor((len(s) - 1) * q)]


def entropy_norm(counts):
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts) / math.log(len(counts))


@pytest.fixture(scope="module")
def report(skewed, tmp_path_factory):
    out = tmp_path_factory.mktemp("audit-out")
    result = audit(skewed, str(out), AuditConfig(min_count=2))
    on_disk = json.loads((out / AUDIT_JSON).read_text())
    assert on_disk == json.loads(json.dumps(result.report))
    assert result.samples == 20
    return on_disk, out


def test_top_level_keys(report):
    rep, _ = report
    assert set(SECTIONS) == {
        "labels",
        "caption_groups",
        "associations",
        "sources",
        "image_properties",
        "licenses",
        "policy",
        "opt_outs",
        "predictions",
        "people",
        "takedowns",
    }
    assert set(SECTIONS) < set(rep)
    assert rep["dataset"] == {"path": rep["dataset"]["path"], "name": "skewed", "samples": 20, "failures": 0}
    assert rep["empty"] is False and rep["note"] is None and rep["predictions"] is None
    assert rep["audit"]["config"]["min_count"] == 2 and rep["audit"]["config"]["policy"] == "research"


def test_labels(report):
    labels = report[0]["labels"]
    assert labels == {
        "classes": 4,
        "counts": {"cat": 10, "dog": 6, "bird": 3, "fish": 1},
        "imbalance_ratio": 10.0,
        "normalized_entropy": entropy_norm([10, 6, 3, 1]),
        "under_half_uniform": ["fish"],
        "labelled": 20,
        "unlabelled": 0,
        "box_categories": None,
    }


def test_caption_groups(report):
    cg = report[0]["caption_groups"]
    assert cg["lexicon"] == "default" and cg["captions"] == 17 and cg["without_caption"] == 3
    gender = cg["groups"]["gender"]
    assert gender["captions"] == 11 and gender["share"] == 11 / 17 and gender["multiple_subgroups"] == 1
    assert gender["subgroups"] == {
        "female": {"captions": 6, "share": 6 / 17, "share_of_group": 6 / 11},
        "male": {"captions": 6, "share": 6 / 17, "share_of_group": 6 / 11},
    }
    age = cg["groups"]["age"]
    assert age["captions"] == 2 and age["multiple_subgroups"] == 0
    assert {k: v["captions"] for k, v in age["subgroups"].items()} == {
        "child": 1,
        "teenager": 0,
        "adult": 0,
        "elderly": 1,
    }
    assert age["subgroups"]["elderly"]["share_of_group"] == 0.5 and age["subgroups"]["adult"]["share"] == 0.0
    region = cg["groups"]["region"]
    counts = {k: v["captions"] for k, v in region["subgroups"].items() if v["captions"]}
    # kenya, and "south-african" matched as the two-word term; "New Zealand" as oceania
    assert region["captions"] == 3 and counts == {"africa": 2, "oceania": 1}


def _pmi(n_st, n, n_s, n_t):
    pmi = math.log2(n_st * n / (n_s * n_t))
    return round(pmi, 4), round(pmi / -math.log2(n_st / n), 4)


def test_associations_pmi_exact(report):
    got = [
        (
            a["kind"],
            a["term"],
            a["group"],
            a["subgroup"],
            a["count"],
            a["term_count"],
            a["subgroup_count"],
            a["share_in_group"],
            a["pmi"],
            a["npmi"],
        )
        for a in report[0]["associations"]
    ]
    # nurse: 5 captions, 4 with female words, 1 with male; doctor: 4, 3 male; cat: 10 labelled captions
    assert got == [
        ("word", "nurse", "gender", "female", 4, 5, 6, 4 / 5, *_pmi(4, 17, 6, 5)),
        ("label", "cat", "gender", "female", 6, 10, 6, 6 / 10, *_pmi(6, 17, 6, 10)),
        ("word", "doctor", "gender", "male", 3, 4, 6, 3 / 4, *_pmi(3, 17, 6, 4)),
        ("label", "cat", "gender", "male", 5, 10, 6, 5 / 10, *_pmi(5, 17, 6, 10)),
    ]
    assert got[0][-2] == 1.1806


def test_associations_top_terms_and_min_count(skewed, tmp_path):
    rep = audit(skewed, str(tmp_path), AuditConfig(min_count=2, top_terms=1)).report
    # only the most frequent word (nurse, in 5 captions) is sought; labels always are
    assert [(a["term"], a["subgroup"]) for a in rep["associations"]] == [
        ("nurse", "female"),
        ("cat", "female"),
        ("cat", "male"),
    ]
    rep = audit(skewed, str(tmp_path), AuditConfig(min_count=5)).report
    assert [(a["term"], a["subgroup"], a["count"]) for a in rep["associations"]] == [
        ("cat", "female", 6),
        ("cat", "male", 5),
    ]


def test_sources(report):
    assert report[0]["sources"] == {
        "kinds": {"url": 14, "folder": 6},
        "with_domain": 14,
        "without_domain": 6,
        "distinct_domains": 4,
        "domains": {"example.com": 8, "cdn.pics.org": 4, "other.io": 1, "photos.net": 1},
        "domains_listed": 4,
        "top_domain": "example.com",
        "top_domain_share": 8 / 14,
        "top10_share": 1.0,
    }


def test_domains_come_from_http_sources_only(tmp_path):
    ds = make_dataset(
        tmp_path / "ds",
        [
            {"source": s}
            for s in (
                "shapes://seed=0/1",
                "ftp://files.org/a.png",
                "HTTPS://WWW.Foo.com/x.jpg",
                "http://foo.com:81/y",
                None,
            )
        ],
    )
    src = audit(ds, str(tmp_path / "a"), AuditConfig(pixels=False)).report["sources"]
    assert (src["domains"], src["with_domain"], src["without_domain"]) == ({"foo.com": 2}, 2, 3)
    assert (src["top_domain_share"], src["top10_share"]) == (1.0, 1.0)


def test_image_properties(report):
    props = report[0]["image_properties"]
    widths = [64] * 5 + [32] * 3 + [48] * 12
    w = props["width"]
    assert (w["count"], w["min"], w["max"], w["mean"]) == (20, 32, 64, 49.6)
    assert w["quantiles"] == {f"p{round(q * 100)}": disc(widths, q) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
    assert w["quantiles"] == {"p10": 32, "p25": 48, "p50": 48, "p75": 48, "p90": 64}
    assert w["histogram"] == {
        "edges": [32.0, 35.2, 38.4, 41.6, 44.8, 48.0, 51.2, 54.4, 57.6, 60.8, 64.0],
        "counts": [3, 0, 0, 0, 0, 12, 0, 0, 0, 5],
    }
    assert props["height"]["histogram"]["counts"] == [5, 0, 0, 0, 0, 12, 0, 0, 0, 3]
    a = props["aspect"]
    assert (a["min"], a["max"], a["mean"]) == (0.5, 2.0, 1.175)
    assert a["quantiles"] == {"p10": 0.5, "p25": 1.0, "p50": 1.0, "p75": 1.0, "p90": 2.0}
    assert props["orientation"] == {"square": 12, "landscape": 5, "portrait": 3}
    assert props["formats"] == {"png": 20}
    b = props["brightness"]  # q_brightness = i / 20 for sample i
    assert (b["count"], b["min"], b["max"], b["mean"]) == (20, 0.0, 0.95, 0.475)
    assert b["quantiles"] == {"p10": 0.05, "p25": 0.2, "p50": 0.45, "p75": 0.7, "p90": 0.85}
    assert b["histogram"]["counts"] == [2] * 10
    assert props["quality"] == {}  # no other curate columns in this dataset


def test_licenses_and_opt_outs(report):
    rep = report[0]
    assert rep["licenses"] == {
        "counts": {
            "cc-by-4.0": 6,
            "cc0-1.0": 4,
            "cc-by-nc-4.0": 3,
            "unknown": 3,
            "cc-by-sa-2.0-de": 2,
            "cc-by-2.0": 1,
            "mit": 1,
        },
        "distinct": 7,
        "unknown": 3,
        "share_unknown": 0.15,
        "attribution_required": 12,
    }
    assert rep["opt_outs"] == {"count": 3, "share": 0.15, "by_reason": {"robots.txt": 2, "x-robots-tag: noai": 1}}


def test_research_policy_lists_opt_outs(report):
    pol, out = report[0]["policy"], report[1]
    assert (pol["name"], pol["origin"], pol["allow"], pol["allow_unknown"]) == ("research", "shipped", ["*"], True)
    assert pol["violation_count"] == 3 and pol["by_reason"] == {"opt_out": 3}
    assert pol["by_license"] == {"cc-by-4.0": 1, "cc-by-nc-4.0": 1, "cc0-1.0": 1}
    assert pol["violations"] == [
        {"key": "s003", "license": "cc-by-4.0", "source": "https://www.example.com/img/3.jpg", "reason": "opt_out"},
        {"key": "s007", "license": "cc0-1.0", "source": "https://www.example.com/img/7.jpg", "reason": "opt_out"},
        {"key": "s012", "license": "cc-by-nc-4.0", "source": "https://user@photos.net:8080/a.jpg", "reason": "opt_out"},
    ]
    table = pq.read_table(out / VIOLATIONS)
    assert table.column("key").to_pylist() == ["s003", "s007", "s012"]
    assert table.column("opt_out").to_pylist() == ["robots.txt", "robots.txt", "x-robots-tag: noai"]


@pytest.mark.parametrize(
    "policy, keys, by_license",
    [
        # commercial: cc0, cc-by, cc-by-sa (any version or port, any case); not nc, unknown, mit
        (
            "commercial",
            ["s003", "s007", "s012", "s013", "s014", "s015", "s016", "s017", "s019"],
            {"cc-by-nc-4.0": 3, "unknown": 3, "cc-by-4.0": 1, "cc0-1.0": 1, "mit": 1},
        ),
        # open: cc0, cc-by, pdm only: share-alike is out too
        (
            "open",
            ["s003", "s007", "s010", "s011", "s012", "s013", "s014", "s015", "s016", "s017", "s019"],
            {"cc-by-nc-4.0": 3, "unknown": 3, "cc-by-sa-2.0-de": 2, "cc-by-4.0": 1, "cc0-1.0": 1, "mit": 1},
        ),
    ],
)
def test_shipped_policies(skewed, tmp_path, policy, keys, by_license):
    pol = audit(skewed, str(tmp_path), AuditConfig(policy=policy, max_violations=5)).report["policy"]
    assert pol["violation_count"] == len(keys) and pol["by_license"] == by_license
    assert pol["by_reason"] == {"license": len(keys) - 3, "opt_out": 3}
    assert [v["key"] for v in pol["violations"]] == keys[:5] and pol["violations_listed"] == 5
    assert pq.read_table(tmp_path / VIOLATIONS).column("key").to_pylist() == keys


def test_policy_file(skewed, tmp_path):
    path = tmp_path / "product.toml"
    path.write_text(
        'name = "product"\nbase = "commercial"\nallow = ["MIT"]\ndeny = ["cc-by-sa"]\nallow_unknown = true\n'
    )
    pol = audit(skewed, str(tmp_path / "a"), AuditConfig(policy=str(path))).report["policy"]
    assert (pol["name"], pol["origin"], pol["allow_unknown"]) == ("product", str(path), True)
    assert pol["allow"] == ["cc0", "cc-by", "cc-by-sa", "pdm", "public-domain", "mit"]
    assert [v["key"] for v in pol["violations"]] == ["s003", "s007", "s010", "s011", "s012", "s013", "s014"]
    assert [v["reason"] for v in pol["violations"]] == [
        "opt_out",
        "opt_out",
        "license",
        "license",
        "opt_out",
        "license",
        "license",
    ]


def test_box_categories(tmp_path):
    box = {"x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0}
    ds = make_dataset(
        tmp_path / "boxes",
        [
            {"boxes": [{**box, "label": 1}, {**box, "label": 1}, {**box, "label": 2}]},
            {"boxes": [{**box, "label": 1}]},
            {"boxes": []},
        ],
    )
    labels = audit(ds, str(tmp_path / "a")).report["labels"]
    assert (labels["classes"], labels["labelled"], labels["unlabelled"], labels["imbalance_ratio"]) == (0, 0, 3, None)
    assert labels["box_categories"] == {
        "classes": 2,
        "counts": {"1": 3, "2": 1},
        "imbalance_ratio": 3.0,
        "normalized_entropy": entropy_norm([3, 1]),
        "under_half_uniform": [],
        "boxes": 4,
        "images_per_category": {"1": 2, "2": 1},
        "images_with_boxes": 2,
    }


def test_empty_dataset_says_so(empty, tmp_path, capsys):
    rep = audit(empty, str(tmp_path)).report
    assert rep["empty"] is True and rep["dataset"]["samples"] == 0 and "no samples" in rep["note"]
    assert rep["labels"]["classes"] == 0 and rep["labels"]["imbalance_ratio"] is None
    assert rep["caption_groups"]["captions"] == 0 and rep["associations"] == []
    assert rep["caption_groups"]["groups"]["gender"]["subgroups"]["female"] == {
        "captions": 0,
        "share": None,
        "share_of_group": None,
    }
    assert rep["sources"]["distinct_domains"] == 0 and rep["sources"]["top_domain"] is None
    assert rep["image_properties"]["width"] is None and rep["image_properties"]["orientation"] == {}
    assert rep["licenses"] == {
        "counts": {},
        "distinct": 0,
        "unknown": 0,
        "share_unknown": None,
        "attribution_required": 0,
    }
    assert rep["policy"]["violation_count"] == 0 and rep["opt_outs"] == {"count": 0, "share": None, "by_reason": {}}
    capsys.readouterr()
    assert main(["audit", empty, "--out", str(tmp_path / "cli")]) == 0
    assert "The dataset is empty" in capsys.readouterr().out


def test_cli_summary_and_json(skewed, tmp_path, capsys):
    capsys.readouterr()
    assert main(["audit", skewed, "--out", str(tmp_path / "a"), "--min-count", "2", "--policy", "commercial"]) == 0
    out = capsys.readouterr().out
    for text in (
        "Audit of skewed",
        "4 classes over 20 samples",
        "imbalance 10.00",
        "under half a uniform share: fish",
        "example.com 57.1%",
        "policy commercial",
        "9 violations",
        "nurse",
        "gender / female",
        "80.0%",
    ):
        assert text in out, text
    assert main(["audit", skewed, "--out", str(tmp_path / "b"), "--min-count", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "b" / AUDIT_JSON).read_text())


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--policy", "bogus"],
            "--policy 'bogus': choose one of research, commercial, open or give a policy .toml file",
        ),
        (["--min-count", "0"], "--min-count 0: must be at least 1"),
        (["--lexicon", "nope.toml"], "--lexicon nope.toml: no such file"),
        (["--predictions", "nope.parquet"], "--predictions nope.parquet: no such file"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(skewed, tmp_path, capsys, args, message):
    assert main(["audit", skewed, "--out", str(tmp_path / "a"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "a").exists()  # nothing written before the arguments are checked


def test_not_a_dataset(tmp_path, capsys):
    assert main(["audit", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "is not a pixelforge dataset" in capsys.readouterr().err


def test_commands_stay_import_light():
    import subprocess
    import sys

    code = "import sys, pixelforge.audit.commands; print(sorted(m for m in ('duckdb', 'pyarrow') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
