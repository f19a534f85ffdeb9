"""The audit's per-column sections, each one or a few DuckDB queries over the view `samples`."""

from __future__ import annotations

import math
from typing import Any

from pixelforge.audit.policy import ATTRIBUTION_SQL, LICENSE_OR_UNKNOWN_SQL, UNKNOWN_SQL

TOP_DOMAINS = 100  # domains listed by name in audit.json (all of them are counted)
HISTOGRAM_BINS = 10
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# curate's numeric quality columns, reported when the dataset has them (docs/curate.md)
# (q_brightness is reported as "brightness")
QUALITY_COLUMNS = ("q_min_side", "q_aspect", "q_blur", "q_contrast", "q_entropy", "q_jpeg_quality", "q_watermark")
LABEL_SQL = "coalesce(label_name, CAST(label AS VARCHAR))"
# the host of an http(s) source, lower case, without www. (file paths and other schemes have none)
DOMAIN_SQL = (
    r"nullif(regexp_replace(lower(regexp_extract(source, "
    r"'(?i)^https?://(?:[^@/]*@)?([^/:?#]+)', 1)), '^www\.', ''), '')"
)


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _rows(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def _counts(con, sql: str) -> dict[str, int]:
    """{key: count} from a query of (key, count), largest first, then by key."""
    return {str(k): int(n) for k, n in sorted(_rows(con, sql), key=lambda r: (-r[1], str(r[0])))}


# ---- labels -------------------------------------------------------------------------------------


def counts_to_balance(counts: dict[str, int]) -> dict[str, Any]:
    """Balance of a class distribution: imbalance ratio, normalised entropy, classes under half a share.

    imbalance_ratio = max / min count; normalized_entropy = H / ln K with H = -sum p ln p (1 = uniform,
    null for fewer than 2 classes); under_half_uniform = classes with fewer than half of total / K.
    """
    total, k = sum(counts.values()), len(counts)
    if not k:
        return {
            "classes": 0,
            "total": 0,
            "counts": {},
            "imbalance_ratio": None,
            "normalized_entropy": None,
            "under_half_uniform": [],
        }
    entropy = -sum(c / total * math.log(c / total) for c in counts.values())
    return {
        "classes": k,
        "total": total,
        "counts": counts,
        "imbalance_ratio": max(counts.values()) / min(counts.values()),
        "normalized_entropy": entropy / math.log(k) if k > 1 else None,
        # 2 * c * K < total  <=>  c < 0.5 * total / K, in integers so the boundary is exact
        "under_half_uniform": sorted(name for name, c in counts.items() if 2 * c * k < total),
    }


def labels_section(con, samples: int) -> dict[str, Any]:
    """Class balance of the image labels and, for detection sets, of the box categories."""
    counts = _counts(con, f"SELECT {LABEL_SQL} AS k, count(*) FROM samples WHERE {LABEL_SQL} IS NOT NULL GROUP BY k")
    out = counts_to_balance(counts)
    out["labelled"] = out.pop("total")
    out["unlabelled"] = samples - out["labelled"]
    box_rows = _rows(
        con,
        "SELECT CAST(b.label AS VARCHAR) AS k, count(*) AS n, count(DISTINCT key) AS images "
        "FROM (SELECT key, unnest(boxes) AS b FROM samples) GROUP BY k",
    )
    if box_rows:
        boxes = counts_to_balance({str(k): int(n) for k, n, _ in sorted(box_rows, key=lambda r: (-r[1], r[0]))})
        boxes["boxes"] = boxes.pop("total")
        boxes["images_per_category"] = {str(k): int(i) for k, _, i in sorted(box_rows, key=lambda r: (-r[2], r[0]))}
        boxes["images_with_boxes"] = int(_rows(con, "SELECT count(*) FROM samples WHERE len(boxes) > 0")[0][0])
        out["box_categories"] = boxes
    else:
        out["box_categories"] = None
    return out


# ---- sources ------------------------------------------------------------------------------------


def sources_section(con, samples: int) -> dict[str, Any]:
    """Samples per source kind and per web domain, and how concentrated the domains are."""
    kinds = _counts(con, "SELECT source_kind, count(*) FROM samples GROUP BY 1")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE audit_domains AS SELECT {DOMAIN_SQL} AS d, count(*) AS n FROM samples GROUP BY d"
    )
    with_domain, distinct = _rows(con, "SELECT coalesce(sum(n), 0), count(*) FROM audit_domains WHERE d IS NOT NULL")[0]
    top = _rows(con, f"SELECT d, n FROM audit_domains WHERE d IS NOT NULL ORDER BY n DESC, d LIMIT {TOP_DOMAINS}")
    with_domain = int(with_domain)
    return {
        "kinds": kinds,
        "with_domain": with_domain,
        "without_domain": samples - with_domain,
        "distinct_domains": int(distinct),
        "domains": {d: int(n) for d, n in top},
        "domains_listed": len(top),
        "top_domain": top[0][0] if top else None,
        # shares are of the samples that came from the web (that have a domain)
        "top_domain_share": ratio(top[0][1], with_domain) if top else None,
        "top10_share": ratio(sum(n for _, n in top[:10]), with_domain) if top else None,
    }


