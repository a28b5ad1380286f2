"""Summaries of round records across seeds (pure functions; the CLI renders them)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

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
    """What finding the sparsest mask cost, per method: the papers' time-to-mask and data points used."""

    method: str
    sparsity: float
    inner_seconds: Cell
    inner_examples: Cell


def mask_costs(records: list[RoundRecord]) -> list[MaskCost]:
    by_run: dict[tuple[str, str], list[RoundRecord]] = defaultdict(list)
    for r in records:
        by_run[(r.method, r.experiment_id)].append(r)
    per_method: dict[str, list[list[RoundRecord]]] = defaultdict(list)
    for (method, _), rows in by_run.items():
        if method != "dense":
            per_method[method].append(rows)
    costs = []
    for method, runs in per_method.items():
        costs.append(MaskCost(
            method=method,
            sparsity=statistics.fmean(max(rows, key=lambda r: r.round).sparsity for rows in runs),
            inner_seconds=_cell([sum(r.inner_seconds for r in rows) for rows in runs]),
            inner_examples=_cell([float(sum(r.inner_examples for r in rows)) for rows in runs]),
        ))
    return costs
