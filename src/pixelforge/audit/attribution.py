"""Credits: one line per sample whose licence requires attribution (the CC BY family), as Markdown or CSV."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from pixelforge.audit.policy import ATTRIBUTION_SQL, LICENSE_ID_SQL
from pixelforge.errors import UsageError
from pixelforge.store import Dataset
from pixelforge.store import fs as fsutil

FORMATS = (".md", ".csv")
CSV_COLUMNS = ("key", "attribution", "source", "page_url", "license", "license_name", "license_url")
NO_ATTRIBUTION = "(no attribution recorded)"
_CC = re.compile(r"^cc-(by(?:-nc)?(?:-nd|-sa)?)-(\d+(?:\.\d+)?)(?:-([a-z]{2,3}))?$")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


@dataclass
class AttributionResult:
    out: str
    samples: int  # samples in the dataset
    credited: int  # lines written: samples whose licence requires attribution
    missing_attribution: int  # of those, samples with no attribution text recorded
    by_license: dict[str, int] = field(default_factory=dict)


def license_name(license_id: str) -> str:
    """The human name of a CC licence id: cc-by-sa-4.0 -> CC BY-SA 4.0, cc-by-2.0-de -> CC BY 2.0 DE."""
    m = _CC.match(license_id)
    if not m:
        return license_id
    name = f"CC {m.group(1).upper()} {m.group(2)}"
    return f"{name} {m.group(3).upper()}" if m.group(3) else name


def license_link(license_id: str) -> str | None:
    """The creativecommons.org deed of a CC licence id, or None for ids it does not know."""
    m = _CC.match(license_id)
    if not m:
        return None
    port = f"{m.group(3)}/" if m.group(3) else ""
    return f"https://creativecommons.org/licenses/{m.group(1)}/{m.group(2)}/{port}"


def _md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def write_credits(path: str, out: str) -> AttributionResult:
    """Write ``out`` (.md or .csv): attribution, source URL, licence name and link of every CC BY-family sample."""
    suffix = "." + out.rsplit(".", 1)[-1].lower() if "." in out.rsplit("/", 1)[-1] else ""
    if suffix not in FORMATS:
        raise UsageError(f"--out {out}: name a .md (Markdown) or .csv file, such as CREDITS.md")
    ds = Dataset.open(path)
    out_fs, out_path = fsutil.resolve(out)
    if out_fs.isdir(out_path):
        raise UsageError(f"--out {out} is a folder: name a file such as {out.rstrip('/')}/CREDITS.md")
    from pixelforge.store.sql import connect

    con = connect(ds)
    try:
        samples = int(con.execute("SELECT count(*) FROM samples").fetchall()[0][0])
        cur = con.execute(
            f"SELECT key, attribution, source, page_url, {LICENSE_ID_SQL} AS license, license_url "
            f"FROM samples WHERE {ATTRIBUTION_SQL} ORDER BY key"
        )
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n") if suffix == ".csv" else None
        if writer:
            writer.writerow(CSV_COLUMNS)
        else:
            buf.write(
                f"# Credits\n\nImages of the dataset {_md(ds.name)} used under licences that require "
                "attribution: attribution, source, licence.\n\n"
            )
        credited = missing = 0
        by_license: dict[str, int] = {}
        while batch := cur.fetchmany(10_000):
            for key, attribution, source, page_url, lic, lic_url in batch:
                credited += 1
                by_license[lic] = by_license.get(lic, 0) + 1
                text = (attribution or "").strip()
                missing += not text
                link = lic_url or license_link(lic)
                if writer:
                    writer.writerow((key, text, source or "", page_url or "", lic, license_name(lic), link or ""))
                    continue
                where = source or "(no source recorded)"
                if page_url and page_url != source:
                    where += f" (on {page_url})"
                licence = f"[{license_name(lic)}]({link})" if link else license_name(lic)
                buf.write(f"- {_md(text) if text else NO_ATTRIBUTION} — {where} — {licence}\n")
    finally:
        con.close()
    fsutil.atomic_write_bytes(out_fs, out_path, buf.getvalue().encode("utf-8"))
    return AttributionResult(
        out=out,
        samples=samples,
        credited=credited,
        missing_attribution=missing,
        by_license=dict(sorted(by_license.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