# ---- image properties ---------------------------------------------------------------------------


def distribution(con, expr: str, table: str = "samples") -> dict[str, Any] | None:
    """count, min, quantiles (nearest rank: actual values), max, mean and a 10-bin histogram of ``expr``.

    None when no row has a value.
    """
    qs = ", ".join(str(q) for q in QUANTILES)
    n, lo, quants, hi, mean = _rows(
        con,
        f"SELECT count(v), min(v), quantile_disc(v, [{qs}]), max(v), avg(v) "
        f"FROM (SELECT ({expr}) AS v FROM {table}) WHERE v IS NOT NULL",
    )[0]
    if not n:
        return None
    lo, hi = float(lo), float(hi)
    width = (hi - lo) / HISTOGRAM_BINS
    # bin b holds lo + b * width <= v < lo + (b + 1) * width; the maximum goes in the last bin
    bins = dict(
        _rows(
            con,
            f"""
        WITH t AS (SELECT CAST(({expr}) AS DOUBLE) AS v FROM {table}), r AS (SELECT min(v) AS lo, max(v) AS hi FROM t)
        SELECT CASE WHEN hi = lo THEN 0 ELSE least(CAST(floor((v - lo) / (hi - lo) * {HISTOGRAM_BINS}) AS INTEGER),
                                                  {HISTOGRAM_BINS - 1}) END AS b, count(*)
        FROM t, r WHERE v IS NOT NULL GROUP BY b""",
        )
    )
    plain = (lambda v: int(v)) if isinstance(quants[0], int) else (lambda v: round(float(v), 6))
    return {
        "count": int(n),
        "min": plain(lo),
        "max": plain(hi),
        "mean": round(float(mean), 6),
        "quantiles": {f"p{round(q * 100)}": plain(v) for q, v in zip(QUANTILES, quants)},
        "histogram": {
            "edges": [round(lo + i * width, 6) for i in range(HISTOGRAM_BINS + 1)],
            "counts": [int(bins.get(i, 0)) for i in range(HISTOGRAM_BINS)],
        },
    }


def image_properties_section(
    con, columns: list[str], decoded_brightness: str | None = None, unreadable: int = 0
) -> dict[str, Any]:
    """Distributions of stored size, aspect ratio, brightness and curate's quality scores.

    Brightness is curate's q_brightness when the dataset has it, else the column ``v`` of the
    table ``decoded_brightness`` (pixels.dataset_brightness), else null.
    """
    if "q_brightness" in columns:
        brightness, source = distribution(con, "q_brightness"), "q_brightness"
    elif decoded_brightness is not None:
        brightness, source = distribution(con, "v", decoded_brightness), "decoded"
    else:
        brightness, source = None, None
    out: dict[str, Any] = {
        "width": distribution(con, "width"),
        "height": distribution(con, "height"),
        "aspect": distribution(con, "CAST(width AS DOUBLE) / nullif(height, 0)"),
        "orientation": _counts(
            con,
            "SELECT CASE WHEN width > height THEN 'landscape' WHEN width < height THEN "
            "'portrait' ELSE 'square' END, count(*) FROM samples "
            "WHERE width IS NOT NULL AND height IS NOT NULL GROUP BY 1",
        ),
        "formats": _counts(con, "SELECT coalesce(format, 'unknown'), count(*) FROM samples GROUP BY 1"),
        # mean grey in [0, 1] of a 128 px thumbnail
        "brightness": brightness,
        "brightness_source": source,
        "unreadable_images": unreadable if source == "decoded" else None,
    }
    out["quality"] = {c: distribution(con, c) for c in QUALITY_COLUMNS if c in columns}
    if "q_grayscale" in columns:
        n, grey = _rows(con, "SELECT count(q_grayscale), count(*) FILTER (WHERE q_grayscale) FROM samples")[0]
        out["quality"]["q_grayscale"] = {"count": int(n), "true": int(grey), "share": ratio(grey, n)}
    return out


# ---- licences and opt-outs ----------------------------------------------------------------------


def licenses_section(con, samples: int) -> dict[str, Any]:
    """Samples per licence id ('unknown' for none), the unknown share and how many need attribution."""
    counts = _counts(con, f"SELECT {LICENSE_OR_UNKNOWN_SQL}, count(*) FROM samples GROUP BY 1")
    unknown, attribution = _rows(
        con, f"SELECT count(*) FILTER (WHERE {UNKNOWN_SQL}), count(*) FILTER (WHERE {ATTRIBUTION_SQL}) FROM samples"
    )[0]
    return {
        "counts": counts,
        "distinct": len(counts),
        "unknown": int(unknown),
        "share_unknown": ratio(unknown, samples),
        "attribution_required": int(attribution),
    }


def opt_outs_section(con, samples: int) -> dict[str, Any]:
    """Opted-out samples by the reason recorded (robots.txt, x-robots-tag: noai, ...)."""
    by_reason = _counts(con, "SELECT opt_out, count(*) FROM samples WHERE opt_out IS NOT NULL GROUP BY 1")
    total = sum(by_reason.values())
    return {"count": total, "share": ratio(total, samples), "by_reason": by_reason}
