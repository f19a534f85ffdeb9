"""Use policies (research, commercial, open, or a TOML file): licences, opt-outs, faces and consent, and
the check training and export run first."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pixelforge.configfile import bad_value, read_toml
from pixelforge.errors import UsageError
from pixelforge.store import Dataset, query

FLAG = "--policy"
ANY = "*"

# A licence id is matched in lower case, exactly or by its family: the id without its version and
# port suffix (cc-by-sa-2.0-de -> cc-by-sa, cc0-1.0 -> cc0). Null, '' and 'unknown' are unknown.
LICENSE_ID_SQL = "lower(trim(license))"
FAMILY_SQL = rf"regexp_replace({LICENSE_ID_SQL}, '-[0-9]+(\.[0-9]+)*(-[a-z]{{2,3}})?$', '')"
UNKNOWN_SQL = f"(license IS NULL OR {LICENSE_ID_SQL} IN ('', 'unknown'))"
LICENSE_OR_UNKNOWN_SQL = f"CASE WHEN {UNKNOWN_SQL} THEN 'unknown' ELSE {LICENSE_ID_SQL} END"
# The Creative Commons BY family (BY, BY-SA, BY-NC, BY-ND, BY-NC-SA, BY-NC-ND): credit is a condition.
ATTRIBUTION_SQL = f"(NOT {UNKNOWN_SQL} AND {FAMILY_SQL} LIKE 'cc-by%')"


def people_columns_sql(columns: Collection[str]) -> tuple[str, str, str]:
    """n_faces, faces_blurred and consent as DuckDB expressions: the column, or a typed null when the
    dataset lacks it (made before the people columns)."""
    return tuple(
        name if name in columns else f"CAST(NULL AS {sql_type})"
        for name, sql_type in (("n_faces", "INTEGER"), ("faces_blurred", "BOOLEAN"), ("consent", "VARCHAR"))
    )


@dataclass(frozen=True)
class Policy:
    """Which samples a use of the dataset may include.

    A sample violates the policy when its owner opted out (unless ``allow_opt_out``), or when its
    licence is unknown (unless ``allow_unknown``), denied, or not allowed. ``allow`` and ``deny`` hold
    licence ids or families; ``*`` in ``allow`` allows every known licence.
    """

    name: str
    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()
    allow_unknown: bool = False
    allow_opt_out: bool = False
    origin: str = "shipped"
    faces: str = "allow"  # allow | blur (every face found must be blurred) | refuse (no face at all)
    consent: str = "ignore"  # ignore | require_for_people (samples with faces) | require (every sample)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "origin": self.origin,
            "allow": list(self.allow),
            "deny": list(self.deny),
            "allow_unknown": self.allow_unknown,
            "allow_opt_out": self.allow_opt_out,
            "faces": self.faces,
            "consent": self.consent,
        }

    def people_sql(self, columns: Collection[str]) -> dict[str, str]:
        """DuckDB conditions true when a row breaks the faces or the consent rule, by rule name.

        ``columns``: the dataset's column names; a people column it lacks reads as null (faces never
        looked for, consent unknown). Faces not looked for break every rule that needs to know them.
        """
        n, blurred, consent = people_columns_sql(columns)
        people = f"({n} IS NULL OR {n} > 0)"  # may show a person: faces found, or never looked for
        rules = {}
        if self.faces == "blur":
            rules["faces"] = f"({n} IS NULL OR ({n} > 0 AND {blurred} IS NOT TRUE))"
        elif self.faces == "refuse":
            rules["faces"] = people
        if self.consent == "require":
            rules["consent"] = f"({consent} IS DISTINCT FROM 'granted')"
        elif self.consent == "require_for_people":
            rules["consent"] = f"({consent} IS DISTINCT FROM 'granted' AND {people})"
        return rules

    def license_ok_sql(self) -> str:
        """A DuckDB condition true when the row's licence is acceptable (opt-outs aside)."""

        def listed(ids: tuple[str, ...]) -> str:
            if not ids:
                return "false"
            values = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
            return f"({LICENSE_ID_SQL} IN ({values}) OR {FAMILY_SQL} IN ({values}))"

        allowed = "true" if ANY in self.allow else listed(tuple(i for i in self.allow if i != ANY))
        known = f"(NOT {listed(self.deny)} AND {allowed})"
        return f"(CASE WHEN {UNKNOWN_SQL} THEN {str(self.allow_unknown).lower()} ELSE {known} END)"

    def violation_reason_sql(self, columns: Collection[str] = ()) -> str:
        """A DuckDB expression: the first rule the row breaks ('opt_out', 'license', 'faces', 'consent')
        or NULL; ``columns`` as for people_sql."""
        opt = "false" if self.allow_opt_out else "opt_out IS NOT NULL"
        people = "".join(f" WHEN {sql} THEN '{rule}'" for rule, sql in self.people_sql(columns).items())
        return f"(CASE WHEN {opt} THEN 'opt_out' WHEN NOT {self.license_ok_sql()} THEN 'license'{people} END)"


