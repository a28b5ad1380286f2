"""One row per pruning round, written as Parquet with an explicit schema.

Files are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dpcluster.atomic import write_atomic


@dataclass(frozen=True)
class LayerCount:
    """One layer of a round's mask: its kept and total prunable weights."""

    name: str
    kept: int
    total: int


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
    # What finding this round's mask cost: every inner loop up to and including this round's.
    mask_search_seconds: float
    mask_search_examples: int
    # The papers' time-to-mask: the mask search plus the final real-data training of the subnetwork (None when
    # the subnetwork was not trained).
    time_to_mask_seconds: float | None
    time_to_mask_examples: int | None
    mask_hash: str
    # Per layer, in the model's order: kept and total weights, so a mask can be inspected without code.
    layers: tuple[LayerCount, ...] = ()
    # Where real-data training rewinds to ("0ep", "1ep", ...) for methods that rewind; None for the others.
    rewind: str | None = None
    # How many processes trained the validated subnetwork (data-parallel across them); null in rows written before
    # the column existed. On the CPU, BatchNorm's statistics are per process, so only trainings of one world size
    # are the same procedure (on CUDA BatchNorm is synchronised across processes).
    world_size: int | None = 1

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RoundRecord:
        """A record from plain data (a Parquet row, a checkpoint's dict)."""
        row = dict(row)
        row["layers"] = tuple(LayerCount(**layer) for layer in row.get("layers") or ())
        return cls(**row)

    def as_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_validation(self, accuracy: float, loss: float, seconds: float, examples: int,
                        world_size: int = 1) -> RoundRecord:
        """This round's record with its subnetwork's real-data training (on ``world_size`` processes) and test
        result filled in."""
        return dataclasses.replace(
            self, test_accuracy=accuracy, test_loss=loss, validation_seconds=seconds, validation_examples=examples,
            world_size=world_size,
            time_to_mask_seconds=self.mask_search_seconds + seconds,
            time_to_mask_examples=self.mask_search_examples + examples)


LAYER_TYPE = pa.list_(pa.struct([pa.field("name", pa.string(), nullable=False),
                                 pa.field("kept", pa.int64(), nullable=False),
                                 pa.field("total", pa.int64(), nullable=False)]))
_ARROW_TYPES = {"str": pa.string(), "str | None": pa.string(), "int": pa.int64(), "float": pa.float64(),
                "float | None": pa.float64(), "int | None": pa.int64(), "tuple[LayerCount, ...]": LAYER_TYPE}
SCHEMA = pa.schema([pa.field(f.name, _ARROW_TYPES[f.type], nullable=f.type.endswith("None"))
                    for f in dataclasses.fields(RoundRecord)])


def write_records(records: list[RoundRecord], path: str | Path) -> None:
    path = Path(path)
    table = pa.Table.from_pylist([r.as_row() for r in records], schema=SCHEMA)
    write_atomic(path, lambda handle: pq.write_table(table, handle))


def read_records(path: str | Path) -> list[RoundRecord]:
    table = pq.read_table(path, schema=SCHEMA)
    return [RoundRecord.from_row(row) for row in table.to_pylist()]
