"""What `pixelforge info` shows: counts, labels, captions, licences, sources, sizes and disk use."""

from __future__ import annotations

from typing import Any

from pixelforge.store.dataset import Dataset
from pixelforge.store.sql import connect

TOP = 10


def summarize(ds: Dataset) -> dict[str, Any]:
    """Summary of a dataset as plain JSON values, computed by DuckDB over the index."""
    con = connect(ds)
    try:

        def rows(sql: str) -> list[tuple]:
            return con.execute(sql).fetchall()

        def counts(column: str, limit: int | None = TOP) -> dict[str, int]:
            lim = f"LIMIT {limit}" if limit else ""
            return {
                str(k): int(v)
                for k, v in rows(
                    f"SELECT {column} AS k, count(*) AS n FROM samples GROUP BY k ORDER BY n DESC, k {lim}"
                )
            }

        n, captions, labelled, boxes, masks = rows(
            "SELECT count(*), count(caption), count(label), coalesce(sum(len(boxes)), 0), count(mask) FROM samples"
        )[0]
        sizes = rows(
            "SELECT min(width), median(width), max(width), min(height), median(height), max(height) FROM samples"
        )[0]
        n_labels = rows("SELECT count(DISTINCT label) FROM samples")[0][0]
        failures = {
            str(k): int(v) for k, v in rows("SELECT reason, count(*) FROM failures GROUP BY reason ORDER BY 2 DESC, 1")
        }
        return {
            "path": ds.path,
            "name": ds.name,
            "created_at": ds.info.get("created_at"),
            "command": ds.info.get("lineage", {}).get("command"),
            "samples": int(n),
            "failures": int(sum(failures.values())),
            "failure_reasons": failures,
            "shards": len(ds.shards()),
            "disk_bytes": ds.disk_bytes(),
            "with_caption": int(captions),
            "with_label": int(labelled),
            "distinct_labels": int(n_labels),
            "labels": counts("coalesce(label_name, CAST(label AS VARCHAR))") if labelled else {},
            "boxes": int(boxes),
            "with_mask": int(masks),
            "source_kinds": counts("source_kind", None),
            "licenses": counts("license", None),
            "opt_outs": int(rows("SELECT count(opt_out) FROM samples")[0][0]),
            "splits": counts("coalesce(split, 'none')", None),
            "formats": counts("format", None),
            "width": {"min": sizes[0], "median": sizes[1], "max": sizes[2]},
            "height": {"min": sizes[3], "median": sizes[4], "max": sizes[5]},
            "extra_columns": [f.name for f in ds.extra_fields],
        }
    finally:
        con.close()