SHIPPED: dict[str, Policy] = {
    # training a research model: any licence (fair use / TDM exceptions are the user's call), no opt-outs
    "research": Policy("research", allow=(ANY,), allow_unknown=True),
    # a product: only licences that permit commercial use, with attribution where required
    "commercial": Policy("commercial", allow=("cc0", "cc-by", "cc-by-sa", "pdm", "public-domain")),
    # an openly released model and dataset: no share-alike or non-commercial strings attached
    "open": Policy("open", allow=("cc0", "cc-by", "pdm", "public-domain")),
}
DEFAULT_POLICY = "research"
POLICY_KEYS = ("name", "base", "allow", "deny", "allow_unknown", "allow_opt_out", "faces", "consent")
FACES_RULES = ("allow", "blur", "refuse")
CONSENT_RULES = ("ignore", "require_for_people", "require")
# what --override may name: the rules a use of the data can knowingly break (recorded where it is used)
OVERRIDES = ("opt_out", "license", "faces", "consent")


def load_policy(spec: str | Policy) -> Policy:
    """A shipped policy by name (research, commercial, open) or the policy in a TOML file.

    A policy file may start from a shipped policy with ``base`` and add licence ids or families::

        name = "product"
        base = "commercial"
        allow = ["mit", "apache-2.0"]
        deny = ["cc-by-sa"]
        allow_unknown = false
        allow_opt_out = false
        faces = "blur"                  # allow (default), blur or refuse
        consent = "require_for_people"  # ignore (default), require_for_people or require
    """
    if isinstance(spec, Policy):
        return spec
    if spec in SHIPPED:
        return SHIPPED[spec]
    if not (spec.endswith(".toml") or Path(spec).is_file()):
        raise UsageError(f"{FLAG} {spec!r}: choose one of {', '.join(SHIPPED)} or give a policy .toml file")
    doc, text = read_toml(spec, FLAG)

    def bad(key: str, problem: str) -> UsageError:
        return bad_value(FLAG, spec, text, key, problem)

    for key in doc:
        if key not in POLICY_KEYS:
            raise bad(key, f"unknown key {key!r}: use {', '.join(POLICY_KEYS)}")
    base = doc.get("base")
    if base is not None and base not in SHIPPED:
        raise bad("base", f"base {base!r}: choose one of {', '.join(SHIPPED)}")
    policy = SHIPPED[base] if base else Policy(Path(spec).stem, allow=())
    lists: dict[str, tuple[str, ...]] = {}
    for key in ("allow", "deny"):
        value = doc.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise bad(key, f'{key} must be an array of licence ids such as ["cc-by", "mit"]')
        ids = tuple(v.strip().lower() for v in value)
        if "unknown" in ids:
            raise bad(key, f"{key} lists 'unknown': use allow_unknown = true or false instead")
        lists[key] = ids
    flags: dict[str, Any] = {}
    for key in ("allow_unknown", "allow_opt_out"):
        if key in doc:
            if not isinstance(doc[key], bool):
                raise bad(key, f"{key} must be true or false")
            flags[key] = doc[key]
    for key, choices in (("faces", FACES_RULES), ("consent", CONSENT_RULES)):
        if key in doc:
            if doc[key] not in choices:
                raise bad(key, f"{key} = {doc[key]!r}: choose one of {', '.join(choices)}")
            flags[key] = doc[key]
    name = doc.get("name", Path(spec).stem)
    if not isinstance(name, str) or not name.strip():
        raise bad("name", "name must be a non-empty string")
    return replace(
        policy,
        name=name,
        allow=_unique(policy.allow + lists["allow"]),
        deny=_unique(policy.deny + lists["deny"]),
        origin=spec,
        **flags,
    )


