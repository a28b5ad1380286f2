"""Evaluations of distilled sets on their own (``dpcluster evaluate-set``, ``dpcluster distill``), one Parquet file
per evaluation in a folder (an output folder's ``set_evaluations/``, see ``SweepLayout``): one row per trained
network, the set's and the random real subsets', with what defines the evaluation on every row. The report reads them beside a sweep's
results. An evaluation run again with the same set and settings replaces its file (its id is their hash)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic
from dpcluster.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

# The two kinds of rows: networks trained on the set, and on random real subsets of its size.
SET, SUBSET = "distilled set", "random real subset"

SCHEMA = pa.schema([
    pa.field("evaluation_id", pa.string(), nullable=False),
    # Where the set came from (a path, or the cache folder of a set distilled here), its format and content digest.
    pa.field("set", pa.string(), nullable=False), pa.field("format", pa.string(), nullable=False),
    pa.field("set_digest", pa.string(), nullable=False),
    pa.field("dataset", pa.string(), nullable=False), pa.field("model", pa.string(), nullable=False),
    pa.field("images_per_class", pa.int64(), nullable=False), pa.field("labels", pa.string(), nullable=False),
    # "distilled set" or "random real subset"; network: the seed of the network (and of the subset drawn).
    pa.field("kind", pa.string(), nullable=False), pa.field("network", pa.int64(), nullable=False),
    pa.field("test_accuracy", pa.float64(), nullable=False),
    pa.field("epochs", pa.int64(), nullable=False), pa.field("lr", pa.float64(), nullable=False),
    pa.field("augmentation", pa.string(), nullable=False), pa.field("seconds", pa.float64(), nullable=False),
])


def write_evaluation(folder: Path, evaluation_id: str, rows: list[dict[str, Any]]) -> Path:
    """The rows of one evaluation, written atomically to its file in ``folder``."""
    path = Path(folder) / f"{evaluation_id}.parquet"
    table = pa.Table.from_pylist([{"evaluation_id": evaluation_id, **row} for row in rows], schema=SCHEMA)
    write_atomic(path, lambda handle: pq.write_table(table, handle))
    return path


def read_evaluations(folder: Path) -> pa.Table:
    """Every evaluation's rows in ``folder`` (an empty table where there are none). One file per evaluation, and
    evaluations are made by hand, so a folder holds a few: each is read once."""
    folder = Path(folder)
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    tables = []
    for file in files:
        try:
            tables.append(pq.read_table(file, schema=SCHEMA))
        except (pa.ArrowInvalid, OSError) as error:
            raise UserError(f"{file}: not a set evaluation ({error})") from None
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def summary(rows: "pd.DataFrame") -> "pd.DataFrame":
    """Per evaluation: the set's and the subsets' mean and std test accuracy over networks, and the gain."""
    import pandas as pd

    keys = ["evaluation_id", "dataset", "model", "set", "format", "images_per_class", "labels", "epochs",
            "augmentation"]
    out = []
    for key, group in rows.groupby(keys, sort=False):
        record = dict(zip(keys, key))
        for kind, prefix in ((SET, "set"), (SUBSET, "subset")):
            values = group.loc[group["kind"] == kind, "test_accuracy"]
            record[f"{prefix}_mean"] = values.mean() if len(values) else math.nan
            record[f"{prefix}_std"] = values.std(ddof=0) if len(values) else math.nan
            record[f"{prefix}_networks"] = len(values)
        record["set_lr"] = group.loc[group["kind"] == SET, "lr"].iloc[0]
        record["gain"] = record["set_mean"] - record["subset_mean"]
        out.append(record)
    return pd.DataFrame(out)
