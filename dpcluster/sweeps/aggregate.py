"""Aggregation of a sweep's results: mean, std and count of test accuracy per (data set, model, method,
images per class, sparsity), with the mean cost of the mask search (inner loops) and the papers' time-to-mask
(inner loops plus the final real-data training), read from the hive-partitioned Parquet data set with pyarrow."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError

AGGREGATE_FILE = "aggregate.parquet"
KEYS = ["dataset", "model", "method", "images_per_class", "sparsity"]


def read_results(sweep_dir: Path) -> pa.Table:
    results = sweep_dir / "results"
    if not results.exists() or not any(results.rglob("*.parquet")):
        raise UserError(f"{sweep_dir}: no results yet (expected Parquet files under {results})")
    from dpcluster.sweeps.execute import PARTITIONING_SCHEMA, RESULT_SCHEMA

    # The project's schema, not the first file's: files written before a column existed read it as null instead of
    # hiding it from every other file.
    schema = pa.unify_schemas([RESULT_SCHEMA, PARTITIONING_SCHEMA])
    partitioning = ds.partitioning(PARTITIONING_SCHEMA, flavor="hive")
    return ds.dataset(results, format="parquet", partitioning=partitioning, schema=schema).to_table()


def aggregate(sweep_dir: Path) -> pa.Table:
    table = read_results(sweep_dir)
    # Sparsities are exact fractions of integer counts; rounding joins the same level across seeds.
    table = table.set_column(table.schema.get_field_index("sparsity"), "sparsity",
                             pc.round(table["sparsity"], 6))
    summary = table.group_by(KEYS).aggregate([
        ("test_accuracy", "mean"), ("test_accuracy", "stddev"), ("test_accuracy", "count"),
        ("inner_seconds", "mean"), ("validation_seconds", "mean"),
        ("mask_search_seconds", "mean"), ("mask_search_examples", "mean"),
        ("time_to_mask_seconds", "mean"), ("time_to_mask_examples", "mean"),
    ])
    summary = summary.sort_by([(key, "ascending") for key in KEYS])
    write_atomic(sweep_dir / AGGREGATE_FILE, lambda handle: pq.write_table(summary, handle))
    return summary
