"""Rich tables of a run's results."""

from __future__ import annotations

from rich.table import Table

from dpcluster.results.records import RoundRecord
from dpcluster.results.summary import accuracy_by_sparsity, mask_costs


def _pct(mean: float, std: float, count: int) -> str:
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if count > 1 else "")


def accuracy_table(records: list[RoundRecord]) -> Table:
    levels, methods, cells = accuracy_by_sparsity(records)
    table = Table(title="Test accuracy (%) by sparsity, mean ± std over seeds")
    table.add_column("sparsity", justify="right")
    for method in methods:
        table.add_column(method, justify="right")
    for level in levels:
        row = [f"{100 * level:.1f}%"]
        for method in methods:
            cell = cells.get((level, method))
            row.append(_pct(cell.mean, cell.std, cell.count) if cell else "")
        table.add_row(*row)
    return table


def cost_table(records: list[RoundRecord]) -> Table:
    table = Table(title="Cost of the sparsest mask, mean over seeds",
                  caption="search: every inner loop that found the mask; time-to-mask (the papers' measure): the "
                          "search plus the final real-data training of the subnetwork")
    for name in ("method", "sparsity", "search s", "search examples", "time-to-mask s", "time-to-mask examples"):
        table.add_column(name, justify="right" if name != "method" else "left")
    for cost in mask_costs(records):
        ttm_seconds = f"{cost.time_to_mask_seconds.mean:.1f}" if cost.time_to_mask_seconds else ""
        ttm_examples = f"{cost.time_to_mask_examples.mean:,.0f}" if cost.time_to_mask_examples else ""
        table.add_row(cost.method, f"{100 * cost.sparsity:.1f}%", f"{cost.search_seconds.mean:.1f}",
                      f"{cost.search_examples.mean:,.0f}", ttm_seconds, ttm_examples)
    return table
