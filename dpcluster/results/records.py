"""One row per pruning round, written as Parquet with an explicit schema.

Files are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic


@dataclass(frozen=True)
class RoundRecord:
    experiment_id: str
    method: str
    seed: int
    dataset: str
    model: str
    round: int
    # Fraction of prunable (conv and linear) weights that are pruned, and the exact counts behind it.
    sparsity: float
    weights_kept: int
    weights_total: int
    # The validated subnetwork, trained on real data; None when validation is off.
    test_accuracy: float | None
    test_loss: float | None
    # The training whose weights were pruned to give this round's mask ("real", "distilled" or "none").
    inner_data: str
    inner_seconds: float
    inner_examples: int
    validation_seconds: float
    validation_examples: int
    mask_hash: str


_ARROW_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string(), float | None: pa.float64()}
SCHEMA = pa.schema([
    pa.field(name, _ARROW_TYPES[tp], nullable=tp == float | None)
    for name, tp in typing.get_type_hints(RoundRecord).items()
])


def write_records(records: list[RoundRecord], path: str | Path) -> None:
    path = Path(path)
    table = pa.Table.from_pylist([dataclasses.asdict(r) for r in records], schema=SCHEMA)
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def read_records(path: str | Path) -> list[RoundRecord]:
    table = pq.read_table(path, schema=SCHEMA)
    return [RoundRecord(**row) for row in table.to_pylist()]
