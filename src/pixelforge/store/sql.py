"""DuckDB over a dataset's index (table ``samples``) and failures (table ``failures``)."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pixelforge.errors import UsageError
from pixelforge.store import fs as fsutil
from pixelforge.store.dataset import FAILURES, INDEX, Dataset


def connect(ds: Dataset) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``samples`` and ``failures`` over the dataset's parquet files."""
    con = duckdb.connect()
    if fsutil.is_local(ds.fs):
        for view, name in (("samples", INDEX), ("failures", FAILURES)):
            path = ds.file(name).replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{path}')")
    else:
        # other file systems: let DuckDB read through fsspec
        con.register_filesystem(ds.fs)
        for view, name in (("samples", INDEX), ("failures", FAILURES)):
            url = ds.fs.unstrip_protocol(ds.file(name)).replace("'", "''")
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{url}')")
    return con


def query(ds: Dataset, sql: str) -> pa.Table:
    """Run ``sql`` against the dataset; a bad query is a UsageError naming the columns."""
    con = connect(ds)
    try:
        rel = con.sql(sql)
        if rel is None:  # a statement without a result (CREATE, SET, ...)
            return pa.table({})
        # duckdb 2 names it to_arrow_table; 1.x calls it arrow
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        columns = ", ".join(ds.schema.names)
        raise UsageError(
            f"query failed: {first}. Table `samples` has columns: {columns}; "
            "table `failures` has row, source, url, reason, detail"
        ) from None
    finally:
        con.close()
