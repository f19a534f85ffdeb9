"""Caption lexicons: groups of subgroups of terms (TOML), the shipped default, and the stop words."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from pixelforge.configfile import bad_value, parse_toml, read_toml
from pixelforge.errors import UsageError

DEFAULT_NAME = "default"
FLAG = "--lexicon"

# One word: a run of Unicode letters and digits. Captions are split with the same pattern in DuckDB
# (`[\pL\pN]+`); this is its Python spelling, used to check terms and to write them word by word.
WORD = re.compile(r"[^\W_]+")
WORD_SQL = r"[\pL\pN]+"

# Words too common to say anything when they co-occur with a group (never reported as associations).
STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each either few for from further had has have
having here how i if in into is it its itself just like may me might more most my myself near next no nor
not now of off on once one only onto or other our ours out over own per same shall should so some such than
that the their theirs them themselves then there these they this those through to too two under until up
upon very via was we were what when where which while who whom why will with within without would you your
yours yourself yourselves image images photo photos picture pictures stock background view
""".split()
)


@dataclass(frozen=True)
class Lexicon:
    """Groups (gender, age, ...) of subgroups (female, male, ...) of terms, each a tuple of words."""

    name: str
    groups: dict[str, dict[str, tuple[str, ...]]]

    def rows(self) -> list[tuple[str, str, str]]:
        """(group, subgroup, term) with each term written as its words joined by one space."""
        return [(g, s, t) for g, subs in self.groups.items() for s, terms in subs.items() for t in terms]

    def words(self) -> set[str]:
        """Every word of every term: kept out of the frequent terms that associations are sought with."""
        return {w for _, _, t in self.rows() for w in t.split(" ")}


def normalize_term(term: str) -> str:
    """A term as the caption matcher sees it: lower-case words joined by single spaces."""
    return " ".join(WORD.findall(term.lower()))


def parse_lexicon(doc: dict, name: str, text: str = "", path: str = "") -> Lexicon:
    """Check a parsed lexicon document and turn it into a Lexicon (errors name the line)."""

    def bad(key: str, problem: str, table: str | None = None):
        return bad_value(FLAG, path or name, text, key, problem, table)

    if not doc:
        raise UsageError(
            f"{FLAG} {path or name}: the lexicon has no groups: write [group] tables of "
            'subgroup = ["term", ...] arrays (format: docs/audit.md)'
        )
    groups: dict[str, dict[str, tuple[str, ...]]] = {}
    for group, subs in doc.items():
        if not isinstance(subs, dict):
            raise bad(group, f'{group!r} must be a table [{group}] of subgroup = ["term", ...] arrays')
        if not subs:
            raise bad(group, f"group [{group}] has no subgroups", table=group)
        seen: dict[str, str] = {}
        groups[group] = {}
        for sub, terms in subs.items():
            if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
                raise bad(sub, f"[{group}] {sub} must be a non-empty array of strings", table=group)
            normalized: list[str] = []
            for term in terms:
                norm = normalize_term(term)
                if not norm:
                    raise bad(sub, f"[{group}] {sub}: term {term!r} holds no word", table=group)
                if norm in seen and seen[norm] != sub:
                    raise bad(
                        sub, f"[{group}] term {term!r} is in both {seen[norm]} and {sub}: keep it in one", table=group
                    )
                seen[norm] = sub
                if norm not in normalized:
                    normalized.append(norm)
            groups[group][sub] = tuple(normalized)
    return Lexicon(name=name, groups=groups)


def load_lexicon(path: str | None = None) -> Lexicon:
    """The lexicon in the TOML file ``path``, or the shipped default when ``path`` is None."""
    if path is None:
        text = resources.files("pixelforge.audit").joinpath("data/lexicon.toml").read_text(encoding="utf-8")
        return parse_lexicon(parse_toml(text, FLAG, DEFAULT_NAME), DEFAULT_NAME, text, "the default lexicon")
    doc, text = read_toml(path, FLAG)
    return parse_lexicon(doc, path, text, path)