def _unique(ids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))


def parse_overrides(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """``--override`` values (names, or comma-separated names) as a tuple of OVERRIDES; bad names raise."""
    if spec is None:
        return ()
    parts = [spec] if isinstance(spec, str) else list(spec)
    names = [n.strip() for part in parts for n in part.split(",") if n.strip()]
    for name in names:
        if name not in OVERRIDES:
            raise UsageError(f"--override {name!r}: choose one or more of {', '.join(OVERRIDES)} (comma-separated)")
    return tuple(dict.fromkeys(names))


@dataclass
class UseCheck:
    """What a use of a dataset (training, export) was checked against, and what the user overrode.

    Saved with what the use produced (a run's config.json, an export's pixelforge-export.json).
    """

    samples: int
    opted_out: int
    allowed_by_override: bool  # opted-out samples used under --allow-opt-out / --override opt_out
    policy: str | None = None  # the policy the dataset was checked against, if one was asked for
    rules: dict[str, Any] = field(default_factory=dict)  # the policy's description
    broken: dict[str, int] = field(default_factory=dict)  # samples breaking each rule (overridden ones only)
    overridden: list[str] = field(default_factory=list)  # the rules the user overrode by name

    def describe(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "rules": self.rules,
            "samples": self.samples,
            "overridden": self.overridden,
            "samples_breaking_overridden_rules": self.broken,
        }


TrainingCheck = UseCheck  # the name of the result before export shared the check


def check_use(
    ds: Dataset,
    allow_opt_out: bool = False,
    policy: str | Policy | None = None,
    override: str | Iterable[str] | None = None,
    use: str = "train",
) -> UseCheck:
    """Refuse what a use (``use``: "train" or "export", for the messages) of ``ds`` may not include.

    Opted-out samples are refused whatever the policy (opt-outs never downloaded by `collect` can
    still come in through an import or --ignore-opt-outs) unless ``allow_opt_out`` or the override
    ``opt_out``. With ``policy`` (a shipped name or a TOML file), samples whose licence it does not
    allow, and samples breaking its faces and consent rules, are refused too, each rule unless
    ``override`` names it. Every refusal is one UsageError naming the counts and the fixes; what
    was overridden, and how many samples it let through, is in the returned check.
    """
    overrides = parse_overrides(override)  # bad names and a bad --policy fail before any query
    pol = load_policy(policy) if policy is not None else None
    allow_opt_out = allow_opt_out or "opt_out" in overrides
    n, opted = query(ds, "SELECT count(*) AS n, count(opt_out) AS o FROM samples").to_pylist()[0].values()
    broken: dict[str, int] = {}
    if opted:
        if not allow_opt_out:
            raise UsageError(
                f"{ds.path} holds {opted} opted-out samples: remove them with `pixelforge curate` "
                f"(it drops them by default) or pass --allow-opt-out to {use} on them anyway"
            )
        broken["opt_out"] = int(opted)
    check = UseCheck(int(n), int(opted), bool(opted and allow_opt_out), overridden=list(overrides))
    if pol is None:
        check.broken = broken
        return check
    problems = []
    rows = query(
        ds,
        f"SELECT {LICENSE_OR_UNKNOWN_SQL} AS license, count(*) AS n FROM samples "
        f"WHERE NOT {pol.license_ok_sql()} GROUP BY 1 ORDER BY n DESC, license",
    ).to_pylist()
    by_license = {r["license"]: int(r["n"]) for r in rows}
    bad = sum(by_license.values())
    if bad and "license" in overrides:
        broken["license"] = bad
    elif bad:
        top = ", ".join(f"{k}: {v}" for k, v in list(by_license.items())[:3])
        more = ", ..." if len(by_license) > 3 else ""
        problems.append(
            f"{ds.path} holds {bad} samples whose licence the {pol.name} policy does not allow "
            f"({top}{more}): list them with `pixelforge audit {ds.path} --out AUDIT_DIR --policy "
            f"{pol.origin if pol.origin != 'shipped' else pol.name}`, drop them with "
            f"`pixelforge curate --where`, or {use} under a --policy that allows them "
            "(research allows every licence)"
        )
    for rule, count, detail in _people_breaks(ds, pol):
        if rule in overrides:
            broken[rule] = count
        else:
            problems.append(
                f"{ds.path} breaks the {pol.name} policy's {rule} = {getattr(pol, rule)!r} in {count} samples "
                f"{detail} or pass --override {rule} to {use} on them anyway (recorded)"
            )
    if problems:
        raise UsageError("; ".join(problems))
    check.policy, check.rules, check.broken = pol.name, pol.describe(), broken
    return check


def check_training_allowed(
    ds: Dataset, allow_opt_out: bool = False, policy: str | Policy | None = None, override=None
) -> UseCheck:
    """check_use for a training run."""
    return check_use(ds, allow_opt_out, policy, override, use="train")


def _people_breaks(ds: Dataset, pol: Policy) -> list[tuple[str, int, str]]:
    """(rule, samples breaking it, why and how to fix it) of the policy's faces and consent rules."""
    rules = pol.people_sql(ds.schema.names)
    if not rules:
        return []
    n, _, consent = people_columns_sql(ds.schema.names)
    out = []
    if "faces" in rules:
        row = query(
            ds,
            f"SELECT count(*) FILTER (WHERE {n} IS NULL) AS unchecked, "
            f"count(*) FILTER (WHERE {rules['faces']} AND {n} IS NOT NULL) AS shown FROM samples",
        ).to_pylist()[0]
        if row["unchecked"] or row["shown"]:
            what = "with faces not blurred" if pol.faces == "blur" else "with faces"
            fix = (
                "blur them with `pixelforge prepare --blur-faces` (it finds the faces itself),"
                if pol.faces == "blur"
                else "find faces with `pixelforge curate --faces` and drop them with --where 'n_faces = 0',"
            )
            out.append(
                (
                    "faces",
                    row["unchecked"] + row["shown"],
                    f"({row['unchecked']} never checked for faces, {row['shown']} {what}): {fix}",
                )
            )
    if "consent" in rules:
        rows = query(
            ds,
            f"SELECT coalesce({consent}, 'unknown') AS state, count(*) AS k FROM samples "
            f"WHERE {rules['consent']} GROUP BY 1 ORDER BY 1",
        ).to_pylist()
        if rows:
            states = ", ".join(f"{r['k']} {r['state']}" for r in rows)
            scope = "" if pol.consent == "require" else " among samples with faces or never checked for faces"
            out.append(
                (
                    "consent",
                    sum(r["k"] for r in rows),
                    f"({states}{scope}): record consent when importing or collecting "
                    "(--consent, --consent-col, a sidecar's consent), drop them with "
                    "`pixelforge curate --where \"consent = 'granted'\"`,",
                )
            )
    return out
