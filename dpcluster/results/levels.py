"""The results data set: one Parquet file per validated level (a subnetwork trained on real data and tested),
hive-partitioned by data set, model and method, and read back with the project's schema.

Both ``dpcluster run`` and ``dpcluster sweep`` write it (a run is a sweep on this machine), so one reader, one
aggregation and one report serve both.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic
from dpcluster.results.records import SCHEMA, RoundRecord

# The hive partition columns: the folders dataset=.../model=.../method=... of the data set.
PARTITIONS = ("dataset", "model", "method")


def _schemas() -> tuple[pa.Schema, pa.Schema]:
    partitions = [f for f in SCHEMA if f.name in PARTITIONS]
    files = [f for f in SCHEMA if f.name not in PARTITIONS]
    return (pa.schema(files + [pa.field("images_per_class", pa.int64(), nullable=False)]),
            pa.schema([f.with_nullable(True) for f in partitions]))


# One level's file (the round record and the distilled-set size; the partition columns live in the folder names),
# and the partition columns, with their types stated rather than guessed from the folder names.
LEVEL_SCHEMA, PARTITIONING_SCHEMA = _schemas()


def level_file(results_dir: Path, dataset: str, model: str, method: str, name: str) -> Path:
    return Path(results_dir) / f"dataset={dataset}" / f"model={model}" / f"method={method}" / f"{name}.parquet"


def write_level(record: RoundRecord, images_per_class: int, path: Path) -> None:
    """One validated level (``images_per_class`` is 0 for methods that use no distilled set)."""
    row = record.as_row()
    row["images_per_class"] = images_per_class
    table = pa.Table.from_pylist([row], schema=LEVEL_SCHEMA)
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def read_levels(results_dir: Path, names: Iterable[str] | None = None) -> pa.Table:
    """Every level under ``results_dir`` (or those of the given file names), with the project's schema."""
    return read_partitioned(results_dir, LEVEL_SCHEMA, names)


def read_partitioned(folder: Path, file_schema: pa.Schema, names: Iterable[str] | None = None) -> pa.Table:
    """The hive-partitioned Parquet files under ``folder`` (or those named ``<name>.parquet`` for ``names``) read
    with ``file_schema`` and the typed partition columns: files written before a column existed read it as null
    instead of hiding it from every other file (pyarrow would otherwise take the schema of the first file it
    finds)."""
    folder = Path(folder)
    files = sorted(folder.rglob("*.parquet")) if folder.exists() else []
    if names is not None:
        wanted = set(names)
        files = [f for f in files if f.stem in wanted]
    schema = pa.unify_schemas([file_schema, PARTITIONING_SCHEMA])
    if not files:
        return schema.empty_table()
    partitioning = ds.partitioning(PARTITIONING_SCHEMA, flavor="hive")
    return ds.dataset([str(f) for f in files], format="parquet", partitioning=partitioning, schema=schema,
                      partition_base_dir=str(folder)).to_table()


def level_records(table: pa.Table) -> list[RoundRecord]:
    """The rows of :func:`read_levels` as round records."""
    fields = {f.name for f in SCHEMA}
    return [RoundRecord.from_row({k: v for k, v in row.items() if k in fields}) for row in table.to_pylist()]
