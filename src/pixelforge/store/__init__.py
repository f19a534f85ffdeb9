"""The on-disk dataset: shards, index, failures, lineage — the only code that knows the layout."""

from pixelforge.store.dataset import (
    Dataset, DatasetBuilder, Lineage, Sample, completed_shards, config_to_dict, finalize,
    prepare_output, remove_partial,
)
from pixelforge.store.schema import FAILURE_REASONS, index_schema
from pixelforge.store.shards import ShardWriter

__all__ = [
    "Dataset", "DatasetBuilder", "FAILURE_REASONS", "Lineage", "Sample", "ShardWriter", "completed_shards",
    "config_to_dict", "finalize", "index_schema", "prepare_output", "query", "remove_partial",
]


def query(ds: Dataset, sql: str):
    """DuckDB ``sql`` over the dataset (see store.sql); DuckDB loads only when a query runs."""
    from pixelforge.store.sql import query as run_query

    return run_query(ds, sql)
