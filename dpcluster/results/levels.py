"""The results data set: one Parquet file per validated level (a subnetwork trained on real data and tested),
hive-partitioned by data set, model and method, compacted per partition once many are there (``store.py``), and
read back with the project's schema.

Both ``dpcluster run`` and ``dpcluster sweep`` write it (a run is a sweep on this machine), so one reader, one
aggregation and one report serve both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic

# level_file lives in the pyarrow-free paths.py (sweep planning names every job's file); re-exported here.
from dpcluster.results.paths import PARTITIONS, level_file  # noqa: F401
from dpcluster.results.records import SCHEMA, RoundRecord
from dpcluster.results.store import read_rows


# The sweep's [grid] values of a level's experiment ("model.width=64, training.lr=0.01"), null without a grid: in
# the results and every analysis, so any of them splits by it (aggregate and the report make a column per key).
GRID = pa.field("grid", pa.string())


def _schemas() -> tuple[pa.Schema, pa.Schema]:
    partitions = [f for f in SCHEMA if f.name in PARTITIONS]
    files = [f for f in SCHEMA if f.name not in PARTITIONS]
    return (pa.schema(files + [pa.field("images_per_class", pa.int64(), nullable=False), GRID]),
            pa.schema([f.with_nullable(True) for f in partitions]))


# One level's file (the round record and the distilled-set size; the partition columns live in the folder names),
# and the partition columns, with their types stated rather than guessed from the folder names.
LEVEL_SCHEMA, PARTITIONING_SCHEMA = _schemas()


def write_level(record: RoundRecord, images_per_class: int, path: Path, grid: str | None = None) -> None:
    """One validated level (``images_per_class`` is 0 for methods that use no distilled set; ``grid``: the
    sweep's grid values of its experiment, as ``ExperimentSpec.grid_label`` writes them)."""
    row = record.as_row()
    row["images_per_class"] = images_per_class
    row["grid"] = grid
    table = pa.Table.from_pylist([row], schema=LEVEL_SCHEMA)
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def read_levels(results_dir: Path, names: Iterable[str] | None = None,
                columns: Sequence[str] | None = None) -> pa.Table:
    """Every level under ``results_dir`` (or those of the job ids ``names``), with the project's schema
    (``columns`` of it, in that order, where given)."""
    return read_partitioned(results_dir, LEVEL_SCHEMA, names, columns)


def read_partitioned(folder: Path, file_schema: pa.Schema, names: Iterable[str] | None = None,
                     columns: Sequence[str] | None = None) -> pa.Table:
    """The hive-partitioned rows under ``folder`` (or those of the job ids ``names``: the small files' names, the
    compacted files' ``job_id``) read with ``file_schema`` and the typed partition columns (``columns`` of them;
    ``job_id`` too on request): files written before a column existed read it as null instead of hiding it from
    every other file (pyarrow would otherwise take the schema of the first file it finds). Partitions of many
    small files are compacted on the way (``store.py``)."""
    return read_rows(folder, file_schema, PARTITIONING_SCHEMA, names, columns)


def level_records(table: pa.Table) -> list[RoundRecord]:
    """The rows of :func:`read_levels` as round records."""
    fields = {f.name for f in SCHEMA}
    return [RoundRecord.from_row({k: v for k, v in row.items() if k in fields}) for row in table.to_pylist()]
