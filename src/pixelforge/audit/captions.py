"""Caption groups (who and where captions mention) and their PMI associations, all in DuckDB.

The captions are split into words once (`[\\pL\\pN]+` over the lower-cased caption) into temporary
tables that later sections (per-group accuracy) reuse:

    audit_caps(id, key, label, toks)   one row per sample whose caption holds a word
    audit_hits(id, grp, sub)           one row per caption and lexicon subgroup it mentions
    audit_words(id, w)                 one row per caption and distinct word in it
"""

from __future__ import annotations

from typing import Any

from pixelforge.audit.lexicon import STOPWORDS, WORD_SQL, Lexicon
from pixelforge.audit.sections import LABEL_SQL, ratio

PMI_DIGITS = 4


def _sql_list(words: list[str]) -> str:
    return "[" + ", ".join("'" + w.replace("'", "''") + "'" for w in words) + "]::VARCHAR[]"


def _ngrams_sql(lexicon: Lexicon) -> str:
    """The caption's words followed by those of its runs of n words that may be an n-word lexicon term.

    A run is only built where the caption's word is the first word of some n-word term: building
    every run of every caption costs 3-4 times as much on a million captions and finds nothing more.
    """
    firsts: dict[int, set[str]] = {}
    for _, _, term in lexicon.rows():
        words = term.split(" ")
        if len(words) > 1:
            firsts.setdefault(len(words), set()).add(words[0])
    parts = ["toks"]
    for n, starts in sorted(firsts.items()):
        parts.append(
            f"[array_to_string(toks[i:i+{n - 1}], ' ') for i in range(1, len(toks) - {n - 2}) "
            f"if list_contains({_sql_list(sorted(starts))}, toks[i])]"
        )
    return parts[0] if len(parts) == 1 else f"list_concat({', '.join(parts)})"


def captions_to_tables(con, lexicon: Lexicon) -> int:
    """Split every caption into words and match the lexicon; returns how many captions hold a word."""
    import pyarrow as pa

    rows = lexicon.rows()
    con.register(
        "audit_lexicon",
        pa.table({"grp": [r[0] for r in rows], "sub": [r[1] for r in rows], "term": [r[2] for r in rows]}),
    )
    con.execute(f"""CREATE OR REPLACE TEMP TABLE audit_caps AS
        SELECT id, key, label, toks FROM (
            SELECT row_number() OVER () AS id, key, {LABEL_SQL} AS label,
                   regexp_extract_all(lower(caption), '{WORD_SQL}') AS toks
            FROM samples WHERE caption IS NOT NULL)
        WHERE len(toks) > 0""")
    # a subgroup counts once per caption however many of its terms the caption holds
    con.execute(f"""CREATE OR REPLACE TEMP TABLE audit_hits AS
        SELECT DISTINCT c.id, l.grp, l.sub
        FROM (SELECT id, unnest(list_distinct({_ngrams_sql(lexicon)})) AS t FROM audit_caps) c
        JOIN audit_lexicon l ON c.t = l.term""")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE audit_words AS SELECT id, unnest(list_distinct(toks)) AS w FROM audit_caps"
    )
    return int(con.execute("SELECT count(*) FROM audit_caps").fetchall()[0][0])


def caption_groups_section(con, lexicon: Lexicon, captions: int, samples: int) -> dict[str, Any]:
    """Each group's and subgroup's share of the captions (a caption may mention several subgroups)."""
    per_sub = {
        (g, s): int(n) for g, s, n in con.execute("SELECT grp, sub, count(*) FROM audit_hits GROUP BY ALL").fetchall()
    }
    per_group = {
        g: (int(n), int(m))
        for g, n, m in con.execute(
            "SELECT grp, count(*), count(*) FILTER (WHERE subs > 1) FROM "
            "(SELECT id, grp, count(*) AS subs FROM audit_hits GROUP BY ALL) GROUP BY grp"
        ).fetchall()
    }
    groups: dict[str, Any] = {}
    for group, subs in lexicon.groups.items():
        any_n, multiple = per_group.get(group, (0, 0))
        groups[group] = {
            "captions": any_n,
            "share": ratio(any_n, captions),
            "multiple_subgroups": multiple,
            "subgroups": {
                s: {
                    "captions": per_sub.get((group, s), 0),
                    "share": ratio(per_sub.get((group, s), 0), captions),
                    "share_of_group": ratio(per_sub.get((group, s), 0), any_n),
                }
                for s in subs
            },
        }
    return {"lexicon": lexicon.name, "captions": captions, "without_caption": samples - captions, "groups": groups}


