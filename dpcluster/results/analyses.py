"""The analyses' data sets: one per analysis, one Parquet file per job (a level of one experiment) until compacted
(``store.py``), rows not pickles, hive-partitioned by data set, model and method like the results, each read with
its own schema.

Every row starts with the level it measures: ``experiment_id, seed, round, sparsity, images_per_class,
rewind, grid`` (the sweep's grid values of its experiment, see ``levels.GRID``); then

- ``stability``: one row per point of the path, ``alpha, test_loss, test_error``, and the level's ``instability``
  (the error barrier) on every row;
- ``stability`` and ``landscape`` end with the subsets they were measured on, ``subset_seed, test_size,
  batchnorm_size`` (``sharpness`` with ``subset_seed``; its ``examples`` is the size);
- ``landscape``: one row per grid point, ``a, b, test_loss, test_accuracy`` (of the training split for
  ``split = "train"``, despite the names, or of the test split), ``split``;
- ``sharpness``: one row, ``top_eigenvalue, eigen_iterations, eigen_converged, trace, trace_std_error,
  trace_samples, examples, bottom_eigenvalue, eigen_residual`` (the largest and smallest eigenvalues; the
  residual that says whether they converged);
- ``kept_weights``: one row per layer and bin of its initial values, ``layer, low, high, kept, pruned``;
- the analyses of a level's trained pair (``stability``, ``landscape``, ``sharpness``) end with ``world_size``,
  the number of processes both copies trained on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic
from dpcluster.results.levels import GRID, read_partitioned

LEVEL = [pa.field("experiment_id", pa.string(), nullable=False), pa.field("seed", pa.int64(), nullable=False),
         pa.field("round", pa.int64(), nullable=False), pa.field("sparsity", pa.float64(), nullable=False),
         pa.field("images_per_class", pa.int64(), nullable=False), pa.field("rewind", pa.string()), GRID]

# The fixed subsets a level was measured on: their seed and sizes (the curve's or plane's examples, BatchNorm's).
SUBSETS = [pa.field("subset_seed", pa.int64()), pa.field("test_size", pa.int64()), pa.field("batchnorm_size", pa.int64())]

# How many processes trained the level's pair (both copies alike); null in rows written before it was recorded.
TRAINED_ON = [pa.field("world_size", pa.int64())]

SCHEMAS = {
    "stability": pa.schema(LEVEL + [pa.field("alpha", pa.float64()), pa.field("test_loss", pa.float64()),
                                    pa.field("test_error", pa.float64()), pa.field("instability", pa.float64())]
                           + SUBSETS + TRAINED_ON),
    "landscape": pa.schema(LEVEL + [pa.field("a", pa.float64()), pa.field("b", pa.float64()),
                                    pa.field("test_loss", pa.float64()), pa.field("test_accuracy", pa.float64()),
                                    pa.field("split", pa.string())] + SUBSETS + TRAINED_ON),
    "sharpness": pa.schema(LEVEL + [pa.field("top_eigenvalue", pa.float64()), pa.field("eigen_iterations", pa.int64()),
                                    pa.field("eigen_converged", pa.bool_()), pa.field("trace", pa.float64()),
                                    pa.field("trace_std_error", pa.float64()), pa.field("trace_samples", pa.int64()),
                                    pa.field("examples", pa.int64()), pa.field("bottom_eigenvalue", pa.float64()),
                                    pa.field("eigen_residual", pa.float64()), pa.field("subset_seed", pa.int64())]
                           + TRAINED_ON),
    "kept_weights": pa.schema(LEVEL + [pa.field("layer", pa.string()), pa.field("low", pa.float64()),
                                       pa.field("high", pa.float64()), pa.field("kept", pa.int64()),
                                       pa.field("pruned", pa.int64())]),
}


def write_analysis(kind: str, level: dict, rows: list[dict], path: Path) -> None:
    """``rows`` of analysis ``kind``, each prefixed with the ``level`` columns (the partition columns are in the
    folder names)."""
    table = pa.Table.from_pylist([{**level, **row} for row in rows], schema=SCHEMAS[kind])
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def read_analysis(folder: Path, kind: str, names: Iterable[str] | None = None,
                  columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of analysis ``kind`` under ``folder`` (or those of the job ids ``names``), with its schema
    (``columns`` of it, in that order, where given)."""
    return read_partitioned(folder, SCHEMAS[kind], names, columns)
