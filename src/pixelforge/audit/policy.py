"""Licence policies (research, commercial, open, or a TOML file) and the check training runs first."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

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

    def describe(self) -> dict:
        return {
            "name": self.name,
            "origin": self.origin,
            "allow": list(self.allow),
            "deny": list(self.deny),
            "allow_unknown": self.allow_unknown,
            "allow_opt_out": self.allow_opt_out,
        }

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

    def violation_reason_sql(self) -> str:
        """A DuckDB expression: 'opt_out', 'license' or NULL (no violation) for the row."""
        opt = "false" if self.allow_opt_out else "opt_out IS NOT NULL"
        return f"(CASE WHEN {opt} THEN 'opt_out' WHEN NOT {self.license_ok_sql()} THEN 'license' END)"


SHIPPED: dict[str, Policy] = {
    # training a research model: any licence (fair use / TDM exceptions are the user's call), no opt-outs
    "research": Policy("research", allow=(ANY,), allow_unknown=True),
    # a product: only licences that permit commercial use, with attribution where required
    "commercial": Policy("commercial", allow=("cc0", "cc-by", "cc-by-sa", "pdm", "public-domain")),
    # an openly released model and dataset: no share-alike or non-commercial strings attached
    "open": Policy("open", allow=("cc0", "cc-by", "pdm", "public-domain")),
}
DEFAULT_POLICY = "research"
POLICY_KEYS = ("name", "base", "allow", "deny", "allow_unknown", "allow_opt_out")


def load_policy(spec: str | Policy) -> Policy:
    """A shipped policy by name (research, commercial, open) or the policy in a TOML file.

    A policy file may start from a shipped policy with ``base`` and add licence ids or families::

        name = "product"
        base = "commercial"
        allow = ["mit", "apache-2.0"]
        deny = ["cc-by-sa"]
        allow_unknown = false
        allow_opt_out = false
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
    flags: dict[str, bool] = {}
    for key in ("allow_unknown", "allow_opt_out"):
        if key in doc:
            if not isinstance(doc[key], bool):
                raise bad(key, f"{key} must be true or false")
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


@dataclass
class TrainingCheck:
    samples: int
    opted_out: int
    allowed_by_override: bool
    policy: str | None = None  # the licence policy the dataset passed, if one was asked for


def check_training_allowed(
    ds: Dataset, allow_opt_out: bool = False, policy: str | Policy | None = None
) -> TrainingCheck:
    """Refuse a dataset holding opted-out samples unless ``allow_opt_out`` (recorded in the run).

    Opted-out URLs are never downloaded by `collect`, but a dataset can still carry such rows
    (imported with an opt_out column, or collected with --ignore-opt-outs).

    With ``policy`` (a shipped name or a TOML file), also refuse samples whose licence the policy
    does not allow. Opt-outs stay governed by ``allow_opt_out`` alone, so `--allow-opt-out` is the
    one override for them whatever the policy says.
    """
    pol = load_policy(policy) if policy is not None else None  # a bad --policy fails before any query
    n, opted = query(ds, "SELECT count(*) AS n, count(opt_out) AS o FROM samples").to_pylist()[0].values()
    if opted and not allow_opt_out:
        raise UsageError(
            f"{ds.path} holds {opted} opted-out samples: remove them with `pixelforge curate` "
            "(it drops them by default) or pass --allow-opt-out to train on them anyway"
        )
    check = TrainingCheck(int(n), int(opted), bool(opted and allow_opt_out))
    if pol is None:
        return check
    rows = query(
        ds,
        f"SELECT {LICENSE_OR_UNKNOWN_SQL} AS license, count(*) AS n FROM samples "
        f"WHERE NOT {pol.license_ok_sql()} GROUP BY 1 ORDER BY n DESC, license",
    ).to_pylist()
    by_license = {r["license"]: int(r["n"]) for r in rows}
    bad = sum(by_license.values())
    if bad:
        top = ", ".join(f"{k}: {v}" for k, v in list(by_license.items())[:3])
        more = ", ..." if len(by_license) > 3 else ""
        raise UsageError(
            f"{ds.path} holds {bad} samples whose licence the {pol.name} policy does not allow "
            f"({top}{more}): list them with `pixelforge audit {ds.path} --out AUDIT_DIR --policy "
            f"{pol.origin if pol.origin != 'shipped' else pol.name}`, drop them with "
            "`pixelforge curate --where`, or train under a --policy that allows them "
            "(research allows every licence)"
        )
    check.policy = pol.name
    return check