def associations_section(con, lexicon: Lexicon, captions: int, min_count: int, top_terms: int) -> list[dict[str, Any]]:
    """PMI between each lexicon subgroup and each frequent caption word or label.

    For subgroup s and term t over the N captions: pmi = log2(N * n(s, t) / (n(s) * n(t))), where
    n(.) counts captions. Positive: t comes with s more often than chance; 1 = twice as often.
    npmi = pmi / -log2(n(s, t) / N) in [-1, 1] (Bouma 2009) orders the list: it weighs evidence, so a
    pair seen twice does not outrank one seen thousands of times. Listed when n(s, t) >= min_count.
    Words are the ``top_terms`` most frequent in at least ``min_count`` captions, leaving out stop
    words, numbers, one-letter words and every word of a lexicon term.
    ``share_in_group`` = n(s, t) / captions holding t and any subgroup of s's group, the
    "nurse: 90% female" figure.
    """
    if not captions:
        return []
    import pyarrow as pa

    con.register("audit_excluded", pa.table({"w": sorted(STOPWORDS | lexicon.words())}))
    con.execute(f"""CREATE OR REPLACE TEMP TABLE audit_top_terms AS
        SELECT w AS term, count(*) AS n FROM audit_words
        WHERE length(w) > 1 AND NOT regexp_full_match(w, '[0-9]+') AND w NOT IN (SELECT w FROM audit_excluded)
        GROUP BY w HAVING count(*) >= {int(min_count)} ORDER BY n DESC, w LIMIT {int(top_terms)}""")
    # the same counts for words and for labels: (id, term) pairs, then one PMI query over both
    con.execute("""CREATE OR REPLACE TEMP TABLE audit_terms AS
        SELECT id, w AS term, 'word' AS kind FROM audit_words SEMI JOIN audit_top_terms t ON w = t.term
        UNION ALL SELECT id, label, 'label' FROM audit_caps WHERE label IS NOT NULL""")
    rows = con.execute(f"""
        WITH n_s AS (SELECT grp, sub, count(*) AS n FROM audit_hits GROUP BY ALL),
             n_t AS (SELECT kind, term, count(*) AS n FROM audit_terms GROUP BY ALL),
             n_st AS (SELECT h.grp, h.sub, t.kind, t.term, count(*) AS n
                      FROM audit_hits h JOIN audit_terms t USING (id) GROUP BY ALL HAVING count(*) >= {int(min_count)}),
             n_tg AS (SELECT g.grp, t.kind, t.term, count(*) AS n
                      FROM (SELECT DISTINCT id, grp FROM audit_hits) g JOIN audit_terms t USING (id) GROUP BY ALL)
        SELECT st.term, st.kind, st.grp, st.sub, st.n, t.n, s.n, tg.n,
               log2(CAST(st.n AS DOUBLE) * {captions} / (CAST(s.n AS DOUBLE) * t.n)) AS pmi,
               CASE WHEN st.n = {captions} THEN 1.0 ELSE pmi / -log2(CAST(st.n AS DOUBLE) / {captions}) END AS npmi
        FROM n_st st JOIN n_s s USING (grp, sub) JOIN n_t t USING (kind, term) JOIN n_tg tg USING (grp, kind, term)
        """).fetchall()
    out = [
        {
            "term": term,
            "kind": kind,
            "group": grp,
            "subgroup": sub,
            "count": int(n_st),
            "pmi": round(pmi, PMI_DIGITS),
            "npmi": round(npmi, PMI_DIGITS),
            "term_count": int(n_t),
            "subgroup_count": int(n_s),
            "share_in_group": n_st / n_tg,
        }
        for term, kind, grp, sub, n_st, n_t, n_s, n_tg, pmi, npmi in rows
    ]
    # strongest first by normalised PMI, which does not let a pair seen twice outrank one seen thousands of times
    out.sort(key=lambda a: (-a["npmi"], -a["count"], a["group"], a["subgroup"], a["kind"], a["term"]))
    return out
