"""Summaries of round records across seeds (pure functions; the CLI renders them)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from dpcluster.methods.registry import get_method
from dpcluster.results.records import RoundRecord


@dataclass(frozen=True)
class Cell:
    mean: float
    std: float
    count: int


def _cell(values: list[float]) -> Cell:
    return Cell(statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0, len(values))


def accuracy_by_sparsity(records: list[RoundRecord]) -> tuple[list[float], list[str], dict[tuple[float, str], Cell]]:
    """Rows (sparsity levels), columns (methods, in order of appearance) and the mean test accuracy over seeds."""
    values: dict[tuple[float, str], list[float]] = defaultdict(list)
    methods: list[str] = []
    for r in records:
        if r.method not in methods:
            methods.append(r.method)
        if r.test_accuracy is not None:
            # Rounded so the same level from different strategies or seeds lands in one row.
            values[(round(r.sparsity, 4), r.method)].append(r.test_accuracy)
    levels = sorted({level for level, _ in values})
    return levels, methods, {key: _cell(v) for key, v in values.items()}


@dataclass(frozen=True)
class MaskCost:
    """What the sparsest mask cost, per method: the mask search (every inner loop) and the papers' time-to-mask
    (the mask search plus the final real-data training of the subnetwork), in seconds and training examples."""

    method: str
    sparsity: float
    search_seconds: Cell
    search_examples: Cell
    time_to_mask_seconds: Cell | None
    time_to_mask_examples: Cell | None


def mask_costs(records: list[RoundRecord]) -> list[MaskCost]:
    last: dict[tuple[str, str], RoundRecord] = {}
    for r in records:
        key = (r.method, r.experiment_id)
        if get_method(r.method).prunes and (key not in last or r.round > last[key].round):
            last[key] = r
    per_method: dict[str, list[RoundRecord]] = defaultdict(list)
    for (method, _), r in last.items():
        per_method[method].append(r)
    costs = []
    for method, rows in per_method.items():
        validated = [r for r in rows if r.time_to_mask_seconds is not None]
        costs.append(MaskCost(
            method=method,
            sparsity=statistics.fmean(r.sparsity for r in rows),
            search_seconds=_cell([r.mask_search_seconds for r in rows]),
            search_examples=_cell([float(r.mask_search_examples) for r in rows]),
            time_to_mask_seconds=_cell([r.time_to_mask_seconds for r in validated]) if validated else None,
            time_to_mask_examples=_cell([float(r.time_to_mask_examples) for r in validated]) if validated else None,
        ))
    return costs
