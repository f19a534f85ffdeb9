"""The on-disk dataset: shards, index, failures, lineage — the only code that knows the layout."""

from pixelforge.store.dataset import (
    Dataset,
    DatasetBuilder,
    Lineage,
    Sample,
    completed_shards,
    config_to_dict,
    default_name,
    finalize,
    is_dataset,
    is_partial,
    prepare_output,
    read_plan,
    remove_partial,
    work_path,
    write_plan,
)
from pixelforge.store.derive import begin_run, open_input, output_schema
from pixelforge.store.schema import FAILURE_REASONS, index_schema
from pixelforge.store.shards import MASK_EXT, ShardResult, ShardWriter, shard_id_of, shard_name, split_member

__all__ = [
    "Dataset",
    "DatasetBuilder",
    "FAILURE_REASONS",
    "MASK_EXT",
    "Lineage",
    "Sample",
    "ShardResult",
    "ShardWriter",
    "begin_run",
    "completed_shards",
    "config_to_dict",
    "default_name",
    "finalize",
    "index_schema",
    "is_dataset",
    "is_partial",
    "open_input",
    "output_schema",
    "prepare_output",
    "query",
    "read_plan",
    "remove_partial",
    "shard_id_of",
    "shard_name",
    "split_member",
    "work_path",
    "write_plan",
]


def query(ds: Dataset, sql: str):
    """DuckDB ``sql`` over the dataset (see store.sql); DuckDB loads only when a query runs."""
    from pixelforge.store.sql import query as run_query

    return run_query(ds, sql)
