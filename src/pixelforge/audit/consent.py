"""The audit's sections on the people in the data: consent and faces, and runs trained on samples taken down."""

from __future__ import annotations

import dataclasses
from typing import Any

from pixelforge.audit.policy import LICENSE_OR_UNKNOWN_SQL
from pixelforge.store.schema import CONSENT_STATES, PEOPLE_NAMES

# null, and any value outside CONSENT_STATES (a hand-written index), counts as unknown: nobody said yes
CONSENT_SQL = "CASE WHEN consent IN ('granted', 'denied') THEN consent ELSE 'unknown' END"
NO_SOURCE = "none"  # the consent_source key of samples whose consent no record, image or flag stated


def people_section(con, columns: list[str]) -> dict[str, Any]:
    """Consent over every sample; for the samples showing people (n_faces > 0) consent, its source and
    the licence; how many were never checked for faces and how many with faces are blurred.

    A dataset made before the people columns (or with only some of them) reads as if they were null:
    every sample's consent unknown, its faces not looked for; ``columns_absent`` names them.
    """
    absent = [c for c in PEOPLE_NAMES if c not in columns]
    present = set(PEOPLE_NAMES) - set(absent)
    # a missing column becomes a null of its meaning, so one set of queries serves every dataset
    nulls = {"n_faces": "CAST(NULL AS INTEGER)", "faces_blurred": "CAST(NULL AS BOOLEAN)"}
    cols = ", ".join(
        c if c in present else f"{nulls.get(c, 'CAST(NULL AS VARCHAR)')} AS {c}"
        for c in ("consent", "consent_source", "n_faces", "faces_blurred")
    )
    con.execute(f"""CREATE OR REPLACE TEMP TABLE audit_people AS
        SELECT {CONSENT_SQL} AS consent, coalesce(consent_source, '{NO_SOURCE}') AS consent_source,
               n_faces, faces_blurred, {LICENSE_OR_UNKNOWN_SQL} AS license
        FROM (SELECT license, {cols} FROM samples)""")

    def counts(sql: str) -> dict[str, int]:
        return {str(k): int(n) for k, n in sorted(con.execute(sql).fetchall(), key=lambda r: (-r[1], str(r[0])))}

    by_consent = counts("SELECT consent, count(*) FROM audit_people GROUP BY 1")
    faces_sql = "FROM audit_people WHERE n_faces > 0 GROUP BY 1"
    with_faces = counts(f"SELECT consent, count(*) {faces_sql}")
    not_checked, without, people, faces, blurred = con.execute(
        "SELECT count(*) FILTER (WHERE n_faces IS NULL), count(*) FILTER (WHERE n_faces = 0), "
        "count(*) FILTER (WHERE n_faces > 0), coalesce(sum(n_faces), 0), "
        "count(*) FILTER (WHERE n_faces > 0 AND faces_blurred) FROM audit_people"
    ).fetchall()[0]
    return {
        "columns_absent": absent,
        "note": f"the dataset has no {', '.join(absent)} column(s): they count as null "
        "(consent unknown, faces not looked for)"
        if absent
        else None,
        "consent": {s: by_consent.get(s, 0) for s in CONSENT_STATES},
        "faces_not_checked": int(not_checked),  # n_faces null: no face detector looked at them
        "without_faces": int(without),
        "with_faces": {
            "samples": int(people),
            "faces": int(faces),
            "blurred": int(blurred),  # every face found was blurred in the stored image
            "consent": {s: with_faces.get(s, 0) for s in CONSENT_STATES},
            "consent_sources": counts(f"SELECT consent_source, count(*) {faces_sql}"),
            "licenses": counts(f"SELECT license, count(*) {faces_sql}"),
        },
    }


def takedowns_section(runs: str | None, dataset: str) -> dict[str, Any]:
    """The takedowns found under ``runs`` (and in ``dataset``'s lineage) with the training runs there that
    learnt from what they removed (pixelforge.people.lineage); says it was not asked for without ``runs``."""
    if runs is None:
        return {
            "asked": False,
            "note": "not asked for: pass --runs DIR to find the training runs under DIR that learnt from "
            "samples a takedown later removed",
        }
    from pixelforge.people.lineage import runs_trained_on_takedowns

    found = runs_trained_on_takedowns(runs, dataset)
    return {
        "asked": True,
        "runs_folder": runs,
        "runs_checked": found.runs_checked,
        "takedowns": [dataclasses.asdict(t) for t in found.takedowns],
        "flagged_runs": found.flagged_runs,
    }
