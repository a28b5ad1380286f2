"""Aggregation of a sweep's results: mean, std and count of test accuracy per (data set, model, method, rewind
point, images per class, grid point, sparsity), a column per grid key, with the mean cost of the mask search
(inner loops) and the papers' time-to-mask (inner loops plus the final real-data training), read from the results
data set with its schema."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError
from dpcluster.results.analyses import SCHEMAS
from dpcluster.results.levels import LEVEL_SCHEMA, read_levels
from dpcluster.results.store import compact_tree
from dpcluster.sweeps.layout import SweepLayout

KEYS = ["dataset", "model", "method", "rewind", "images_per_class", "grid", "sparsity"]
MEANS = ["inner_seconds", "validation_seconds", "mask_search_seconds", "mask_search_examples",
         "time_to_mask_seconds", "time_to_mask_examples"]
# What summarise reads: a million levels read in a fraction of a second without the per-layer lists.
COLUMNS = [*KEYS, "test_accuracy", *MEANS]
# The aggregation (the sweep's last job) compacts every partition of at least this many small files. A smaller
# one saves few inodes, and each compaction rewrites its whole partition.
COMPACT_FROM = 8


def read_results(sweep_dir: Path, names: Iterable[str] | None = None,
                 columns: Sequence[str] | None = None) -> pa.Table:
    """The sweep folder's validated levels (or those of the jobs ``names``; ``columns`` of them where given); a
    folder without any is a user mistake."""
    layout = SweepLayout(Path(sweep_dir))
    table = read_levels(layout.results_dir, names, columns)
    if not table.num_rows:
        raise UserError(f"{sweep_dir}: no results yet (expected Parquet files under {layout.results_dir})")
    return table


def summarise(table: pa.Table) -> pa.Table:
    # Sparsities are exact fractions of integer counts; rounding joins the same level across seeds.
    table = table.set_column(table.schema.get_field_index("sparsity"), "sparsity", pc.round(table["sparsity"], 6))
    summary = table.group_by(KEYS).aggregate([
        ("test_accuracy", "mean"), ("test_accuracy", "stddev"), ("test_accuracy", "count"),
        *((column, "mean") for column in MEANS),
    ])
    return with_grid_columns(summary.sort_by([(key, "ascending") for key in KEYS]))


def with_grid_columns(table: pa.Table) -> pa.Table:
    """``table`` with one column per grid key (``training.lr``, ...) holding each row's value from its "grid"
    text (null where its experiment had none); unchanged for a sweep without a grid."""
    from dpcluster.specs.experiment import grid_columns

    for key, values in grid_columns(table["grid"].to_pylist()).items():
        table = table.append_column(key, pa.array(values))
    return table


def compact_sweep(sweep_dir: Path) -> int:
    """Compact the folder's results and analyses (partitions of at least ``COMPACT_FROM`` small files); returns
    the partitions compacted."""
    layout = SweepLayout(Path(sweep_dir))
    return compact_tree(layout.results_dir, LEVEL_SCHEMA, COMPACT_FROM) + sum(
        compact_tree(layout.analysis_dir(kind), schema, COMPACT_FROM) for kind, schema in SCHEMAS.items())


def aggregate(sweep_dir: Path, names: Iterable[str] | None = None) -> pa.Table:
    """Compact the folder, then summarise its results (or those of the jobs ``names``) into
    ``aggregate.parquet``."""
    compact_sweep(sweep_dir)
    summary = summarise(read_results(sweep_dir, names, COLUMNS))
    write_atomic(SweepLayout(Path(sweep_dir)).aggregate_file, lambda handle: pq.write_table(summary, handle))
    return summary
