"""The audit stage: one DuckDB pass per section over a dataset's index, written to AUDIT_DIR/audit.json."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pixelforge import __version__
from pixelforge.audit.lexicon import load_lexicon
from pixelforge.audit.policy import DEFAULT_POLICY, LICENSE_OR_UNKNOWN_SQL, Policy, load_policy
from pixelforge.errors import UsageError
from pixelforge.store import Dataset, config_to_dict
from pixelforge.store import fs as fsutil

AUDIT_JSON = "audit.json"
VIOLATIONS = "violations.parquet"
# result keys (the report stage reads them)
SECTIONS = (
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
)


@dataclass
class AuditConfig:
    """What `pixelforge audit` checks and how much it lists."""

    lexicon: str | None = None  # TOML file; None: the shipped default lexicon
    policy: str = DEFAULT_POLICY  # research | commercial | open | a policy TOML file
    predictions: str | None = None  # parquet of key, predicted, confidence, target
    min_count: int = 5  # captions a term and a subgroup must share to be listed; the
    # predictions a label or subgroup needs to be flagged
    top_terms: int = 1000  # most frequent caption words considered for associations
    max_violations: int = 10_000  # violations listed in audit.json (all are in violations.parquet)
    pixels: bool = True  # decode images for brightness when curate's q_brightness is absent
    processes: int = 2  # worker processes for that decoding
    runs: str | None = None  # a folder of training runs: flag those trained on samples later taken down

    def validate(self) -> None:
        for name in ("min_count", "top_terms"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.processes < 1:
            raise UsageError(f"--processes {self.processes}: must be at least 1")
        if self.max_violations < 0:
            raise UsageError(f"--max-violations {self.max_violations}: must be 0 or more")
        if self.runs is not None and not Path(self.runs).is_dir():
            raise UsageError(f"--runs {self.runs}: no such folder; pass the folder that holds the training runs")


@dataclass
class AuditResult:
    """Where the audit went and its headline numbers; the full report is ``report`` (audit.json)."""

    out: str
    samples: int
    seconds: float
    report: dict[str, Any]


def policy_section(con, policy: Policy, out_fs, out_root: str, max_listed: int) -> dict[str, Any]:
    """Samples the policy forbids, by reason and licence; all of them go to violations.parquet."""
    columns = [d[0] for d in con.execute("SELECT * FROM samples LIMIT 0").description]
    con.execute(f"""CREATE OR REPLACE TEMP TABLE audit_violations AS
        SELECT * FROM (SELECT key, {LICENSE_OR_UNKNOWN_SQL} AS license, source, opt_out,
                              {policy.violation_reason_sql(columns)} AS reason FROM samples)
        WHERE reason IS NOT NULL""")
    by_reason = dict(con.execute("SELECT reason, count(*) FROM audit_violations GROUP BY 1 ORDER BY 1").fetchall())
    by_license = {
        k: int(n)
        for k, n in con.execute(
            "SELECT license, count(*) AS n FROM audit_violations GROUP BY 1 ORDER BY n DESC, 1"
        ).fetchall()
    }
    count = sum(by_license.values())
    listed = con.execute(
        f"SELECT key, license, source, reason FROM audit_violations ORDER BY key LIMIT {int(max_listed)}"
    ).fetchall()
    rel = con.sql("SELECT * FROM audit_violations ORDER BY key")
    table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()  # duckdb 2 / 1.x
    import pyarrow.parquet as pq

    path = fsutil.join(out_root, VIOLATIONS)
    with out_fs.open(f"{path}.tmp", "wb") as f:  # renamed when complete, like every file pixelforge writes
        pq.write_table(table, f)
    out_fs.mv(f"{path}.tmp", path)
    return {
        **policy.describe(),
        "violation_count": count,
        "by_reason": {k: int(v) for k, v in by_reason.items()},
        "by_license": by_license,
        "violations": [{"key": k, "license": lic, "source": src, "reason": r} for k, lic, src, r in listed],
        "violations_listed": len(listed),
        "violations_file": VIOLATIONS,
    }


def audit(path: str, out: str, config: AuditConfig | None = None) -> AuditResult:
    """Audit the dataset at ``path``: write ``out``/audit.json and ``out``/violations.parquet."""
    from pixelforge.audit import captions, consent, predictions, sections
    from pixelforge.store.sql import connect

    config = config or AuditConfig()
    config.validate()
    # every argument is checked before any query runs
    lexicon = load_lexicon(config.lexicon)
    policy = load_policy(config.policy)
    if config.predictions is not None:
        predictions.check_predictions(config.predictions)
    ds = Dataset.open(path)
    out_fs, out_root = fsutil.resolve(out)
    if out_fs.exists(out_root) and not out_fs.isdir(out_root):
        raise UsageError(f"--out {out} is a file: give a folder for audit.json")
    out_fs.makedirs(out_root, exist_ok=True)

    start = time.perf_counter()
    con = connect(ds)
    try:
        columns = ds.schema.names
        samples = int(con.execute("SELECT count(*) FROM samples").fetchall()[0][0])
        n_captions = captions.captions_to_tables(con, lexicon)
        decoded, unreadable, image_warnings = None, 0, {}
        if config.pixels and samples and "q_brightness" not in columns:
            import pyarrow as pa

            from pixelforge.audit.pixels import dataset_brightness

            keys, values, unreadable, image_warnings = dataset_brightness(ds, config.processes)
            con.register(
                "audit_brightness", pa.table({"key": pa.array(keys, pa.string()), "v": pa.array(values, pa.float64())})
            )
            decoded = "audit_brightness"
        report: dict[str, Any] = {
            "dataset": {
                "path": ds.path,
                "name": ds.name,
                "samples": samples,
                "failures": int(con.execute("SELECT count(*) FROM failures").fetchall()[0][0]),
            },
            "empty": samples == 0,
            "note": "the dataset has no samples: every count below is zero" if samples == 0 else None,
            "labels": sections.labels_section(con, samples),
            "caption_groups": captions.caption_groups_section(con, lexicon, n_captions, samples),
            "associations": captions.associations_section(con, lexicon, n_captions, config.min_count, config.top_terms),
            "sources": sections.sources_section(con, samples),
            "image_properties": sections.image_properties_section(con, columns, decoded, unreadable),
            "licenses": sections.licenses_section(con, samples),
            "policy": policy_section(con, policy, out_fs, out_root, config.max_violations),
            "opt_outs": sections.opt_outs_section(con, samples),
            "predictions": predictions.predictions_section(con, config.predictions, True, config.min_count)
            if config.predictions
            else None,
            "people": consent.people_section(con, columns),
            "takedowns": consent.takedowns_section(config.runs, ds.path),
        }
    finally:
        con.close()
    seconds = time.perf_counter() - start
    report["audit"] = {
        "pixelforge_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "config": config_to_dict(config),
        "image_warnings": image_warnings,
    }
    fsutil.atomic_write_bytes(
        out_fs, fsutil.join(out_root, AUDIT_JSON), json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8")
    )
    return AuditResult(out=out, samples=samples, seconds=seconds, report=report)
