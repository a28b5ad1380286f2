"""Aggregation of a sweep's results: mean, std and count of test accuracy per (data set, model, method, rewind
point, images per class, sparsity), with the mean cost of the mask search (inner loops) and the papers' time-to-mask
(inner loops plus the final real-data training), read from the results data set with its schema."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError
from dpcluster.results.levels import read_levels
from dpcluster.sweeps.layout import SweepLayout

KEYS = ["dataset", "model", "method", "rewind", "images_per_class", "sparsity"]


def read_results(sweep_dir: Path, names: Iterable[str] | None = None) -> pa.Table:
    """The sweep folder's validated levels (or those of the jobs ``names``); a folder without any is a user
    mistake."""
    layout = SweepLayout(Path(sweep_dir))
    table = read_levels(layout.results_dir, names)
    if not table.num_rows:
        raise UserError(f"{sweep_dir}: no results yet (expected Parquet files under {layout.results_dir})")
    return table


def summarise(table: pa.Table) -> pa.Table:
    # Sparsities are exact fractions of integer counts; rounding joins the same level across seeds.
    table = table.set_column(table.schema.get_field_index("sparsity"), "sparsity", pc.round(table["sparsity"], 6))
    summary = table.group_by(KEYS).aggregate([
        ("test_accuracy", "mean"), ("test_accuracy", "stddev"), ("test_accuracy", "count"),
        ("inner_seconds", "mean"), ("validation_seconds", "mean"),
        ("mask_search_seconds", "mean"), ("mask_search_examples", "mean"),
        ("time_to_mask_seconds", "mean"), ("time_to_mask_examples", "mean"),
    ])
    return summary.sort_by([(key, "ascending") for key in KEYS])


def aggregate(sweep_dir: Path, names: Iterable[str] | None = None) -> pa.Table:
    """Summarise the folder's results (or those of the jobs ``names``) into ``aggregate.parquet``."""
    summary = summarise(read_results(sweep_dir, names))
    write_atomic(SweepLayout(Path(sweep_dir)).aggregate_file, lambda handle: pq.write_table(summary, handle))
    return summary
