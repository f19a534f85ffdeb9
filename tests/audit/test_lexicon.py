"""Lexicons: the shipped default, user TOML files, whole-word and multi-word matching, and bad files."""

import pytest

from pixelforge.audit.lexicon import load_lexicon, normalize_term
from pixelforge.audit.stage import AuditConfig, audit
from pixelforge.cli import main
from pixelforge.errors import UsageError
from tests.audit.conftest import make_dataset


def test_default_lexicon_ships_gender_age_regions():
    lex = load_lexicon()
    assert lex.name == "default" and list(lex.groups) == ["gender", "age", "region"]
    assert {"she", "woman", "women", "girl"} <= set(lex.groups["gender"]["female"])
    assert {"he", "his", "man", "men", "boy"} <= set(lex.groups["gender"]["male"])
    assert "old man" in lex.groups["age"]["elderly"] and "kenya" in lex.groups["region"]["africa"]
    assert "new zealand" in lex.groups["region"]["oceania"] and "papua new guinea" in lex.groups["region"]["oceania"]


def test_terms_are_normalised_like_captions():
    assert normalize_term("  Middle-Aged ") == "middle aged"
    assert normalize_term("Côte d'Ivoire") == "côte d ivoire"


CAPTIONS = [
    "Her CITY-PARK walk",  # female + park (multi-word through a hyphen, any case)
    "the city park at noon",  # park
    "a parked car, she waits",  # female only: "parked" is not the word "park"
    "HIS park",  # male + park
    "Cityscape",  # nothing
    "New-York City hall",  # ny and nyc: a two-word and a three-word term
]


def test_user_lexicon_whole_words_multi_words_any_case(tmp_path):
    lex = tmp_path / "lex.toml"
    lex.write_text(
        '[gender]\nfemale = ["she", "her"]\nmale = ["he", "his"]\n\n[place]\npark = ["city park"]\n'
        'street = ["street", "main street"]\nny = ["new york"]\nnyc = ["new york city"]\n'
    )
    ds = make_dataset(tmp_path / "ds", [{"caption": c} for c in CAPTIONS])
    rep = audit(ds, str(tmp_path / "a"), AuditConfig(lexicon=str(lex), min_count=1)).report
    cg = rep["caption_groups"]
    assert cg["lexicon"] == str(lex) and cg["captions"] == 6
    assert {s: v["captions"] for s, v in cg["groups"]["gender"]["subgroups"].items()} == {"female": 2, "male": 1}
    assert {s: v["captions"] for s, v in cg["groups"]["place"]["subgroups"].items()} == {
        "park": 2,
        "street": 0,
        "ny": 1,
        "nyc": 1,
    }
    pairs = {(a["term"], a["subgroup"]): a["count"] for a in rep["associations"] if a["kind"] == "word"}
    assert pairs[("car", "female")] == 1 and pairs[("noon", "park")] == 1 and pairs[("walk", "park")] == 1
    # words of lexicon terms (city, park, main, ...) and stop words are never association terms
    assert {t for t, _ in pairs} == {"walk", "parked", "car", "waits", "noon", "hall"}


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[gender]\nfemale = ["she"\nmale = ["he"]\n', "not valid TOML at line 3, column 1"),
        ('[gender]\nfemale = ["she"]\n[gender]\n', "not valid TOML at line 3"),
        ('gender = ["she"]\n', "line 1: 'gender' must be a table [gender]"),
        ('[gender]\nfemale = ["she"]\nmale = "he"\n', "line 3: [gender] male must be a non-empty array of strings"),
        ('[gender]\nfemale = ["she"]\nmale = []\n', "line 3: [gender] male must be a non-empty array"),
        ('[a]\nx = ["one"]\n\n[b]\nfemale = ["she"]\nmale = ["!!"]\n', "line 6: [b] male: term '!!' holds no word"),
        ('[gender]\nfemale = ["she", "they"]\nmale = ["he", "They"]\n', "line 3: [gender] term 'They' is in both"),
        ("[gender]\n", "line 1: group [gender] has no subgroups"),
        ("", "the lexicon has no groups"),
    ],
)
def test_bad_lexicon_is_one_line_error_with_line(tmp_path, capsys, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as exc:
        load_lexicon(path)
    assert str(exc.value).startswith(f"--lexicon {path}: {message}")
    ds = make_dataset(tmp_path / "ds", [{"caption": "she"}])
    assert main(["audit", ds, "--out", str(tmp_path / "a"), "--lexicon", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: --lexicon {path}: {message}") and err.count("\n") == 1
