"""Curation rules: the presets and --where, applied in a fixed order, each counting what it removed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pixelforge.errors import UsageError

EXAMPLES_PER_RULE = 8
ROW_ID = "__row"  # temporary column that carries row positions through DuckDB


@dataclass
class RuleOutcome:
    """One rule's effect: rows it matched on its own, rows it removed after the earlier rules, examples."""

    rule: str
    setting: Any
    matched: int
    removed: int
    examples: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "setting": self.setting,
            "matched": self.matched,
            "removed": self.removed,
            "examples": self.examples,
        }


def _where_error(expr: str, exc: Exception, columns: list[str]) -> UsageError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(
        f"--where {expr!r} is not a valid DuckDB boolean expression ({first}); columns: {', '.join(columns)}"
    )


def check_where(expr: str, schema: pa.Schema) -> None:
    """Raise UsageError (one line, naming the columns) unless ``expr`` is a boolean over ``schema``.

    Runs the expression on an empty table with the output schema, before any image is read.
    """
    import duckdb

    empty = schema.empty_table()
    con = duckdb.connect()
    try:
        con.register("samples", empty)
        rel = con.sql(f"SELECT ({expr}) AS keep FROM samples")
        kind = str(rel.types[0]).upper()
        if kind not in ("BOOLEAN", '"NULL"', "NULL"):
            raise UsageError(
                f"--where {expr!r} gives {kind}, not a boolean: write a condition such as "
                f'"q_min_side >= 64"; columns: {", ".join(schema.names)}'
            )
    except duckdb.Error as exc:
        raise _where_error(expr, exc, schema.names) from None
    finally:
        con.close()


def where_mask(table: pa.Table, expr: str) -> np.ndarray:
    """Rows of ``table`` for which ``expr`` is TRUE (NULL counts as false), as a bool array."""
    import duckdb

    con = duckdb.connect()
    try:
        con.register("samples", table.append_column(ROW_ID, pa.array(np.arange(table.num_rows, dtype=np.int64))))
        rows = con.sql(f"SELECT {ROW_ID} FROM samples WHERE coalesce(({expr}), false)").fetchnumpy()[ROW_ID]
    except duckdb.Error as exc:
        raise _where_error(expr, exc, table.column_names) from None
    finally:
        con.close()
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[np.asarray(rows, dtype=np.int64)] = True
    return mask


def _num(table: pa.Table, name: str, fill: float) -> np.ndarray:
    return pc.fill_null(table.column(name), fill).to_numpy(zero_copy_only=False).astype(np.float64)


def _opt_out(table: pa.Table, _: Any) -> np.ndarray:
    return pc.is_valid(table.column("opt_out")).to_numpy(zero_copy_only=False)


def _min_side(table: pa.Table, value: int) -> np.ndarray:
    return _num(table, "q_min_side", 0) < value


def _max_blur(table: pa.Table, value: float) -> np.ndarray:
    # q_blur is the variance of the Laplacian: LOW means blurry, so "too blurry" is q_blur < value
    return _num(table, "q_blur", np.inf) < value


def _max_watermark(table: pa.Table, value: float) -> np.ndarray:
    return _num(table, "q_watermark", 0.0) > value


def _max_outlier(table: pa.Table, value: float) -> np.ndarray:
    # `pixelforge cluster` writes the outlier column; a sample without a vector (null) is kept
    return _num(table, "outlier", 0.0) > value


def _bad_captions(table: pa.Table, _: Any) -> np.ndarray:
    return pc.list_value_length(table.column("c_flags")).to_numpy(zero_copy_only=False) > 0


def _duplicates(table: pa.Table, _: Any) -> np.ndarray:
    return ~table.column("dup_keep").to_numpy(zero_copy_only=False).astype(bool)


# rule name -> (config field, predicate "row must go"). Order is the order rules apply in: the
# cheap, certain ones first, duplicates last so a group's representative is chosen among rows
# that survived everything else (see apply_rules).
RULES: dict[str, tuple[str, Callable[[pa.Table, Any], np.ndarray]]] = {
    "opt_out": ("drop_opt_out", _opt_out),
    "where": ("where", lambda t, expr: ~where_mask(t, expr)),
    "min_side": ("min_side", _min_side),
    "max_blur": ("max_blur", _max_blur),
    "max_watermark": ("max_watermark", _max_watermark),
    "max_outlier": ("max_outlier", _max_outlier),
    "bad_captions": ("drop_bad_captions", _bad_captions),
    "duplicates": ("drop_duplicates", _duplicates),
}


def active(setting: Any) -> bool:
    return setting is not None and setting is not False


def apply_rules(
    table: pa.Table,
    config: Any,
    rekeep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[pa.Table, np.ndarray, list[RuleOutcome]]:
    """Apply every active rule of ``config`` in RULES order; return the table, keep mask and outcomes.

    ``rekeep(alive)`` recomputes dup_keep among the rows still alive, before the duplicates rule
    and at the end, so dropping a group's best row for another reason (a watermark) makes its
    next best the representative; the returned table carries that final dup_keep.
    """
    keys = table.column("key").to_numpy(zero_copy_only=False)
    alive = np.ones(table.num_rows, dtype=bool)
    outcomes = []
    for rule, (field_name, predicate) in RULES.items():
        setting = getattr(config, field_name)
        if not active(setting):
            continue
        if rule == "duplicates" and rekeep is not None:
            table = _set_keep(table, rekeep(alive))
        drop = predicate(table, setting)
        removed = drop & alive
        # dup_keep is only defined among the rows still alive: on its own the rule matches what it removes
        matched = removed if rule == "duplicates" else drop
        outcomes.append(
            RuleOutcome(
                rule,
                setting,
                int(matched.sum()),
                int(removed.sum()),
                [str(k) for k in keys[removed][:EXAMPLES_PER_RULE]],
            )
        )
        alive &= ~drop
    if rekeep is not None:
        table = _set_keep(table, rekeep(alive))
    return table, alive, outcomes


def _set_keep(table: pa.Table, keep: np.ndarray) -> pa.Table:
    return table.set_column(table.schema.get_field_index("dup_keep"), "dup_keep", pa.array(keep, pa.bool_()))
